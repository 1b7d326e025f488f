"""The epoch loop of `python -m dermchat train-classifier`: steps, the weight average, validation, checkpoints.

Why a module of its own: `dermchat.classifier.train` decides *what* is trained (data, lesion split, network,
recipe) and what happens afterwards (summary, calibration, ONNX export); this module only runs the schedule. One
step is augmentation, optional mixup and reduced resolution, a forward pass under optional bfloat16 autocast, the
class loss (weighted, label-smoothed, optionally distilled) plus the auxiliary lesion-mask loss, and the EMA update.
After each epoch the EMA is validated, the best one saved and the checkpoint that `--resume` reads is written.

Random draws come in a fixed order, batch by batch: augmentation, then the mixup coefficient, then the mixup
partner. The checkpoint holds every generator, so a resumed run repeats the run it continues exactly.

Imported inside the training command only (it imports torch at the top).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from dermchat.classifier import metrics
from dermchat.classifier.augment import AugmentConfig, augment_batch
from dermchat.classifier.model import batched_inference, save_model, uint8_to_input
from dermchat.classifier.train import lr_factor

if TYPE_CHECKING:
    import argparse

    from dermchat.classifier.train import Checkpoint, TrainLog

LABEL_SMOOTHING = 0.05
MASK_LOSS_WEIGHT = 0.3
"""The auxiliary lesion-mask loss's share of the step's loss: enough to point the network at the lesion, small
enough that the class loss leads."""
LOW_RES_SCALE = 0.75
"""`--low-res-until`: the early part of the schedule runs at this fraction of the input size."""


@dataclass
class TrainingData:
    """The decoded frames and masks of every image, their labels, and which rows train and which validate."""

    pixels: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    val_name: str
    """'val', or 'val (in-sample)' under `--fold-in-val`, so no log line passes for an honest estimate."""


@dataclass
class Recipe:
    """What the optimiser and the loss need beyond the arguments: chosen per backbone or by the warm start."""

    lr_peak: float
    batch_size: int
    class_weights: Any
    """A float tensor on the training device, one weight per class."""
    teacher_probs: Any = None
    """Softened teacher probabilities by image row (on the device), or None without `--distill-from`."""


@dataclass
class LoopState:
    """Where the schedule stands: what a checkpoint saves besides weights and random generators."""

    step: int = 0
    first_epoch: int = 1
    elapsed_before: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -1.0
    best_epoch: int = -1
    best_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """How the loop ended."""

    stop_reason: str
    paused: bool
    train_s: float


class FrameSource:
    """Training batches (frames NCHW float in [0, 1], masks N1HW float) from the decoded uint8 arrays. On a GPU both
    arrays are copied to the card once (about 2 GB at 320x240), so a step moves no pixels over the bus; on the CPU
    batches are sliced from the arrays as they are."""

    def __init__(self, pixels: np.ndarray, masks: np.ndarray, device: Any) -> None:
        self.device = device
        self.on_gpu = device.type == "cuda"
        self.pixels: Any
        self.masks: Any
        if self.on_gpu:
            self.pixels = torch.from_numpy(np.array(pixels)).to(device)
            self.masks = torch.from_numpy(np.array(masks)).to(device)
        else:
            self.pixels, self.masks = pixels, masks

    def batch(self, rows: np.ndarray) -> tuple[Any, Any]:
        index = torch.as_tensor(rows, device=self.device) if self.on_gpu else rows
        masks = torch.as_tensor(self.masks[index])
        return uint8_to_input(self.pixels[index]), masks.unsqueeze(1).float().div_(255.0)


def update_ema(ema: Any, model: Any, decay: float) -> None:
    """ema = decay x ema + (1 - decay) x model for the weights (one fused call per list, not one kernel pair per
    tensor: on a GPU the per-tensor loop cost as much as the step); BatchNorm statistics are copied."""
    with torch.no_grad():
        ema_params = list(ema.parameters())
        torch._foreach_mul_(ema_params, decay)
        torch._foreach_add_(ema_params, [p.detach() for p in model.parameters()], alpha=1 - decay)
        for be, bm in zip(ema.buffers(), model.buffers()):
            be.copy_(bm)


def adamw(model: Any, lr: float, weight_decay: float) -> Any:
    """AdamW with weight decay on the weight matrices and kernels only (not on biases or normalisation scales)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )


def frozen_copy(model: Any) -> Any:
    """The EMA network: a copy in eval mode that no gradient reaches."""
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


class EpochLoop:
    """Runs the schedule for one `train-classifier` invocation; `run()` returns how it ended."""

    def __init__(
        self,
        args: argparse.Namespace,
        model: Any,
        data: TrainingData,
        recipe: Recipe,
        device: Any,
        bf16: bool,
        model_path: Path,
        checkpoint: Checkpoint,
        log: TrainLog,
        augment: dict[str, Any],
    ) -> None:
        self.args, self.model, self.data, self.recipe = args, model, data, recipe
        self.device, self.bf16, self.model_path, self.checkpoint, self.log = device, bf16, model_path, checkpoint, log
        self.ema = frozen_copy(model)
        self.opt = adamw(model, recipe.lr_peak, args.weight_decay)
        self.aug_cfg = AugmentConfig(**augment)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.rng = np.random.default_rng(args.seed)
        steps = max(1, math.ceil(len(data.train_rows) / recipe.batch_size))
        self.steps_per_epoch = min(steps, args.max_batches) if args.max_batches else steps
        self.total_steps = self.steps_per_epoch * args.epochs
        self.budget_s: float | None = args.max_minutes * 60 if args.max_minutes else None
        self.state = LoopState()
        self.loop_start = time.time()

    # -- resuming and checkpoints ---------------------------------------------------------------------------------
    def resume(self) -> None:
        """Load the interrupted run's weights, optimiser, generators and schedule position from its checkpoint."""
        saved = self.checkpoint.load()
        self.model.load_state_dict(saved["model"])
        self.ema.load_state_dict(saved["ema"])
        self.opt.load_state_dict(saved["optimizer"])
        self.gen.set_state(saved["torch_generator"])
        torch.set_rng_state(saved["torch_rng"])
        self.rng.bit_generator.state = saved["numpy_rng"]
        self.state = LoopState(
            step=saved["step"],
            first_epoch=saved["epoch"] + 1,
            elapsed_before=saved["elapsed_s"],
            history=saved["history"],
            best_score=saved["best_score"],
            best_epoch=saved["best_epoch"],
            best_metrics=saved["best_metrics"],
        )
        self.log(
            f"resumed after epoch {saved['epoch']} (step {self.state.step}, "
            f"{self.state.elapsed_before / 60:.1f} min of training so far)"
        )

    def save_checkpoint(self, epoch: int) -> None:
        s = self.state
        self.checkpoint.save(
            {
                "epoch": epoch,
                "step": s.step,
                "elapsed_s": time.time() - self.loop_start,
                "history": s.history,
                "best_score": s.best_score,
                "best_epoch": s.best_epoch,
                "best_metrics": s.best_metrics,
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": self.opt.state_dict(),
                "torch_generator": self.gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": self.rng.bit_generator.state,
            }
        )

    # -- the schedule ---------------------------------------------------------------------------------------------
    def progress(self) -> float:
        """Share of the schedule done: steps done over steps planned, or time used over `--max-minutes` if larger,
        so a run cut short by the clock still anneals."""
        p: float = self.state.step / self.total_steps
        if self.budget_s:
            p = max(p, (time.time() - self.loop_start) / self.budget_s)
        return min(p, 1.0)

    def out_of_time(self) -> bool:
        return self.budget_s is not None and time.time() - self.loop_start > self.budget_s

    def run(self) -> Outcome:
        self.loop_start = time.time() - self.state.elapsed_before
        self.staged = FrameSource(self.data.pixels, self.data.masks, self.device)
        stop_reason, paused = "max epochs reached", False
        for epoch in range(self.state.first_epoch, self.args.epochs + 1):
            train_loss, lr = self.train_epoch(epoch)
            elapsed = self.end_epoch(epoch, train_loss, lr)
            reason = self.stop_reason(epoch, elapsed)
            if reason is not None:
                stop_reason, paused = reason
                break
        return Outcome(stop_reason, paused, time.time() - self.loop_start)

    def stop_reason(self, epoch: int, elapsed: float) -> tuple[str, bool] | None:
        """Why the loop ends after `epoch` (and whether it is a pause), or None to go on."""
        args = self.args
        if self.budget_s and elapsed > self.budget_s:
            return f"wall-clock cap of {args.max_minutes} min reached", False
        if args.stop_after and epoch >= args.stop_after and epoch < args.epochs:
            return f"paused after epoch {epoch} (--stop-after); continue with --resume", True
        if self.progress() >= 1.0:
            return "schedule finished", False
        if epoch - self.state.best_epoch >= args.patience:
            return f"early stopping (no better val score for {args.patience} epochs)", False
        return None

    # -- one epoch ------------------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the shuffled training rows: the mean class loss and the last learning rate."""
        self.model.train()
        order = self.rng.permutation(self.data.train_rows)
        size = self.recipe.batch_size
        running, seen = torch.zeros((), device=self.device), 0
        lr = self.recipe.lr_peak * lr_factor(self.progress())
        bar = tqdm(
            range(self.steps_per_epoch),
            desc=f"epoch {epoch}/{self.args.epochs}",
            mininterval=10,
            file=sys.stderr,
            leave=False,
        )
        for b in bar:
            batch = order[b * size : (b + 1) * size]
            if len(batch) < 2:
                continue
            lr = self.recipe.lr_peak * lr_factor(self.progress())
            for group in self.opt.param_groups:
                group["lr"] = lr
            running += self.step(batch) * len(batch)  # summed on the device: no GPU sync per step
            seen += len(batch)
            if b % 20 == 0:
                bar.set_postfix(loss=f"{float(running) / max(seen, 1):.3f}", lr=f"{lr:.2e}", refresh=False)
            if self.out_of_time():
                break
        bar.close()
        return float(running) / max(seen, 1), lr

    def step(self, batch: np.ndarray) -> Any:
        """One optimiser step on the image rows `batch`; returns the (detached) class loss."""
        x, m = self.staged.batch(batch)
        y = torch.as_tensor(self.data.labels[batch], device=self.device)
        x, m = augment_batch(x, m, self.aug_cfg, self.gen)
        mix, partner = 1.0, None
        if self.args.mixup > 0:
            mix = float(self.rng.beta(self.args.mixup, self.args.mixup))
            partner = torch.randperm(len(batch), generator=self.gen).to(self.device)
            x = mix * x + (1 - mix) * x[partner]
            m = mix * m + (1 - mix) * m[partner]
        if self.progress() < self.args.low_res_until:
            x = F.interpolate(x, scale_factor=LOW_RES_SCALE, mode="bilinear", antialias=True, align_corners=False)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            outp = self.model.forward_all(x)
        outp = {k: v.float() for k, v in outp.items()}
        cls_loss = self.class_loss(outp["logits"], y, batch, mix, partner)
        target = F.adaptive_avg_pool2d(m, outp["mask_logits"].shape[-2:])
        seg_loss = F.binary_cross_entropy_with_logits(outp["mask_logits"], target)
        loss = cls_loss + MASK_LOSS_WEIGHT * seg_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.state.step += 1
        step = self.state.step
        update_ema(self.ema, self.model, min(0.998, (1 + step) / (10 + step)))
        return cls_loss.detach()

    def class_loss(self, logits: Any, y: Any, batch: np.ndarray, mix: float, partner: Any) -> Any:
        """Weighted, label-smoothed cross-entropy, mixed like the inputs; blended with the teacher's soft targets
        under `--distill-from`."""
        weight = self.recipe.class_weights
        loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=LABEL_SMOOTHING)
        if partner is not None:
            loss = mix * loss + (1 - mix) * F.cross_entropy(
                logits, y[partner], weight=weight, label_smoothing=LABEL_SMOOTHING
            )
        if self.recipe.teacher_probs is None:
            return loss
        from dermchat.classifier.distill import distillation_loss

        soft_target, sample_w = self.recipe.teacher_probs[batch], weight[y]
        if partner is not None:
            soft_target = mix * soft_target + (1 - mix) * soft_target[partner]
            sample_w = mix * sample_w + (1 - mix) * sample_w[partner]
        share = self.args.distill_weight
        return (1 - share) * loss + share * distillation_loss(
            logits, soft_target, self.args.distill_temperature, sample_w
        )

    def end_epoch(self, epoch: int, train_loss: float, lr: float) -> float:
        """Validate the EMA, keep it if best, log the epoch and write the checkpoint; returns the loop's elapsed s."""
        val, score = self.validate()
        elapsed = time.time() - self.loop_start
        s = self.state
        s.history.append(
            {"epoch": epoch, "train_loss": train_loss, "lr": lr, "elapsed_s": round(elapsed, 1), "score": score, **val}
        )
        improved = score > s.best_score or self.args.fold_in_val  # in-sample figures choose nothing
        if improved:
            s.best_score, s.best_epoch, s.best_metrics = score, epoch, val
            save_model(self.ema, self.model_path, extra={"epoch": epoch, "val": val, "seed": self.args.seed})
        self.log(
            f"epoch {epoch}: train loss {train_loss:.4f}, lr {lr:.2e}, {self.data.val_name} acc {val['accuracy']:.4f} "
            f"bal {val['balanced_accuracy']:.4f} f1 {val['macro_f1']:.4f} auc {val['macro_auc']:.4f} "
            f"nll {val['nll']:.4f} score {score:.4f}{' *best*' if improved else ''} ({elapsed / 60:.1f} min)"
        )
        self.save_checkpoint(epoch)
        return elapsed

    def validate(self) -> tuple[dict[str, Any], float]:
        """The EMA's figures on the validation rows and the selection score (mean of accuracy, balanced accuracy
        and macro AUC). bfloat16 here too: it only chooses the epoch, and halves the time."""
        rows = self.data.val_rows
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out_v = batched_inference(self.ema, self.data.pixels[rows])
        labels = self.data.labels[rows]
        val = metrics.summary(torch.softmax(out_v["logits"], dim=1).numpy(), labels)
        val["nll"] = float(F.cross_entropy(out_v["logits"], torch.as_tensor(labels)))
        return val, metrics.selection_score(val)
