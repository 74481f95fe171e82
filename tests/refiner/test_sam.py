"""SAM as a coarse source: shapes read off a checkpoint, strict loading, clear refusals, prompts on a window."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

if importlib.util.find_spec("segment_anything") is None:
    pytest.skip("the optional extra segment-anything is not installed", allow_module_level=True)

from app.refiner import sam as sam_module  # noqa: E402
from app.refiner.prompts import Click, Prompt, PromptTool  # noqa: E402
from app.refiner.sam import SamConfig, SamError, SamSource, build_sam, load_sam, sam_config  # noqa: E402

SMALL = SamConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4, image_size=128,
                  patch_size=16, out_chans=32, mask_in_chans=16, decoder_depth=2, decoder_mlp_dim=64,
                  multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=32)
VIT_B = SamConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11), window_size=14,
                  image_size=1024, patch_size=16, out_chans=256, mask_in_chans=16, decoder_depth=2,
                  decoder_mlp_dim=2048, multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_small.pth"
    torch.save(build_sam(SMALL).state_dict(), path)
    return path


def test_the_official_vit_b_layout_is_read_off_its_tensor_shapes():
    with torch.device("meta"):
        state = build_sam(VIT_B).state_dict()
    assert sam_config(state) == VIT_B


def test_a_checkpoint_loads_strictly_and_segments_a_box(small_checkpoint):
    source = SamSource(small_checkpoint)
    assert source.input_size == 128
    image = (np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)
    mask = source.segment(image, Prompt(box=(50, 60, 200, 220)))
    assert mask.shape == (300, 400) and mask.dtype == bool
    window = sam_module.prompt_window(Prompt(box=(50, 60, 200, 220)), (300, 400), sam_module.CONTEXT, 128, 128)
    x0, y0, x1, y1 = window.box
    assert not mask[:y0].any() and not mask[y1:].any() and not mask[:, :x0].any() and not mask[:, x1:].any()
    loaded = load_sam(small_checkpoint)
    for key, value in torch.load(small_checkpoint, weights_only=True).items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_clicks_reuse_the_window_embedding(small_checkpoint, monkeypatch):
    source = SamSource(small_checkpoint)
    image = (np.random.default_rng(1).random((200, 200, 3)) * 255).astype(np.uint8)
    calls = []
    encoder = source.model.image_encoder.forward
    monkeypatch.setattr(source.model.image_encoder, "forward", lambda x: calls.append(1) or encoder(x))
    first = PromptTool(source).click(image, None, [Click(100, 100)])
    PromptTool(source).click(image, None, [Click(100, 100), Click(20, 20, False)])
    assert len(calls) == 1 and first.mask.shape == (200, 200)


def test_a_file_of_the_wrong_shape_gets_one_clear_message(small_checkpoint, tmp_path):
    state = torch.load(small_checkpoint, weights_only=True)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 16)
    torch.save(state, tmp_path / "bent.pth")
    with pytest.raises(SamError, match=r"bent.pth: the tensors do not fit a SAM network \(0 missing, 0 unexpected, 1 mis-shaped"):
        load_sam(tmp_path / "bent.pth")


def test_other_files_are_refused_by_name(small_checkpoint, tmp_path):
    torch.save({"image_encoder.patch_embed.seq.0.c.weight": torch.zeros(1)}, tmp_path / "mobile_sam.pt")
    with pytest.raises(SamError, match="mobile_sam.pt: a MobileSAM"):
        load_sam(tmp_path / "mobile_sam.pt")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(SamError, match="other.pth: not a SAM checkpoint"):
        load_sam(tmp_path / "other.pth")
    torch.save({"model": object()}, tmp_path / "pickled.pth")
    with pytest.raises(SamError, match="pickled.pth: not a readable PyTorch checkpoint"):
        load_sam(tmp_path / "pickled.pth")
    with pytest.raises(SamError, match="does not exist"):
        load_sam(tmp_path / "missing.pth")


def test_without_the_package_the_message_says_what_to_install(monkeypatch):
    monkeypatch.delitem(sam_module.sys.modules, sam_module._MODULE, raising=False)
    monkeypatch.setattr(sam_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SamError, match="segment-anything"):
        sam_module.sam_modeling()
