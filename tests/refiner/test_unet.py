"""The denoising U-Net: exact official layout (spec §4), legacy attention math, the compact preset."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from app.refiner.unet import (
    PRESETS,
    AttentionBlock,
    DenoiseUNet,
    GroupNorm32,
    NarrowingUpsample,
    ResBlock,
    UNetConfig,
    build_unet,
    legacy_qkv_attention,
)

EMB = 512
# Spec §4.2, encoder table: (k, content, channels in, channels out); "attn" marks ResBlock + Attention.
ENCODER = [
    (0, "conv", 4, 128),
    (1, "res", 128, 128), (2, "res", 128, 128), (3, "down", 128, 128),
    (4, "res", 128, 128), (5, "res", 128, 128), (6, "down", 128, 128),
    (7, "res", 128, 256), (8, "res", 256, 256), (9, "down", 256, 256),
    (10, "res", 256, 256), (11, "res", 256, 256), (12, "down", 256, 256),
    (13, "attn", 256, 512), (14, "attn", 512, 512), (15, "down", 512, 512),
    (16, "attn", 512, 512), (17, "attn", 512, 512),
]
# Spec §4.2, decoder table: (k, ResBlock in, out, attention, upsample).
DECODER = [
    (0, 1024, 512, True, False), (1, 1024, 512, True, False), (2, 1024, 512, True, True),
    (3, 1024, 512, True, False), (4, 1024, 512, True, False), (5, 768, 512, True, True),
    (6, 768, 256, False, False), (7, 512, 256, False, False), (8, 512, 256, False, True),
    (9, 512, 256, False, False), (10, 512, 256, False, False), (11, 384, 256, False, True),
    (12, 384, 128, False, False), (13, 256, 128, False, False), (14, 256, 128, False, True),
    (15, 256, 128, False, False), (16, 256, 128, False, False), (17, 256, 128, False, False),
]


def _res_keys(prefix: str, c_in: int, c_out: int) -> dict[str, tuple[int, ...]]:
    keys = {
        f"{prefix}.in_layers.0.weight": (c_in,), f"{prefix}.in_layers.0.bias": (c_in,),
        f"{prefix}.in_layers.2.weight": (c_out, c_in, 3, 3), f"{prefix}.in_layers.2.bias": (c_out,),
        f"{prefix}.emb_layers.1.weight": (c_out, EMB), f"{prefix}.emb_layers.1.bias": (c_out,),
        f"{prefix}.out_layers.0.weight": (c_out,), f"{prefix}.out_layers.0.bias": (c_out,),
        f"{prefix}.out_layers.3.weight": (c_out, c_out, 3, 3), f"{prefix}.out_layers.3.bias": (c_out,),
    }
    if c_in != c_out:
        keys[f"{prefix}.skip_connection.weight"] = (c_out, c_in, 1, 1)
        keys[f"{prefix}.skip_connection.bias"] = (c_out,)
    return keys


def _attn_keys(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.norm.weight": (c,), f"{prefix}.norm.bias": (c,),
        f"{prefix}.qkv.weight": (3 * c, c, 1), f"{prefix}.qkv.bias": (3 * c,),
        f"{prefix}.proj_out.weight": (c, c, 1), f"{prefix}.proj_out.bias": (c,),
    }


def _conv_keys(prefix: str, c_in: int, c_out: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c_out, c_in, 3, 3), f"{prefix}.bias": (c_out,)}


def spec_state_shapes() -> dict[str, tuple[int, ...]]:
    """Every official key and shape, generated from the spec's layout tables."""
    shapes: dict[str, tuple[int, ...]] = {"time_embed.weight": (6, EMB)}
    for k, kind, c_in, c_out in ENCODER:
        if kind == "conv":
            shapes |= _conv_keys(f"input_blocks.{k}.0", c_in, c_out)
        elif kind == "down":
            shapes |= _conv_keys(f"input_blocks.{k}.0.op", c_in, c_out)
        else:
            shapes |= _res_keys(f"input_blocks.{k}.0", c_in, c_out)
            if kind == "attn":
                shapes |= _attn_keys(f"input_blocks.{k}.1", c_out)
    shapes |= _res_keys("middle_block.0", 512, 512)
    shapes |= _attn_keys("middle_block.1", 512)
    shapes |= _res_keys("middle_block.2", 512, 512)
    for k, c_in, c_out, attn, up in DECODER:
        shapes |= _res_keys(f"output_blocks.{k}.0", c_in, c_out)
        if attn:
            shapes |= _attn_keys(f"output_blocks.{k}.1", c_out)
        if up:
            shapes |= _conv_keys(f"output_blocks.{k}.{2 if attn else 1}.conv", c_out, c_out)
    shapes |= {"out.0.weight": (128,), "out.0.bias": (128,), "out.2.weight": (1, 128, 3, 3), "out.2.bias": (1,)}
    return shapes


@pytest.fixture(scope="module")
def official_meta() -> DenoiseUNet:
    with torch.device("meta"):
        return build_unet("official")


@pytest.fixture(scope="module")
def official() -> DenoiseUNet:
    torch.manual_seed(0)
    return build_unet("official").eval()


@pytest.fixture(scope="module")
def compact() -> DenoiseUNet:
    torch.manual_seed(0)
    return build_unet("compact").eval()


def _inputs(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, size, size, generator=gen)
    x[:, 3] = (x[:, 3] > 0).float()
    return x, torch.randint(0, 6, (batch,), generator=gen)


# --- official: exact layout -------------------------------------------------------------------------------


def test_official_parameter_count(official_meta: DenoiseUNet) -> None:
    assert sum(p.numel() for p in official_meta.parameters()) == 118_604_673
    assert len(official_meta.state_dict()) == 453


def test_official_keys_and_shapes_match_spec_tables(official_meta: DenoiseUNet) -> None:
    ours = {k: tuple(v.shape) for k, v in official_meta.state_dict().items()}
    expected = spec_state_shapes()
    assert sorted(ours.keys() - expected.keys()) == []
    assert sorted(expected.keys() - ours.keys()) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}
    assert sum(math.prod(s) for s in expected.values()) == 118_604_673


@pytest.mark.parametrize(("key", "shape"), [
    ("time_embed.weight", (6, 512)),
    ("input_blocks.0.0.weight", (128, 4, 3, 3)),
    ("input_blocks.3.0.op.weight", (128, 128, 3, 3)),
    ("input_blocks.7.0.skip_connection.weight", (256, 128, 1, 1)),
    ("input_blocks.13.1.qkv.weight", (1536, 512, 1)),
    ("output_blocks.0.0.in_layers.2.weight", (512, 1024, 3, 3)),
    ("output_blocks.2.2.conv.weight", (512, 512, 3, 3)),
    ("output_blocks.8.1.conv.weight", (256, 256, 3, 3)),
    ("output_blocks.17.0.skip_connection.weight", (128, 256, 1, 1)),
    ("out.0.weight", (128,)),
    ("out.0.bias", (128,)),
    ("out.2.weight", (1, 128, 3, 3)),
    ("out.2.bias", (1,)),
])
def test_official_spec_example_keys(official_meta: DenoiseUNet, key: str, shape: tuple[int, ...]) -> None:
    assert tuple(official_meta.state_dict()[key].shape) == shape


def test_official_config_values() -> None:
    cfg = UNetConfig.preset("official")
    assert (cfg.in_channels, cfg.out_channels, cfg.model_channels) == (4, 1, 128)
    assert cfg.channel_mult == (1, 1, 2, 2, 4, 4)
    assert (cfg.num_res_blocks, cfg.attention_strides, cfg.num_heads) == (2, (16, 32), 4)
    assert (cfg.num_timesteps, cfg.time_embed_dim, cfg.norm_groups, cfg.dropout) == (6, 512, 32, 0.0)
    assert cfg.upsample == "conv" and not cfg.downsample_widens and not cfg.zero_init_residual
    assert cfg.input_multiple == 32


def test_official_is_not_zero_initialised(official: DenoiseUNet) -> None:
    residual_ends = [m.out_layers[3].weight for m in official.modules() if isinstance(m, ResBlock)]
    residual_ends += [m.proj_out.weight for m in official.modules() if isinstance(m, AttentionBlock)]
    assert len(residual_ends) == 32 + 11
    assert all(w.abs().sum() > 0 for w in residual_ends)
    assert official.out[2].weight.abs().sum() > 0


def test_official_module_semantics(official: DenoiseUNet) -> None:
    assert isinstance(official.time_embed, torch.nn.Embedding)
    norms = [m for m in official.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(isinstance(m, GroupNorm32) and m.num_groups == 32 and m.eps == 1e-5 for m in norms)
    down = official.input_blocks[3][0].op
    assert (down.stride, down.padding) == ((2, 2), (1, 1))
    attn = official.input_blocks[13][1]
    assert isinstance(attn, AttentionBlock) and attn.num_heads == 4


def test_official_attention_runs_on_16x16_and_8x8_maps(official_meta: DenoiseUNet) -> None:
    sizes: list[tuple[str, int]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: sizes.append((name, inp[0].shape[-1])))
             for name, m in official_meta.named_modules() if isinstance(m, AttentionBlock)]
    with torch.no_grad():
        out = official_meta(torch.zeros(1, 4, 256, 256, device="meta"), torch.zeros(1, dtype=torch.long, device="meta"))
    for hook in hooks:
        hook.remove()
    assert out.shape == (1, 1, 256, 256)
    assert [s for _, s in sizes] == [16, 16, 8, 8, 8, 8, 8, 8, 16, 16, 16]
    assert [n.split(".")[0] for n, _ in sizes] == ["input_blocks"] * 4 + ["middle_block"] + ["output_blocks"] * 6


@pytest.mark.slow
def test_official_forward_shape(official: DenoiseUNet) -> None:
    x, t = _inputs(2, 64)
    with torch.no_grad():
        out = official(x[:, :, :32], t)
    assert out.shape == (2, 1, 32, 64)
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_official_time_embedding_is_added_per_block(official: DenoiseUNet) -> None:
    x, _ = _inputs(1, 32)
    with torch.no_grad():
        outs = [official(x, torch.tensor([t])) for t in (0, 5)]
    assert not torch.allclose(outs[0], outs[1])


@pytest.mark.parametrize("size", [48, 16, 100])
def test_official_rejects_size_not_divisible_by_32(official: DenoiseUNet, size: int) -> None:
    x, t = _inputs(1, 32)
    with pytest.raises(ValueError, match="divisible by 32"):
        official(torch.zeros(1, 4, size, 64), t)
    with pytest.raises(ValueError, match="divisible by 32"):
        official(torch.zeros(1, 4, 64, size), t)


def test_forward_rejects_bad_channels_and_timesteps(compact: DenoiseUNet) -> None:
    x, t = _inputs(2, 32)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        compact(x[:, :3], t)
    with pytest.raises(ValueError, match="t must be"):
        compact(x, t[:1])
    with pytest.raises(ValueError, match="t must be"):
        compact(x, t.float())
    with pytest.raises(ValueError, match=r"0\.\.5"):
        compact(x, torch.tensor([0, 6]))
    with pytest.raises(ValueError, match=r"0\.\.5"):
        compact(x, torch.tensor([-1, 0]))


# --- attention: legacy head-major QKV --------------------------------------------------------------------


def reference_legacy_attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """improved-diffusion's QKVAttentionLegacy, written out: split heads first, then q/k/v inside each head."""
    batch, width, tokens = qkv.shape
    ch = width // (3 * heads)
    per_head = qkv.reshape(batch * heads, 3 * ch, tokens)
    q, k, v = per_head[:, :ch], per_head[:, ch:2 * ch], per_head[:, 2 * ch:]
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
    out = torch.einsum("bts,bcs->bct", weight, v)
    return out.reshape(batch, heads * ch, tokens)


def test_legacy_attention_matches_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 3 * 64, 37, generator=gen) * 3
    ours = legacy_qkv_attention(qkv, num_heads=4)
    assert torch.allclose(ours, reference_legacy_attention(qkv, 4), atol=1e-5, rtol=1e-5)
    # The channel layout matters: reading the same tensor as [all q | all k | all v] gives another answer.
    q, k, v = qkv.chunk(3, dim=1)
    qkv_major = torch.cat([torch.cat([q[:, i * 16:(i + 1) * 16], k[:, i * 16:(i + 1) * 16],
                                      v[:, i * 16:(i + 1) * 16]], 1) for i in range(4)], 1)
    assert not torch.allclose(ours, reference_legacy_attention(qkv_major, 4), atol=1e-3)


def test_attention_block_matches_reference() -> None:
    torch.manual_seed(2)
    block = AttentionBlock(128, num_heads=4, groups=32).eval()
    x = torch.randn(2, 128, 8, 8)
    flat = x.reshape(2, 128, 64)
    normed = F.group_norm(flat, 32, block.norm.weight, block.norm.bias, 1e-5)
    qkv = F.conv1d(normed, block.qkv.weight, block.qkv.bias)
    expected = flat + F.conv1d(reference_legacy_attention(qkv, 4), block.proj_out.weight, block.proj_out.bias)
    with torch.no_grad():
        assert torch.allclose(block(x), expected.reshape(2, 128, 8, 8), atol=1e-5)


def test_res_block_adds_time_embedding_between_the_convs() -> None:
    torch.manual_seed(6)
    block = ResBlock(16, 24, 32, dropout=0.0, groups=8).eval()
    x, emb = torch.randn(2, 16, 8, 8), torch.randn(2, 24)
    i_norm, _, i_conv = block.in_layers
    o_norm, _, _, o_conv = block.out_layers
    h = F.conv2d(F.silu(F.group_norm(x, 8, i_norm.weight, i_norm.bias)), i_conv.weight, i_conv.bias, padding=1)
    h = h + F.linear(F.silu(emb), block.emb_layers[1].weight, block.emb_layers[1].bias)[:, :, None, None]
    h = F.conv2d(F.silu(F.group_norm(h, 8, o_norm.weight, o_norm.bias)), o_conv.weight, o_conv.bias, padding=1)
    skip = F.conv2d(x, block.skip_connection.weight, block.skip_connection.bias)
    with torch.no_grad():
        assert torch.allclose(block(x, emb), skip + h, atol=1e-5)


def test_narrowing_upsample_equals_convolving_after_upsampling() -> None:
    torch.manual_seed(7)
    up = NarrowingUpsample(32, 16)
    x = torch.randn(1, 32, 8, 8)
    after = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), up.proj.weight, up.proj.bias)
    with torch.no_grad():
        assert torch.allclose(up(x), after, atol=1e-5)


def test_group_norm_runs_in_fp32_and_casts_back() -> None:
    norm = GroupNorm32(4, 16)
    x = torch.randn(2, 16, 8, 8) * 400  # squares overflow float16
    for dtype in (torch.float16, torch.bfloat16):
        low = x.to(dtype)
        out = norm(low)
        assert out.dtype == dtype
        assert torch.equal(out, F.group_norm(low.float(), 4, norm.weight, norm.bias, 1e-5).to(dtype))


def test_autocast_bf16_matches_fp32(compact: DenoiseUNet) -> None:
    x, t = _inputs(1, 64)
    with torch.no_grad():
        ref = compact(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = compact(x, t)
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.05


# --- compact -----------------------------------------------------------------------------------------------


def test_compact_is_small(compact: DenoiseUNet) -> None:
    assert sum(p.numel() for p in compact.parameters()) <= 10_000_000
    assert compact.time_embed.num_embeddings == 6
    assert compact.config.in_channels == 4 and compact.config.out_channels == 1


def test_compact_forward_shape(compact: DenoiseUNet) -> None:
    x, t = _inputs(1, 256)
    with torch.no_grad():
        assert compact(x, t).shape == (1, 1, 256, 256)
    x, t = _inputs(3, 64)
    with torch.no_grad():
        assert compact(x, t).shape == (3, 1, 64, 64)


def test_compact_gradients_reach_every_parameter() -> None:
    torch.manual_seed(3)
    model = build_unet("compact").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, t = _inputs(2, 64)
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    for _ in range(2):  # zero-initialised residual ends pass gradient upstream from the second step on
        opt.zero_grad()
        x.requires_grad_(True)
        F.binary_cross_entropy_with_logits(model(x, t), target).backward()
        opt.step()
    assert x.grad is not None and x.grad.abs().sum() > 0
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []


def test_compact_eval_is_deterministic_and_batch_independent(compact: DenoiseUNet) -> None:
    x, t = _inputs(2, 64)
    with torch.no_grad():
        first, second = compact(x, t), compact(x, t)
        alone = compact(x[1:], t[1:])
    assert torch.equal(first, second)
    assert torch.allclose(first[1:], alone, atol=1e-5)


# --- config ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips_through_dict(name: str) -> None:
    cfg = UNetConfig.preset(name)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with torch.device("meta"):
        assert build_unet(name).config == build_unet(cfg).config == cfg


def test_config_rejects_unknown_things() -> None:
    with pytest.raises(ValueError, match="unknown U-Net preset 'huge'"):
        UNetConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown U-Net config keys: depth"):
        UNetConfig.from_dict({"depth": 3})
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(model_channels=20)
    with pytest.raises(ValueError, match="heads"):
        UNetConfig(num_heads=3)
    with pytest.raises(ValueError, match="num_res_blocks"):
        UNetConfig(num_res_blocks=(1, 2))
    with pytest.raises(ValueError, match="upsample must be one of conv, narrow"):
        UNetConfig(upsample="bilinear")
