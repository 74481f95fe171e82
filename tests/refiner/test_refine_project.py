"""Headless project refinement (``refine``): what it writes, what it leaves alone, resuming, bad images."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.core.formats.coco import load_coco
from app.core.package_data import demo_dir
from app.core.records import ChangeKind, ReviewStatus
from app.core.store.project import ProjectStore
from app.main import main
from app.refiner.options import RefineOptions
from app.services.refine import refine_project
from app.services.selection import Selection

DEMO = demo_dir()
FAST = RefineOptions(steps=1)


@pytest.fixture
def project(tmp_path) -> Path:
    images = tmp_path / "images"
    shutil.copytree(DEMO, images)
    dataset, _ = load_coco(images / "demo.json", images_dir=images)
    path = tmp_path / "demo.srproj"
    ProjectStore.create(path, dataset, images_dir=images).close()
    return path


def test_refines_the_selection_saves_provenance_and_resumes(project, random_refiner):
    with ProjectStore.open(project) as store:
        ids = [s.id for s in store.list_instances()]
        locked, accepted = ids[0], ids[1]
        store.set_layer(locked, locked=True)
        store.set_status(accepted, ReviewStatus.ACCEPTED)
        before = {i: store.instance(i).mask() for i in ids}
        seen = []
        report = refine_project(store, random_refiner, FAST, Selection(), progress=lambda d, t, w: seen.append((d, t)))
        assert report.selected == len(ids) - 2 and not report.problems
        assert report.refined + report.passed_through == report.selected and report.refined > 0
        assert seen[-1] == (report.selected, report.selected) and len(seen) == report.images
        for i in ids:
            inst = store.instance(i)
            if i in (locked, accepted):
                assert inst.provenance.kind is ChangeKind.IMPORTED and (inst.mask() == before[i]).all()
            elif inst.provenance.kind is ChangeKind.REFINED:
                assert inst.provenance.weights == random_refiner.name and inst.provenance.steps == 1
                assert inst.changed_pixels == int((inst.mask() != before[i]).sum())
                assert [e.action for e in store.history(i)][-1] == "refine"
        again = refine_project(store, random_refiner, FAST, Selection())
        assert again.refined == 0 and again.selected == report.passed_through  # the refined ones are done
        redo = refine_project(store, random_refiner, FAST, Selection(redo=True, limit=2))
        assert redo.selected == 2 and redo.refined == 2


def test_stops_between_images_and_keeps_what_was_saved(project, random_refiner):
    with ProjectStore.open(project) as store:
        calls = []
        report = refine_project(store, random_refiner, FAST, Selection(), progress=lambda *a: calls.append(a),
                                should_stop=lambda: len(calls) >= 1)
        assert report.stopped and report.images == 1
        refined = store.count_instances() - sum(1 for s in store.list_instances() if s.provenance_kind is ChangeKind.IMPORTED)
        assert refined == report.refined > 0


def test_an_unreadable_image_is_reported_and_the_rest_refined(project, random_refiner):
    with ProjectStore.open(project) as store:
        broken = store.images()[0]
        (store.images_dir / broken.file_name).write_bytes(b"not an image")
        report = refine_project(store, random_refiner, FAST, Selection())
        assert len(report.problems) == 1 and broken.file_name in report.problems[0]
        assert report.images == len(store.images()) and report.refined > 0
        assert all(s.provenance_kind is ChangeKind.IMPORTED for s in store.list_instances() if s.image_id == broken.id)


def test_cli_refine_and_its_bad_input(project, random_weights, capsys):
    assert main(["refine", str(project), "--weights", str(random_weights), "--steps", "1", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "of 3 selected instances" in out and "[3/3]" in out
    assert main(["refine", str(project), "--weights", str(random_weights), "--status", "done"]) == 2
    assert "known statuses" in capsys.readouterr().err
    assert main(["refine", str(project.with_name("missing.srproj")), "--weights", str(random_weights)]) == 2
    assert "no such project file" in capsys.readouterr().err
    with ProjectStore.open(project):  # another process or window holds the project
        assert main(["refine", str(project), "--weights", str(random_weights)]) == 2
        assert "cannot write" in capsys.readouterr().err


def test_cli_refine_snaps_unless_told_not_to():
    from app.cli.refine import options_from
    from app.main import build_parser

    def parsed(*extra):
        argv = ["refine", "p.srproj", *extra]
        return options_from(build_parser(argv).parse_args(argv))

    assert parsed().snap is True and parsed("--no-snap").snap is False


def test_masks_too_small_to_refine_are_left_out_so_a_limit_counts_the_others(project, random_refiner):
    from app.services.selection import TOO_SMALL
    from tests.core.store_samples import shrink_first_instance

    with ProjectStore.open(project) as store:
        tiny_id = shrink_first_instance(store)
        selection = Selection(limit=1, min_area=FAST.smallest_area)
        refined = set()
        for _ in range(2):  # a second run goes on to the next instance, not back to the tiny one
            report = refine_project(store, random_refiner, FAST, selection)
            assert report.kept_out == {TOO_SMALL: 1} and report.selected == report.refined == 1
            refined |= {s.id for s in store.list_instances() if s.provenance_kind is ChangeKind.REFINED}
        assert len(refined) == 2 and tiny_id not in refined


def test_cli_refine_takes_the_project_either_way_and_refuses_what_selects_nothing(project, random_weights, capsys):
    fast = ["--weights", str(random_weights), "--steps", "1"]
    assert main(["refine", "--project", str(project), *fast, "--limit", "1"]) == 0
    assert "of 1 selected instance " in capsys.readouterr().out
    assert main(["refine", str(project), *fast, "--category", "999"]) == 2
    assert "category id 999 is not in the project (known: 1 " in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["refine", str(project), *fast, "--limit", "-3"])
    assert usage.value.code == 2 and "expected a whole number of 1 or more" in capsys.readouterr().err
    assert main(["refine", *fast]) == 2 and "give the project file" in capsys.readouterr().err
    assert main(["refine", str(project), *fast, "--images-dir", str(project.parent / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert main(["refine", str(project), *fast, "--status", "accepted"]) == 0
    assert "nothing selected: instances refined before are left out unless --redo" in capsys.readouterr().out
