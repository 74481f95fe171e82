"""Start-up: the window opens without torch, the command line imports only the command it runs, and where
the window cannot be shown the user gets one clear message instead of Qt's abort."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.cli import COMMANDS
from app.gui.platform_check import OFFSCREEN_HINT, XCB_LIBRARIES, check_platform
from app.main import build_parser

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
               "HOME": str(tmp_path), **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environ, cwd=tmp_path, timeout=120)


OPEN_DEMO = """
        import sys
        from PySide6.QtWidgets import QApplication
        from app.gui.app import configure_application
        from app.gui.main_window import MainWindow
        app = QApplication([])
        configure_application(app)
        window = MainWindow()
        window.show()
        window.open_startup()
        while window.project.doc is None:
            app.processEvents()
"""
"""A child script's start: the window as ``segrefiner-studio`` opens it, with the demo on screen."""


def test_the_window_opens_the_demo_without_importing_torch(tmp_path: Path) -> None:
    result = run_python(OPEN_DEMO + """
        print("torch" in sys.modules, window.project.doc is not None)
        window.close()
    """, tmp_path, QT_QPA_PLATFORM="offscreen")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


@pytest.mark.slow
def test_once_the_demo_is_on_screen_the_model_loads_in_the_background(tmp_path: Path) -> None:
    result = run_python(OPEN_DEMO + """
        import time
        deadline = time.monotonic() + 90
        while window.feedback.loaded is None and time.monotonic() < deadline:
            app.processEvents()
        print(window.feedback.loaded, "torch" in sys.modules, window.refine_panel.step_label.text().split(":")[0])
        window.close()
    """, tmp_path, QT_QPA_PLATFORM="offscreen")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["band-v2", "True", "Model", "band-v2", "ready", "on", "cpu"]


@pytest.mark.parametrize("argv", [["--help"], ["stats", "--help"], ["import", "--help"], ["refine", "--help"],
                                  ["prompt", "--help"], ["find-similar", "--help"]])
def test_the_command_line_imports_torch_only_for_a_refinement(tmp_path: Path, argv: list[str]) -> None:
    result = run_python(f"""
        import sys
        from app.main import main
        try:
            main({argv!r})
        except SystemExit:
            pass
        print("torch" in sys.modules)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"


def test_stats_imports_the_store_but_no_codec_torch_or_qt(tmp_path: Path) -> None:
    """``stats`` of a 245k-instance project takes under a second (benchmarks/bench_store.py); importing torch
    alone took 2 s of it before, and the codecs a few tenths."""
    from app.core.store.project import ProjectStore
    from tests.core.store_samples import sample_dataset

    ProjectStore.create(tmp_path / "p.srproj", sample_dataset()).close()
    result = run_python(f"""
        import sys
        from app.main import main
        assert main(["stats", "--project", {str(tmp_path / "p.srproj")!r}]) == 0
        print(sorted(m for m in ("torch", "PySide6", "app.core.formats.coco_export", "app.services.datasets")
                     if m in sys.modules))
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 instances" in result.stdout and result.stdout.splitlines()[-1] == "[]"


def test_each_command_is_registered_by_its_module_with_the_table_help() -> None:
    for name, command in COMMANDS.items():
        parser = build_parser([name])
        subparsers = next(a for a in parser._actions if a.dest == "command")
        helps = {a.dest: a.help for a in subparsers._choices_actions}
        assert helps[name] == command.help
        assert subparsers.choices[name].get_default("handler") is not None, f"{name} has no handler"
    assert set(build_parser([])._actions[-1].choices) == {*COMMANDS, "gui"}


def test_no_display_is_named_with_the_offscreen_hint() -> None:
    problem = check_platform({}, "linux", loads=lambda _name: True)
    assert problem is not None and "no display" in problem.message and OFFSCREEN_HINT in problem.message


def test_missing_xcb_libraries_are_named_with_their_packages() -> None:
    missing = {"libxcb-cursor.so.0", "libxcb-icccm.so.4"}
    problem = check_platform({"DISPLAY": ":0"}, "linux", loads=lambda name: name not in missing,
                             display_answers=lambda _d: True)
    assert problem is not None
    assert "libxcb-cursor0" in problem.message and "libxcb-icccm4" in problem.message
    assert "libxcb-image0" not in problem.message and "QT_QPA_PLATFORM=offscreen" in problem.message
    assert set(XCB_LIBRARIES) >= missing


def test_a_display_nobody_answers_on_is_named() -> None:
    problem = check_platform({"DISPLAY": ":42"}, "linux", loads=lambda _n: True, display_answers=lambda _d: False)
    assert problem is not None and "DISPLAY=:42" in problem.message


@pytest.mark.parametrize("environ, platform", [
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux"),
    ({"WAYLAND_DISPLAY": "wayland-0"}, "linux"),
    ({"DISPLAY": ":0"}, "linux"),
    ({}, "win32"),
    ({}, "darwin"),
])
def test_where_qt_can_start_nothing_is_said(environ: dict[str, str], platform: str) -> None:
    assert check_platform(environ, platform, loads=lambda _n: True, display_answers=lambda _d: True) is None


def unused_display() -> str:
    """An X display number no server listens on here (one may run on :97, :98, ... for screenshots)."""
    return next(f":{n}" for n in range(197, 1000) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                and not Path(f"/tmp/.X{n}-lock").exists())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb check is for Linux")
@pytest.mark.parametrize("display", ["", "unused"])
def test_the_app_says_why_it_cannot_open_instead_of_aborting(tmp_path: Path, display: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "DISPLAY")}
    if display:
        env["DISPLAY"] = unused_display()  # no X server there
    env.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    result = subprocess.run([sys.executable, "-m", "app"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr)  # not -6 (SIGABRT)
    assert "cannot open its window" in result.stderr and "QT_QPA_PLATFORM=offscreen" in result.stderr
    assert "Aborted" not in result.stderr and "could not load the Qt platform plugin" not in result.stderr


def test_a_project_file_alone_opens_it_in_the_window() -> None:
    from app.main import with_command

    assert with_command(["my.srproj"]) == ["gui", "my.srproj"]
    assert with_command(["-v", "data/my.srproj"]) == ["-v", "gui", "data/my.srproj"]
    assert with_command(["stats", "--project", "my.srproj"]) == ["stats", "--project", "my.srproj"]
    args = build_parser(["gui", "my.srproj"]).parse_args(with_command(["my.srproj"]))
    assert args.command == "gui" and args.project == "my.srproj"
