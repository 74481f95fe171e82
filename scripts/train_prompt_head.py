"""Train the prompt head (app/refiner/prompt_head.py) on the training split of ../shared/data and export it.

Each training instance gives two windows, as the prompt tools make them: its ground-truth box (each side moved by
up to ``--jitter`` of the box's size, as a user draws it) plus context, and the whole image (clicks on a new
instance). The frozen encoder's features of every window are computed once and kept in memory (fp16); each
iteration draws prompts on the fly: the box alone; a degraded mask (app/refiner/degrade.py) as the current mask
with clicks at the centres of its largest error regions (the NoC protocol); or, on the whole image, clicks
alone. The validation split is never read.

    .venv/bin/python scripts/train_prompt_head.py --out a.safetensors --iterations 2000 --features W.pt
    .venv/bin/python scripts/train_prompt_head.py --init a.safetensors --out b.safetensors --iterations 9000 \
        --lr 1e-3 --features W.pt
    .venv/bin/python scripts/train_prompt_head.py --init b.safetensors --out prompt-head-v2.safetensors \
        --iterations 8000 --lr 7e-4 --features W.pt --more-boxes 1 2

(prompt-head-v2: the three runs above, 13 + 45 + 28 minutes on one CPU thread, the windows' features computed
once in 9 minutes and the two further box seeds in 80 s each.) ``--features FILE`` keeps the computed windows
(features, truth, boxes) in a file that a later run with the same canvas, jitter, seed and limit reads instead of
computing them again; ``--init`` continues from a head's weights; ``--more-boxes`` adds the box windows of further
jitter seeds (the same instances, boxes drawn again: the head trained on one box per instance stopped improving
on held-out boxes while its training loss kept falling). Two options teach the clicks the head's own mistakes:
``--iterative P`` prompts a share P of the whole-image windows with the head's own masks and a click on their
largest error (RITM's iterative training); ``--merged P`` starts a share P of the windows whose object touches
other instances of its image (Penn-Fudan, COCO, LVIS) from a mask that took those neighbours too, with negative
clicks on them (a first click on a sheep that takes the herd).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.refiner.data import Example, shared_sources  # noqa: E402
from app.refiner.degrade import synthesize  # noqa: E402
from app.refiner.encoder import pretrained_encoder  # noqa: E402
from app.refiner.prompt_head import PromptHead, PromptHeadConfig, load_head, prompt_channels, save_head  # noqa: E402
from app.refiner.prompts import Click, Window, error_clicks  # noqa: E402

log = logging.getLogger("train_prompt_head")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Sample:
    features: dict[int, torch.Tensor]
    gt: np.ndarray
    box: tuple[float, float, float, float] | None
    others: np.ndarray | None = None
    """The image's other annotated instances on the canvas (bool), None where the source has one per image."""


def canvas_of(window: Window, image: np.ndarray, size: int) -> np.ndarray:
    x0, y0, x1, y1 = window.box
    return cv2.resize(image[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)


def object_mask(example: Example) -> np.ndarray:
    """The example's object as a bool mask, its ignore band (Pets' unknown trimap band) left out."""
    return example.mask if example.ignore is None else example.mask & ~example.ignore


def jittered_box(mask: np.ndarray, jitter: float, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """The object's bounding box (x0, y0, x1, y1) with each side moved by up to ``jitter`` of the box's size, as a
    user draws it, kept inside the image and at least 2 pixels wide and high."""
    h, w = mask.shape
    x, y, bw, bh = cv2.boundingRect(mask.astype(np.uint8))
    moves = rng.uniform(-jitter, jitter, 4) * np.array([bw, bh, bw, bh])
    box = (float(np.clip(x + moves[0], 0, w - 2)), float(np.clip(y + moves[1], 0, h - 2)),
           float(np.clip(x + bw + moves[2], 2, w)), float(np.clip(y + bh + moves[3], 2, h)))
    return min(box[0], box[2] - 2), min(box[1], box[3] - 2), box[2], box[3]


def build_samples(root: Path, size: int, jitter: float, seed: int, limit: int | None, whole: bool = True) -> list[Sample]:
    """Encoder features of every training window (two per instance; only the box window without ``whole``),
    computed once."""
    rng = np.random.default_rng(seed)
    encoder = pretrained_encoder()
    items: list[tuple[np.ndarray, np.ndarray, tuple[float, float, float, float] | None, np.ndarray | None]] = []
    samples: list[Sample] = []
    started = time.perf_counter()

    def flush() -> None:
        if not items:
            return
        x = torch.from_numpy(np.stack([item[0] for item in items])).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            features = encoder(x)
        for k, (_, gt, box, near) in enumerate(items):
            samples.append(Sample({s: features[s][k].half().clone() for s in (16, 8, 4)}, gt, box, near))
        items.clear()

    for source in shared_sources(root, "train"):
        count = len(source) if limit is None else min(limit, len(source))
        for index in range(count):
            example = source.load(index)
            mask = object_mask(example)
            if cv2.countNonZero(mask.view(np.uint8)) < 256:
                continue
            others = example.others if example.others is not None and example.others.any() else None
            h, w = mask.shape
            box = jittered_box(mask, jitter, rng)
            window = Window.around(tuple(int(round(v)) for v in box), (h, w))  # type: ignore[arg-type]
            whole_image = Window((0, 0, w, h), (h, w))
            for win, prompt_box in [(window, box)] + ([(whole_image, None)] if whole else []):
                canvas = canvas_of(win, example.image, size)
                gt = canvas_of(win, mask.astype(np.uint8) * 255, size) >= 128
                near = None if others is None else (canvas_of(win, others.astype(np.uint8) * 255, size) >= 128) & ~gt
                if prompt_box is not None:
                    sy, sx = size / (win.box[3] - win.box[1]), size / (win.box[2] - win.box[0])
                    prompt_box = ((prompt_box[0] - win.box[0]) * sx, (prompt_box[1] - win.box[1]) * sy,
                                  (prompt_box[2] - win.box[0]) * sx, (prompt_box[3] - win.box[1]) * sy)
                items.append((canvas, gt, prompt_box, near))
            if len(items) >= 32:
                flush()
        flush()
        log.info("%s: %d samples so far (%.0f s)", source.name, len(samples), time.perf_counter() - started)
    return samples


def samples_from_file(path: Path, tag: str) -> list[Sample] | None:
    """The windows a run with the same ``tag`` stored in ``path`` (None: no such file, or another tag)."""
    if not path.is_file():
        return None
    stored = torch.load(path, weights_only=True)
    if stored.get("tag") != tag:
        log.info("%s holds windows of another run (%s), computing them again", path, stored.get("tag"))
        return None
    boxes, has_others = stored["boxes"].tolist(), stored["has_others"].tolist()
    return [Sample({s: stored[f"f{s}"][k] for s in (16, 8, 4)}, stored["gt"][k].numpy().astype(bool),
                   None if np.isnan(boxes[k][0]) else tuple(boxes[k]),
                   stored["others"][k].numpy().astype(bool) if has_others[k] else None) for k in range(len(boxes))]


def samples_to_file(path: Path, tag: str, samples: list[Sample]) -> None:
    stored: dict[str, object] = {"tag": tag, "gt": torch.from_numpy(np.stack([s.gt for s in samples]).astype(np.uint8)),
                                 "boxes": torch.tensor([s.box or (float("nan"),) * 4 for s in samples], dtype=torch.float64),
                                 "others": torch.from_numpy(np.stack([np.zeros_like(s.gt) if s.others is None else s.others
                                                                      for s in samples]).astype(np.uint8)),
                                 "has_others": torch.tensor([s.others is not None for s in samples])}
    for stride in (16, 8, 4):
        stored[f"f{stride}"] = torch.stack([s.features[stride] for s in samples])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(stored, path)


def click_channels(size: int, prior: np.ndarray | None, clicks: Sequence[Click]) -> np.ndarray:
    """Prompt channels from a prior (bool, canvas-sized, or None) and clicks in canvas pixels, split by sign."""
    return prompt_channels(size, None if prior is None else prior.astype(np.float32),
                           [(c.x, c.y) for c in clicks if c.positive], [(c.x, c.y) for c in clicks if not c.positive])


def touching(others: np.ndarray | None, gt: np.ndarray) -> np.ndarray | None:
    """The other instances (connected parts of ``others``) that touch the object: what a click on it may take too."""
    if others is None or not others.any():
        return None
    _, labels = cv2.connectedComponents(others.view(np.uint8), connectivity=8)
    near = cv2.dilate(gt.view(np.uint8), np.ones((7, 7), np.uint8)) > 0
    hit = np.unique(labels[near & others])
    return np.isin(labels, hit[hit != 0]) if hit.size else None


def merged_prompt(gt: np.ndarray, neighbours: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The first click on the object took its touching neighbours too (a sheep and its herd, a skateboard and its
    rider): that mask as the prior, the first click, and one or two clicks at its largest errors (negatives)."""
    current = gt | neighbours
    clicks = error_clicks(np.zeros_like(gt), gt, 1) + error_clicks(current, gt, int(rng.integers(1, 3)))
    return click_channels(size, current, clicks)


def draw_prompt(sample: Sample, size: int, rng: np.random.Generator, box_share: float = 0.5,
                merged: float = 0.0) -> np.ndarray:
    """Prompt channels for one sample, as one of the tools would give them: a box window is prompted by its box
    alone with probability ``box_share``; a window whose object touches other instances, with probability
    ``merged``, by :func:`merged_prompt`."""
    gt = sample.gt
    if not gt.any():
        return prompt_channels(size, None, [], [])
    if merged and rng.random() < merged:
        neighbours = touching(sample.others, gt)
        if neighbours is not None:
            return merged_prompt(gt, neighbours, size, rng)
    if sample.box is not None and rng.random() < box_share:
        prior = np.zeros((size, size), np.float32)
        x0, y0, x1, y1 = (int(round(v)) for v in sample.box)
        prior[y0:y1, x0:x1] = 1.0
        return prompt_channels(size, prior, [], [])
    if sample.box is not None or rng.random() < 0.3:
        current = synthesize(gt, rng)[0]
        return click_channels(size, current, error_clicks(current, gt, int(rng.integers(1, 4))))
    # clicks alone on a new instance: the first at the object's centre or anywhere inside, maybe more
    empty = np.zeros_like(gt)
    positives = [(c.x, c.y) for c in error_clicks(empty, gt, 1)]
    if rng.random() < 0.5:
        ys, xs = np.nonzero(cv2.erode(gt.astype(np.uint8), np.ones((5, 5), np.uint8)) if gt.sum() > 100 else gt)
        if len(ys):
            k = int(rng.integers(len(ys)))
            positives = [(float(xs[k]), float(ys[k]))]
    negatives = []
    if rng.random() < 0.4:
        ys, xs = np.nonzero(cv2.dilate(gt.astype(np.uint8), np.ones((25, 25), np.uint8)) & ~gt)
        if len(ys):
            k = int(rng.integers(len(ys)))
            negatives = [(float(xs[k]), float(ys[k]))]
    return prompt_channels(size, None, positives, negatives)


def self_played(head: PromptHead, features: dict[int, torch.Tensor], gts: np.ndarray, rounds: int) -> np.ndarray:
    """Prompt channels for clicks on new instances as the head itself would leave them (iterative training, RITM:
    Sofiiuk et al. 2022): the first click at the object's centre, then ``rounds`` times the head's own mask and
    one more click at its largest error; the last prompt carries that mask and every click.

    Synthetic errors around the right object never show the head its own mistakes: a first click on a sheep that
    takes the whole herd, or on a skateboard that takes its rider, which later negative clicks then only nibble at.
    ``features`` are the windows' (B, C, h, w) features at strides 16, 8, 4; ``gts`` their (B, S, S) bool truths.
    """
    size = gts.shape[-1]
    empty = np.zeros_like(gts[0])
    clicks = [error_clicks(empty, gt, 1) for gt in gts]
    current: list[np.ndarray | None] = [None] * len(gts)

    def channels() -> np.ndarray:
        return np.stack([click_channels(size, c, k) for c, k in zip(current, clicks)])

    with torch.no_grad():
        for _ in range(rounds):
            logits = F.interpolate(head(features, torch.from_numpy(channels())), size=(size, size), mode="bilinear",
                                   align_corners=False)
            current = list(logits[:, 0].numpy() >= 0.0)
            clicks = [k + error_clicks(c, gt, 1) for k, c, gt in zip(clicks, current, gts)]
    return channels()


def train(samples: list[Sample], config: PromptHeadConfig, iterations: int, batch: int, lr: float, seed: int,
          init: PromptHead | None = None, box_share: float = 0.5,
          checkpoint: Callable[[PromptHead, int], None] | None = None, every: int = 1000,
          iterative: float = 0.0, merged: float = 0.0) -> PromptHead:
    """Train a head on ``samples``; ``checkpoint(head, iteration)`` is called every ``every`` iterations (the head
    in eval mode for the call), so a long run stopped early leaves its latest weights. A share ``iterative`` of
    the whole-image windows is prompted by the head's own clicks (:func:`self_played`, 1 to 3 rounds), a share
    ``merged`` of the windows whose object touches other instances by :func:`merged_prompt`."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = PromptHead(config)
    if init is not None:
        head.load_state_dict(init.state_dict())
        for parameter in head.parameters():
            parameter.requires_grad_(True)
    head.train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=iterations, pct_start=0.05)
    size = config.canvas
    started = time.perf_counter()
    running = 0.0
    for it in range(1, iterations + 1):
        picks = rng.integers(len(samples), size=batch)
        flips = rng.random(batch) < 0.5
        features = {s: torch.stack([samples[k].features[s] for k in picks]).float() for s in (16, 8, 4)}
        prompts = np.stack([draw_prompt(samples[k], size, rng, box_share, merged) for k in picks])
        played = [j for j, k in enumerate(picks) if samples[k].box is None and samples[k].gt.any() and rng.random() < iterative]
        if played:
            prompts[played] = self_played(head, {s: f[played] for s, f in features.items()},
                                          np.stack([samples[picks[j]].gt for j in played]), int(rng.integers(1, 4)))
        gts = np.stack([samples[k].gt for k in picks]).astype(np.float32)
        prompt_t, gt_t = torch.from_numpy(prompts), torch.from_numpy(gts)[:, None]
        for s in features:
            features[s][flips] = features[s][flips].flip(-1)
        prompt_t[flips] = prompt_t[flips].flip(-1)
        gt_t[flips] = gt_t[flips].flip(-1)
        logits = F.interpolate(head(features, prompt_t), size=(size, size), mode="bilinear", align_corners=False)
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * gt_t).sum((1, 2, 3)) + 1) / (prob.sum((1, 2, 3)) + gt_t.sum((1, 2, 3)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, gt_t) + dice.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        value = loss.item()
        running = 0.98 * running + 0.02 * value if it > 1 else value
        if it % 100 == 0 or it == iterations:
            log.info("iteration %d/%d loss %.4f (%.1f s)", it, iterations, running, time.perf_counter() - started)
        if checkpoint is not None and it % every == 0 and it < iterations:
            head.eval()
            checkpoint(head, it)
            head.train()
    head.eval()
    return head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--jitter", type=float, default=0.06)
    parser.add_argument("--limit", type=int, default=None, help="at most this many instances per source (a quick run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--more-boxes", type=int, nargs="*", default=[], metavar="SEED",
                        help="also train on the box windows of other jitter seeds (more boxes per instance; their "
                             "features are kept beside --features as <name>.seed<SEED>.pt)")
    parser.add_argument("--box-share", type=float, default=0.5, help="box windows prompted by the box alone")
    parser.add_argument("--init", type=Path, help="continue from these prompt-head weights (their config is kept)")
    parser.add_argument("--widths", type=int, nargs=3, metavar=("W16", "W8", "W4"),
                        help="a new head's decoder widths at strides 16, 8, 4 (default: PromptHeadConfig's)")
    parser.add_argument("--features", type=Path, help="read / keep the computed windows in this file")
    parser.add_argument("--save-every", type=int, default=1000, help="write the head to --out every this many iterations")
    parser.add_argument("--iterative", type=float, default=0.0,
                        help="share of the whole-image windows prompted by the head's own clicks (iterative training)")
    parser.add_argument("--merged", type=float, default=0.0,
                        help="share of the windows whose object touches other instances prompted as if the first click "
                             "had taken them too (the prior), with negative clicks on them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    init = load_head(args.init) if args.init else None
    if init is not None and args.widths:
        parser.error("--widths makes a new head; --init keeps the config of the one it continues")
    if init is not None:
        config = init.config
    else:
        config = PromptHeadConfig(widths=tuple(args.widths)) if args.widths else PromptHeadConfig()
    samples = windows(args, config, args.seed, args.features, whole=True)
    for seed in args.more_boxes:
        extra = args.features.with_suffix(f".seed{seed}.pt") if args.features else None
        samples += windows(args, config, seed, extra, whole=False)
    earlier = ""
    if init is not None:
        earlier = f"continued from {args.init.name} ({init_recipe(args.init)}); then "

    def save(head: PromptHead, done: int) -> None:
        save_head(head, args.out, {
            "training_data": "../shared/data training split (app/refiner/data.py): ECSSD, Oxford-IIIT Pets, Penn-Fudan, "
                             "coco_tiny, LVIS sample",
            "recipe": f"{earlier}{done} of {args.iterations} iterations, batch {args.batch}, AdamW lr {args.lr} one-cycle, "
                      f"box jitter {args.jitter}, box share {args.box_share}, seed {args.seed}"
                      + (f", more boxes from seeds {args.more_boxes}" if args.more_boxes else "")
                      + (f", iterative clicks {args.iterative}" if args.iterative else "")
                      + (f", merged neighbours {args.merged}" if args.merged else "") + f", {len(samples)} windows",
        })
        log.info("saved %s (iteration %d)", args.out, done)

    head = train(samples, config, args.iterations, args.batch, args.lr, args.seed, init, args.box_share, save, args.save_every,
                 args.iterative, args.merged)
    save(head, args.iterations)
    return 0


def windows(args: argparse.Namespace, config: PromptHeadConfig, seed: int, path: Path | None, whole: bool) -> list[Sample]:
    """The training windows of one jitter seed, read from ``path`` when a run with the same settings kept them."""
    tag = f"windows v4, canvas {config.canvas}, jitter {args.jitter}, seed {seed}, limit {args.limit}" + ("" if whole else ", boxes only")
    samples = samples_from_file(path, tag) if path else None
    if samples is None:
        samples = build_samples(args.data, config.canvas, args.jitter, seed, args.limit, whole)
        if path:
            samples_to_file(path, tag, samples)
    return samples


def init_recipe(path: Path) -> str:
    """The recipe stored with a head's weights."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return (handle.metadata() or {}).get("recipe", "recipe unknown")


if __name__ == "__main__":
    raise SystemExit(main())
