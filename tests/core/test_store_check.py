"""The project's integrity check: SQLite's own and the store's, each problem named."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.core.records import ReviewStatus
from app.core.store.project import ProjectStore
from tests.core.codec_samples import tiny_coco, write
from tests.core.store_samples import sample_dataset


@pytest.fixture
def project(tmp_path: Path) -> Path:
    ProjectStore.create(tmp_path / "p.srproj", sample_dataset()).close()
    return tmp_path / "p.srproj"


def _damage(project: Path, sql: str) -> None:
    conn = sqlite3.connect(project)
    conn.execute(sql)
    conn.commit()
    conn.close()


def test_a_sound_project_has_no_problems(project: Path, tmp_path: Path) -> None:
    with ProjectStore.open(project) as store:
        store.set_status(7, ReviewStatus.ACCEPTED)
        edit = store.set_mask(31, store.instance(31).mask()[::-1].copy())
        store.revert(edit.id)
        store.delete_instance(12)
        assert store.integrity_problems() == []
    from app.core.formats.coco import load_coco

    dataset, _ = load_coco(write(tmp_path / "i.json", tiny_coco()))  # polygons stored without counts
    with ProjectStore.create(tmp_path / "polygons.srproj", dataset) as store:
        assert store.integrity_problems() == []


@pytest.mark.parametrize("sql, problem", [
    ("UPDATE instances SET status = 'bogus' WHERE id = 7", "instance 7 has a status that is none of"),
    ("UPDATE instances SET area = -1 WHERE id = 31", "instance 31 has an area or bbox that is not finite"),
    ("UPDATE instances SET bbox_w = 9e999 WHERE id = 5", "instance 5 has an area or bbox that is not finite"),
    ("DELETE FROM instance_masks WHERE instance_id = 12", "instance 12 has no mask row"),
    ("UPDATE instance_masks SET counts = 'abc' WHERE instance_id = 5", "instance 5: its mask's RLE covers"),
    ("UPDATE instance_masks SET counts = NULL WHERE instance_id = 5", "instance 5 has neither RLE counts nor"),
    ("UPDATE instances SET category_id = 99 WHERE id = 7", "instances row"),
])
def test_damage_is_named(project: Path, sql: str, problem: str) -> None:
    _damage(project, sql)
    with ProjectStore.open(project, read_only=True) as store:
        problems = store.integrity_problems()
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_a_damaged_page_is_reported_by_sqlite(project: Path) -> None:
    conn = sqlite3.connect(project)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'instances_by_image'").fetchone()[0]
    conn.close()
    with open(project, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * 64)
    with ProjectStore.open(project, read_only=True) as store:
        problems = store.integrity_problems()
    assert problems and all(p.startswith("SQLite: ") for p in problems)


@pytest.mark.parametrize("sql, command, message", [
    ("UPDATE categories SET extra = '0' WHERE id = 2", "stats", "p.srproj: category 2: damaged (ValueError: 0 where"),
    ("UPDATE instances SET status = 'bogus' WHERE id = 7", "stats", "p.srproj: damaged: instances have the review"),
    ("UPDATE images SET width = 'wide' WHERE id = 4", "export", "p.srproj: image 4: damaged (ValueError: width is"),
    ("UPDATE instance_masks SET counts = 'abc' WHERE instance_id = 5", "export-png",
     "p.srproj: instance 5: damaged: its mask's RLE counts are not a compressed RLE string"),
])
def test_damaged_rows_are_named_by_the_commands(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                sql: str, command: str, message: str) -> None:
    from app.main import main

    _damage(project, sql)
    argv = {"stats": ["stats", "--project", str(project)],
            "export": ["export", "--project", str(project), "--out", str(tmp_path / "o.json")],
            "export-png": ["export", "--project", str(project), "--format", "png-instances", "--out", str(tmp_path / "png")],
            }[command]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: {project.parent / message}")  # the project as given
