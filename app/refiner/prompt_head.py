"""A small head on the frozen EfficientNet-Lite0 features that turns a prompt into a coarse mask.

The prompt's window (its box plus context, or the whole image for clicks on a new instance) is resized,
aspect ignored, to a ``canvas`` x ``canvas`` square; the frozen encoder gives features at strides 4, 8 and 16;
three prompt channels drawn on the canvas (the prior: the box or the instance's current mask; discs at positive
clicks; discs at negative clicks) join them at every stride; a top-down decoder predicts the object's logits
at stride 4. The head is trained by ``scripts/train_prompt_head.py`` on the training split of the shared data
(never its validation split) and stored as safetensors with its config in the metadata.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from app.refiner.encoder import FEATURE_CHANNELS, LiteEncoder

log = logging.getLogger(__name__)

# The file layout (keys, config in the metadata), not the weights version: prompt-head-v2 has this layout too.
FORMAT_TAG = "segrefiner-studio/prompt-head-v1"
PROMPT_CHANNELS = 3
# A click's disc on the canvas, in canvas pixels: what training drew and inference must draw.
CLICK_RADIUS = 5


class PromptHeadError(Exception):
    """A prompt-head weights file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class PromptHeadConfig:
    canvas: int = 192
    widths: tuple[int, int, int] = (96, 64, 48)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        if self.canvas % 16 or self.canvas < 64 or len(self.widths) != 3:
            raise ValueError(f"canvas must be a multiple of 16 (>= 64) and widths three numbers, got {self}")


def _block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.GroupNorm(8, cout), nn.ReLU(inplace=True))


class PromptHead(nn.Module):
    """Decoder from encoder features (strides 16, 8, 4) and prompt channels to stride-4 logits."""

    def __init__(self, config: PromptHeadConfig = PromptHeadConfig()) -> None:
        super().__init__()
        self.config = config
        w16, w8, w4 = config.widths
        p = PROMPT_CHANNELS
        self.top = nn.Sequential(_block(FEATURE_CHANNELS[16] + p, w16), _block(w16, w16, 2), _block(w16, w16, 4))
        self.mid = nn.Sequential(_block(w16 + FEATURE_CHANNELS[8] + p, w8), _block(w8, w8, 2))
        self.low = nn.Sequential(_block(w8 + FEATURE_CHANNELS[4] + p, w4), _block(w4, w4))
        self.out = nn.Conv2d(w4, 1, 1)

    def forward(self, features: dict[int, torch.Tensor], prompt: torch.Tensor) -> torch.Tensor:
        """(B, 1, S/4, S/4) logits from {stride: (B, C, S/stride, S/stride)} and (B, 3, S, S) prompt channels."""
        at = {s: F.adaptive_avg_pool2d(prompt, features[s].shape[-2:]) for s in (16, 8, 4)}
        x = self.top(torch.cat([features[16], at[16]], 1))
        x = F.interpolate(x, size=features[8].shape[-2:], mode="bilinear", align_corners=False)
        x = self.mid(torch.cat([x, features[8], at[8]], 1))
        x = F.interpolate(x, size=features[4].shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.low(torch.cat([x, features[4], at[4]], 1)))


def prompt_channels(size: int, prior: np.ndarray | None, positives: Sequence[tuple[float, float]],
                    negatives: Sequence[tuple[float, float]]) -> np.ndarray:
    """(3, size, size) float32: the prior (soft, canvas-sized or None), positive and negative click discs.

    Click coordinates are canvas pixels (x, y).
    """
    out = np.zeros((PROMPT_CHANNELS, size, size), np.float32)
    if prior is not None:
        out[0] = prior if prior.shape == (size, size) else cv2.resize(prior.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    for channel, points in ((1, positives), (2, negatives)):
        for x, y in points:
            cv2.circle(out[channel], (int(round(x)), int(round(y))), CLICK_RADIUS, 1.0, -1)
    return out


@torch.inference_mode()
def predict(heads: Sequence[PromptHead], encoder: LiteEncoder, canvases: np.ndarray, prompts: np.ndarray,
            flip: bool = False) -> np.ndarray:
    """Foreground probabilities (B, S/4, S/4) float32 for uint8 canvases (B, S, S, 3) and prompts (B, 3, S, S).

    Several ``heads`` are an ensemble: the mean of their probabilities, on one pass of the encoder. ``flip``
    averages the probabilities of the canvas and of its mirror image (left-right, prompts mirrored too, the answer
    mirrored back): test-time augmentation at twice the cost.
    """
    device = next(heads[0].parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(canvases)).permute(0, 3, 1, 2).float().to(device)
    p = torch.from_numpy(np.ascontiguousarray(prompts)).to(device)
    if flip:
        x, p = torch.cat([x, x.flip(-1)]), torch.cat([p, p.flip(-1)])
    features = encoder(x)
    at = {s: features[s] for s in (16, 8, 4)}
    prob = torch.stack([torch.sigmoid(head(at, p).float())[:, 0] for head in heads]).mean(0)
    if flip:
        half = len(canvases)
        prob = (prob[:half] + prob[half:].flip(-1)) / 2
    return prob.cpu().numpy()


def save_head(head: PromptHead, path: Path, metadata: dict[str, str]) -> None:
    """Store the head's weights (fp16) with its config and ``metadata`` (training data, figures)."""
    tensors = {k: v.detach().half().contiguous() for k, v in head.state_dict().items()}
    header = {"format": FORMAT_TAG, "config": json.dumps(asdict(head.config)), **metadata}
    save_file(tensors, str(path), metadata=header)


def load_head(path: Path) -> PromptHead:
    """A head from ``path`` (strict: every key and shape must match its stored config), eval mode, frozen."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            state = {k: handle.get_tensor(k).float() for k in handle.keys()}
    except (OSError, SafetensorError) as exc:
        raise PromptHeadError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT_TAG:
        raise PromptHeadError(f"{path}: not prompt-head weights (format {meta.get('format')!r}, expected {FORMAT_TAG!r})")
    head = PromptHead(PromptHeadConfig(**json.loads(meta["config"])))
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PromptHeadError(f"{path}: the weights do not fit the stored config ({exc})") from exc
    head.eval()
    for parameter in head.parameters():
        parameter.requires_grad_(False)
    return head


def load_heads(paths: Sequence[Path]) -> tuple[PromptHead, ...]:
    """The heads of an ensemble (``load_head`` each); they must share a canvas, since one canvas feeds them all."""
    if not paths:
        raise PromptHeadError("no prompt-head weights were given")
    heads = tuple(load_head(path) for path in paths)
    for path, head in zip(paths, heads):
        if head.config.canvas != heads[0].config.canvas:
            raise PromptHeadError(f"{path}: its canvas is {head.config.canvas} px, {paths[0]}'s is "
                                  f"{heads[0].config.canvas}: heads of different canvases cannot be averaged")
    return heads
