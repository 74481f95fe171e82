"""Where a headless command writes: an output it cannot write is refused before any work, with one line that
names the path as the user gave it; missing folders are made; a closed pipe ends a command quietly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.records import Category, Dataset, ImageRecord, Instance, encode_mask
from app.core.store.project import ProjectStore
from app.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    mask = np.zeros((40, 60), bool)
    mask[5:20, 5:30] = True
    categories = {k: Category(k, f"category number {k} with a long name") for k in range(1, 1201)}
    dataset = Dataset({1: ImageRecord(1, "a.jpg", 60, 40)}, categories, [Instance(1, 1, 1, encode_mask(mask))])
    path = tmp_path / "p.srproj"
    ProjectStore.create(path, dataset).close()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_export_to_a_folder_or_below_a_file_is_refused_and_missing_folders_are_made(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    code, err = run(capsys, "export", "--project", project, "--format", "coco", "--out", tmp_path / "adir")
    assert code == 2 and err == f"error: {tmp_path / 'adir'}: is a folder: give the file to write\n"
    code, err = run(capsys, "export", "--project", project, "--format", "coco", "--out", tmp_path / "afile" / "x.json")
    assert code == 2 and err == f"error: {tmp_path / 'afile' / 'x.json'}: cannot write: {tmp_path / 'afile'} is a file, not a folder\n"
    code, _ = run(capsys, "export", "--project", project, "--format", "coco", "--out", tmp_path / "new" / "sub" / "x.json")
    assert code == 0 and (tmp_path / "new" / "sub" / "x.json").is_file()
    code, err = run(capsys, "export", "--project", project, "--format", "png-labels", "--out", tmp_path / "afile")
    assert code == 2 and "afile: is a file: give a folder to write into" in err


def test_refine_image_and_eval_refuse_an_output_they_cannot_write_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import refine as cli_refine

    monkeypatch.setattr(cli_refine, "load_refiner", lambda *a, **k: pytest.fail("the model was loaded"))
    image, mask = tmp_path / "i.png", tmp_path / "m.png"
    cv2.imwrite(str(image), np.zeros((40, 60, 3), np.uint8))
    cv2.imwrite(str(mask), np.zeros((40, 60), np.uint8))
    (tmp_path / "afile").write_text("x")
    code, err = run(capsys, "refine-image", "--image", image, "--mask", mask, "--out", tmp_path)
    assert code == 2 and "is a folder: give the file to write" in err
    code, err = run(capsys, "refine-image", "--image", image, "--mask", mask, "--out", tmp_path / "new" / "r.jpg")
    assert code == 2 and err == f"error: {tmp_path / 'new' / 'r.jpg'}: a mask is written as PNG: give a file name ending in .png\n"
    assert not (tmp_path / "new").exists()
    code, err = run(capsys, "refine-image", "--image", image, "--mask", mask, "--out", tmp_path / "r.png",
                    "--save-steps", tmp_path / "afile")
    assert code == 2 and "afile: is a file: give a folder to write into" in err
    code, err = run(capsys, "eval", "--per-kind", 1, "--json", tmp_path / "afile" / "e.json")
    assert code == 2 and err.count("\n") == 1 and "afile is a file, not a folder" in err


def test_a_reader_that_goes_away_ends_the_command_without_a_traceback(project: Path) -> None:
    command = subprocess.Popen([sys.executable, "-m", "app", "stats", "--project", str(project), "--json"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert command.stdout is not None and command.stderr is not None
    assert command.stdout.read(10)
    command.stdout.close()
    err = command.stderr.read().decode()
    assert command.wait(timeout=60) == 141 and "Traceback" not in err, err


@pytest.mark.parametrize("args, words", [
    (["--per-kind", "0"], "--per-kind must be 1 or more, got 0"),
    (["--upscale", "0"], "--upscale must be more than 0, got 0.0"),
    (["--modes", "bogus"], "unknown mode(s) bogus; known: instance, hr"),
    (["--device", "meta"], "device 'meta' is not one of auto, cpu, cuda, cuda:N or mps"),
    (["--data", "nowhere"], "nowhere: no held-out data found (give the datasets folder with --data"),
])
def test_eval_refuses_what_no_evaluation_can_use_in_one_line(capsys: pytest.CaptureFixture[str], args: list[str],
                                                            words: str) -> None:
    code, err = run(capsys, "eval", *args)
    assert code == 2 and err.count("\n") == 1 and words in err, err


def test_train_refuses_a_file_for_its_run_folder_no_iterations_and_unreadable_source_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    code, err = run(capsys, "train", "--run", tmp_path / "afile")
    assert code == 2 and "afile: is a file; --run takes the run's folder" in err
    code, err = run(capsys, "train", "--run", tmp_path / "r", "--iterations", "-1")
    assert code == 2 and "--iterations must be 1 or more, got -1" in err and not (tmp_path / "r").exists()
    with pytest.raises(SystemExit) as usage:
        main(["train", "--source-weights", "notjson"])
    assert usage.value.code == 2 and "expected a JSON object of numbers by source name" in capsys.readouterr().err


@pytest.mark.parametrize("command, args, words", [
    ("train", ["--clip-grad", "0"], "--clip-grad must be more than 0, got 0.0"),
    ("train", ["--lr", "-0.001"], "--lr must be more than 0, got -0.001"),
    ("train", ["--batch-size", "0"], "--batch-size must be 1 or more, got 0"),
    ("train", ["--coarse-t-prob", "1.5"], "--coarse-t-prob must be between 0 and 1, got 1.5"),
    ("train", ["--workers", "-1"], "--workers must be 0 or more, got -1"),
    ("train-unet", ["--patch-prob", "2"], "--patch-prob must be between 0 and 1, got 2.0"),
    ("train-unet", ["--size", "0"], "--size must be 1 or more, got 0"),
])
def test_train_refuses_a_setting_outside_its_range_before_any_data(
        command: str, args: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, command, "--run", tmp_path / "r", "--data", tmp_path / "none", *args)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "r").exists()


def test_every_train_setting_is_explained_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "train-unet"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--clip-grad CLIP_GRAD clip the gradient's norm to this (default: 1.0)" in text
        assert text.count("(default:") >= 20


def test_refine_image_reads_its_inputs_before_the_model_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import refine as cli_refine

    monkeypatch.setattr(cli_refine, "load_refiner", lambda *a, **k: pytest.fail("the model was loaded"))
    image, small = tmp_path / "i.png", tmp_path / "small.png"
    cv2.imwrite(str(image), np.zeros((40, 60, 3), np.uint8))
    cv2.imwrite(str(small), np.full((20, 30), 255, np.uint8))
    code, err = run(capsys, "refine-image", "--image", image, "--mask", tmp_path / "none.png", "--out", tmp_path / "r.png")
    assert code == 2 and err.count("\n") == 1 and "none.png" in err, err
    code, err = run(capsys, "refine-image", "--image", image, "--mask", small, "--out", tmp_path / "r.png")
    assert code == 2 and "small.png: mask is 30x20 but the image is 60x40" in err, err


@pytest.mark.parametrize("command, required", [("stats", []), ("export", ["--out", "x.json"]), ("refine", []),
                                               ("prompt", ["--boxes", "b.json"]), ("find-similar", ["--instance", "1"])])
def test_every_project_command_takes_the_project_first_or_as_an_option(
        command: str, required: list[str], project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, command, *required)
    assert code == 2 and err == f"error: {command}: give the project file ({command} PROJECT.srproj)\n", err
    code, err = run(capsys, command, project, "--project", tmp_path / "other.srproj", *required)
    assert code == 2 and f"{command}: two projects given" in err, err


def test_stats_and_export_read_a_project_given_first(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(project), "--json"]) == 0
    assert '"instances": 1' in capsys.readouterr().out
    assert main(["export", str(project), "--format", "coco", "--out", str(tmp_path / "x.json")]) == 0
    assert (tmp_path / "x.json").is_file()
