"""``python -m dermchat train-segmenter``: train the tiny lesion U-Net on the HAM10000 expert masks.

Choices:
- the lesion split is the shipped classifier's (``dermchat/weights/ham_cnn/split.json``): the network learns from its
  *training* lesions, the best epoch is chosen on its *calibration* lesions, and the *validation* lesions stay unseen
  for ``bench-morphology``;
- photos and masks are decoded once at 128x96 into the classifier's pixel cache, so an epoch is pure compute;
- augmentation happens on whole batches with one affine warp (any rotation, +-20% scale, +-10% shift, flips;
  lesions have no orientation) and colour jitter (brightness, contrast, per-channel gain, gamma), so phone photos
  with other lighting still segment;
- the loss is binary cross-entropy plus soft Dice: cross-entropy alone under-weights small lesions;
- ``--resume`` continues from the checkpoint written after every epoch (weights, optimiser, random state).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.classifier.data import DataError, default_data_dir, load_pixels, read_split
from dermchat.classifier.train import Checkpoint, TrainLog, lr_factor, resumable_args
from dermchat.cli_output import fail
from dermchat.morphology.bench import AREA_TOLERANCE, SPLIT_FILE
from dermchat.morphology.segmenter import INPUT_SIZE, MODEL_FILE, scale_pixels


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dermchat train-segmenter", description=__doc__.split("\n")[0])
    p.add_argument("--data", help="HAM-layout folder with images/ and masks/ (default: DERMCHAT_DATA_DIR or ../shared)")
    p.add_argument("--out", required=True, help="run folder (weights, log, summary, checkpoint)")
    p.add_argument("--split", default=str(SPLIT_FILE), help="lesion split JSON (default: the shipped classifier's)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--base", type=int, default=8, help="channels of the first U-Net level")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="use only this many training images (smoke tests)")
    p.add_argument("--max-minutes", type=float, default=0, help="stop after this many minutes (0: no limit)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        return _train(args, argv)
    except DataError as exc:
        return fail(str(exc))


def augment(images: Any, masks: Any, generator: Any) -> tuple[Any, Any]:
    """One random affine warp (image and mask together) and colour jitter per sample of a float batch."""
    import torch
    from torch.nn import functional as F

    n = images.shape[0]

    def uniform(lo: float, hi: float) -> Any:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = uniform(-math.pi, math.pi)
    scale = uniform(0.8, 1.2)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-0.1, 0.1)], 1),
            torch.stack([sin * flip, cos, uniform(-0.1, 0.1)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    both = F.grid_sample(torch.cat([images, masks], 1), grid, padding_mode="reflection", align_corners=False)
    images, masks = both[:, :3], both[:, 3:]
    unit = (images + 1) / 2
    gain = uniform(0.7, 1.3)[:, None, None, None] * (1 + 0.1 * torch.randn(n, 3, 1, 1, generator=generator))
    mean = unit.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(0.7, 1.3)[:, None, None, None]
    unit = ((unit - mean) * contrast + mean) * gain
    unit = unit.clamp(1e-4, 1) ** uniform(0.8, 1.25)[:, None, None, None]
    return unit * 2 - 1, masks


def loss_fn(logits: Any, target: Any) -> Any:
    """Binary cross-entropy plus soft Dice (per image, averaged)."""
    import torch
    from torch.nn import functional as F

    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + dice.mean()


def agreement(prob: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Median IoU and share of images whose lesion area is within 15% of the expert's (at the network's size)."""
    pred = prob > 0.5
    inter = (pred & truth).sum(axis=(1, 2))
    union = (pred | truth).sum(axis=(1, 2))
    iou = inter / np.maximum(union, 1)
    area = pred.sum(axis=(1, 2)) / np.maximum(truth.sum(axis=(1, 2)), 1)
    return {
        "iou_median": round(float(np.median(iou)), 4),
        "iou_mean": round(float(np.mean(iou)), 4),
        "area_within_15pct": round(float(np.mean(np.abs(area - 1) <= AREA_TOLERANCE)), 4),
    }


def predict(net: Any, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    import torch

    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(pixels), batch_size):
            batch = scale_pixels(torch.from_numpy(pixels[i : i + batch_size]))
            out.append(torch.sigmoid(net(batch))[:, 0].numpy())
    net.train()
    return np.concatenate(out) if out else np.zeros((0, INPUT_SIZE[1], INPUT_SIZE[0]), np.float32)


@dataclass
class SegmenterData:
    """Photos and expert masks (uint8, at the network's size) of the training and the selection lesions."""

    train_px: np.ndarray
    train_masks: np.ndarray
    select_px: np.ndarray
    select_masks: np.ndarray


def _load_data(args: argparse.Namespace, data_dir: Path, log: TrainLog) -> SegmenterData:
    """Training lesions from the split's training part, selection lesions from its calibration part (`--limit`
    trims both, and skips the pixel cache so a smoke test never writes one)."""
    if not (data_dir / "masks").is_dir():
        raise DataError(f"{data_dir / 'masks'} not found: --data must be a HAM-layout folder with expert masks")
    split = read_split(Path(args.split))
    train_ids = split["train"][: args.limit] if args.limit else split["train"]
    select_ids = split["calib"][: max(64, args.limit)] if args.limit else split["calib"]
    train_px, train_masks = load_pixels(data_dir, train_ids, size=INPUT_SIZE, use_cache=not args.limit)
    select_px, select_masks = load_pixels(data_dir, select_ids, size=INPUT_SIZE, use_cache=not args.limit)
    assert train_masks is not None and select_masks is not None
    log(f"data {data_dir}: {len(train_ids)} training and {len(select_ids)} selection (calibration) images")
    return SegmenterData(train_px, train_masks, select_px, select_masks)


class SegmenterRun:
    """The network, optimiser, generator and history of one `train-segmenter` run, and its checkpoint."""

    def __init__(self, args: argparse.Namespace, out: Path, data: SegmenterData, log: TrainLog) -> None:
        import torch

        from dermchat.morphology.unet import TinyUNet

        self.args, self.out, self.data, self.log = args, out, data, log
        self.generator = torch.Generator().manual_seed(args.seed)
        torch.manual_seed(args.seed)
        self.net = TinyUNet(base=args.base)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=args.lr, weight_decay=1e-4)
        self.checkpoint = Checkpoint(out / "checkpoint.pt", resumable_args(args))
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"score": -1.0}
        self.first_epoch = 0
        self.steps_per_epoch: int = max(1, math.ceil(len(data.train_px) / args.batch_size))

    def resume(self) -> None:
        state = self.checkpoint.load()
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"])
        self.history, self.best = json.loads(state["history"]), json.loads(state["best"])
        self.first_epoch = int(state["epoch"])
        self.log(f"resumed after epoch {self.first_epoch}")

    def train_epoch(self, epoch: int) -> float:
        """One shuffled pass with the annealed learning rate; returns the mean loss."""
        import torch
        from tqdm import tqdm

        args, steps = self.args, self.steps_per_epoch
        pixels_all, target_all = torch.from_numpy(self.data.train_px), torch.from_numpy(self.data.train_masks)
        order = torch.randperm(len(pixels_all), generator=self.generator)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{args.epochs}", file=sys.stderr, leave=False)
        total = 0.0
        for step in bar:
            for group in self.opt.param_groups:
                group["lr"] = args.lr * lr_factor((epoch * steps + step) / (args.epochs * steps))
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            images = scale_pixels(pixels_all[idx])
            masks = target_all[idx].float()[:, None] / 255.0
            images, masks = augment(images, masks, self.generator)
            loss = loss_fn(self.net(images), masks)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += loss.item()
            bar.set_postfix(loss=f"{total / (step + 1):.3f}")
        return total / steps

    def end_epoch(self, epoch: int, loss: float) -> None:
        """Score the selection lesions, keep the best weights (mean IoU + area agreement), write the checkpoint."""
        figures = agreement(predict(self.net, self.data.select_px), self.data.select_masks > 127)
        self.history.append({"epoch": epoch + 1, "loss": round(loss, 4), **figures})
        self.log(f"epoch {epoch + 1}: loss {loss:.4f}, calibration lesions {figures}")
        score = figures["iou_mean"] + figures["area_within_15pct"]
        if score > self.best["score"]:
            self.best = {"score": score, "epoch": epoch + 1, **figures}
            _save(self.out / MODEL_FILE, self.net, self.args, self.best)
        self.checkpoint.save(
            {
                "net": self.net.state_dict(),
                "opt": self.opt.state_dict(),
                "generator": self.generator.get_state(),
                "history": json.dumps(self.history),
                "best": json.dumps(self.best),
                "epoch": epoch + 1,
            }
        )


def _train(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    import torch

    started = time.time()
    torch.set_num_threads(max(1, args.threads))
    data_dir = Path(args.data) if args.data else default_data_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = TrainLog(out / "training_log.txt")
    log("command: python -m dermchat train-segmenter " + " ".join(list(argv) if argv is not None else sys.argv[1:]))
    data = _load_data(args, data_dir, log)
    run = SegmenterRun(args, out, data, log)
    if args.resume:
        run.resume()
    for epoch in range(run.first_epoch, args.epochs):
        run.end_epoch(epoch, run.train_epoch(epoch))
        if args.max_minutes and time.time() - started > 60 * args.max_minutes:
            log(f"stopping after {args.max_minutes} minutes (resume with --resume --epochs {args.epochs})")
            break
    best = run.best
    summary = {
        "best": best,
        "history": run.history,
        "train_images": len(data.train_px),
        "selection_images": len(data.select_px),
    }
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"best epoch {best.get('epoch')}: {best}; weights in {out / MODEL_FILE}")
    return 0


def _save(path: Path, net: Any, args: argparse.Namespace, best: dict[str, Any]) -> None:
    """Weights in fp16 (half the size, same masks) with the config that rebuilds the network."""
    import torch

    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    torch.save({"config": {"base": args.base}, "weights": weights, "epoch": best["epoch"], "figures": best}, path)
