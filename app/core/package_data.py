"""Files shipped inside the package (demo photos and masks, stylesheets, icons, default weights).

They are package data found with ``importlib.resources``, never by walking up from ``__file__``, so a
checkout, an installed wheel and the PyInstaller bundle (packaging/) all find them wherever they run from.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE = "app"


def package_path(*parts: str) -> Path:
    """A file or folder shipped in the package, as a filesystem path.

    Wheels, editable installs and the bundle all keep package data as plain files; a zipped install (where
    ``importlib.resources`` gives no real path) cannot serve the store and OpenCV, so it is refused clearly.
    """
    target = resources.files(PACKAGE).joinpath(*parts)
    if not isinstance(target, Path):
        raise RuntimeError(f"{PACKAGE} is installed as a zip archive; install it unpacked (pip install) to "
                           f"reach its data ({'/'.join(parts)})")
    return target


def demo_dir() -> Path:
    """The demo project's photos and its COCO file (``demo.json``)."""
    return package_path("resources", "demo")


def stylesheet() -> Path:
    return package_path("resources", "styles", "app.qss")


def icon_path() -> Path:
    """The application icon (SVG), also used by the desktop entry in packaging/."""
    return package_path("resources", "icons", "segrefiner-studio.svg")


def weights_dir() -> Path:
    """The weights that ship with the package: every registry file found here is usable by name."""
    return package_path("weights")
