"""The box and click tools in the real window, offscreen, on the demo project (GrabCut as the coarse source, the
random test refiner in 3 steps): a box and a category make one instance, undone in one step; clicks change the
selected instance one undo step each; bad boxes, clicks and SAM files get one clear message and change nothing."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, QRect, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

import app.gui.autosave as autosave_module
from app.gui import popups
from app.core.records import ChangeKind
from app.gui.main_window import MainWindow

from .conftest import TEST_STEPS, wait_saved
from .test_window import drag

PROMPT_TIMEOUT_MS = 60_000


@pytest.fixture
def prompt_window(window: MainWindow) -> MainWindow:
    window.settings.prompt_source = "grabcut"
    return window


Offered = tuple[list[str], int, QRect | None, str]


def answer_category(monkeypatch: pytest.MonkeyPatch, name: str | None) -> list[Offered]:
    """The category popup answers ``name`` (None: Cancel); returns what it was offered (names, the row offered
    first, the screen rectangle it was to keep clear, the window's status message meanwhile)."""
    offered: list[Offered] = []

    def pick(window, categories, current_id, beside=None):  # type: ignore[no-untyped-def]
        ids = [c.id for c in categories]
        offered.append(([c.name for c in categories], ids.index(current_id) if current_id in ids else 0, beside,
                        window.statusBar().currentMessage()))
        return next((c for c in categories if c.name == name), None)

    monkeypatch.setattr(popups, "pick_category", pick)
    return offered


def click_at(window: MainWindow, x: float, y: float, button: Qt.MouseButton = Qt.MouseButton.LeftButton,
             modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    canvas = window.canvas
    viewport = canvas.viewport()
    pos = QPointF(canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)))
    glob = QPointF(viewport.mapToGlobal(pos.toPoint()))
    for kind, buttons in ((QEvent.Type.MouseButtonPress, button),
                          (QEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton)):
        QApplication.sendEvent(viewport, QMouseEvent(kind, pos, glob, button, buttons, modifiers))


def wait_prompt(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.prompts.running is None, timeout=PROMPT_TIMEOUT_MS)


def test_a_box_and_a_category_make_one_instance_and_undo_removes_it(
        prompt_window: MainWindow, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    window = prompt_window
    doc = window.project.doc
    store = window.project.store
    assert doc is not None and store is not None
    categories = list(window.project.categories.values())
    chosen = categories[-1]
    offered = answer_category(monkeypatch, chosen.name)
    before = {layer.id for layer in doc.layers()}
    window.actions["tool.box"].trigger()
    assert window.canvas.tool == "box"
    steps: list[str] = []
    window.prompt_service.worker.step.connect(lambda _job, _rect, _image, text: steps.append(text))
    encoded: list[tuple[int, int]] = []
    real_encode = autosave_module.encode_mask
    monkeypatch.setattr(autosave_module, "encode_mask", lambda mask: encoded.append(mask.shape) or real_encode(mask))
    h, w = doc.shape
    box = (w * 0.3, h * 0.3, w * 0.6, h * 0.7)
    drag(window, [(box[0], box[1]), (w * 0.45, h * 0.5), (box[2], box[3])])
    assert window.prompts.running is not None  # on the prompt thread, not here
    qtbot.waitUntil(lambda: len(doc.layers()) == len(before) + 1, timeout=PROMPT_TIMEOUT_MS)
    new_id = ({layer.id for layer in doc.layers()} - before).pop()
    layer = doc.layer(new_id)
    assert layer.category_id == chosen.id and layer.mask.any() and doc.selected_id == new_id
    ys, xs = np.nonzero(layer.mask)
    assert xs.min() >= box[0] - 0.1 * w and xs.max() <= box[2] + 0.1 * w  # the mask stays near its box
    assert steps == [f"refining, step {k} of {TEST_STEPS}" for k in range(1, TEST_STEPS)]  # animated, then offered
    assert offered and offered[0][0] == [c.name for c in categories]
    beside = offered[0][2]  # the popup keeps the new mask in view
    shown = window.canvas.global_rect((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    assert beside is not None and beside.contains(shown)
    assert offered[0][3] == (f"Box prompt: the new mask ({layer.mask.sum()} px); choose its category, or Cancel to "
                             "drop it")
    assert window.settings.prompt_category == chosen.name
    assert not window.canvas.prompt_item.isVisible()  # the preview went with the popup
    wait_saved(qtbot, window)
    stored = store.instance(new_id)
    assert stored.provenance.kind == ChangeKind.PROMPTED and stored.provenance.mode == "grabcut"
    assert np.array_equal(stored.mask(), layer.mask)
    assert "box" in store.history(new_id)[0].params["prompt"]
    assert window.last_error is None
    assert encoded == []  # the service saved the mask; the window's autosave does not encode it again

    window.actions["edit.undo"].trigger()
    assert not doc.has_layer(new_id)
    wait_saved(qtbot, window)
    assert new_id not in {inst.id for inst in store.instances_for_image(doc.image_id)}
    window.actions["edit.redo"].trigger()
    wait_saved(qtbot, window)
    assert doc.has_layer(new_id) and np.array_equal(store.instance(new_id).mask(), layer.mask)
    assert encoded  # a redo after the undo's deletion writes the mask back

    offered.clear()
    assert window.prompts.ask_category() == chosen.id
    assert offered[0][1] == len(categories) - 1  # the last category given is offered first


def test_the_first_prompt_offers_the_selected_instances_category(prompt_window: MainWindow,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    window = prompt_window
    doc = window.project.doc
    assert doc is not None and window.settings.prompt_category is None
    categories = list(window.project.categories.values())
    layer = max(doc.layers(), key=lambda item: item.category_id)  # not the first category
    doc.select(layer.id)
    offered = answer_category(monkeypatch, None)
    window.prompts.ask_category()
    assert categories[offered[0][1]].id == layer.category_id != categories[0].id
    window.settings.prompt_category = "a category of another project"  # not one of these
    window.prompts.ask_category()
    assert categories[offered[1][1]].id == layer.category_id
    window.settings.prompt_category = categories[0].name  # another project's choice that this project has too
    window.prompts.ask_category()
    assert offered[2][1] == 0


@pytest.mark.parametrize("points, words", [
    ([(120, 80), (120, 80)], "empty or degenerate"),
    ([(-60, -60), (-20, -30)], "outside"),
])
def test_a_bad_box_gets_one_message_and_changes_nothing(
        prompt_window: MainWindow, qtbot: QtBot, points: list[tuple[float, float]], words: str) -> None:
    window = prompt_window
    doc = window.project.doc
    assert doc is not None
    count, steps = len(doc.layers()), doc.undo_stack.count()
    window.actions["tool.box"].trigger()
    drag(window, points)
    message = window.statusBar().currentMessage()
    assert message.startswith("Box prompt:") and words in message
    assert window.prompts.running is None and window.last_error is None
    assert len(doc.layers()) == count and doc.undo_stack.count() == steps
    assert window.canvas.lasso_item.path().isEmpty()


def test_a_cancelled_category_adds_nothing(prompt_window: MainWindow, qtbot: QtBot,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    window = prompt_window
    doc = window.project.doc
    assert doc is not None
    offered = answer_category(monkeypatch, None)
    count, steps = len(doc.layers()), doc.undo_stack.count()
    window.actions["tool.box"].trigger()
    h, w = doc.shape
    drag(window, [(w * 0.2, h * 0.2), (w * 0.5, h * 0.6)])
    wait_prompt(qtbot, window)
    qtbot.waitUntil(lambda: bool(offered), timeout=PROMPT_TIMEOUT_MS)
    assert len(doc.layers()) == count and doc.undo_stack.count() == steps
    assert window.statusBar().currentMessage() == "Prompt discarded"


def test_clicks_change_the_selected_instance_one_undo_step_each(prompt_window: MainWindow, qtbot: QtBot) -> None:
    window = prompt_window
    doc = window.project.doc
    assert doc is not None
    target = max(doc.layers(), key=lambda layer: int(layer.mask.sum()))
    doc.select(target.id)
    original = target.mask.copy()
    ys, xs = np.nonzero(original)
    inside = (float(np.median(xs)), float(np.median(ys)))
    outside_y, outside_x = np.argwhere(~original)[len(np.argwhere(~original)) // 3]
    steps = doc.undo_stack.count()
    window.actions["tool.clicks"].trigger()
    assert window.canvas.tool == "clicks" and window.canvas.takes_right_button

    click_at(window, float(outside_x), float(outside_y))  # positive: the object is here too
    wait_prompt(qtbot, window)
    first = doc.layer(target.id).mask.copy()
    assert first[outside_y, outside_x] and doc.undo_stack.count() == steps + 1
    assert "Click 1" in window.statusBar().currentMessage()

    click_at(window, *inside, button=Qt.MouseButton.RightButton)  # negative: not here
    wait_prompt(qtbot, window)
    second = doc.layer(target.id).mask.copy()
    assert not second[round(inside[1]), round(inside[0])] and doc.undo_stack.count() == steps + 2
    assert window.context_menus.on_canvas(window.canvas.mapFromScene(*inside)) is None  # no menu over clicks
    assert len(window.prompts._clicks.clicks) == 2  # the first click stays a seed of the second

    far_y, far_x = np.argwhere(~cv2.dilate(second.view(np.uint8), np.ones((61, 61), np.uint8)).astype(bool))[0]
    click_at(window, float(far_x), float(far_y), button=Qt.MouseButton.RightButton)  # "not here", far away
    wait_prompt(qtbot, window)
    assert np.array_equal(doc.layer(target.id).mask, second) and doc.undo_stack.count() == steps + 2
    message = window.statusBar().currentMessage()
    assert "Click 3: changed nothing" in message and "Ctrl+Z" not in message  # no undo step to undo

    window.actions["edit.undo"].trigger()
    assert np.array_equal(doc.layer(target.id).mask, first)
    window.actions["edit.undo"].trigger()
    assert np.array_equal(doc.layer(target.id).mask, original)
    wait_saved(qtbot, window)
    assert np.array_equal(window.project.store.instance(target.id).mask(), original)
    assert window.last_error is None


def test_a_first_click_with_nothing_selected_makes_a_new_instance(
        prompt_window: MainWindow, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    window = prompt_window
    doc = window.project.doc
    assert doc is not None
    chosen = list(window.project.categories.values())[0]
    answer_category(monkeypatch, chosen.name)
    doc.select(None)
    before = {layer.id for layer in doc.layers()}
    window.actions["tool.clicks"].trigger()
    h, w = doc.shape
    click_at(window, w * 0.5, h * 0.5)
    qtbot.waitUntil(lambda: len(doc.layers()) == len(before) + 1, timeout=PROMPT_TIMEOUT_MS)
    new_id = ({layer.id for layer in doc.layers()} - before).pop()
    layer = doc.layer(new_id)
    assert doc.selected_id == new_id and layer.category_id == chosen.id and layer.mask[round(h * 0.5), round(w * 0.5)]
    steps = doc.undo_stack.count()
    click_at(window, w * 0.5 + 3, h * 0.5 + 3, button=Qt.MouseButton.RightButton)
    wait_prompt(qtbot, window)
    assert not doc.layer(new_id).mask[round(h * 0.5) + 3, round(w * 0.5) + 3]
    assert doc.undo_stack.count() == steps + 1 and len(window.prompts._clicks.clicks) == 2
    window.actions["edit.undo"].trigger()
    window.actions["edit.undo"].trigger()
    assert not doc.has_layer(new_id)
    assert window.last_error is None


def test_clicks_outside_the_image_or_negative_on_nothing_get_a_message(prompt_window: MainWindow) -> None:
    window = prompt_window
    doc = window.project.doc
    assert doc is not None
    window.actions["tool.clicks"].trigger()
    doc.select(None)
    click_at(window, -30, -30)
    assert "outside" in window.statusBar().currentMessage()
    click_at(window, 20, 20, modifiers=Qt.KeyboardModifier.ShiftModifier)
    assert "start a new instance with a left click" in window.statusBar().currentMessage()
    assert window.prompts.running is None and doc.undo_stack.count() == 0


def test_a_sam_file_of_the_wrong_shape_gets_one_message_naming_it(
        prompt_window: MainWindow, qtbot: QtBot, tmp_path: Path) -> None:
    if importlib.util.find_spec("segment_anything") is None:
        pytest.skip("the optional extra segment-anything is not installed")
    import torch

    from app.refiner.sam import build_sam
    from tests.refiner.test_sam import SMALL

    state = build_sam(SMALL).state_dict()
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 16)
    bent = tmp_path / "bent_sam.pth"
    torch.save(state, bent)
    window = prompt_window
    window.settings.prompt_source = "sam"
    window.settings.sam_checkpoint = str(bent)
    message = a_box_fails_with_one_message(window, qtbot)
    assert "bent_sam.pth" in message and "do not fit a SAM network" in message

    window.settings.sam_checkpoint = ""
    h, w = window.project.doc.shape
    window.last_error = None
    drag(window, [(w * 0.2, h * 0.2), (w * 0.5, h * 0.6)])
    assert "no SAM checkpoint file is chosen" in window.statusBar().currentMessage()


def test_the_settings_dialog_keeps_the_coarse_source(prompt_window: MainWindow) -> None:
    from app.gui.prompt_controller import prompt_settings

    window = prompt_window
    dialog = window.open_settings()
    dialog.source_box.setCurrentIndex(dialog.source_box.findData("sam"))
    dialog.sam_edit.setText("/models/sam_vit_b_01ec64.pth")
    dialog.apply()
    assert window.settings.prompt_source == "sam"
    assert window.settings.sam_checkpoint == "/models/sam_vit_b_01ec64.pth"
    dialog.close()
    dialog = window.open_settings()
    dialog.source_box.setCurrentIndex(dialog.source_box.findData("encoder"))
    dialog.heads_edit.setText(" /models/mine.safetensors ;/models/v2.safetensors; ")
    dialog.apply()
    dialog.close()
    assert window.settings.prompt_heads == ["/models/mine.safetensors", "/models/v2.safetensors"]
    assert prompt_settings(window.settings).heads == (Path("/models/mine.safetensors"), Path("/models/v2.safetensors"))
    assert window.open_settings().heads_edit.text() == "/models/mine.safetensors; /models/v2.safetensors"
    doc = window.project.doc
    assert doc is not None
    doc.select(doc.layers()[0].id)
    similar = window.open_find_similar()
    assert similar is not None
    assert similar.similar_settings().heads == (Path("/models/mine.safetensors"), Path("/models/v2.safetensors"))
    similar.close()


def test_a_prompt_head_file_that_is_not_one_gets_one_message_naming_it(
        prompt_window: MainWindow, qtbot: QtBot, tmp_path: Path) -> None:
    junk = tmp_path / "my-head.safetensors"
    junk.write_bytes(b"not weights")
    window = prompt_window
    window.settings.prompt_source = "encoder"
    window.settings.prompt_heads = [str(junk)]
    assert "my-head.safetensors: not a readable safetensors file" in a_box_fails_with_one_message(window, qtbot)


def a_box_fails_with_one_message(window: MainWindow, qtbot: QtBot) -> str:
    """Drag a box with the box tool: it must fail with one "Prompt failed" line and add nothing; its message."""
    doc = window.project.doc
    assert doc is not None
    count = len(doc.layers())
    window.actions["tool.box"].trigger()
    h, w = doc.shape
    drag(window, [(w * 0.2, h * 0.2), (w * 0.5, h * 0.6)])
    wait_prompt(qtbot, window)
    assert window.last_error is not None
    title, message = window.last_error
    assert title == "Prompt failed" and len(message.splitlines()) == 1 and "Traceback" not in message
    assert len(doc.layers()) == count
    return message


@pytest.mark.parametrize("coarse_box", [(30, 40, 90, 80), (5, 5, 90, 80), None])
def test_a_step_preview_is_cut_from_the_patch_as_from_the_whole_mask(coarse_box) -> None:
    """A box's step previews are cut from the step's patch when the coarse mask lies inside its box (no full-size
    mask per step on a large photo); inside or not, the rectangle and pixels are those of the whole mask."""
    from app.core import mask_ops
    from app.gui.prompt_worker import step_pixels
    from app.refiner.steps import MaskPatch

    rng = np.random.default_rng(0)
    coarse = np.zeros((120, 160), bool)
    if coarse_box is not None:
        x0, y0, x1, y1 = coarse_box
        coarse[y0:y1, x0:x1] = True
    box = (20, 30, 110, 100)
    inside = rng.random((70, 90)) > 0.7
    for mask in (inside, np.zeros_like(inside)):
        patch = MaskPatch(box, mask, np.ones(mask.shape, np.float32), changed=0)
        whole = patch.full_mask(coarse.shape, coarse)
        rect, pixels = step_pixels(patch, coarse, mask_ops.mask_bbox(coarse))
        assert rect == mask_ops.mask_bbox(whole)
        assert (pixels is None) == (rect is None)
        if rect is not None:
            assert np.array_equal(pixels, mask_ops.take_patch(whole, rect))
