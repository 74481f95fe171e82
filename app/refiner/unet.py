"""The SegRefiner denoising U-Net: one class, configured by presets.

``official`` rebuilds the released SegRefiner denoiser (a trimmed improved-diffusion UNet, spec §4) module for
module, so its state-dict keys are the official ones after stripping ``denoise_model.`` and a strict load of
``segrefiner_{lr,hr}_latest.pth`` checks the architecture. ``compact`` is our CPU network on the same topology
(see docs/decisions/0001-compact-unet.md).

Interface of every preset: ``forward(x, t)`` with x (B, 4, H, W) float = [R, G, B, mask] and t (B,) int64 code
timesteps 0..num_timesteps-1; returns (B, 1, H, W) fine-mask logits.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


UPSAMPLE_MODES = ("conv", "narrow")


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`DenoiseUNet`; ``official`` defaults mirror segrefiner_lr.py."""

    in_channels: int = 4
    out_channels: int = 1
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    # Res blocks per level on the way down (the way up has one more per level); an int means every level.
    num_res_blocks: int | tuple[int, ...] = 2
    # Downsample factors with attention after each res block; the middle block always has attention.
    attention_strides: tuple[int, ...] = (16, 32)
    num_heads: int = 4
    num_timesteps: int = 6
    time_embed_dim: int = 512
    norm_groups: int = 32
    dropout: float = 0.0
    # "conv": nearest x2 then a 3x3 conv at the same width (official). "narrow": a 1x1 conv to the finer
    # level's width at the coarse resolution, then nearest x2 (4x cheaper and halves the next block's input).
    upsample: str = "conv"
    # Let each stride-2 conv widen to the next level's channels (official: it keeps them and the next level's
    # first res block widens), so levels without res blocks still hand on a wide enough feature map.
    downsample_widens: bool = False
    # Zero the last conv of every residual branch (and attention's proj_out) so each block starts as its skip
    # path: stabler training from scratch. The official network was trained without it.
    zero_init_residual: bool = False

    def __post_init__(self) -> None:
        # JSON round trips give lists; store tuples so configs compare and hash.
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        if not isinstance(self.num_res_blocks, int):
            object.__setattr__(self, "num_res_blocks", tuple(self.num_res_blocks))
        object.__setattr__(self, "attention_strides", tuple(self.attention_strides))
        self._validate()

    def _validate(self) -> None:
        levels = len(self.channel_mult)
        if levels < 1 or min(self.channel_mult) < 1 or self.model_channels < 1:
            raise ValueError("channel_mult needs at least one level and every width must be positive")
        blocks = (self.num_res_blocks,) if isinstance(self.num_res_blocks, int) else self.num_res_blocks
        if len(blocks) not in (1, levels) or min(blocks) < 0:
            raise ValueError(f"num_res_blocks must be one count >= 0 or one per level ({levels})")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {self.upsample!r}")
        widths = [mult * self.model_channels for mult in self.channel_mult]
        for width in widths:
            if width % self.norm_groups:
                raise ValueError(f"{width} channels do not split into {self.norm_groups} groups")
        attended = [widths[-1]] + [widths[int(math.log2(s))] for s in self.attention_strides
                                   if s >= 1 and math.log2(s).is_integer() and math.log2(s) < levels]
        for width in attended:
            if width % self.num_heads:
                raise ValueError(f"{width} channels do not split into {self.num_heads} heads")

    @property
    def input_multiple(self) -> int:
        """Height and width of the input must be multiples of this (2 ** number of downsamples)."""
        return 2 ** (len(self.channel_mult) - 1)

    def res_blocks_at(self, level: int) -> int:
        """Encoder res blocks at ``level``."""
        if isinstance(self.num_res_blocks, int):
            return self.num_res_blocks
        return self.num_res_blocks[level]

    @classmethod
    def preset(cls, name: str) -> UNetConfig:
        """The config of a named preset (``official`` or ``compact``)."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown U-Net preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown U-Net config keys: {', '.join(unknown)}")
        return cls(**data)


PRESETS: dict[str, UNetConfig] = {
    "official": UNetConfig(),
    "compact": UNetConfig(
        model_channels=16,
        channel_mult=(1, 2, 4, 8, 12),
        num_res_blocks=(0, 0, 0, 1, 1),
        attention_strides=(16,),
        num_heads=4,
        time_embed_dim=128,
        norm_groups=8,
        upsample="narrow",
        downsample_widens=True,
        zero_init_residual=True,
    ),
}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back: fp16/bf16 statistics lose too much precision."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


class EmbeddingBlock(nn.Module):
    """A block whose forward also takes the per-sample time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class EmbedSequential(nn.Sequential):
    """Sequential that hands the time embedding to the children that take one."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, EmbeddingBlock) else layer(x)
        return x


class ResBlock(EmbeddingBlock):
    """GN-SiLU-conv, + Linear(SiLU(emb)), GN-SiLU-dropout-conv, plus the (1x1 conv when channels change) skip."""

    def __init__(self, channels: int, emb_dim: int, out_channels: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            GroupNorm32(groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(groups, out_channels), nn.SiLU(), nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = (
            nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


def legacy_qkv_attention(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """improved-diffusion's legacy QKV attention on (B, 3C, T), returning (B, C, T).

    The 3C channels are head-major, [h0: q, k, v | h1: q, k, v | ...], not [all q | all k | all v]. q and k are
    each scaled by d ** -0.25 before the product (as the original, which keeps fp16 logits small); the fused
    kernel then runs with scale 1 and keeps its softmax statistics in float32.
    """
    batch, width, tokens = qkv.shape
    head_dim = width // (3 * num_heads)
    per_head = qkv.reshape(batch, num_heads, 3 * head_dim, tokens).transpose(2, 3)
    q, k, v = per_head.split(head_dim, dim=3)
    scale = head_dim ** -0.25
    out = F.scaled_dot_product_attention(q * scale, k * scale, v, scale=1.0)
    return out.transpose(2, 3).reshape(batch, num_heads * head_dim, tokens)


class AttentionBlock(nn.Module):
    """Self-attention over all positions: GN, qkv (1x1 Conv1d), legacy head split, proj_out, residual."""

    def __init__(self, channels: int, num_heads: int, groups: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = GroupNorm32(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        flat = x.reshape(batch, channels, height * width)
        h = legacy_qkv_attention(self.qkv(self.norm(flat)), self.num_heads)
        return (flat + self.proj_out(h)).reshape(batch, channels, height, width)


class Downsample(nn.Module):
    """3x3 stride-2 conv."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2, then a 3x3 conv (official)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class NarrowingUpsample(nn.Module):
    """A 1x1 conv to ``out_channels``, then nearest x2: the same map as convolving after upsampling, 4x cheaper."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.proj(x), scale_factor=2, mode="nearest")


class DenoiseUNet(nn.Module):
    """The U-Net of a :class:`UNetConfig`: encoder, middle (res, attention, res), decoder with concatenated skips."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        mc, groups, emb_dim = config.model_channels, config.norm_groups, config.time_embed_dim
        last_level = len(config.channel_mult) - 1

        def res_block(ch_in: int, ch_out: int) -> ResBlock:
            return ResBlock(ch_in, emb_dim, ch_out, config.dropout, groups)

        def attention(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, config.num_heads, groups)

        self.time_embed = nn.Embedding(config.num_timesteps, emb_dim)
        self.input_blocks = nn.ModuleList(
            [EmbedSequential(nn.Conv2d(config.in_channels, mc, 3, padding=1))])
        skip_channels = [mc]
        ch, stride = mc, 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.res_blocks_at(level)):
                layers: list[nn.Module] = [res_block(ch, mult * mc)]
                ch = mult * mc
                if stride in config.attention_strides:
                    layers.append(attention(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != last_level:
                down_ch = config.channel_mult[level + 1] * mc if config.downsample_widens else ch
                self.input_blocks.append(EmbedSequential(Downsample(ch, down_ch)))
                ch = down_ch
                skip_channels.append(ch)
                stride *= 2

        self.middle_block = EmbedSequential(res_block(ch, ch), attention(ch), res_block(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            blocks_here = config.res_blocks_at(level) + 1
            for i in range(blocks_here):
                layers = [res_block(ch + skip_channels.pop(), mult * mc)]
                ch = mult * mc
                if stride in config.attention_strides:
                    layers.append(attention(ch))
                if level and i == blocks_here - 1:
                    if config.upsample == "conv":
                        layers.append(Upsample(ch))
                    else:
                        layers.append(NarrowingUpsample(ch, config.channel_mult[level - 1] * mc))
                        ch = config.channel_mult[level - 1] * mc
                    stride //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(groups, ch), nn.SiLU(), nn.Conv2d(ch, config.out_channels, 3, padding=1))
        if config.zero_init_residual:
            self._zero_residual_branches()

    def _zero_residual_branches(self) -> None:
        for module in self.modules():
            if isinstance(module, ResBlock):
                last = module.out_layers[-1]
            elif isinstance(module, AttentionBlock):
                last = module.proj_out
            else:
                continue
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Fine-mask logits (B, out_channels, H, W) for inputs x (B, in_channels, H, W) at code timesteps t (B,)."""
        self._check_inputs(x, t)
        emb = self.time_embed(t)
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor) -> None:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x must be (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % cfg.input_multiple or width % cfg.input_multiple:
            raise ValueError(
                f"input size {height}x{width} is not divisible by {cfg.input_multiple}")
        if t.shape != (x.shape[0],) or t.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"t must be an integer tensor of shape ({x.shape[0]},), got {t.dtype} {tuple(t.shape)}")
        if torch.compiler.is_compiling():  # the range check reads values: a graph break; Runner checked it eagerly
            return
        if t.numel() and not t.is_meta and (int(t.min()) < 0 or int(t.max()) >= cfg.num_timesteps):
            raise ValueError(f"timesteps must lie in 0..{cfg.num_timesteps - 1}, got {t.tolist()}")


def build_unet(preset_or_config: str | UNetConfig) -> DenoiseUNet:
    """A freshly initialised :class:`DenoiseUNet` from a preset name or a config."""
    config = (UNetConfig.preset(preset_or_config) if isinstance(preset_or_config, str)
              else preset_or_config)
    return DenoiseUNet(config)
