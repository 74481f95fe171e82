"""The package carries what it needs: a wheel holds the demo, stylesheets, icons and default weights, installs
into a fresh environment and runs ``segrefiner-studio demo`` from any folder; the PyInstaller spec lists the
same data and the subcommands it must carry."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"
sys.path.insert(0, str(ROOT / "packaging"))
import bundle_data  # noqa: E402

from app.refiner.options import DEFAULT_WEIGHTS  # noqa: E402


def package_data_files() -> set[str]:
    return {str(p.relative_to(ROOT)) for folder in bundle_data.DATA_FOLDERS for p in (APP / folder).rglob("*")
            if p.is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w",
                    str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("segrefiner_studio-*.whl")
    return found


def test_the_wheel_holds_every_package_and_its_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert package_data_files() <= names
    assert {"app/weights/band-v2.safetensors", "app/weights/band-v1.safetensors", "app/weights/compact-v1.safetensors",
            "app/resources/demo/demo.json", "app/resources/styles/app.qss", "app/resources/icons/segrefiner-studio.svg"} <= names
    sources = {str(p.relative_to(ROOT)) for p in APP.rglob("*.py")}
    assert sources <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "packaging/", "scripts/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "segrefiner-studio = app.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_the_installed_wheel_runs_the_demo_from_any_folder(wheel: Path, tmp_path: Path) -> None:
    """A fresh environment whose dependencies come from this one (no download), the wheel installed into it."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"))
    where = subprocess.run([str(python), "-c", "import app; print(app.__file__)"], cwd=elsewhere, env=environ,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(site)), where  # the installed copy, not this checkout
    result = subprocess.run([str(env_dir / "bin" / "segrefiner-studio"), "demo", "--out", "demo-out", "--steps", "1",
                             "--device", "cpu"], cwd=elsewhere, env=environ, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads((elsewhere / "demo-out" / "summary.json").read_text())
    assert len(summary) >= 4 and DEFAULT_WEIGHTS in result.stdout


def test_the_bundle_spec_carries_the_package_data_and_the_lazy_subcommands() -> None:
    spec = (ROOT / "packaging" / "segrefiner-studio.spec").read_text(encoding="utf-8")
    tree = ast.parse(spec)  # valid Python, as PyInstaller runs it
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"} <= called
    assert "bundle_data.datas()" in spec and "bundle_data.hidden_imports()" in spec
    assert "collect_data_files(package)" in spec and "bundle_data.DEPENDENCY_DATA" in spec
    import importlib.util

    for package in bundle_data.DEPENDENCY_DATA:  # installed with the app, so the bundle can carry its data
        assert importlib.util.find_spec(package) is not None, package
    datas = dict(bundle_data.datas())
    assert set(datas.values()) == {"app/resources", "app/weights"}
    assert all(Path(source).is_dir() for source in datas)
    from app.cli import COMMANDS

    assert {c.module for c in COMMANDS.values()} | {"app.gui.app"} == set(bundle_data.hidden_imports())
    desktop = (ROOT / "packaging" / "segrefiner-studio.desktop").read_text()
    assert "Exec=segrefiner-studio" in desktop and "Icon=segrefiner-studio" in desktop
    assert (APP / "resources" / "icons" / "segrefiner-studio.png").is_file()
