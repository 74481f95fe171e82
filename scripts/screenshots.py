"""Screenshots of the main window's main states, for the README (docs/screenshots/).

Runs the real application in a real window (needs a display: the lead runs it under Xvfb), on a fresh copy
of the demo project with throwaway settings, and saves:

  01-demo.png            the demo project just opened, an instance selected
  02-refining.png        mid-refinement: the preview's added / removed pixels over the photo
  03-scrubber.png        after the run: the step scrubber, the confidence heatmap
  04-instance-list.png   the instance list over all images, after refining them, sorted by largest change

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python scripts/screenshots.py --out docs/screenshots

Weights: ``--weights`` (a registry name or a checkpoint file); by default compact-v1 when it is installed,
else an untrained compact network written to a temporary file (the overlays then show noise, not a
refinement, and the script says so).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QEventLoop
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.gui.app import configure_application  # noqa: E402
from app.gui.main_window import MainWindow  # noqa: E402
from scripts.weights_choice import scratch_settings  # noqa: E402

log = logging.getLogger("screenshots")
SIZE = (1560, 940)


def wait_until(app: QApplication, done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)


def settle(app: QApplication, seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


def shoot(window: MainWindow, out: Path, name: str) -> None:
    path = out / name
    window.grab().save(str(path))
    log.info("wrote %s", path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--weights", help="registry name or checkpoint file (default: compact-v1 if installed)")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    app = QApplication(sys.argv[:1])
    configure_application(app)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        settings = scratch_settings(args.weights, scratch)
        settings.steps = args.steps
        settings.min_frame_ms = 700
        window = MainWindow(settings, data_dir=scratch / "data")
        window.resize(*SIZE)
        window.show()
        window.open_startup()
        wait_until(app, lambda: window.project.doc is not None, 30, "the demo image")
        doc = window.project.doc
        assert doc is not None
        cup = next(layer.id for layer in doc.layers() if window.project.categories[layer.category_id].name == "cup")
        doc.select(cup)
        settle(app)
        shoot(window, args.out, "01-demo.png")

        window.actions["view.show_diff"].setChecked(True)
        window.canvas.zoom_to_instance(cup)
        window.refine_selected()
        wait_until(app, lambda: window.refine.step_count >= min(3, args.steps), 120, "refine steps")
        settle(app, 0.1)
        shoot(window, args.out, "02-refining.png")

        wait_until(app, lambda: not window.refine.running, 300, "the end of the run")
        window.actions["view.show_confidence"].setChecked(True)
        window.refine_panel.scrubber.setValue(max(1, window.refine.step_count - 1))
        settle(app)
        shoot(window, args.out, "03-scrubber.png")
        window.actions["view.show_confidence"].setChecked(False)
        window.actions["refine.accept"].trigger()

        settings.min_frame_ms = 0
        window.refine_panel.reload_settings()
        window.actions["refine.dataset"].trigger()
        wait_until(app, lambda: not window.refine.queue_active, 600, "the dataset queue")
        panel = window.instance_panel
        panel.scope_box.setCurrentIndex(1)
        panel.sort_box.setCurrentText("Largest change")
        window.canvas.zoom_fit()
        settle(app, 0.6)
        shoot(window, args.out, "04-instance-list.png")
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
