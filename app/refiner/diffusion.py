"""SegRefiner's two-state (fine / coarse) discrete diffusion.

Every pixel is either *fine* (shows the ground truth, or the network's prediction at inference) or
*coarse* (shows the input mask). ``beta_bar[t]`` is the probability that a pixel is still fine after the
forward process has run to code-t; the official schedule is ``linspace(0.8, 0, 6)`` (spec §2.2), so at the
last step the mask *is* the coarse mask, which is where inference starts.

The reverse step follows the official code (spec §3.2), not the paper's absorbing formulation: the fine /
coarse state is resampled at every step from the accumulated fine probability, and the new mask mixes the
thresholded prediction with the *original* coarse mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from app.refiner.options import NUM_TIMESTEPS


@dataclass(frozen=True)
class Schedule:
    """The linear beta-bar schedule; ``beta_bar[t]`` = P(pixel still fine at code-t)."""

    num_timesteps: int = NUM_TIMESTEPS
    start: float = 0.8
    stop: float = 0.0

    @property
    def beta_bar(self) -> torch.Tensor:
        return torch.linspace(self.start, self.stop, self.num_timesteps, dtype=torch.float64)

    @property
    def beta_bar_prev(self) -> torch.Tensor:
        """beta_bar shifted right with 1 in front: the value one step closer to the ground truth."""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.beta_bar[:-1]])

    @property
    def betas(self) -> torch.Tensor:
        """Per-step transition probability beta_t = beta_bar_t / beta_bar_{t-1}."""
        return self.beta_bar / self.beta_bar_prev

    def indices(self, steps: int | None = None) -> list[int]:
        """Code-t indices of a reverse run, descending from T-1: ``steps`` of them (all by default)."""
        steps = self.num_timesteps if steps is None else steps
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"steps must be in 1..{self.num_timesteps}, got {steps}")
        return list(range(self.num_timesteps - 1, self.num_timesteps - 1 - steps, -1))


DEFAULT_SCHEDULE = Schedule()


def q_sample(
    fine: torch.Tensor,
    coarse: torch.Tensor,
    t: torch.Tensor,
    schedule: Schedule = DEFAULT_SCHEDULE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One-shot forward sample of m_t for training (spec §2.3).

    ``fine`` and ``coarse`` are (B,1,H,W) float masks in {0,1}; ``t`` is (B,) int64 code-t. Each pixel is
    independently fine with probability beta_bar[t] (per sample), else it shows the coarse value.
    """
    beta_bar = schedule.beta_bar.to(device=fine.device, dtype=torch.float32)[t].view(-1, 1, 1, 1)
    noise = torch.rand(fine.shape, generator=generator, device="cpu" if generator is None else generator.device)
    fine_map = (noise.to(fine.device) < beta_bar).to(fine.dtype)
    return fine_map * fine + (1.0 - fine_map) * coarse


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel confidence c = 2|sigmoid(logit) - 0.5| in [0, 1]."""
    return (torch.sigmoid(logits.float()) - 0.5).abs() * 2.0


@dataclass
class ReverseState:
    """What the reverse loop carries between steps; all (B,1,H,W) float32.

    ``coarse`` is the original coarse mask (never changes), ``mask`` the current mask (binary between
    steps, soft after the last one), ``fine_probs`` the accumulated probability of being fine.
    """

    coarse: torch.Tensor
    mask: torch.Tensor
    fine_probs: torch.Tensor

    @classmethod
    def start(cls, coarse: torch.Tensor, fine_probs: torch.Tensor | None = None) -> ReverseState:
        coarse = coarse.float()
        probs = torch.zeros_like(coarse) if fine_probs is None else fine_probs.float().clone()
        return cls(coarse=coarse, mask=coarse.clone(), fine_probs=probs)


def reverse_step(
    state: ReverseState,
    logits: torch.Tensor,
    t: int,
    last: bool,
    schedule: Schedule = DEFAULT_SCHEDULE,
    generator: torch.Generator | None = None,
    deterministic: bool = False,
) -> torch.Tensor:
    """Advance ``state`` by one reverse step given the network's ``logits`` at code-t ``t``.

    Updates ``state.mask`` and ``state.fine_probs`` in place and returns the confidence map. On the last
    step the mask becomes sigmoid(logits) (soft). Otherwise each pixel takes the thresholded prediction with
    probability ``fine_probs`` (stochastic, official) or when ``fine_probs >= 0.5`` (deterministic, ours),
    and keeps the original coarse value otherwise.
    """
    logits = logits.float()
    conf = confidence(logits)
    beta_bar = float(schedule.beta_bar[t])
    beta_bar_prev = float(schedule.beta_bar_prev[t])
    p_coarse_to_fine = conf * (beta_bar_prev - beta_bar) / (1.0 - conf * beta_bar)
    state.fine_probs = state.fine_probs + (1.0 - state.fine_probs) * p_coarse_to_fine
    if last:
        state.mask = torch.sigmoid(logits)
        return conf
    if deterministic:
        fine_map = state.fine_probs >= 0.5
    else:
        noise = torch.rand(
            state.fine_probs.shape,
            generator=generator,
            device="cpu" if generator is None else generator.device,
        ).to(state.fine_probs.device)
        fine_map = noise < state.fine_probs
    prediction = (logits >= 0).float()
    state.mask = torch.where(fine_map, prediction, state.coarse)
    return conf
