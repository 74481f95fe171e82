"""How soon the first refinement starts after the click (issue 13's goal: within 2 s), now that the window loads
the model in the background once the first image is on screen.

In a fresh process (torch not imported yet), as ``segrefiner-studio`` starts: the demo opens, the model
preloads; the time until it is ready is reported, then "Refine Selected" on the demo's largest instance is
clicked and the times to the refine thread starting the job and to the first step on screen are measured.
``--click-early`` clicks as soon as the photo is on screen instead, to show what the annotator then sees.

    .venv/bin/python benchmarks/bench_first_refinement.py [--runs 3] [--click-early] [--weights band-v1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent("""
    import json, sys, time
    started = time.monotonic()
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication
    from app.gui.app import configure_application
    from app.gui.main_window import MainWindow
    from app.gui.settings import AppSettings

    def wait(done, timeout=300):
        end = time.monotonic() + timeout
        loop = QEventLoop()
        while not done():
            if time.monotonic() > end:
                raise TimeoutError
            QTimer.singleShot(5, loop.quit)
            loop.exec()

    app = QApplication(sys.argv[:1])
    configure_application(app)
    settings = AppSettings(QSettings(sys.argv[1] + "/settings.ini", QSettings.Format.IniFormat))
    if sys.argv[2]:
        settings.weights = sys.argv[2]
    window = MainWindow(settings, data_dir=__import__("pathlib").Path(sys.argv[1]) / "data")
    window.show()
    window.open_startup()
    wait(lambda: window.project.doc is not None)
    marks = {"photo_shown": time.monotonic() - started}
    if sys.argv[3] != "early":
        wait(lambda: window.feedback.loaded is not None)
        marks["model_ready"] = time.monotonic() - started
    doc = window.project.doc
    doc.select(max(doc.layers(), key=lambda layer: int(layer.mask.sum())).id)
    events = {}
    window.service.worker.started.connect(lambda _job: events.setdefault("started", time.monotonic()))
    clicked = time.monotonic()
    window.actions["refine.run"].trigger()
    marks["panel_says"] = window.refine_panel.step_label.text()
    wait(lambda: window.refine.step_count >= 1)
    marks["job_started_after_click"] = events["started"] - clicked
    marks["first_step_after_click"] = time.monotonic() - clicked
    wait(lambda: not window.refine.running)
    print(json.dumps(marks))
    window.close()
""")


def run_once(weights: str, early: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home}
        result = subprocess.run([sys.executable, "-c", CHILD, home, weights, "early" if early else "ready"],
                                capture_output=True, text=True, env=env, timeout=600,
                                cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no figures from the child (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--weights", default="", help="registry name or checkpoint file (default: the app's)")
    parser.add_argument("--click-early", action="store_true", help="click as soon as the photo is on screen")
    args = parser.parse_args()
    runs = [run_once(args.weights, args.click_early) for _ in range(args.runs)]
    keys = ["photo_shown", "job_started_after_click", "first_step_after_click"]
    if not args.click_early:
        keys.insert(1, "model_ready")
    for key in keys:
        values = [float(r[key]) for r in runs]  # type: ignore[arg-type]
        print(f"{key:24s} median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})")
    print(f"the panel said at the click: {runs[-1]['panel_says']!r}")


if __name__ == "__main__":
    main()
