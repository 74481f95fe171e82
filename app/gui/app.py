"""Starting the desktop application: ``run_gui(argv)``.

Sets the names QSettings and QStandardPaths use, lifts QImageReader's 256 MB allocation limit so 8K and
larger photos open, and follows the system's light or dark colour scheme (Qt 6.5+), switching with it.

The GUI thread shares the interpreter with the refine, image-loading and saving threads. Each time it
calls into numpy, OpenCV or Qt it lets go of the GIL, and getting it back from a thread running Python
takes up to the switch interval; at Python's default 5 ms a redraw of a few dozen such calls could
wait longer than a frame, so the interval is set to 1 ms (``GUI_SWITCH_INTERVAL_S``).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import qtawesome as qta
from PySide6.QtCore import QTimer, Qt
from PySide6.QtGui import QColor, QIcon, QImageReader, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

from app.core.package_data import icon_path, stylesheet
from app.gui.main_window import MainWindow
from app.gui.platform_check import check_platform

log = logging.getLogger(__name__)

ORGANIZATION = "SegRefiner"
APPLICATION = "SegRefiner Studio"
DESKTOP_FILE = "segrefiner-studio"
ICON_COLORS = {True: ("#e5e7eb", "#6b7280"), False: ("#374151", "#b0b4ba")}
GUI_SWITCH_INTERVAL_S = 0.001


def configure_application(app: QApplication) -> None:
    """Names, image size limit, GIL switch interval, style and theme of the application (also used by the
    tests)."""
    sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setOrganizationDomain("segrefiner.studio")
    app.setDesktopFileName(DESKTOP_FILE)
    app.setWindowIcon(QIcon(str(icon_path())))
    QImageReader.setAllocationLimit(0)
    app.setStyle(QStyleFactory.create("Fusion"))
    apply_theme(app)
    app.setStyleSheet(stylesheet().read_text(encoding="utf-8"))


def is_dark(app: QApplication) -> bool:
    return app.styleHints().colorScheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication) -> None:
    """Fusion with a dark or light palette after the system's colour scheme; icons tinted to match."""
    dark = is_dark(app)
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
    color, disabled = ICON_COLORS[dark]
    qta.set_defaults(color=color, color_disabled=disabled)


def dark_palette() -> QPalette:
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2d31", QPalette.ColorRole.WindowText: "#e5e7eb",
        QPalette.ColorRole.Base: "#1f2023", QPalette.ColorRole.AlternateBase: "#26282c",
        QPalette.ColorRole.ToolTipBase: "#1f2023", QPalette.ColorRole.ToolTipText: "#e5e7eb",
        QPalette.ColorRole.Text: "#e5e7eb", QPalette.ColorRole.Button: "#33363b",
        QPalette.ColorRole.ButtonText: "#e5e7eb", QPalette.ColorRole.BrightText: "#ff6b6b",
        QPalette.ColorRole.Highlight: "#3b82f6", QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#60a5fa", QPalette.ColorRole.PlaceholderText: "#8b8f96",
    }
    for role, color in roles.items():
        p.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b7280"))
    return p


def run_gui(argv: list[str]) -> int:
    """Run the window until it is closed; returns the exit status.

    ``argv``: Qt's own options (``-platform xcb``, ...) and at most one project file to open; with none,
    the bundled demo project opens. Where the window cannot be shown (no display, missing system
    libraries) it says so and returns 1 instead of letting Qt abort.
    """
    existing = QApplication.instance()
    if existing is None and "-platform" not in argv:
        problem = check_platform()
        if problem is not None:
            print(problem.message, file=sys.stderr)
            return 1
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0], *argv])
    configure_application(app)
    args = argv if existing is not None else app.arguments()[1:]
    project = Path(args[0]) if args else None
    window = MainWindow()

    def theme_changed() -> None:
        apply_theme(app)
        window.actions.refresh_icons()

    app.styleHints().colorSchemeChanged.connect(theme_changed)
    app.aboutToQuit.connect(window.shutdown)  # however the app ends, the project is closed and its lock released
    window.show()
    QTimer.singleShot(0, lambda: window.open_startup(project))
    log.info("window shown; opening %s", project or "the demo project")
    return app.exec()
