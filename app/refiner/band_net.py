"""The default refiner network: a small decoder on frozen pretrained features that corrects a mask's boundary band.

Two grids per instance (docs/decisions/0012-band-refiner.md):

- the **context grid**: the instance's crop resized (aspect kept) onto a ``context`` x ``context`` canvas. The frozen
  EfficientNet-Lite0 encoder sees it once; a small top-down decoder fuses its strides 16..2 with the current mask
  and the cues (signed distance, GrabCut's result, GrabCut's colour posterior) at every reverse step;
- the **work grid**: the crop at native resolution (capped in instance mode). A light head runs only on the
  ``tile`` x ``tile`` tiles that hold the mask's boundary band, from native RGB, the current mask, the cues and the
  context decoder's features sampled at each pixel, so a boundary is placed to the pixel.

The head predicts a *correction* to the current mask's logit (``logit_scale`` x (2m - 1)); its last layer starts at
zero, so an untrained or unsure network returns its input and SegRefiner's reverse step flips only what it is
confident about.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.refiner.encoder import FEATURE_CHANNELS, LiteEncoder

CUES = ("sdf", "grabcut", "colour")
STRIDES = (16, 8, 4, 2)
HALO = 3  # three valid 3x3 convolutions in the head: each output pixel sees 3 pixels on every side


@dataclass(frozen=True)
class BandConfig:
    """Hyper-parameters of :class:`BandNet` (stored with its weights)."""

    context: int = 256
    widths: tuple[int, ...] = (96, 64, 48, 32)
    head_features: int = 8
    head_width: int = 16
    tile: int = 64
    num_timesteps: int = 6
    logit_scale: float = 3.0
    cues: tuple[str, ...] = CUES
    encoder: str = "efficientnet-lite0"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "cues", tuple(self.cues))
        if len(self.widths) != len(STRIDES) or min(self.widths) < 1 or min(self.head_width, self.head_features) < 1:
            raise ValueError(f"widths needs {len(STRIDES)} positive entries (strides {STRIDES}), got {self.widths}")
        unknown = sorted(set(self.cues) - set(CUES))
        if unknown:
            raise ValueError(f"unknown cues {unknown}; known: {', '.join(CUES)}")
        if self.context % 16 or self.context < 32:
            raise ValueError(f"context must be a multiple of 16 (>= 32), got {self.context}")
        if self.tile < 8 or self.num_timesteps < 1:
            raise ValueError("tile must be >= 8 and num_timesteps >= 1")
        if self.encoder != "efficientnet-lite0":
            raise ValueError(f"unknown encoder {self.encoder!r}; known: efficientnet-lite0")

    @property
    def context_channels(self) -> int:
        """Cue channels on the context grid: soft mask, valid area, timestep, then the cues."""
        return 3 + len(self.cues)

    @property
    def tile_channels(self) -> int:
        """Per-pixel inputs of the head besides the sampled features: RGB, mask, timestep, then the cues."""
        return 5 + len(self.cues)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BandConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown band-network config keys: {', '.join(unknown)}")
        return cls(**data)


def _conv(cin: int, cout: int, kernel: int = 3, padding: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, padding=padding)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class _Level(nn.Module):
    """One decoder level: (upsampled coarser features + projected encoder features), cues, two 3x3 convs."""

    def __init__(self, width: int, coarser: int | None, cues: int) -> None:
        super().__init__()
        self.lift = None if coarser is None else nn.Conv2d(coarser, width, 1)
        self.conv1 = _conv(width + cues, width)
        self.conv2 = _conv(width, width)

    def forward(self, projected: torch.Tensor, coarser: torch.Tensor | None, cues: torch.Tensor) -> torch.Tensor:
        x = projected
        if coarser is not None and self.lift is not None:
            x = x + F.interpolate(self.lift(coarser), size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = F.relu(self.conv1(torch.cat([x, cues], dim=1)))
        return F.relu(self.conv2(x))


class BandNet(nn.Module):
    """Context decoder + band head; the frozen encoder is held beside it, not in its state dict."""

    def __init__(self, config: BandConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or BandConfig()
        self.project = nn.ModuleList(nn.Conv2d(FEATURE_CHANNELS[s], w, 1) for s, w in zip(STRIDES, config.widths))
        coarser = (None, *config.widths[:-1])
        self.levels = nn.ModuleList(_Level(w, c, config.context_channels) for w, c in zip(config.widths, coarser))
        self.squeeze = nn.Conv2d(config.widths[-1], config.head_features, 1)
        hw = config.head_width
        self.head1 = _conv(config.tile_channels + config.head_features, hw, padding=0)
        self.head2 = _conv(hw, hw, padding=0)
        self.head3 = nn.Conv2d(hw, 1, 3)
        nn.init.zeros_(self.head3.weight)
        nn.init.zeros_(self.head3.bias)

    def project_features(self, features: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        """The encoder's features projected to the decoder's widths (mask-independent: once per instance)."""
        return [proj(features[s]) for proj, s in zip(self.project, STRIDES)]

    def context(self, projected: list[torch.Tensor], cues: torch.Tensor) -> torch.Tensor:
        """Stride-2 context features (B, head_features, S/2, S/2) from projected features and context cues."""
        x = None
        for level, feats, stride in zip(self.levels, projected, STRIDES):
            # The canvas side is a multiple of 16, so every level is the canvas pooled by its stride exactly.
            x = level(feats, x, F.avg_pool2d(cues, stride))
        assert x is not None
        return self.squeeze(x)

    def head(self, tile_inputs: torch.Tensor, tile_features: torch.Tensor) -> torch.Tensor:
        """Logit corrections (N, 1, tile, tile) for tiles (N, C, tile + 2 HALO, tile + 2 HALO)."""
        x = F.relu(self.head1(torch.cat([tile_inputs, tile_features], dim=1)))
        x = F.relu(self.head2(x))
        return self.head3(x)

    def identity_logits(self, mask: torch.Tensor) -> torch.Tensor:
        """The logits that reproduce ``mask`` (a binary or soft map in [0, 1])."""
        return self.config.logit_scale * (2.0 * mask - 1.0)


def sample_context(features: torch.Tensor, counts: list[int], grids: torch.Tensor) -> torch.Tensor:
    """Context features at each tile pixel: ``grids`` (N, h, w, 2) in the canvas' normalized coordinates.

    The first ``counts[0]`` tiles belong to instance 0 of ``features`` (B, C, H, W), the next ``counts[1]`` to
    instance 1, and so on; each instance's tiles are sampled in one call, stacked along the grid's rows.
    """
    n, h, w, _ = grids.shape
    out, start = [], 0
    for b, count in enumerate(counts):
        if count:
            rows = grids[start : start + count].reshape(1, count * h, w, 2)
            sampled = F.grid_sample(features[b : b + 1], rows, mode="bilinear", padding_mode="border",
                                    align_corners=False)
            out.append(sampled.reshape(features.shape[1], count, h, w).transpose(0, 1))
        start += count
    return torch.cat(out) if out else features.new_zeros(0, features.shape[1], h, w)


def encoder_features(encoder: LiteEncoder, canvas_rgb: torch.Tensor) -> dict[int, torch.Tensor]:
    """The frozen encoder's features of (B, 3, S, S) RGB canvases in 0..255, without autograd."""
    with torch.no_grad():
        return encoder(canvas_rgb)
