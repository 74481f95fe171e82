"""Segment Anything (SAM) as a coarse source, when the user has an official checkpoint file.

Supported files: Meta's SAM checkpoints (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``,
``sam_vit_h_4b8939.pth``: flat state dicts), read with ``torch.load(weights_only=True)``. The network's shape
(ViT width, depth, heads, global-attention blocks, image size) is read off the tensors' shapes, and the weights
load strictly into the model code of the ``segment-anything`` package (the optional extra ``sam``). The app
downloads nothing.

Only the package's ``modeling`` subpackage is used, loaded under a private name: the package's ``__init__``
imports its predictor, which needs torchvision, and no torchvision build on PyPI installs beside our CPU torch
pin without replacing it. Preprocessing (longest side to the model's size, normalise, pad) is SAM's own, done
here with OpenCV. MobileSAM files are refused with a message: their TinyViT encoder's code needs timm (and so
torchvision).

The ViT runs on the prompt's window (box plus context, at most the model's input size), and its embedding is
kept for the next prompt on the same window, so clicks after a box cost only the small decoder.
"""
from __future__ import annotations

import importlib.util
import logging
import re
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Mapping

import cv2
import numpy as np
import torch

from app.refiner.prompts import Prompt, Window, check_image, drop_specks, prompt_window

log = logging.getLogger(__name__)

_MODULE = "_segrefiner_sam_modeling"
DECODER_HEADS = 8
CONTEXT = 0.1


class SamError(Exception):
    """A SAM checkpoint or installation that cannot be used; the message says which file and why."""


def sam_modeling() -> ModuleType:
    """segment-anything's ``modeling`` subpackage (torch only), without running the package's ``__init__``."""
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        raise SamError("SAM needs the segment-anything package: pip install 'segrefiner-studio[sam]' "
                       "(or pip install segment-anything==1.0)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "modeling"
    module_spec = importlib.util.spec_from_file_location(_MODULE, folder / "__init__.py",
                                                         submodule_search_locations=[str(folder)])
    if module_spec is None or module_spec.loader is None:
        raise SamError(f"{folder}: segment-anything's model code is missing from its installation")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[_MODULE] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception:
        del sys.modules[_MODULE]
        raise
    return module


@dataclass(frozen=True)
class SamConfig:
    """The shape of a SAM network, as read off a checkpoint's tensors."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int
    image_size: int
    patch_size: int
    out_chans: int
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    multimask_outputs: int
    iou_head_depth: int
    iou_head_hidden_dim: int


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def sam_config(state: Mapping[str, torch.Tensor], source: str = "state dict") -> SamConfig:
    """The network a SAM state dict needs; :class:`SamError` naming the file when it is not one."""
    if any(k.startswith("image_encoder.layers.") or k.startswith("image_encoder.patch_embed.seq.") for k in state):
        raise SamError(f"{source}: a MobileSAM (TinyViT) checkpoint; only SAM ViT-B / ViT-L / ViT-H checkpoints are "
                       "supported (MobileSAM's model code needs timm and torchvision, which do not install beside "
                       "the app's CPU torch)")
    needed = ("image_encoder.patch_embed.proj.weight", "image_encoder.pos_embed", "image_encoder.blocks.0.attn.rel_pos_h",
              "image_encoder.neck.0.weight", "prompt_encoder.mask_downscaling.0.weight", "mask_decoder.mask_tokens.weight",
              "mask_decoder.transformer.layers.0.mlp.lin1.weight", "mask_decoder.iou_prediction_head.layers.0.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise SamError(f"{source}: not a SAM checkpoint ({len(missing)} of its key tensors missing, e.g. {missing[0]}; "
                       f"the file has {len(state)} tensors)")
    try:
        embed, _, patch, _ = state["image_encoder.patch_embed.proj.weight"].shape
        grid = state["image_encoder.pos_embed"].shape[1]
        depth = _count(state, "image_encoder.blocks.")
        head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        spans = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in range(depth)]
        global_blocks = tuple(i for i, span in enumerate(spans) if span == 2 * grid - 1)
        windows = {(span + 1) // 2 for span in spans if span != 2 * grid - 1}
        if len(windows) > 1 or embed % head_dim:
            raise SamError(f"{source}: SAM encoder blocks of inconsistent shapes (windows {sorted(windows)}, "
                           f"width {embed}, head size {head_dim})")
        return SamConfig(
            embed_dim=int(embed), depth=depth, num_heads=int(embed // head_dim), global_attn_indexes=global_blocks,
            window_size=int(windows.pop()) if windows else 14, image_size=int(grid * patch), patch_size=int(patch),
            out_chans=int(state["image_encoder.neck.0.weight"].shape[0]),
            mask_in_chans=int(4 * state["prompt_encoder.mask_downscaling.0.weight"].shape[0]),
            decoder_depth=_count(state, "mask_decoder.transformer.layers."),
            decoder_mlp_dim=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
            multimask_outputs=int(state["mask_decoder.mask_tokens.weight"].shape[0] - 1),
            iou_head_depth=_count(state, "mask_decoder.iou_prediction_head.layers."),
            iou_head_hidden_dim=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise SamError(f"{source}: not a SAM checkpoint of a known layout ({type(exc).__name__}: {exc})") from exc


def build_sam(config: SamConfig) -> torch.nn.Module:
    """segment-anything's ``Sam`` network of ``config`` (random weights), as its ``build_sam`` assembles it."""
    m = sam_modeling()
    return m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=config.depth, embed_dim=config.embed_dim, img_size=config.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=config.num_heads, patch_size=config.patch_size,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=config.global_attn_indexes,
            window_size=config.window_size, out_chans=config.out_chans),
        prompt_encoder=m.PromptEncoder(
            embed_dim=config.out_chans, image_embedding_size=(config.image_size // config.patch_size,) * 2,
            input_image_size=(config.image_size, config.image_size), mask_in_chans=config.mask_in_chans),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=config.multimask_outputs,
            transformer=m.TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.out_chans,
                                            mlp_dim=config.decoder_mlp_dim, num_heads=DECODER_HEADS),
            transformer_dim=config.out_chans, iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def load_sam(path: str | Path) -> torch.nn.Module:
    """The SAM network in an official checkpoint, weights loaded strictly, eval mode; :class:`SamError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SamError(f"{path}: the SAM checkpoint file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on corrupt or pickled-object files
        raise SamError(f"{path}: not a readable PyTorch checkpoint of tensors ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SamError(f"{path}: not a state dict of tensors")
    config = sam_config(state, str(path))
    model = build_sam(config)
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state.keys() if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise SamError(f"{path}: the tensors do not fit a SAM network ({len(missing)} missing, {len(unexpected)} "
                       f"unexpected, {len(wrong)} mis-shaped; e.g. {(wrong + missing + unexpected)[:3]})")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    model.eval()
    log.info("loaded SAM from %s (ViT width %d, depth %d, input %d)", path, config.embed_dim, config.depth, config.image_size)
    return model


class SamSource:
    """Coarse masks from SAM: the box and clicks as its prompts on the prompt's window of the image."""

    name = "sam"

    def __init__(self, checkpoint: str | Path, device: str = "cpu") -> None:
        self.model = load_sam(checkpoint).to(device)
        self.device = torch.device(device)
        self._embedding: tuple[tuple[int, ...], bytes, torch.Tensor] | None = None

    @property
    def input_size(self) -> int:
        return int(self.model.image_encoder.img_size)

    @torch.inference_mode()
    def _embed(self, image: np.ndarray, window: Window) -> torch.Tensor:
        crop = window.image(image)
        tag = (*window.box, *window.size)
        digest = crop[:: max(1, crop.shape[0] // 64), :: max(1, crop.shape[1] // 64)].tobytes()
        if self._embedding is not None and self._embedding[0] == tag and self._embedding[1] == digest:
            return self._embedding[2]
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float().to(self.device)
        embedding = self.model.image_encoder(self.model.preprocess(x))
        self._embedding = (tag, digest, embedding)
        return embedding

    @torch.inference_mode()
    def segment(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        shape = check_image(image)
        window = prompt_window(prompt, shape, CONTEXT, max_side=self.input_size, min_side=self.input_size)
        embedding = self._embed(image, window)
        points = None
        if prompt.clicks:
            coords = torch.tensor([[window.point(c.x, c.y) for c in prompt.clicks]], dtype=torch.float32) + 0.5
            labels = torch.tensor([[1 if c.positive else 0 for c in prompt.clicks]], dtype=torch.int)
            points = (coords.to(self.device), labels.to(self.device))
        boxes = None
        if prompt.box is not None:
            boxes = torch.tensor([window.rect(prompt.box)], dtype=torch.float32).to(self.device)
        elif prompt.bounded_by_mask:
            x, y, w, h = cv2.boundingRect(window.mask(prompt.previous).view(np.uint8))
            boxes = torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32).to(self.device)
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=None)
        multimask = boxes is None and len(prompt.clicks) == 1
        low_res, quality = self.model.mask_decoder(
            image_embeddings=embedding, image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask)
        best = int(torch.argmax(quality[0])) if multimask else 0
        logits = self.model.postprocess_masks(low_res[:, best : best + 1], window.size, window.size)
        fg = (logits[0, 0] > 0).cpu().numpy()
        fg = drop_specks(fg, [window.point(c.x, c.y) for c in prompt.clicks if c.positive])
        return window.paste(fg, shape)
