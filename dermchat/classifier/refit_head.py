"""``python -m dermchat refit-head``: learn the classifier's last layer again on the fine-tuned network's features.

Why: fine-tuning learns the features and the 1280 -> 7 layer together, under the losses that help the features
(square-root class weights, label smoothing, mixup). Those same losses leave the layer itself poorly placed: on the
held-out lesions a plain, strongly L2-penalised softmax regression on the frozen features of the *training*
lesions ranks the classes better (the "decoupled classifier" finding of Kang et al., ICLR 2020,
https://arxiv.org/abs/1910.09217). How far the rare classes are favoured is then one number, the prior power tau:
logits - tau x log(training class frequency) (tau 0: as trained; 1: every class equally likely a priori).

What it does: decode the weights folder's training and validation lesions (the pixel cache), take the network's
pooled features, standardise them, and fit one softmax regression per ``--l2`` strength. Every (strength, tau)
pair is calibrated as the shipped model is (temperature, 90% sets; fitted on the calibration lesions) and scored on
the validation lesions by the score that picks the epoch in ``train-classifier`` (mean of accuracy, balanced accuracy
and macro AUC). The best pair whose probabilities stay calibrated there (ECE <= 0.03, mean set size <= 1.5: the
targets the shipped model already meets) is folded into the network's own linear layer, standardisation and prior
included, so the chat path, ONNX export, Grad-CAM and the OOD gate see the same network with a new last layer. Then
the folder is calibrated and exported as ``train-classifier`` does; the features are unchanged, so the Mahalanobis
gate is too. The source folder is only read; everything goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.classifier import HAM_CLASSES
from dermchat.classifier.data import DataError, default_data_dir, read_metadata, read_split, read_trained_on

REPORT_FILE = "head_refit.json"
DEFAULT_L2 = (300.0, 1000.0, 3000.0, 10000.0)
DEFAULT_PRIOR_POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)
MAX_ECE = 0.03
MAX_SET_SIZE = 1.5
"""A head whose calibrated validation figures break these is not chosen (issue 17's targets, met before the refit)."""
COPIED = ("split.json", "training_log.txt", "training_summary.json")
"""What the new folder keeps from its source: the split it must be scored on, and how its features were trained."""


def build_parser() -> argparse.ArgumentParser:
    from dermchat.classifier.predictor import default_weights_dir

    p = argparse.ArgumentParser(prog="python -m dermchat refit-head", description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=default_weights_dir(), help="source folder (default: shipped)")
    p.add_argument("--out", type=Path, required=True, help="new weights folder (must not exist or be empty)")
    p.add_argument(
        "--data", type=Path, default=None, help="HAM-layout folder (default: DERMCHAT_DATA_DIR or ../shared)"
    )
    p.add_argument(
        "--l2",
        type=float,
        nargs="+",
        default=list(DEFAULT_L2),
        help="penalty strengths to try: loss = mean cross-entropy + l2 x |W|^2 / (2 x training images) "
        "on standardised features (scikit-learn's C = 1 / l2)",
    )
    p.add_argument(
        "--prior-power",
        type=float,
        nargs="+",
        default=list(DEFAULT_PRIOR_POWERS),
        help="values of tau to try: logits - tau x log(training class frequency)",
    )
    p.add_argument("--threads", type=int, default=2)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        refit(args, list(argv) if argv is not None else sys.argv[1:])
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


@dataclass
class Features:
    """Pooled features and labels of the training, validation and calibration lesions."""

    train: np.ndarray
    train_labels: np.ndarray
    val: np.ndarray
    val_labels: np.ndarray
    calib: np.ndarray
    calib_labels: np.ndarray


@dataclass
class LastLayer:
    """A last layer in the network's own terms: logits = embedding @ weight.T + bias."""

    weight: np.ndarray
    """(classes, features)"""
    bias: np.ndarray

    def logits(self, embedding: np.ndarray) -> np.ndarray:
        return np.asarray(embedding @ self.weight.T + self.bias)


@dataclass
class Head(LastLayer):
    """A last layer fitted here, with the grid point it came from (reported, and saved beside the weights)."""

    l2: float
    prior_power: float


def fit_heads(
    features: Features, l2_values: Sequence[float], prior_powers: Sequence[float]
) -> tuple[Head, list[dict[str, Any]]]:
    """Every (l2, tau) head, calibrated and scored on the validation lesions; returns the chosen one and the table."""
    from dermchat.classifier.softmax_regression import fit_softmax_regression

    if not l2_values or not prior_powers:
        raise DataError("--l2 and --prior-power need at least one value each")
    k = len(HAM_CLASSES)
    mean, std = features.train.mean(axis=0), features.train.std(axis=0) + 1e-6
    counts = np.bincount(features.train_labels, minlength=k)
    log_prior = np.log(np.maximum(counts, 1) / counts.sum())
    standardised = (features.train - mean) / std
    table: list[dict[str, Any]] = []
    heads: list[Head] = []
    for l2 in l2_values:
        fit = fit_softmax_regression(standardised, features.train_labels, k, l2, penalty_rows=len(standardised))
        weight = (fit.coef / std[:, None]).T
        for tau in prior_powers:
            head = Head(weight, fit.intercept - (mean / std) @ fit.coef - tau * log_prior, l2, tau)
            heads.append(head)
            table.append(
                {"l2": l2, "prior_power": tau, "converged": fit.converged, **validation_figures(head, features)}
            )
    eligible = [n for n, row in enumerate(table) if row["calibrated"]] or list(range(len(table)))
    best = max(eligible, key=lambda n: table[n]["score"])
    table[best]["chosen"] = True
    return heads[best], table


def validation_figures(head: LastLayer, features: Features) -> dict[str, Any]:
    """The head calibrated on the calibration lesions as the shipped model is, then scored on the validation ones."""
    from dermchat.classifier.calibrate import DEFAULT_COVERAGE, prediction_sets, probability_calibration, softmax
    from dermchat.classifier.metrics import expected_calibration_error, selection_score, summary

    block, _ = probability_calibration(head.logits(features.calib), features.calib_labels, DEFAULT_COVERAGE, False)
    probs = softmax(head.logits(features.val), block["temperature"])
    figures = summary(probs, features.val_labels)
    ece = expected_calibration_error(probs, features.val_labels)
    set_size = float(prediction_sets(probs, block["conformal"]["threshold"]).sum(axis=1).mean())
    return {
        "score": round(selection_score(figures), 4),
        **{name: round(value, 4) for name, value in figures.items()},
        "ece": round(ece, 4),
        "mean_set_size": round(set_size, 3),
        "calibrated": ece <= MAX_ECE and set_size <= MAX_SET_SIZE,
    }


def refit(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Fit, choose, fold in, save, calibrate and export; returns the report written to head_refit.json."""
    import torch

    from dermchat.classifier.model import LiteNet, load_model, save_model
    from dermchat.classifier.train import MODEL_FILE, SPLIT_FILE, TrainLog, export_for_chat

    source, out = Path(args.weights), Path(args.out)
    data_dir = Path(args.data) if args.data else default_data_dir()
    check_folders(source, out)
    torch.set_num_threads(max(1, args.threads))
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    log = TrainLog(out / "training_log.txt")
    log("command: python -m dermchat refit-head " + " ".join(argv))
    model, extra = load_model(source / MODEL_FILE)
    if not isinstance(model, LiteNet):
        raise DataError(f"{source}: refit-head works on a single EfficientNet-Lite network, not {type(model).__name__}")
    started = time.time()
    split = read_split(source / SPLIT_FILE)
    by_id = {r.image_id: r for r in read_metadata(data_dir)}
    features = decode_and_embed(model, source, data_dir, by_id, split, max(1, args.threads), log)
    head, table = fit_heads(features, args.l2, args.prior_power)
    log_candidates(log, table)
    log(f"chosen on the validation lesions: l2 {head.l2:g}, tau {head.prior_power:g}")
    with torch.no_grad():
        model.net._fc.weight.copy_(torch.from_numpy(head.weight))
        model.net._fc.bias.copy_(torch.from_numpy(head.bias))
    report = {
        "source": str(source),
        "l2": head.l2,
        "prior_power": head.prior_power,
        "train_images": len(features.train),
        "val_images": len(features.val),
        "grid": table,
        "minutes": round((time.time() - started) / 60, 2),
    }
    save_model(model, out / MODEL_FILE, extra={**extra, "head_refit": {k: report[k] for k in ("l2", "prior_power")}})
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1))
    cal = calibrate_from_features(out, by_id, split, features)
    log(
        f"calibrated from the same features: temperature {cal['temperature']:.3f}, "
        f"conformal threshold {cal['conformal']['threshold']:.4f}, melanoma threshold {cal['melanoma']['threshold']:.4f}"
    )
    log(export_for_chat(out))
    log(f"done; weights in {out / MODEL_FILE}")
    log.close()
    return report


def log_candidates(log: Any, table: list[dict[str, Any]]) -> None:
    for row in table:
        log(
            f"l2 {row['l2']:g} tau {row['prior_power']:g}: val acc {row['accuracy']:.4f} "
            f"bal {row['balanced_accuracy']:.4f} auc {row['macro_auc']:.4f} score {row['score']:.4f}, "
            f"calibrated ECE {row['ece']:.4f} sets {row['mean_set_size']:.2f}"
            + ("" if row["calibrated"] else f" (over ECE {MAX_ECE} or set size {MAX_SET_SIZE})")
        )
    if not any(row["calibrated"] for row in table):
        log(f"no head keeps ECE <= {MAX_ECE} and sets <= {MAX_SET_SIZE} on the validation lesions: best score taken")


def check_folders(source: Path, out: Path) -> None:
    """A finished train-classifier folder whose validation lesions it never trained on, and an empty new folder."""
    from dermchat.classifier.train import run_files

    _, split_path = run_files(source, "--weights")
    if "val" in read_trained_on(split_path):
        raise DataError(f"--weights {source} was trained on its validation lesions: they cannot choose the head")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--out {out} exists and is not an empty folder: choose a new one")


def decode_and_embed(
    model: Any, source: Path, data_dir: Path, by_id: dict[str, Any], split: dict[str, list[str]], threads: int, log: Any
) -> Features:
    """Pooled features of the split's three parts. Frames come from the pixel cache shared with calibration and
    `eval` (the split's images in metadata order); the forward pass is the folder's ONNX graph when it matches its
    model.pt (about 5x faster than torch on two cores), else torch."""
    from dermchat.classifier.data import load_pixels
    from dermchat.classifier.model import batched_inference
    from dermchat.classifier.onnx_runtime import open_matching

    wanted = set().union(*split.values())
    missing = wanted - set(by_id)
    if missing:
        raise DataError(f"{len(missing)} images of the split are not in {data_dir} (e.g. {sorted(missing)[0]})")
    ids = [image_id for image_id in by_id if image_id in wanted]
    pixels, _ = load_pixels(data_dir, ids, with_masks=True, size=model.config.input_size)
    row = {image_id: n for n, image_id in enumerate(ids)}
    forward, why_not = open_matching(source, threads=threads)
    log(f"features from {'ONNX Runtime' if forward else f'torch ({why_not})'}")
    embedded: dict[str, np.ndarray] = {}
    for part in ("train", "val", "calib"):
        frames = pixels[[row[i] for i in split[part]]]
        if forward is not None:
            embedded[part] = forward.run(frames)[1]
        else:
            out = batched_inference(model, frames, progress=f"features: {part} images")
            embedded[part] = out["embedding"].numpy().astype(np.float64)
        log(f"features of the {len(frames)} {part} images")
    labels = {part: np.array([by_id[i].label for i in split[part]]) for part in embedded}
    return Features(
        embedded["train"], labels["train"], embedded["val"], labels["val"], embedded["calib"], labels["calib"]
    )


def calibrate_from_features(
    out: Path, by_id: dict[str, Any], split: dict[str, list[str]], features: Features
) -> dict[str, Any]:
    """Calibrate the saved network from the features already computed: only its last layer changed, so its logits
    are that layer (as saved, in float16) applied to them, and no image is run through the network again."""
    from dermchat.classifier.calibrate import ModelOutputs, write_calibration
    from dermchat.classifier.model import load_model
    from dermchat.classifier.train import MODEL_FILE

    saved, _ = load_model(out / MODEL_FILE)
    layer = saved.state_dict()
    head = LastLayer(layer["net._fc.weight"].double().numpy(), layer["net._fc.bias"].double().numpy())
    parts = {
        "train": ModelOutputs(split["train"], head.logits(features.train), features.train, features.train_labels),
        "calib": ModelOutputs(split["calib"], head.logits(features.calib), features.calib, features.calib_labels),
    }
    return write_calibration(out, parts, split, by_id)
