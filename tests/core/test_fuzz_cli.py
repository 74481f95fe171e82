"""Property tests through the command line, in process: crafted annotation files (odd values in every
field, NaN and huge numbers, five Unicode encodings) and damaged project files never end in anything but
exit status 0, 1 or 2 with a message (``main`` lets only unexpected exceptions out, which fail the test);
``validate`` and ``import`` agree; what was imported passes the project's integrity check, and nothing of
ours is left behind (issue 16)."""
from __future__ import annotations

import functools
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from app.core.store.packing import pack_original
from app.core.store.project import ProjectStore
from app.main import main
from tests.core.codec_samples import tiny_coco

OURS = re.compile(r"^\..+\.([0-9a-f]{8}\.tmp|importing.*)$|\.lock$")
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])

numbers = st.one_of(
    st.integers(-3, 1300), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, 0.5, -1.0, 1e308]),
)
odd = st.one_of(numbers, st.text(max_size=4), st.none(), st.booleans(), st.lists(numbers, max_size=3), st.just({}))
polygons = st.lists(st.lists(st.one_of(st.integers(-5, 50), st.floats(-5, 50), odd), max_size=10), max_size=3)
rle = st.fixed_dictionaries({
    "size": st.one_of(st.just([30, 40]), st.lists(st.integers(-1, 41), max_size=3), odd),
    "counts": st.one_of(st.text(alphabet="0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`ab", max_size=12),
                        st.lists(st.integers(-5, 1300), max_size=6), st.just([1200]), st.just([100, 50, 1050]), odd),
})
annotation = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(1, 6), odd), "image_id": st.one_of(st.sampled_from([1, 2, 3]), odd),
     "category_id": st.one_of(st.sampled_from([1, 2]), odd),
     "segmentation": st.one_of(polygons, rle, st.just([[5, 5, 15, 5, 15, 15, 5, 15]]), odd)},
    optional={"area": st.one_of(numbers, odd), "bbox": st.one_of(st.lists(numbers, min_size=4, max_size=4), odd),
              "iscrowd": st.one_of(st.sampled_from([0, 1]), odd), "score": numbers},
)
image = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from([1, 2]), odd), "file_name": st.one_of(st.sampled_from(["a.jpg", "b/c.png"]), odd),
     "width": st.one_of(st.just(40), st.sampled_from([1, 0, -5, 70000, 2**31]), odd),
     "height": st.one_of(st.just(30), st.sampled_from([1, 0, 2**31]), odd)},
)
category = st.fixed_dictionaries({"id": st.one_of(st.sampled_from([1, 2]), odd), "name": st.one_of(st.just("c"), odd)})
datasets = st.fixed_dictionaries({
    "images": st.one_of(st.lists(image, max_size=3), st.just(tiny_coco()["images"])),
    "annotations": st.lists(annotation, max_size=6),
    "categories": st.one_of(st.just(tiny_coco()["categories"]), st.lists(category, max_size=3)),
})
encodings = st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"])


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), (argv, out, err)
    return code, out, err


def _problems(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("  ")]


def _ours(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if OURS.search(p.name))


@FUZZ
@given(data=datasets, encoding=encodings)
def test_crafted_annotation_files(capsys: pytest.CaptureFixture[str], data: dict[str, Any], encoding: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "instances.json"
        source.write_bytes(json.dumps(data, allow_nan=True, ensure_ascii=False).encode(encoding))
        validated, v_out, v_err = cli(capsys, "validate", source)
        imported, i_out, i_err = cli(capsys, "import", source)
        if validated == 2:  # the file as a whole is unusable: both say the same
            event("refused")
            assert imported == 2 and i_err == v_err and v_err.startswith(f"error: {source}: ")
            assert not (folder / "instances.srproj").exists()
            return
        event("imported with problems" if validated == 1 else "imported cleanly")
        assert imported == 0 and _problems(i_out) == _problems(v_out)
        project = folder / "instances.srproj"
        with ProjectStore.open(project, read_only=True) as store:
            assert store.integrity_problems() == []
        assert cli(capsys, "stats", "--project", project)[0] == 0
        assert cli(capsys, "export", "--project", project, "--out", folder / "out.json")[0] == 0
        again, out, _ = cli(capsys, "validate", folder / "out.json")
        assert again == 0, out  # what we write, we read back without a problem
        assert cli(capsys, "export", "--project", project, "--format", "png-labels", "--out", folder / "png")[0] == 0
        assert _ours(folder) == []


# ------------------------------------------------------------------------------------- damaged projects
@functools.cache
def _base_project() -> bytes:
    """A small sound project: polygons stored as text, uncompressed RLE, one edited mask with history."""
    with tempfile.TemporaryDirectory() as tmp:
        data = tiny_coco()
        data["annotations"][1]["segmentation"] = {"size": [30, 40], "counts": [100, 50, 1050]}
        source = Path(tmp) / "i.json"
        source.write_text(json.dumps(data))
        assert main(["import", str(source)]) == 0
        with ProjectStore.open(Path(tmp) / "i.srproj") as store:
            mask = store.instance(17).mask()
            mask[0:3, 0:3] = True
            store.set_mask(17, mask)  # one instance with counts and a history
        return (Path(tmp) / "i.srproj").read_bytes()


COLUMNS = {
    "instances": ["status", "prov_kind", "source_format", "extra", "area", "bbox_w", "score", "iscrowd", "height",
                  "category_id", "image_id", "prov_time"],
    "instance_masks": ["counts", "original_segmentation"],
    "images": ["width", "file_name", "extra", "neg_category_ids"],
    "categories": ["name", "synonyms", "extra"],
    "meta": ["value"],
}
sql_values = st.one_of(st.text(max_size=12), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                       st.binary(max_size=12), st.none(), st.sampled_from(['"2"', "{", "[1]", "null", "bogus", "{}"]))
damage = st.one_of(
    st.tuples(st.just("value"), st.sampled_from(sorted(COLUMNS)), st.data(), sql_values),
    st.tuples(st.just("bytes"), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=64), st.none()),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.none(), st.none()),
)


def _apply(project: Path, kind: str, where: Any, what: Any, value: Any) -> None:
    """Damage a copy of the base project: a value in a table, bytes at a fraction of the file, a cut."""
    base = _base_project()
    if kind == "truncate":
        project.write_bytes(base[: int(where * len(base))])
        return
    project.write_bytes(base)
    if kind == "bytes":
        with open(project, "r+b") as f:
            f.seek(int(where * len(base)))
            f.write(what)
        return
    column = what.draw(st.sampled_from(COLUMNS[where]))
    conn = sqlite3.connect(project)
    try:
        rowid = conn.execute(f"SELECT rowid FROM {where} ORDER BY random() LIMIT 1").fetchone()[0]
        conn.execute(f"UPDATE {where} SET {column} = ? WHERE rowid = ?", (value, rowid))
        conn.commit()
    except sqlite3.IntegrityError:
        assume(False)  # a NOT NULL column: SQLite refuses the damage itself
    finally:
        conn.close()


@FUZZ
@given(change=damage)
def test_damaged_projects(capsys: pytest.CaptureFixture[str], change: tuple) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project = folder / "p.srproj"
        _apply(project, *change)
        codes = [cli(capsys, "stats", "--project", project)[0]]
        codes.append(cli(capsys, "export", "--project", project, "--out", folder / "o.json")[0])
        codes.append(cli(capsys, "export", "--project", project, "--out", folder / "o.json", "--segmentation", "polygon")[0])
        codes.append(cli(capsys, "export", "--project", project, "--format", "png-instances", "--out", folder / "png")[0])
        event("refused" if 2 in codes else "read")
        assert [p for p in _ours(folder) if not p.endswith(".lock")] == []



# Damage that once reached pycocotools, which trusts its input: "2543571b" ends on a character that says more
# follows, so pycocotools read past the string and wrote runs past its buffer (glibc later aborted the process,
# "malloc(): invalid next size", found by a fuzz run); a huge negative height overflowed its C size; a polygon
# vertex at 1e12 made it hang or crash (a segmentation fault). Instance 17 has an RLE, 19 only polygons.
PYCOCOTOOLS_DAMAGE = [
    ("UPDATE instance_masks SET counts = ? WHERE instance_id = 17", "2543571b", 17, "not a compressed RLE string"),
    ("UPDATE instances SET height = ? WHERE id = 17", -8413391269455454647, 17, "is not an image size"),
    ("UPDATE instance_masks SET counts = ? WHERE instance_id = 17", "0000", 17, "covers 0 pixels"),
    ("UPDATE instance_masks SET original_segmentation = ? WHERE instance_id = 19",
     pack_original({"segmentation": [[-1e12, -1e12, 1e12, 0, 0, 1e12]]}), 19, "not all finite numbers within 160"),
]


@pytest.mark.parametrize("sql, value, instance, words", PYCOCOTOOLS_DAMAGE)
def test_damage_that_pycocotools_would_not_survive(tmp_path: Path, sql: str, value: Any, instance: int,
                                                   words: str) -> None:
    """In a child process, so memory corruption shows as a crash here rather than a later failure elsewhere."""
    project = tmp_path / "p.srproj"
    project.write_bytes(_base_project())
    conn = sqlite3.connect(project)
    with conn:
        conn.execute(sql, (value,))
    conn.close()
    script = ("import sys; from app.main import main; sys.exit(max(main(a) for a in ("
              f"['export', '--project', {str(project)!r}, '--out', {str(tmp_path / 'o.json')!r}], "
              f"['export', '--project', {str(project)!r}, '--out', {str(tmp_path / 'o.json')!r}, "
              "'--segmentation', 'polygon'])))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all(f"instance {instance}: damaged:" in e and words in e for e in errors), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o.json").exists()
