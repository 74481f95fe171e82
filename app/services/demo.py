"""The bundled demo: four public-domain / CC0 photos (scikit-image's samples, copied into resources/demo so
the application does not depend on scikit-image) with coarse, hand-drawn instance polygons, so a new user
can refine something within seconds.

The demo opens as an ordinary project in the user's data folder, created on first use and reopened after,
so edits made to it persist like any other project's.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths

from app.core.formats.coco import load_coco
from app.core.store.project import ProjectStore, ProgressFn
from app.core.store.schema import PROJECT_SUFFIX

DEMO_DIR = Path(__file__).resolve().parents[2] / "resources" / "demo"
DEMO_JSON = DEMO_DIR / "demo.json"
DEMO_NAME = "demo" + PROJECT_SUFFIX


def default_data_dir() -> Path:
    """The user's application data folder (QStandardPaths.AppDataLocation)."""
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(location)


def demo_project_path(data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / DEMO_NAME


def open_demo_project(data_dir: Path | None = None, progress: ProgressFn | None = None) -> ProjectStore:
    """Open the user's demo project, creating it from resources/demo the first time.

    A demo project whose images folder no longer exists (the application moved) is pointed at this
    installation's resources again.
    """
    path = demo_project_path(data_dir)
    if path.exists():
        store = ProjectStore.open(path)
        if not store.read_only and store.images_dir != DEMO_DIR:
            store.set_images_dir(DEMO_DIR)
        return store
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset, _report = load_coco(DEMO_JSON)
    return ProjectStore.create(path, dataset, source_path=DEMO_JSON, images_dir=DEMO_DIR, progress=progress)
