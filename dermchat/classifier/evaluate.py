"""`python -m dermchat eval --data DIR --json [--plots DIR] [--weights DIR]`: the classifier's figures.

`--predictions-csv FILE` / `--truth-csv FILE` write the ISIC 2018 task 3 files (header
`image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`; probabilities, and one-hot truth), so the official scorer
(`isic-challenge-scoring classification TRUTH.csv PRED.csv`) can be run on any HAM-layout folder.

On a folder that shares images with the training data (the shipped split.json says which), only
the held-out split is evaluated (`val` by default: lesions never trained on; the `calib` split was
used to fit temperature, conformal threshold and the melanoma threshold, so its coverage figures
would be in-sample). A network trained with `--fold-in-val` has seen `val`: `auto` then scores
`calib`, the only lesions it never trained on. On any other folder in the HAM layout (such as
unseen lesions) every image is used.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.classifier import HAM_CLASSES, MALIGNANT_CODES
from dermchat.classifier import metrics as M
from dermchat.classifier.data import (
    SPLIT_NAMES,
    DataError,
    Record,
    default_data_dir,
    load_pixels,
    read_metadata,
    read_split,
    read_trained_on,
)
from dermchat.classifier.patient_info import infos_from_records
from dermchat.cli_output import emit, fail

AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<30", 0, 30),
    ("30-44", 30, 45),
    ("45-59", 45, 60),
    ("60-74", 60, 75),
    ("75+", 75, 200),
)


def age_band(age: float | None) -> str:
    if age is None:
        return "unknown"
    for name, lo, hi in AGE_BANDS:
        if lo <= age < hi:
            return name
    return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dermchat eval", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="HAM-layout folder (default: the shared data dir)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--plots", type=Path, default=None, help="write reliability diagram + confusion matrix PNGs here")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped ham_cnn)")
    p.add_argument(
        "--split",
        choices=["auto", "all", "train", "val", "calib"],
        default="auto",
        help="which images of the folder to use; auto = held-out val split if the folder is the "
        "training data, else all",
    )
    p.add_argument("--coverage", type=float, default=None, help="prediction-set coverage (default: calibrated 0.9)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only N evenly spaced selected images")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the batch pass")
    p.add_argument("--timing-images", type=int, default=50, help="images for the one-thread ms/image figure")
    p.add_argument(
        "--predictions-csv",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the calibrated probabilities in the ISIC 2018 task 3 format (image,MEL,NV,...)",
    )
    p.add_argument(
        "--truth-csv",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the matching one-hot ground truth in the same format",
    )
    p.add_argument(
        "--heatmap-images",
        type=int,
        default=40,
        help="images with expert masks for the 'heat inside the lesion' figure (0 = skip)",
    )
    p.add_argument(
        "--image-only",
        action="store_true",
        help="ignore the age/sex/site columns (by default they inform the model, as in the app "
        "when the user gives them; the image-only figures are reported alongside)",
    )
    return p


def select_records(records: list[Record], split_file: Path, choice: str) -> tuple[list[Record], str]:
    """Pick the images to evaluate and say which (and why) in plain words."""
    if choice == "all":
        return records, "all images in the folder"
    split = read_split(split_file) if split_file.is_file() else None
    trained_on = read_trained_on(split_file) if split is not None else ()
    if choice == "auto":
        if split is None:
            return records, "all images in the folder (no split file next to the weights)"
        held_out = "calib" if "val" in trained_on else "val"
        seen = {i for part in SPLIT_NAMES if part != held_out for i in split[part]}
        if not any(r.image_id in seen for r in records):
            return records, "all images in the folder (no overlap with the training/calibration images)"
        choice = held_out
    if split is None:
        raise DataError(f"--split {choice} needs {split_file}")
    wanted = set(split[choice])
    chosen = [r for r in records if r.image_id in wanted]
    if not chosen:
        present = {r.image_id for r in records}
        others = [part for part in SPLIT_NAMES if part != choice and present & set(split[part])]
        hint = (
            f"; it holds {', '.join(others)} images: pass --split {others[0]} (in-sample if trained on)"
            if others
            else ""
        )
        raise DataError(f"none of the {choice} split images of {split_file} are in this folder{hint}")
    if choice in trained_on:
        return chosen, f"{choice} split (in-sample: this network was trained on it; NOT an estimate of performance)"
    notes = {
        "val": "held-out validation split (lesions never trained on; used only for checkpoint selection)",
        "calib": "calibration split (in-sample for temperature, conformal and melanoma thresholds)",
    }
    if "val" in trained_on:
        notes["calib"] = "calibration split (the only lesions never trained on; in-sample for the thresholds)"
    return chosen, notes[choice]


def subgroup_balanced_accuracy(
    records: list[Record], labels: np.ndarray, preds: np.ndarray, key: str
) -> dict[str, dict[str, float | int]]:
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        g = {"sex": r.sex, "age_band": age_band(r.age), "site": r.localization}[key]
        groups.setdefault(g, []).append(i)
    out: dict[str, dict[str, float | int]] = {}
    for g in sorted(groups):
        idx = np.array(groups[g])
        out[g] = {
            "n": len(idx),
            "balanced_accuracy": round(M.balanced_accuracy(labels[idx], preds[idx], len(HAM_CLASSES)), 4),
            "accuracy": round(M.accuracy(labels[idx], preds[idx]), 4),
            "classes_present": len(np.unique(labels[idx])),
        }
    return out


ISIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("MEL", "mel"),
    ("NV", "nv"),
    ("BCC", "bcc"),
    ("AKIEC", "akiec"),
    ("BKL", "bkl"),
    ("DF", "df"),
    ("VASC", "vasc"),
)
"""ISIC 2018 task 3 column names, in the challenge's order, and the HAM code each one is."""
ISIC_TO_HAM: tuple[int, ...] = tuple(HAM_CLASSES.index(code) for _, code in ISIC_COLUMNS)
"""For each ISIC column in file order, its index in HAM_CLASSES (the writer's and the reader's one mapping)."""


def write_isic_csv(path: Path, records: Sequence[Record], rows: np.ndarray) -> None:
    """`rows` in HAM_CLASSES order -> the challenge's column order; probabilities or one-hot truth."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", *(name for name, _ in ISIC_COLUMNS)])
        for record, row in zip(records, rows):
            writer.writerow([record.image_id, *(f"{float(row[k]):.6f}" for k in ISIC_TO_HAM)])


def heatmap_mask_share(predictor: Any, data_dir: Path, records: list[Record], n: int) -> dict[str, Any]:
    """How much of the Grad-CAM heat falls inside the expert lesion mask, against the mask's share of the frame
    (what a heat map spread evenly would score). Images without a mask file are skipped."""
    from dermchat.classifier.data import load_pixels

    chosen = [r for r in records if (data_dir / "masks" / f"{r.image_id}.png").is_file()]
    chosen = [chosen[round(i * len(chosen) / n)] for i in range(min(n, len(chosen)))]
    if not chosen:
        return {"images": 0}
    frames, masks = load_pixels(
        data_dir, [r.image_id for r in chosen], with_masks=True, use_cache=False, size=predictor.input_size
    )
    assert masks is not None
    inside, area = [], []
    for frame, mask in zip(frames, masks):
        logits, _ = predictor.forward_frames(frame[None])
        cam = predictor.heatmap(frame, int(np.argmax(logits[0])))
        lesion = mask >= 128
        inside.append(float(cam[lesion].sum() / max(cam.sum(), 1e-9)))
        area.append(float(lesion.mean()))
    return {
        "images": len(chosen),
        "heat_inside_mask_mean": round(float(np.mean(inside)), 4),
        "heat_inside_mask_median": round(float(np.median(inside)), 4),
        "mask_area_share_mean": round(float(np.mean(area)), 4),
        "images_with_most_heat_inside": round(float(np.mean(np.array(inside) > 0.5)), 4),
    }


NON_LESION_PICTURES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "brick",
    "grass",
    "gravel",
    "page",
    "text",
    "moon",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "logo",
    "colorwheel",
)
"""scikit-image's bundled sample pictures (no download): a cat, a face, a document, textures, a fundus photo,
histology... none is a dermoscopic lesion, so the model should abstain on every one."""


def non_lesion_abstention(predictor: Any) -> dict[str, Any]:
    """Share of non-lesion pictures the out-of-distribution gate refuses, and which ones got through."""
    from PIL import Image
    from skimage import data as samples

    from dermchat.classifier.data import to_model_frame

    passed, n = [], 0
    for name in NON_LESION_PICTURES:
        loader = getattr(samples, name, None)
        if loader is None:
            continue
        pixels = np.asarray(loader())
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        if pixels.dtype != np.uint8:
            pixels = (np.clip(pixels.astype(np.float64) / max(float(pixels.max()), 1e-9), 0, 1) * 255).astype(np.uint8)
        frame = to_model_frame(Image.fromarray(pixels[..., :3]), predictor.input_size)
        a = predictor.analyse(*predictor.forward_frames(frame[None]))
        n += 1
        if not a["ood"][0]:
            passed.append(name)
    return {"pictures": n, "abstention_rate": round(1 - len(passed) / max(n, 1), 4), "not_refused": passed}


def time_single_thread(
    predictor: Any, data_dir: Path, records: list[Record], n: int, with_details: bool = False
) -> dict[str, Any]:
    """ms per image on one thread through the chat path: JPEG decode, crop/resize, forward (ONNX Runtime or torch),
    calibration (with the patient details when `with_details`), set, OOD gate (no heat map), and
    separately the Grad-CAM heat map."""
    import torch
    from PIL import Image

    from dermchat.classifier.predictor import Predictor

    # The chat plugin's own configuration: ONNX Runtime (where the folder has a matching model.onnx) on one thread.
    predictor = Predictor(predictor.weights_dir, coverage=predictor.requested_coverage, tta=predictor.tta, threads=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        chosen = records[: max(1, n)]
        paths = [data_dir / "images" / f"{r.image_id}.jpg" for r in chosen]
        infos = infos_from_records(chosen) if with_details else [None] * len(chosen)
        with Image.open(paths[0]) as im:
            predictor.predict_image(im.convert("RGB"))  # warm-up
        times = []
        for p, info in zip(paths, infos):
            t0 = time.perf_counter()
            with Image.open(p) as im:
                predictor.predict_image(im.convert("RGB"), patient=info)
            times.append((time.perf_counter() - t0) * 1000)
        heat = []
        for p in paths[:10]:
            with Image.open(p) as im:
                img = im.convert("RGB")
            t0 = time.perf_counter()
            predictor.predict_image(img, heatmap=True)
            heat.append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(previous)
    return {
        "runtime": predictor.runtime,
        "images": len(times),
        "ms_per_image_median": round(float(np.median(times)), 2),
        "ms_per_image_p95": round(float(np.percentile(times, 95)), 2),
        "ms_with_heatmap_median": round(float(np.median(heat)), 2),
    }


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of `eval` for the chosen split, as one JSON-ready dict (sections built by the helpers below)."""
    import torch

    torch.set_num_threads(max(1, args.threads))
    data_dir = Path(args.data) if args.data else default_data_dir()
    predictor = _loaded_predictor(args)
    records, which = select_records(read_metadata(data_dir), predictor.weights_dir / "split.json", args.split)
    if args.limit and args.limit < len(records):  # evenly spaced, so every class (sorted by dx) is sampled
        records = [records[round(i * len(records) / args.limit)] for i in range(args.limit)]
    labels = np.array([r.label for r in records])
    t0 = time.perf_counter()
    frames, _ = load_pixels(data_dir, [r.image_id for r in records], with_masks=False, size=predictor.input_size)
    logits, emb = predictor.forward_frames(frames)
    batch_s = time.perf_counter() - t0
    patients = None if args.image_only or not predictor.uses_patient_info else infos_from_records(records)
    a = predictor.analyse(logits, emb, patients)
    probs = a["probs"]
    preds = probs.argmax(axis=1)
    cm = M.confusion(labels, preds, len(HAM_CLASSES))
    head = headline(a, labels)
    with_details = bool(a["with_patient_info"].any())
    figures: dict[str, Any] = {
        "data_dir": str(data_dir),
        "weights_dir": str(predictor.weights_dir),
        "evaluated_on": which,
        "n_images": len(labels),
        "patient_info": {
            "used": with_details,
            "images_with_details": int(a["with_patient_info"].sum()),
            "weight": predictor.patient_prior.weight if predictor.patient_prior else None,
        },
        "class_counts": {c: int((labels == i).sum()) for i, c in enumerate(HAM_CLASSES)},
        "accuracy": head["accuracy"],
        "balanced_accuracy": head["balanced_accuracy"],
        "macro_f1": nan_to_none(M.macro_f1(labels, preds, len(HAM_CLASSES))),
        "macro_auc_ovr": head["macro_auc_ovr"],
        "melanoma_auc": head["melanoma_auc"],
        "per_class": per_class_figures(cm, probs, labels),
        "melanoma_urgent_threshold": urgent_figures(a, labels, head),
        "calibration": calibration_figures(predictor, a, labels, head),
        "conformal": conformal_figures(predictor, a, labels, head),
        "abstention": abstention_figures(a, labels, preds),
        "subgroups_balanced_accuracy": {
            key: subgroup_balanced_accuracy(records, labels, preds, key) for key in ("sex", "age_band", "site")
        },
        "confusion_matrix": {"classes": list(HAM_CLASSES), "rows_true_cols_pred": cm.tolist()},
        "speed": {
            "batch_pass_s": round(batch_s, 2),
            "batch_threads": int(torch.get_num_threads()),
            **time_single_thread(predictor, data_dir, records, args.timing_images, with_details),
        },
        "reliability_after": M.reliability_bins(probs, labels),
    }
    figures["abstention"]["non_lesion_pictures"] = non_lesion_abstention(predictor)
    if with_details:
        figures["image_only"] = headline(predictor.analyse(logits, emb), labels)
    figures.update(_asked_for_extras(args, predictor, data_dir, records, a, labels, cm))
    return figures


def _loaded_predictor(args: argparse.Namespace) -> Any:
    """The network in ``--weights``, loaded, or a DataError saying why it can't be."""
    from dermchat.classifier.predictor import Predictor

    predictor = Predictor(args.weights, coverage=args.coverage, threads=max(1, args.threads))
    ok, reason = predictor.available()
    if not ok:
        raise DataError(reason)
    predictor.load()
    return predictor


def _asked_for_extras(
    args: argparse.Namespace,
    predictor: Any,
    data_dir: Path,
    records: list[Record],
    a: dict[str, Any],
    labels: np.ndarray,
    cm: np.ndarray,
) -> dict[str, Any]:
    """What only some runs ask for: heat-map shares, the ISIC submission and truth files, the plots."""
    extras: dict[str, Any] = {}
    if args.heatmap_images > 0:
        extras["heatmap"] = heatmap_mask_share(predictor, data_dir, records, args.heatmap_images)
    if args.predictions_csv:
        write_isic_csv(Path(args.predictions_csv), records, a["probs"])
        extras["predictions_csv"] = str(args.predictions_csv)
    if args.truth_csv:
        write_isic_csv(Path(args.truth_csv), records, np.eye(len(HAM_CLASSES))[labels])
        extras["truth_csv"] = str(args.truth_csv)
    if args.plots:
        extras["plots"] = write_plots(Path(args.plots), a["raw_probs"], a["probs"], labels, cm)
    return extras


def mean_where(values: np.ndarray, rows: np.ndarray) -> float | None:
    """Mean of `values` over the boolean `rows`; None (not NaN, which JSON cannot hold) when no row is chosen."""
    return nan_to_none(values[rows].mean() if rows.any() else np.nan)


def per_class_figures(cm: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, Any]]:
    sens, spec, aucs = M.per_class_sensitivity(cm), M.per_class_specificity(cm), M.per_class_auc(probs, labels)
    return {
        c: {
            "n": int((labels == i).sum()),
            "sensitivity": nan_to_none(sens[i]),
            "specificity": nan_to_none(spec[i]),
            "auc": nan_to_none(aucs[i]),
        }
        for i, c in enumerate(HAM_CLASSES)
    }


def urgent_figures(a: dict[str, Any], labels: np.ndarray, head: dict[str, Any]) -> dict[str, Any]:
    """The high-sensitivity melanoma threshold and the urgent tier it feeds: who is sent to a doctor soon."""
    is_mel = labels == HAM_CLASSES.index("mel")
    malignant = malignant_rows(labels)
    return {
        "threshold": round(float(np.median(a["melanoma_threshold"])), 4),
        "sensitivity": head["melanoma_sensitivity"],
        "specificity": mean_where(~a["melanoma_flag"], ~is_mel),
        "urgent_tier_sensitivity_melanoma": mean_where(a["urgent"], is_mel),
        "urgent_tier_sensitivity_malignant": mean_where(a["urgent"], malignant),
        "urgent_tier_rate_benign": mean_where(a["urgent"], ~malignant),
    }


def calibration_figures(predictor: Any, a: dict[str, Any], labels: np.ndarray, head: dict[str, Any]) -> dict[str, Any]:
    """Temperature, and ECE and negative log-likelihood before and after it."""
    raw, probs, rows = a["raw_probs"], a["probs"], np.arange(len(labels))
    return {
        "temperature": round(predictor.temperature, 4),
        "temperature_with_patient_info": (
            round(float(predictor.calibration["with_patient_info"]["temperature"]), 4)
            if a["with_patient_info"].any()
            else None
        ),
        "ece_before": nan_to_none(M.expected_calibration_error(raw, labels)),
        "ece_after": head["ece_after"],
        "nll_before": nan_to_none(-np.log(np.clip(raw[rows, labels], 1e-12, 1)).mean()),
        "nll_after": nan_to_none(-np.log(np.clip(probs[rows, labels], 1e-12, 1)).mean()),
    }


def conformal_figures(predictor: Any, a: dict[str, Any], labels: np.ndarray, head: dict[str, Any]) -> dict[str, Any]:
    """How often the prediction sets hold the true class, and how large they are."""
    sets = a["sets"]
    covered = sets[np.arange(len(labels)), labels]
    return {
        "target_coverage": predictor.coverage,
        "coverage": head["coverage"],
        "mean_set_size": head["mean_set_size"],
        "coverage_non_abstained": mean_where(covered, ~a["ood"]),
        "set_size_histogram": {str(s): int((sets.sum(axis=1) == s).sum()) for s in range(1, len(HAM_CLASSES) + 1)},
    }


def abstention_figures(a: dict[str, Any], labels: np.ndarray, preds: np.ndarray) -> dict[str, Any]:
    """How many held-out lesions the OOD gate turns away (each test alone), and the accuracy on the rest."""
    kept = ~a["ood"]
    return {
        "rate": nan_to_none(a["ood"].mean()),
        "by_energy": nan_to_none(a["ood_energy"].mean()),
        "by_mahalanobis": nan_to_none(a["ood_mahalanobis"].mean()),
        "accuracy_non_abstained": nan_to_none(M.accuracy(labels[kept], preds[kept])),  # NaN (None) when all abstain
    }


def nan_to_none(x: float | None) -> float | None:
    """Rounded for the report; None where a figure is undefined (e.g. AUC of a class with no images)."""
    return None if x is None or np.isnan(x) else round(float(x), 4)


def headline(a: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float | None]:
    """The target figures of one analysis: the main report's, and again for the image-only comparison."""
    preds = a["probs"].argmax(axis=1)
    is_mel = labels == HAM_CLASSES.index("mel")
    benign = ~malignant_rows(labels)
    return {
        "accuracy": nan_to_none(M.accuracy(labels, preds)),
        "balanced_accuracy": nan_to_none(M.balanced_accuracy(labels, preds, len(HAM_CLASSES))),
        "macro_auc_ovr": nan_to_none(M.macro_auc(a["probs"], labels)),
        "melanoma_auc": nan_to_none(M.binary_auc(a["probs"][:, HAM_CLASSES.index("mel")], is_mel)),
        "benign_urgent_rate": nan_to_none(a["urgent"][benign].mean() if benign.any() else np.nan),
        "ece_after": nan_to_none(M.expected_calibration_error(a["probs"], labels)),
        "melanoma_sensitivity": nan_to_none(a["melanoma_flag"][is_mel].mean() if is_mel.any() else np.nan),
        "coverage": nan_to_none(a["sets"][np.arange(len(labels)), labels].mean()),
        "mean_set_size": nan_to_none(a["sets"].sum(axis=1).mean()),
    }


def malignant_rows(labels: np.ndarray) -> np.ndarray:
    return np.isin(labels, [HAM_CLASSES.index(c) for c in sorted(MALIGNANT_CODES)])


def write_plots(out: Path, raw: np.ndarray, probs: np.ndarray, labels: np.ndarray, cm: np.ndarray) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    for name, p in (("before temperature", raw), ("after temperature", probs)):
        bins = M.reliability_bins(p, labels)
        ece = M.expected_calibration_error(p, labels)
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left")
    fig.tight_layout()
    rel = out / "reliability.png"
    fig.savefig(rel, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(HAM_CLASSES)), HAM_CLASSES)
    ax.set_yticks(range(len(HAM_CLASSES)), HAM_CLASSES)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{cm[i, j]}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (colour: row-normalised)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    conf = out / "confusion_matrix.png"
    fig.savefig(conf, dpi=120)
    plt.close(fig)
    return [str(rel), str(conf)]


def print_human(f: dict[str, Any]) -> None:
    print(f"Evaluated {f['n_images']} images from {f['data_dir']} ({f['evaluated_on']})")
    info = f["patient_info"]
    print(
        f"patient details (age/sex/site) {'used for ' + str(info['images_with_details']) + ' images' if info['used'] else 'not used'}"
    )
    print(
        f"accuracy {f['accuracy']}  balanced accuracy {f['balanced_accuracy']}  macro-F1 {f['macro_f1']}  "
        f"macro AUC {f['macro_auc_ovr']}  melanoma AUC {f['melanoma_auc']}"
    )
    for c, v in f["per_class"].items():
        print(f"  {c:6s} n={v['n']:5d} sens {v['sensitivity']} spec {v['specificity']} auc {v['auc']}")
    m = f["melanoma_urgent_threshold"]
    print(
        f"melanoma at urgent threshold {m['threshold']}: sensitivity {m['sensitivity']} specificity {m['specificity']}"
    )
    c = f["calibration"]
    print(f"ECE before {c['ece_before']} after {c['ece_after']} (T={c['temperature']})")
    s = f["conformal"]
    print(f"conformal target {s['target_coverage']}: coverage {s['coverage']} mean set size {s['mean_set_size']}")
    probe = f["abstention"]["non_lesion_pictures"]
    print(
        f"abstention rate {f['abstention']['rate']}; on {probe['pictures']} non-lesion pictures "
        f"{probe['abstention_rate']} (not refused: {', '.join(probe['not_refused']) or 'none'})"
    )
    if f.get("heatmap", {}).get("images"):
        h = f["heatmap"]
        print(
            f"heat map: {h['heat_inside_mask_mean']} of the heat inside the expert mask (mask covers "
            f"{h['mask_area_share_mean']} of the frame; {h['images']} images)"
        )
    for key, groups in f["subgroups_balanced_accuracy"].items():
        print(
            f"balanced accuracy by {key}: "
            + ", ".join(f"{g} {v['balanced_accuracy']} (n={v['n']})" for g, v in groups.items())
        )
    if "image_only" in f:
        print("image only (no patient details): " + ", ".join(f"{k} {v}" for k, v in f["image_only"].items()))
    print(
        f"speed (1 thread): {f['speed']['ms_per_image_median']} ms/image median, "
        f"{f['speed']['ms_with_heatmap_median']} ms with heat map"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        figures = evaluate(args)
    except (DataError, FileNotFoundError) as exc:
        return fail(exc)
    return emit(figures, args.json, print_human)


if __name__ == "__main__":
    raise SystemExit(main())
