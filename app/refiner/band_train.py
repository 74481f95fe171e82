"""Training the band network: a few hundred thousand boundary tiles an hour on two CPU cores.

Only the decoder and head train (0.35 M parameters); the encoder is frozen. Each step draws instances from the real
datasets with synthesised coarse masks (app/refiner/band_samples.py, in data-loader workers), runs the frozen encoder
on their context canvases, the context decoder on the current mask, and the head on a few tiles per instance where
the mask is wrong or the boundary lies. Loss: BCE weighted on the true boundary and on the input's errors, plus soft
Dice per tile. AdamW, linear warmup, cosine decay, gradient clipping. ``last.pt`` (atomic) resumes a killed run;
validation runs the real pipeline on held-out instances of every coarse kind and keeps the best network.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from app.core.errors import DatasetError
from app.core.metrics import MetricAccumulator
from app.refiner.band_net import BandConfig, BandNet, encoder_features, sample_context
from app.refiner.band_pipeline import BandRunner, BandSettings, refine_band
from app.refiner.band_samples import NEIGHBOUR, TRAIN_PROBS, SampleSettings, make_sample
from app.refiner.checkpoints import read_checkpoint, write_checkpoint
from app.refiner.data import Source, source_probabilities
from app.refiner.device import autocast_dtype, pick_device
from app.refiner.encoder import LiteEncoder, pretrained_encoder
from app.refiner.evaluate import NEAR_PERFECT, Case

log = logging.getLogger(__name__)


@dataclass
class BandTrainConfig:
    """Everything that defines a run; stored in each checkpoint so a resume continues the same run."""

    iterations: int = 8000
    batch_size: int = 8
    tiles: int = 6
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 1e-4
    clip_grad: float = 1.0
    boundary_weight: float = 4.0
    error_weight: float = 2.0
    dice_weight: float = 0.5
    coarse_t_prob: float = 0.3
    smooth_mix_prob: float = 0.5
    neighbour_prob: float = 0.0
    seed: int = 0
    val_every: int = 500
    val_per_kind: int = 6
    save_every: int = 100
    log_every: int = 20
    workers: int = 1
    threads: int = 1
    device: str = "auto"
    source_weights: dict[str, float] = field(default_factory=dict)

    def sample_settings(self) -> SampleSettings:
        probs = {**TRAIN_PROBS, NEIGHBOUR: self.neighbour_prob} if self.neighbour_prob > 0 else dict(TRAIN_PROBS)
        return SampleSettings(tiles=self.tiles, coarse_t_prob=self.coarse_t_prob, smooth_mix_prob=self.smooth_mix_prob,
                              boundary_weight=self.boundary_weight, error_weight=self.error_weight, probs=probs)


class SampleStream(torch.utils.data.IterableDataset):
    """Endless training samples from weighted sources; each worker seeds its own generator."""

    def __init__(self, sources: Sequence[Source], weights: dict[str, float], network: BandConfig,
                 settings: SampleSettings, seed: int) -> None:
        super().__init__()
        self.sources = list(sources)
        self.probs = source_probabilities(self.sources, weights)
        self.network, self.settings, self.seed = network, settings, seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        if info is not None:
            torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, worker])
        while True:
            source = self.sources[int(rng.choice(len(self.sources), p=self.probs))]
            try:
                sample = make_sample(source.load(int(rng.integers(len(source)))), rng, self.network, self.settings)
            except (ValueError, DatasetError) as error:
                log.warning("skipping a training example: %s", error)
                continue
            yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sample.items()}


def band_loss(logits: torch.Tensor, gt: torch.Tensor, weight: torch.Tensor,
              dice_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted BCE (``weight`` 0 drops a pixel) + ``dice_weight`` x soft Dice per tile."""
    bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    bce = (bce * weight).sum() / weight.sum().clamp(min=1.0)
    keep = (weight > 0).float()
    prob = torch.sigmoid(logits) * keep
    target = gt * keep
    inter = (prob * target).sum(dim=(1, 2, 3))
    dice = 1.0 - (2 * inter + 1.0) / (prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1.0)
    loss = bce + dice_weight * dice.mean()
    return loss, {"loss": loss.item(), "bce": bce.item(), "dice": dice.mean().item()}


def _tile_iou(pred: torch.Tensor, gt: torch.Tensor, keep: torch.Tensor) -> float:
    inter = (pred & gt & keep).sum()
    union = ((pred | gt) & keep).sum().clamp(min=1)
    return float(inter / union)


@dataclass
class ValidationCases:
    """Held-out instances of every coarse kind (fixed seeds), scored with the real band pipeline."""

    cases: list[Case]

    def evaluate(self, runner: BandRunner) -> dict[str, float]:
        overall, near = MetricAccumulator(), MetricAccumulator()
        coarse_acc = MetricAccumulator()
        for case in self.cases:
            final = None
            for final in refine_band(runner, case.example.image, [case.coarse], BandSettings(min_area=0)):
                pass
            assert final is not None
            refined = final.mask(0)
            if case.kind == NEAR_PERFECT:
                near.add(refined, case.example.mask, case.example.ignore)
            else:
                overall.add(refined, case.example.mask, case.example.ignore)
                coarse_acc.add(case.coarse, case.example.mask, case.example.ignore)
        a, c = overall.summary(), coarse_acc.summary()
        scores = {"coarse_iou": c.iou, "coarse_mba": c.mba, "iou": a.iou, "mba": a.mba, "boundary_iou": a.mean_boundary_iou}
        if near.summary().count:
            scores["near_perfect_iou"] = near.summary().iou
        scores["score"] = (scores["iou"] + scores["mba"]) / 2
        return scores


class BandTrainer:
    """Owns the network, optimizer and schedule of one run directory (``last.pt`` inside it)."""

    def __init__(self, config: BandTrainConfig, run_dir: Path, network: BandConfig | None = None,
                 init: BandNet | None = None, encoder: LiteEncoder | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = pick_device(config.device)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.net = init if init is not None else BandNet(network or BandConfig())
        self.net.to(self.device)
        self.encoder = (encoder or pretrained_encoder()).to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.autocast = autocast_dtype(self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast == torch.float16)
        self.step = 0
        self.best_score = -1.0

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "last.pt"

    def lr_at(self, step: int) -> float:
        c = self.config
        if step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        progress = min(1.0, (step - c.warmup) / max(1, c.iterations - c.warmup))
        return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        self.net.train()
        dev = self.device
        b, k = batch["tiles"].shape[:2]
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        canvas = batch["canvas"].permute(0, 3, 1, 2).float().to(dev, non_blocking=True)
        tiles = batch["tiles"].flatten(0, 1).to(dev, non_blocking=True)
        grids = batch["grids"].flatten(0, 1).to(dev, non_blocking=True)
        gt = batch["gt"].flatten(0, 1).to(dev, non_blocking=True)
        current = batch["current"].flatten(0, 1).to(dev, non_blocking=True)
        weight = batch["weight"].flatten(0, 1).to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            features = encoder_features(self.encoder, canvas)
            projected = self.net.project_features(features)
            context = self.net.context(projected, batch["context"].to(dev, non_blocking=True))
            sampled = sample_context(context, [k] * b, grids)
            delta = self.net.head(tiles, sampled.to(tiles.dtype))
        logits = self.net.identity_logits(current) + delta.float()
        loss, stats = band_loss(logits, gt, weight, self.config.dice_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.step}; inputs finite: "
                                     f"{bool(torch.isfinite(tiles).all() and torch.isfinite(batch['context']).all())}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            keep, truth = weight > 0, gt >= 0.5
            stats["iou"] = _tile_iou(logits >= 0, truth, keep)
            stats["input_iou"] = _tile_iou(current >= 0.5, truth, keep)
        stats["lr"] = self.lr_at(self.step)
        self.step += 1
        return stats

    def save(self) -> None:
        """Write ``last.pt`` atomically."""
        write_checkpoint(self.checkpoint_path, self.net, self.optimizer, self.scaler, self.step,
                         best_score=self.best_score, config=asdict(self.config), network=self.net.config.to_dict())

    def resume(self) -> bool:
        """Load ``last.pt`` if present; returns whether it did."""
        state = read_checkpoint(self.checkpoint_path, self.net, self.optimizer, self.scaler,
                                lambda s: BandConfig.from_dict(s["network"]) == self.net.config,
                                "band-network configuration")
        if state is None:
            return False
        self.step, self.best_score = int(state["step"]), float(state["best_score"])
        return True

    def runner(self) -> BandRunner:
        return BandRunner(self.net, self.encoder, self.device)

    def validate(self, validation: ValidationCases) -> dict[str, float]:
        scores = validation.evaluate(self.runner())
        self.net.train()
        return scores


def run_band_training(
    config: BandTrainConfig,
    run_dir: Path,
    train_sources: Sequence[Source],
    validation: ValidationCases | None,
    network: BandConfig | None = None,
    on_best: Callable[[BandTrainer, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    init: BandNet | None = None,
    encoder: LiteEncoder | None = None,
) -> BandTrainer:
    """Train (or resume) until ``config.iterations`` or ``should_stop()``; checkpoints, validates and logs.

    However the run ends, the network it ends with is validated (unless it just was) and saved.
    """
    trainer = BandTrainer(config, run_dir, network, init, encoder)
    if trainer.resume():
        log.info("resumed %s at step %d", trainer.checkpoint_path, trainer.step)
    stream = SampleStream(train_sources, config.source_weights, trainer.net.config, config.sample_settings(),
                          config.seed + trainer.step)
    loader = torch.utils.data.DataLoader(stream, batch_size=config.batch_size, num_workers=config.workers,
                                         pin_memory=trainer.device.type == "cuda",
                                         persistent_workers=config.workers > 0)
    started, first_step, recent = time.time(), trainer.step, []
    validated_at = -1
    for batch in loader:
        if trainer.step >= config.iterations:
            break
        if trainer.step > first_step and should_stop():  # a run always makes at least one step of progress
            log.info("stopping at step %d of %d", trainer.step, config.iterations)
            break
        recent.append(trainer.train_step(batch))
        if trainer.step % config.log_every == 0:
            mean = {key: float(np.mean([r[key] for r in recent])) for key in recent[0]}
            rate = (trainer.step - first_step) / max(1e-9, time.time() - started)
            log.info("step %d/%d loss %.4f bce %.4f dice %.4f tile IoU %.3f (input %.3f) lr %.2e grad %.2f (%.2f it/s)",
                     trainer.step, config.iterations, mean["loss"], mean["bce"], mean["dice"], mean["iou"],
                     mean["input_iou"], mean["lr"], mean["grad_norm"], rate)
            recent = []
        if trainer.step % config.save_every == 0:
            trainer.save()
        if validation is not None and trainer.step % config.val_every == 0:
            _validate(trainer, validation, on_best)
            validated_at = trainer.step
    if validation is not None and validated_at != trainer.step and trainer.step > first_step:
        _validate(trainer, validation, on_best)
    trainer.save()
    return trainer


def _validate(trainer: BandTrainer, validation: ValidationCases,
              on_best: Callable[[BandTrainer, dict[str, float]], None] | None) -> None:
    started = time.time()
    scores = trainer.validate(validation)
    log.info("validation at step %d (%.0f s): %s", trainer.step, time.time() - started,
             {k: round(v, 4) for k, v in scores.items()})
    if scores["score"] > trainer.best_score:
        trainer.best_score = scores["score"]
        if on_best is not None:
            on_best(trainer, scores)
    trainer.save()
