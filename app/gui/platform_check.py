"""Before Qt starts: can the window be shown here? If not, one clear message instead of Qt's abort.

On Linux, Qt's default platform plugin (xcb) aborts the process (SIGABRT, "could not load the Qt platform
plugin") when there is no display or when a system library it loads is missing. This module runs first,
without Qt: it names the missing display, or the missing libraries with the package that provides each
(Debian / Ubuntu names, Fedora's in the README), and suggests ``QT_QPA_PLATFORM=offscreen``. It imports
nothing heavy and loads only the libraries Qt would load anyway.
"""
from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Callable, Mapping

OFFSCREEN_HINT = ("To run without a screen (tests, screenshots, a server), set QT_QPA_PLATFORM=offscreen; the "
                  "headless commands (`segrefiner-studio --help`) need no display at all.")
# The shared libraries Qt's xcb plugin loads that a minimal Linux install may lack, with the Debian / Ubuntu
# package of each (from `ldd libqxcb.so` of PySide6 6.8-6.11; libxcb-cursor is loaded at run time).
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libfontconfig.so.1": "libfontconfig1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libdbus-1.so.3": "libdbus-1-3",
}
HEADLESS_PLATFORMS = frozenset({"offscreen", "minimal", "vnc", "linuxfb", "eglfs", "vkkhrdisplay"})


@dataclass(frozen=True)
class Problem:
    """Why the window cannot start here, as one message for the user."""

    message: str


def _loads(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def missing_libraries(loads: Callable[[str], bool] = _loads) -> list[str]:
    """Sonames of ``XCB_LIBRARIES`` that cannot be loaded."""
    return [name for name in XCB_LIBRARIES if not loads(name)]


def _display_answers(display: str) -> bool:
    """Whether an X server answers at ``display`` (libxcb's connect; True when libxcb itself is missing,
    which the library check names)."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return True
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    try:
        return xcb.xcb_connection_has_error(connection) == 0
    finally:
        xcb.xcb_disconnect(connection)


def check_platform(environ: Mapping[str, str] = os.environ, platform: str = sys.platform,
                   loads: Callable[[str], bool] = _loads,
                   display_answers: Callable[[str], bool] = _display_answers) -> Problem | None:
    """None when Qt can show the window here; else the problem, naming what is missing."""
    if not platform.startswith("linux"):
        return None
    requested = environ.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0].strip()
    if requested in HEADLESS_PLATFORMS or requested.startswith("wayland"):
        return None
    if not requested and environ.get("WAYLAND_DISPLAY"):
        return None
    display = environ.get("DISPLAY", "")
    if not display:
        return Problem("SegRefiner Studio cannot open its window: no display (DISPLAY and WAYLAND_DISPLAY are "
                       f"not set). {OFFSCREEN_HINT}")
    missing = missing_libraries(loads)
    if missing:
        packages = " ".join(XCB_LIBRARIES[name] for name in missing)
        return Problem(
            f"SegRefiner Studio cannot open its window: Qt's xcb platform needs {', '.join(missing)}, not found "
            f"on this system. Install them: sudo apt-get install {packages} (Debian / Ubuntu; the README lists "
            f"the packages for other systems). {OFFSCREEN_HINT}")
    if not display_answers(display):
        return Problem(f"SegRefiner Studio cannot open its window: no X server answers on DISPLAY={display}. "
                       f"{OFFSCREEN_HINT}")
    return None
