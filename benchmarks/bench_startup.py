"""Start-up of the window: process start to first paint, and to the demo photo on screen (goal <= 1.5 s on
the 2-core machine), in fresh processes, as `segrefiner-studio` starts it; also whether torch was loaded.

    .venv/bin/python benchmarks/bench_startup.py [--runs 5] [--entry app.main:main] [--platform offscreen]

``--entry`` names the function the console script calls (``app.cli:main`` before issue 12), so the same
script measures an older checkout (run it with that checkout on PYTHONPATH).
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
import time

CHILD = textwrap.dedent("""
    import json, sys, time
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    started = float(sys.argv[1])
    marks = {}

    class Watch(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint and obj.objectName() == "mainWindow" and "first_paint" not in marks:
                marks["first_paint"] = time.time() - started
                marks["torch_at_first_paint"] = "torch" in sys.modules
            if event.type() == QEvent.Type.Paint and obj.parent() is not None and obj.parent().objectName() == "canvas":
                window = obj.window()
                if getattr(getattr(window, "project", None), "doc", None) is not None and "demo_shown" not in marks:
                    marks["demo_shown"] = time.time() - started
                    QTimer.singleShot(0, lambda: (print(json.dumps(marks)), window.close()))
            return False

    app = QApplication(sys.argv[:1])
    watch = Watch()
    app.installEventFilter(watch)
    module, name = sys.argv[2].split(":")
    main = getattr(__import__(module, fromlist=[name]), name)
    main([])
""")


def run_once(entry: str, platform: str, data_home: str) -> dict[str, float]:
    env = {**os.environ, "QT_QPA_PLATFORM": platform, "XDG_DATA_HOME": data_home, "XDG_CONFIG_HOME": data_home}
    started = time.time()
    result = subprocess.run([sys.executable, "-c", CHILD, repr(started), entry], capture_output=True, text=True,
                            env=env, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no figures from the child (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--entry", default="app.main:main")
    parser.add_argument("--platform", default="offscreen")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_home:
        run_once(args.entry, args.platform, data_home)  # creates the demo project: later runs reopen it, as users do
        runs = [run_once(args.entry, args.platform, data_home) for _ in range(args.runs)]
    for key in ("first_paint", "demo_shown"):
        values = [r[key] for r in runs]
        print(f"{key:12s} median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})")
    print(f"torch loaded at first paint: {sorted({r['torch_at_first_paint'] for r in runs})}")


if __name__ == "__main__":
    main()
