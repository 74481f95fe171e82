"""Where the network runs: device choice, autocast dtype, batch size, and out-of-memory fallback."""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Iterator

import torch

from app.refiner.options import check_device

log = logging.getLogger(__name__)

# Rough peak inference memory per 256x256 sample and step (measured with benchmarks/bench_unet.py);
# used only to pick a first batch size, out-of-memory handling corrects it.
_BYTES_PER_SAMPLE = {"official": 400 * 2**20, "compact": 60 * 2**20}
_MAX_BATCH = 32


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` ("cpu", "cuda", "cuda:1", "mps", "auto"/None) -> an available torch device."""
    requested = check_device(requested) if requested else requested  # torch also takes meta, xpu, ...
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {requested!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``device``: bf16 on CUDA cards that support it, else fp16; None on CPU.

    ``precision`` may force "fp32", "fp16" or "bf16".
    """
    if precision == "fp32" or device.type == "cpu":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16


def default_batch_size(device: torch.device, preset: str) -> int:
    """A first batch size from free memory (CUDA), or a CPU-friendly default."""
    if device.type != "cuda":
        return 8 if preset == "compact" else 2
    free, _total = torch.cuda.mem_get_info(device)
    per_sample = _BYTES_PER_SAMPLE.get(preset, _BYTES_PER_SAMPLE["official"])
    return max(1, min(_MAX_BATCH, int(free * 0.7) // per_sample))


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


@dataclass
class Runner:
    """Runs a denoiser on batches with autocast, splitting into chunks and surviving out-of-memory.

    On out-of-memory the chunk size is halved; below one sample the model moves to the CPU, with a
    logged warning. Inputs and outputs may live anywhere; outputs come back as float32 on ``device``.

    ``compile``: run the network through ``torch.compile`` (Inductor, weights frozen as constants). On two
    CPU cores the compact step drops from about 160 ms to about 100 ms, but the first call compiles for
    one to two minutes (less with Inductor's on-disk cache) and every new batch shape compiles again, so it
    pays for long headless runs, not for a single refinement. If compiling fails (no C++ compiler, an
    unsupported platform) the runner warns once and runs the network as it is.
    """

    model: torch.nn.Module
    device: torch.device
    preset: str = "compact"
    precision: str = "auto"
    batch_size: int = 0
    fallbacks: list[str] = field(default_factory=list)
    compile: bool = False

    def __post_init__(self) -> None:
        # Channels-last lets oneDNN (CPU) and cuDNN (tensor cores) skip layout conversions in every conv; on
        # 2 CPU cores the compact step measured 3-40 % faster (benchmarks/bench_unet.py; a noisy VM).
        self.model = self.model.to(self.device, memory_format=torch.channels_last).eval()
        self._compiled: torch.nn.Module | None = None
        if self.batch_size <= 0:
            self.batch_size = default_batch_size(self.device, self.preset)

    @property
    def dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.device, self.precision)

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        dtype = self.dtype
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type=self.device.type, dtype=dtype):
                yield

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits (B,1,H,W) float32 for inputs (B,4,H,W) and code-t (B,)."""
        outputs = []
        start = 0
        while start < x.shape[0]:
            stop = min(x.shape[0], start + self.batch_size)
            try:
                with self._autocast():
                    chunk = x[start:stop].to(self.device, memory_format=torch.channels_last)
                    out = self._forward(chunk, t[start:stop].to(self.device))
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not _is_oom(error) or self.device.type == "cpu":
                    raise
                self._shrink(error)
                continue
            outputs.append(out.float())
            start = stop
        return torch.cat(outputs)

    def _forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.compile:
            return self.model(x, t)
        steps = getattr(getattr(self.model, "config", None), "num_timesteps", None)
        if steps is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) >= steps):
            raise ValueError(f"timesteps must lie in 0..{steps - 1}, got {t.tolist()}")  # compiled code skips it
        if self._compiled is None:
            self._compiled = torch.compile(self.model)
        try:
            with torch._inductor.config.patch(freezing=True):
                return self._compiled(x, t)
        except Exception as error:  # noqa: BLE001 - any compiler failure falls back to the plain network
            if _is_oom(error):
                raise
            message = f"compiling the network failed, running it uncompiled ({type(error).__name__}: {error})"
            log.warning("%s", message)
            self.fallbacks.append(message)
            self.compile, self._compiled = False, None
            return self.model(x, t)

    def _shrink(self, error: BaseException) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.batch_size > 1:
            self.batch_size //= 2
            message = f"out of memory on {self.device}; batch size halved to {self.batch_size}"
        else:
            self.device = torch.device("cpu")
            self.model = self.model.to(self.device, memory_format=torch.channels_last)
            self._compiled = None
            self.batch_size = default_batch_size(self.device, self.preset)
            message = "out of memory at batch size 1; falling back to the CPU"
        log.warning("%s (%s)", message, error)
        self.fallbacks.append(message)
