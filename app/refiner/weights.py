"""Weights of the denoiser: official SegRefiner ``.pth`` checkpoints, our safetensors, and a registry.

Official checkpoints are read with ``torch.load(weights_only=True)`` only (we never unpickle objects we did not
write) and loaded strictly into the ``official`` preset, so a successful load proves the architecture matches.
Our own weights are safetensors whose metadata carries the preset, the full config, the training data and the
metrics, so loading rebuilds the right network without guessing. Every failure is one :class:`WeightsError`
naming the file and what is wrong. Nothing here downloads anything: the registry says where to get a file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from app.core.package_data import weights_dir
from app.refiner.band_net import BandConfig, BandNet
from app.refiner.unet import PRESETS, DenoiseUNet, UNetConfig

log = logging.getLogger(__name__)

OFFICIAL_PREFIX = "denoise_model."
WRAPPER_PREFIX = "module."
IGNORED_PREFIXES = ("loss_texture.",)
SAFETENSORS_SUFFIX = ".safetensors"
FORMAT_TAG = "segrefiner-studio/unet-weights-v1"
BAND_FORMAT_TAG = "segrefiner-studio/band-weights-v1"
BAND_PRESET = "band"
Network = DenoiseUNet | BandNet
NetworkConfig = UNetConfig | BandConfig
RESERVED_METADATA = frozenset({"format", "preset", "config", "dtype"})
ENV_WEIGHTS_DIR = "SEGREFINER_WEIGHTS_DIR"
PACKAGE_WEIGHTS_DIR = weights_dir()
_EXAMPLES = 3


class WeightsError(Exception):
    """A weights file or name that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class CheckpointEntry:
    """A known checkpoint: which network it fits and where a user obtains the file."""

    name: str
    preset: str
    file_name: str
    sha256: str | None
    pipeline: str
    description: str
    source: str


_README = "SegRefiner README (https://github.com/MengyuWang826/SegRefiner#model-zoo)"

REGISTRY: dict[str, CheckpointEntry] = {
    entry.name: entry
    for entry in (
        CheckpointEntry(
            name="segrefiner-lr",
            preset="official",
            file_name="segrefiner_lr_latest.pth",
            sha256="d5806a41a4bff6f1e313d1a9dcf18d11dab28e3a8e1497871a156214cd8fe07a",
            pipeline="instance",
            description="Official LR-SegRefiner, trained on LVIS v1: per-instance refinement (COCO/LVIS objects). "
                        "No explicit licence on the weights.",
            source=f"download it from the Google Drive link in the {_README}: "
                   "https://drive.google.com/file/d/1FrhbdwNyTlQYNbF9IgFF2tY3iQXHFcau",
        ),
        CheckpointEntry(
            name="segrefiner-hr",
            preset="official",
            file_name="segrefiner_hr_latest.pth",
            sha256=None,
            pipeline="hr",
            description="Official HR-SegRefiner, trained on ThinObject-5K + DIS5K: high-resolution masks and thin "
                        "structures (BIG/DIS). No explicit licence on the weights.",
            source=f"download it from the Google Drive link in the {_README}: "
                   "https://drive.google.com/file/d/143kerk4WOerGZMqR-cAETb7rOcoQ0CQ_",
        ),
        CheckpointEntry(
            name="band-v2",
            preset=BAND_PRESET,
            file_name="band-v2.safetensors",
            sha256="6fe47ab56da72de53282713d3b1bd00564251905e1d394a864894d0c5fbf8f21",
            pipeline="instance",
            description="SegRefiner Studio's default refiner: band-v1 averaged with its fine-tune on pixel-accurate "
                        "boundaries (0.35 M trained parameters, fp16); see app/weights/MODEL_CARD.md.",
            source="shipped in the package's weights folder (app/weights/)",
        ),
        CheckpointEntry(
            name="band-v1",
            preset=BAND_PRESET,
            file_name="band-v1.safetensors",
            sha256="54fb8187dd176a1a2340efdf149e6649451477ddeb689bd7deb9af701ccc9b5c",
            pipeline="instance",
            description="The previous default refiner: boundary-band diffusion on a frozen EfficientNet-Lite0 "
                        "(0.35 M trained parameters, fp16), trained on CPU on the shared datasets; see "
                        "app/weights/MODEL_CARD.md.",
            source="shipped in the package's weights folder (app/weights/)",
        ),
        CheckpointEntry(
            name="compact-v1",
            preset="compact",
            file_name="compact-v1.safetensors",
            sha256="0419ab6817d32d0043461423586a8d988046430cbb39daa26d8ddfb492a254d2",
            pipeline="instance",
            description="SegRefiner Studio's compact network for CPUs and laptops (6.7 M parameters, fp16), trained "
                        "on CPU on the shared datasets; see app/weights/MODEL_CARD.md.",
            source="shipped in the package's weights folder (app/weights/)",
        ),
    )
}


@dataclass(frozen=True)
class WeightsInfo:
    """What was loaded: the file, its network, and (for our weights) the metadata saved with it."""

    path: Path
    preset: str
    config: NetworkConfig
    file_format: str
    name: str | None = None
    sha256: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def preset_name(config: NetworkConfig) -> str:
    """The preset a config equals (``band`` for every band network), or ``custom``."""
    if isinstance(config, BandConfig):
        return BAND_PRESET
    return next((name for name, preset in PRESETS.items() if preset == config), "custom")


def weights_search_dirs() -> list[Path]:
    """Where registry files are looked for: $SEGREFINER_WEIGHTS_DIR, the user data dir, the package's weights/."""
    dirs = [Path(p).expanduser() for p in os.environ.get(ENV_WEIGHTS_DIR, "").split(os.pathsep) if p]
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    dirs.append(Path(data_home) / "segrefiner-studio" / "weights")
    dirs.append(PACKAGE_WEIGHTS_DIR)
    return dirs


def resolve_weights(name: str) -> tuple[Path, CheckpointEntry]:
    """The file of a registry name, from the first search dir that holds it."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise WeightsError(
            f"{name}: no such file, and not a known checkpoint name (known: {', '.join(sorted(REGISTRY))})")
    dirs = weights_search_dirs()
    for directory in dirs:
        candidate = directory / entry.file_name
        if candidate.is_file():
            return candidate, entry
    searched = ", ".join(str(d) for d in dirs)
    raise WeightsError(
        f"{entry.file_name} ({name}) was not found in {searched}; {entry.source}, "
        f"and put it in one of those folders (or set {ENV_WEIGHTS_DIR})")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, streamed."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str) -> str:
    """The file's SHA-256, after checking it equals ``expected``."""
    actual = file_sha256(path)
    if actual != expected.lower():
        raise WeightsError(
            f"{path}: SHA-256 mismatch: expected {expected.lower()}, got {actual}; "
            "the file is truncated, corrupt or another checkpoint")
    return actual


def load_official_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The denoiser state dict of an official-style ``.pth``, keys without ``denoise_model.``.

    Accepts a flat dict, an mmcv ``{'state_dict': ..., 'meta': ..., 'optimizer': ...}`` and ``module.``-prefixed
    keys; drops the texture loss's fixed Sobel kernels (``loss_texture.*``).
    """
    path = _existing_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (KeyError, RuntimeError, UnpicklingError) on bad files
        raise WeightsError(f"{path}: {_describe_load_failure(exc)}") from exc
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    nested = obj.get("state_dict")
    if isinstance(nested, Mapping):
        obj = nested
    others = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise WeightsError(
            f"{path}: not a state dict: {len(others)} entries are not tensors (e.g. {_examples(others)})")
    state: dict[str, torch.Tensor] = {}
    for key, tensor in obj.items():
        name = str(key).removeprefix(WRAPPER_PREFIX)
        if not name.startswith(IGNORED_PREFIXES):
            state[name.removeprefix(OFFICIAL_PREFIX)] = tensor
    if not state:
        raise WeightsError(f"{path}: holds no network tensors")
    return state


def save_weights(
    model: Network,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    fp16: bool = False,
) -> Path:
    """Write ``model`` as safetensors with its preset, config and ``metadata`` (JSON values, e.g. training data
    and metrics). ``fp16`` halves the file; loading casts back to float32. The file is replaced atomically.
    """
    path = Path(path)
    extra = dict(metadata or {})
    clashes = sorted(RESERVED_METADATA & extra.keys())
    if clashes:
        raise ValueError(f"metadata keys {', '.join(clashes)} are reserved")
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    if fp16:
        overflow = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
        if overflow:
            raise ValueError(f"weights overflow float16 (e.g. {_examples(overflow)}); save in float32")
    header = {
        "format": BAND_FORMAT_TAG if isinstance(model, BandNet) else FORMAT_TAG,
        "preset": preset_name(model.config),
        "config": json.dumps(model.config.to_dict()),
        "dtype": str(dtype).removeprefix("torch."),
        **{k: json.dumps(v) for k, v in extra.items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"{path}: cannot write weights ({exc})") from exc
    return path


def load_weights(
    path_or_name: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> tuple[Network, WeightsInfo]:
    """An eval-mode network and its :class:`WeightsInfo` from a registry name or a file path.

    ``.safetensors`` files are ours (a U-Net or a band network, rebuilt from their metadata); anything else is read as an
    official-style ``.pth`` into the ``official`` preset. Registry files are checked against their SHA-256
    when the registry knows it and ``verify`` is set (and the checksum is logged when it does not).
    """
    path, entry = _locate(path_or_name)
    sha256 = _registry_checksum(path, entry) if entry and verify else None
    if path.suffix == SAFETENSORS_SUFFIX:
        state, config, preset, metadata = _read_safetensors(path)
        file_format = "safetensors"
    else:
        state, config, metadata = load_official_checkpoint(path), PRESETS["official"], {}
        preset, file_format = "official", "official-pth"
    if entry is not None and entry.preset != preset:
        raise WeightsError(f"{path}: registry entry {entry.name} expects preset {entry.preset}, file has {preset}")
    model = _build_loaded(config, state, path, preset).to(device).eval()
    info = WeightsInfo(path=path, preset=preset, config=config, file_format=file_format,
                       name=entry.name if entry else None, sha256=sha256, metadata=metadata)
    log.info("loaded %s weights (%s) from %s", preset, file_format, path)
    return model, info


def _registry_checksum(path: Path, entry: CheckpointEntry) -> str:
    if entry.sha256:
        return verify_sha256(path, entry.sha256)
    actual = file_sha256(path)
    log.info("%s: SHA-256 %s (the registry has none for %s yet)", path, actual, entry.name)
    return actual


def _locate(path_or_name: str | os.PathLike[str]) -> tuple[Path, CheckpointEntry | None]:
    if isinstance(path_or_name, str) and path_or_name in REGISTRY:
        return resolve_weights(path_or_name)
    path = Path(path_or_name)
    if not path.exists():
        raise WeightsError(
            f"{path}: no such file, and not a known checkpoint name (known: {', '.join(sorted(REGISTRY))})")
    return path, None


def _existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such file")
    if not path.is_file():
        raise WeightsError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes)")
    return path


def _describe_load_failure(exc: Exception) -> str:
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if refused:
        return (f"holds Python objects besides tensors ({refused.group(1)}), which torch.load(weights_only=True) "
                "refuses; only plain state dicts are loaded")
    return f"not a PyTorch checkpoint: corrupt, truncated or another format ({type(exc).__name__})"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], NetworkConfig, str, dict[str, Any]]:
    path = _existing_file(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    tag = header.get("format")
    if tag not in (FORMAT_TAG, BAND_FORMAT_TAG) or "config" not in header:
        raise WeightsError(f"{path}: safetensors without SegRefiner Studio metadata (no {FORMAT_TAG} or "
                           f"{BAND_FORMAT_TAG} config); write weights with save_weights")
    kind, config_type = ("band-network", BandConfig) if tag == BAND_FORMAT_TAG else ("U-Net", UNetConfig)
    try:
        config = config_type.from_dict(json.loads(header["config"]))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: invalid {kind} config in metadata ({exc})") from exc
    metadata = {k: _decode_json(v) for k, v in header.items() if k not in RESERVED_METADATA}
    return state, config, header.get("preset") or preset_name(config), metadata


def _decode_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _build_loaded(config: NetworkConfig, state: dict[str, torch.Tensor], path: Path, preset: str) -> Network:
    """The network of ``config`` holding exactly ``state``, or a WeightsError describing the mismatch."""
    model: Network
    if isinstance(config, BandConfig):
        # 0.35 M parameters: built on the CPU in milliseconds. The meta device would first import torch's meta
        # kernels, 1.1-1.4 s the window's first refinement waits for.
        model = BandNet(config)
    else:
        with torch.device("meta"):  # up to 118 M parameters: no memory for weights about to be replaced
            model = DenoiseUNet(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    mismatched = sorted(k for k in expected.keys() & state.keys()
                        if tuple(state[k].shape) != expected[k] or not state[k].is_floating_point())
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing e.g. {_examples(missing)}")
        if unexpected:
            details.append(f"unexpected e.g. {_examples(unexpected)}")
        if mismatched:
            details.append("mismatched e.g. " + ", ".join(
                f"{k} {list(state[k].shape)}{'' if state[k].is_floating_point() else f' {state[k].dtype}'} "
                f"vs {list(expected[k])}" for k in mismatched[:_EXAMPLES]))
        raise WeightsError(
            f"{path}: does not match the {preset} {'band network' if preset == BAND_PRESET else 'U-Net'} ({len(expected)} tensors): {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(mismatched)} mismatched keys; " + "; ".join(details))
    model.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, strict=True, assign=True)
    return model


def _examples(keys: list[str]) -> str:
    shown = ", ".join(keys[:_EXAMPLES])
    return shown + (", ..." if len(keys) > _EXAMPLES else "")
