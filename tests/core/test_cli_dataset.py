"""The headless dataset commands on real data: import, export (read back by pycocotools), stats, validate."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from app.cli import dataset as cli_dataset
from app.cli import stats as cli_stats
from app.core.errors import DatasetError
from app.core.records import ChangeKind, Provenance, ReviewStatus
from app.core.store.project import ProjectStore
from app.core.store.errors import ProjectError
from app.services.datasets import detect_format, export_project
from tests.shared_data import DATA

COCO_TINY = DATA / "coco_tiny"
VAL = COCO_TINY / "annotations" / "instances_val2017.json"
PENNFUDAN = DATA / "pennfudan"
LVIS = DATA / "lvis_val_100" / "lvis_val_100.json"

needs_coco_tiny = pytest.mark.skipif(not VAL.is_file(), reason=f"real data absent: {VAL}")
needs_pennfudan = pytest.mark.skipif(not (PENNFUDAN / "PedMasks").is_dir(), reason=f"real data absent: {PENNFUDAN}")


def run(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    cli_dataset.register(subparsers)
    cli_stats.register(subparsers)
    args = parser.parse_args([str(a) for a in argv])
    return args.handler(args)


def masks_by_id(coco: COCO) -> dict[int, np.ndarray]:
    return {ann_id: coco.annToMask(ann) for ann_id, ann in coco.anns.items()}


@pytest.fixture(scope="module")
def val_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not VAL.is_file():
        pytest.skip(f"real data absent: {VAL}")
    project = tmp_path_factory.mktemp("val") / "val.srproj"
    assert run("import", VAL, "--images", COCO_TINY / "val2017", "--project", project) == 0
    return project


@pytest.fixture(scope="module")
def val_masks() -> dict[int, np.ndarray]:
    return masks_by_id(COCO(str(VAL)))


# ------------------------------------------------------------------------------------------------ import
@needs_coco_tiny
def test_import_writes_project_and_report(val_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads((val_project.parent / "val.import-report.json").read_text())
    assert report["counts"] == {"images": 80, "categories": 80, "instances": 815}
    assert report["problems"] == []
    with ProjectStore.open(val_project, read_only=True) as store:
        assert store.count_instances() == 815 and store.image_count() == 80
        assert store.images_dir == (COCO_TINY / "val2017").resolve()
        assert store.source_path == VAL.resolve()


@needs_coco_tiny
def test_import_refuses_to_overwrite_a_project(val_project: Path) -> None:
    before = val_project.read_bytes()
    with pytest.raises(ProjectError, match="already exists"):
        run("import", VAL, "--project", val_project)
    assert val_project.read_bytes() == before


@needs_coco_tiny
def test_import_into_a_new_folder_makes_it(tmp_path: Path) -> None:
    project = tmp_path / "new" / "deeper" / "val.srproj"
    assert run("import", VAL, "--project", project) == 0
    with ProjectStore.open(project, read_only=True) as store:
        assert store.count_instances() == 815


@needs_coco_tiny
def test_an_images_folder_that_is_not_there_or_holds_none_of_the_images_is_said_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    project = tmp_path / "val.srproj"
    with pytest.raises(DatasetError, match="no such folder"):
        run("import", VAL, "--images", tmp_path / "typo", "--project", project)
    assert not project.exists()
    (tmp_path / "empty").mkdir()
    assert run("import", VAL, "--images", tmp_path / "empty", "--project", project) == 0
    out = capsys.readouterr().out
    assert "80 image files not found" in out and "none of the 80 images' files was found" in out
    summaries = [r.getMessage() for r in caplog.records if "80 problems" in r.getMessage()]
    assert summaries and all("... and" not in m for m in summaries)  # the log lists no problem: no "... and N more"


@needs_coco_tiny
def test_adding_the_file_a_project_was_made_from_or_naming_a_folder_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "val.srproj"
    assert run("import", VAL, "--project", project) == 0
    before = project.read_bytes()
    with pytest.raises(ProjectError, match="adding that file again would hold every annotation twice"):
        run("import", VAL, "--project", project, "--add")
    assert project.read_bytes() == before
    with pytest.raises(ProjectError, match=r"is a folder: give the project file to write in it, e\.g\. .*instances_val2017\.srproj"):
        run("import", VAL, "--project", tmp_path)


@needs_coco_tiny
def test_import_predictions_into_an_existing_project(tmp_path: Path) -> None:
    project = tmp_path / "val.srproj"
    run("import", VAL, "--project", project)
    coco = COCO(str(VAL))
    predictions = []
    for ann in list(coco.anns.values())[:40]:
        rle = coco.annToRLE(ann)
        predictions.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 0.5,
                            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(predictions))
    assert detect_format(preds) == "results"
    with pytest.raises(DatasetError, match="needs --images-file"):
        run("import", preds, "--project", project, "--add")
    assert run("import", preds, "--images-file", VAL, "--project", project, "--add") == 0
    with ProjectStore.open(project, read_only=True) as store:
        assert store.count_instances() == 855
        scored = [s for s in store.list_instances() if s.score == 0.5]
        assert len(scored) == 40


@needs_coco_tiny
def test_a_bad_file_added_to_a_project_touches_nothing(tmp_path: Path) -> None:
    project = tmp_path / "val.srproj"
    run("import", VAL, "--project", project)
    before = project.read_bytes()
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.json: file is empty"):
        run("import", empty, "--project", project, "--add")
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [], "annotations": [')
    with pytest.raises(DatasetError, match="broken.json: not valid JSON"):
        run("import", broken, "--format", "coco", "--project", project, "--add")
    assert project.read_bytes() == before


def test_import_into_a_project_open_elsewhere_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "tiny.json"
    source.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 3}],
                                  "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    project = tmp_path / "tiny.srproj"
    assert run("import", source) == 0  # default project: beside the source
    with ProjectStore.open(project):
        with pytest.raises(ProjectError, match="cannot add to it: already open for writing by pid"):
            run("import", source, "--project", project, "--add")


def test_detect_format(tmp_path: Path) -> None:
    obj, lst, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.txt"
    obj.write_text(' \n{"images": []}')
    lst.write_text("[]")
    other.write_text("hello")
    labels, instances = tmp_path / "labels", tmp_path / "instances"
    labels.mkdir()
    instances.mkdir()
    (labels / "FudanPed00001_mask.png").write_bytes(b"")
    (instances / "img_1.png").write_bytes(b"")
    assert [detect_format(p) for p in (obj, lst, labels, instances)] == [
        "coco", "results", "png-labels", "png-instances"]
    with pytest.raises(DatasetError, match="c.txt: not a JSON annotation file"):
        detect_format(other)
    with pytest.raises(DatasetError, match="file not found"):
        detect_format(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------------------ export
@needs_coco_tiny
@pytest.mark.parametrize("segmentation", ["source", "rle", "polygon"])
def test_export_reads_back_pixel_exact(val_project: Path, val_masks: dict[int, np.ndarray], tmp_path: Path,
                                       segmentation: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.json"
    assert run("export", "--project", val_project, "--out", out, "--segmentation", segmentation) == 0
    assert "exported 815/815 instances" in capsys.readouterr().err
    original, exported = json.loads(VAL.read_text()), json.loads(out.read_text())
    assert exported["images"] == original["images"]
    assert exported["categories"] == original["categories"]
    got = masks_by_id(COCO(str(out)))
    assert got.keys() == val_masks.keys()
    assert all(np.array_equal(got[i], val_masks[i]) for i in got)
    by_id = {a["id"]: a for a in exported["annotations"]}
    if segmentation == "source":  # an unedited project exports to its own annotations, crowd RLE included
        assert [by_id[a["id"]] for a in original["annotations"]] == original["annotations"]
    if segmentation == "polygon":  # unedited polygons come back as they were; crowd RLE is vectorised
        assert [by_id[a["id"]] for a in original["annotations"] if isinstance(a["segmentation"], list)] == [
            a for a in original["annotations"] if isinstance(a["segmentation"], list)]
    if segmentation == "rle":
        assert all(isinstance(a["segmentation"], dict) for a in exported["annotations"])


@needs_coco_tiny
def test_export_after_edits_accepted_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "val.srproj"
    run("import", VAL, "--project", project)
    with ProjectStore.open(project) as store:
        first, second = (s.id for s in store.list_instances()[:2])
        edited = store.instance(first).mask()
        edited[:20, :20] = ~edited[:20, :20]
        edited[100:140, 100:140] = True
        edited[110:120, 110:120] = False  # a hole
        store.set_mask(first, edited, provenance=Provenance(ChangeKind.REFINED, "compact", "lr", 4))
        store.set_status(first, ReviewStatus.ACCEPTED)
        store.set_status(second, ReviewStatus.ACCEPTED)
    for mode in ("source", "rle", "polygon"):
        out = tmp_path / f"accepted-{mode}.json"
        assert run("export", "--project", project, "--out", out, "--accepted-only", "--segmentation", mode) == 0
        assert "813 excluded by status" in capsys.readouterr().out
        coco = COCO(str(out))
        assert sorted(coco.anns) == sorted([first, second])
        assert np.array_equal(coco.annToMask(coco.anns[first]), edited)
        assert coco.anns[first]["area"] == int(edited.sum())
        assert isinstance(coco.anns[first]["segmentation"], list if mode == "polygon" else dict)  # an edit: RLE


@needs_coco_tiny
def test_export_project_reports_progress_and_returns_the_report(
    val_project: Path, val_masks: dict[int, np.ndarray], tmp_path: Path,
) -> None:
    calls: list[tuple[int, int]] = []
    out = tmp_path / "api.json"
    report = export_project(val_project, None, out, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 815) and calls[-1] == (815, 815)
    assert [done for done, _ in calls] == list(range(816))
    assert report.source == str(out) and report.ok
    assert sum(report.counts.values()) >= 815
    got = masks_by_id(COCO(str(out)))
    assert got.keys() == val_masks.keys() and all(np.array_equal(got[i], val_masks[i]) for i in list(got)[:50])


@needs_coco_tiny
def test_export_project_stopped_by_its_progress_writes_nothing(val_project: Path, tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop_at_ten(done: int, _total: int) -> None:
        if done == 10:
            raise Stop

    with pytest.raises(Stop):
        export_project(val_project, "lvis", tmp_path / "stopped.json", progress=stop_at_ten)
    assert list(tmp_path.iterdir()) == []


def test_export_project_refuses_unknown_formats_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"out\.json: export format must be one of coco, lvis, results, png-labels, "
                                           r"png-instances, not 'yaml'"):
        export_project(tmp_path / "p.srproj", "yaml", tmp_path / "out.json")
    with pytest.raises(DatasetError, match="segmentation must be one of source, rle, polygon, not 'tiles'"):
        export_project(tmp_path / "p.srproj", "png-labels", tmp_path / "out", segmentation="tiles")  # type: ignore[arg-type]
    with pytest.raises(ProjectError, match="no such project file"):
        export_project(tmp_path / "p.srproj", "coco", tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []


@needs_coco_tiny
def test_export_results_format(val_project: Path, val_masks: dict[int, np.ndarray], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.json"
    assert run("export", "--project", val_project, "--out", out, "--format", "results") == 0
    results = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert f"exported {len(results)} instances" in printed and "Source format" not in printed  # all RLE here
    coco = COCO(str(VAL))
    crowd = {a["id"] for a in coco.anns.values() if a["iscrowd"]}
    assert crowd and len(results) == 815 - len(crowd)  # crowd regions are not detections
    assert set(results[0]) >= {"image_id", "category_id", "segmentation", "score", "bbox"}
    got = {}
    for r in results:
        got.setdefault(r["image_id"], []).append(mask_utils.decode(r["segmentation"]))
    for image_id, masks in list(got.items())[:10]:
        want = [val_masks[a] for a in coco.getAnnIds(imgIds=[image_id]) if a not in crowd]
        assert sorted(m.tobytes() for m in masks) == sorted(m.tobytes() for m in want)
    assert len(coco.loadRes(str(out)).anns) == len(results)


@needs_coco_tiny
def test_polygon_export_keeps_crowd_regions_as_rle(val_project: Path, tmp_path: Path) -> None:
    out = tmp_path / "polygons.json"
    assert run("export", "--project", val_project, "--out", out, "--segmentation", "polygon") == 0
    annotations = json.loads(out.read_text())["annotations"]
    crowd = [a for a in annotations if a.get("iscrowd")]
    assert crowd and all(isinstance(a["segmentation"], dict) for a in crowd)
    assert all(isinstance(a["segmentation"], list) for a in annotations if not a.get("iscrowd"))


@needs_coco_tiny
def test_ctrl_c_during_export_leaves_no_file(
    val_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(self: cli_dataset.Progress, done: int, total: int | None = None) -> None:
        if done == 100:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_dataset.Progress, "__call__", interrupt)
    out = tmp_path / "out.json"
    with pytest.raises(KeyboardInterrupt):
        run("export", "--project", val_project, "--out", out)
    assert list(tmp_path.iterdir()) == []


@needs_coco_tiny
def test_ctrl_c_during_import_leaves_no_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(self: cli_dataset.Progress, done: int, total: int | None = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_dataset.Progress, "__call__", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run("import", VAL, "--project", tmp_path / "val.srproj")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not LVIS.is_file(), reason=f"real data absent: {LVIS}")
def test_lvis_round_trips_through_a_project_unchanged(tmp_path: Path) -> None:
    project, out = tmp_path / "lvis.srproj", tmp_path / "lvis.json"
    assert run("import", LVIS, "--project", project) == 0
    with ProjectStore.open(project, read_only=True) as store:
        assert store.kind == "lvis"
    assert run("export", "--project", project, "--out", out) == 0
    assert json.loads(out.read_text()) == json.loads(LVIS.read_text())


# ------------------------------------------------------------------------------------------ png masks
@needs_pennfudan
def test_pennfudan_label_maps_round_trip(tmp_path: Path) -> None:
    project = tmp_path / "ped.srproj"
    source = PENNFUDAN / "PedMasks"
    assert run("import", source, "--images", PENNFUDAN / "PNGImages", "--project", project) == 0
    with ProjectStore.open(project, read_only=True) as store:
        assert store.count_instances() == 423 and store.image_count() == 170
    out = tmp_path / "masks"
    assert run("export", "--project", project, "--out", out) == 0
    for mask_file in sorted(source.iterdir())[:40]:
        want = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
        got = cv2.imread(str(out / mask_file.name), cv2.IMREAD_UNCHANGED)
        assert got is not None, mask_file.name
        # instance k of the source is the k-th label in the export: same partition of the pixels
        assert np.array_equal(np.unique(want, return_inverse=True)[1], np.unique(got, return_inverse=True)[1])
    coco_out = tmp_path / "ped.json"
    assert run("export", "--project", project, "--out", coco_out, "--format", "coco") == 0
    coco = COCO(str(coco_out))
    first = cv2.imread(str(source / "FudanPed00001_mask.png"), cv2.IMREAD_UNCHANGED)
    image_id = next(i for i, img in coco.imgs.items() if img["file_name"] == "FudanPed00001.png")
    got = sorted((coco.annToMask(a) for a in coco.imgToAnns[image_id]), key=lambda m: -int(m.sum()))
    want = sorted(((first == k).astype(np.uint8) for k in np.unique(first)[1:]), key=lambda m: -int(m.sum()))
    assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))


# ------------------------------------------------------------------------------------------ stats
@needs_coco_tiny
def test_stats_text_and_json(val_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("stats", "--project", val_project, "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["instances"] == 815 and stats["images"] == 80
    assert stats["by_status"] == {"unreviewed": 815, "accepted": 0, "rejected": 0, "needs_work": 0}
    person = next(c for c in stats["by_category"] if c["name"] == "person")
    assert person["total"] == person["unreviewed"] == len(COCO(str(VAL)).getAnnIds(catIds=[1]))
    assert sum(stats["area_classes"].values()) == 815
    assert sum(b["count"] for b in stats["area_histogram"]) == 815
    assert run("stats", "--project", val_project) == 0
    text = capsys.readouterr().out
    assert "by status:" in text and "person" in text and "#" in text


# ------------------------------------------------------------------------------------------ validate
@needs_coco_tiny
def test_validate_good_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("validate", VAL, "--images", COCO_TINY / "val2017") == 0
    assert "0 problems" in capsys.readouterr().out


def test_validate_reports_problems_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]},
            {"id": 2, "image_id": 99, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]},
            {"id": 3, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 1]]},
        ],
    }))
    assert run("validate", bad) == 1
    out = capsys.readouterr().out
    assert "annotation 2" in out and "annotation 3" in out
    assert list(tmp_path.iterdir()) == [bad]
