"""``python -m dermchat bench-morphology``: are the ABCD descriptors trustworthy, and what does the check do?

On the validation lesions of the classifier's split (``dermchat/weights/ham_cnn/split.json``, one image per
lesion; never used to set a threshold here, which were set on training-split photos):

* **mask agreement**: descriptors from the estimated lesion mask vs from the HAM10000 expert mask: Spearman
  for asymmetry, border and TDS, and the share of images whose lesion area agrees within 15%;
* **TDS alone**: melanoma vs nevus AUC (expert and estimated masks);
* **consistency check**: how often it fires on benign and malignant lesions with the configured diagnoser's
  predictions (photo only, no age/sex/site), and what it does to melanoma sensitivity (at argmax, and at the
  urgent tier) and to the benign urgent rate;
* **compare**: share of "no clear change" for the same photo turned, resized by 10% and re-lit, and share of
  "changed" for a synthetic 30% growth and for an added dark-brown patch;
* **timing**: ``describe`` with the mask estimated, on the 200x150 photos.

Rerun it after the classifier changes: the consistency figures name the diagnoser and its version.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermchat.cli_output import emit, fail
from dermchat.quality.bench import auc, iou, spearman

SPLIT_FILE = Path(__file__).resolve().parent.parent / "weights" / "ham_cnn" / "split.json"
MALIGNANT_DX = {"mel", "bcc", "akiec"}
AREA_TOLERANCE = 0.15


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _truth(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def validation_lesions(data: Path, split_file: Path = SPLIT_FILE) -> list[tuple[str, str]]:
    """(image id, dx) for the first image of each validation lesion that has a photo and an expert mask."""
    meta = data / "metadata.csv"
    if not meta.exists():
        raise FileNotFoundError(f"{meta} not found: --data must point at a HAM-layout folder")
    if not split_file.exists():
        raise FileNotFoundError(f"{split_file} not found: the classifier's split names the validation lesions")
    val = set(json.loads(split_file.read_text())["val"])
    seen: set[str] = set()
    out = []
    with meta.open(newline="") as fh:
        for row in csv.DictReader(fh):
            image_id, lesion = row["image_id"], row.get("lesion_id") or row["image_id"]
            if image_id not in val or lesion in seen:
                continue
            if (data / "images" / f"{image_id}.jpg").exists() and (data / "masks" / f"{image_id}.png").exists():
                seen.add(lesion)
                out.append((image_id, row["dx"]))
    return sorted(out)


def mask_figures(
    data: Path, lesions: list[tuple[str, str]], outline_method: str = "auto"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Agreement of descriptors from estimated vs expert masks, TDS AUC, and the per-lesion records."""
    from dermchat.morphology import describe
    from dermchat.morphology.outline import lesion_outline

    records: list[dict[str, Any]] = []
    for image_id, dx in lesions:
        rgb = _rgb(data / "images" / f"{image_id}.jpg")
        truth, outline = _truth(data / "masks" / f"{image_id}.png"), lesion_outline(rgb, outline_method)
        records.append(
            {
                "image_id": image_id,
                "dx": dx,
                "expert": describe(rgb, truth),
                "estimated": describe(rgb, outline),
                "iou": iou(truth, outline),
            }
        )
    both = [r for r in records if r["expert"].lesion_found and r["estimated"].lesion_found]

    def rho(key: Callable[[Any], float]) -> float:
        return round(spearman([key(r["expert"]) for r in both], [key(r["estimated"]) for r in both]), 4)

    within = [
        abs(r["estimated"].mask_area_share / max(r["expert"].mask_area_share, 1e-6) - 1) <= AREA_TOLERANCE for r in both
    ]
    figures = {
        "n": len(records),
        "estimated_mask_found": round(len(both) / max(len(records), 1), 4),
        "mask_iou_median": round(float(np.median([r["iou"] for r in records])), 4) if records else None,
        "spearman_asymmetry": rho(lambda m: m.asymmetry),
        "spearman_asymmetry_score": rho(lambda m: m.asymmetry_score),
        "spearman_asymmetry_index": rho(lambda m: m.asymmetry_index),
        "spearman_asymmetry_shape": rho(lambda m: m.asymmetry_shape),
        "spearman_border": rho(lambda m: m.border),
        "spearman_colour_count": rho(lambda m: len(m.colours)),
        "spearman_tds": rho(lambda m: m.tds),
        "area_within_15pct": round(float(np.mean(within)), 4) if within else None,
        "tds_auc_melanoma_vs_nevus": {
            "expert_mask": _tds_auc(records, "expert"),
            "estimated_mask": _tds_auc(records, "estimated"),
            "n_melanoma": sum(r["dx"] == "mel" for r in records),
            "n_nevus": sum(r["dx"] == "nv" for r in records),
        },
    }
    return figures, records


def _tds_auc(records: list[dict[str, Any]], which: str) -> float:
    mel = [r[which].tds for r in records if r["dx"] == "mel"]
    nv = [r[which].tds for r in records if r["dx"] == "nv"]
    return round(auc(mel, nv), 4)


def consistency_figures(data: Path, records: list[dict[str, Any]], diagnoser_id: str) -> dict[str, Any]:
    """Firing rates of the check and its effect on melanoma sensitivity and the benign urgent rate."""
    from dermchat import safety
    from dermchat.morphology.consistency import MIN_TIER, check_consistency, widened
    from dermchat.vocabulary import get_vocabulary

    vocab = get_vocabulary()
    provider, diagnose = _diagnoser(diagnoser_id)
    rows = []
    for r in records:
        with Image.open(data / "images" / f"{r['image_id']}.jpg") as im:
            diagnosis = diagnose(im.convert("RGB"))
        triage = safety.decide_triage(diagnosis, vocab)
        finding = check_consistency(r["estimated"], diagnosis, vocab)
        after = safety.at_least(triage, MIN_TIER, "disagreement") if finding.disagrees else triage
        top = diagnosis.top(1)[0].condition_id if diagnosis.differential else None
        rows.append(
            {
                "dx": r["dx"],
                "fires": finding.disagrees,
                "top_melanoma": top == "melanoma",
                "set_melanoma": "melanoma" in widened(diagnosis, finding).prediction_set,
                "urgent_before": triage.tier == "urgent",
                "urgent_after": after.tier == "urgent",
            }
        )
    mel = [x for x in rows if x["dx"] == "mel"]
    benign = [x for x in rows if x["dx"] not in MALIGNANT_DX]
    malignant = [x for x in rows if x["dx"] in MALIGNANT_DX]

    def share(items: list[dict[str, Any]], test: Callable[[dict[str, Any]], bool]) -> float | None:
        return round(sum(map(test, items)) / len(items), 4) if items else None

    return {
        "diagnoser": provider.id,
        "diagnoser_version": provider.version,
        "weights": _weights_fingerprint(provider),
        "inputs": "photo only (no age, sex or site)",
        "n_benign": len(benign),
        "n_malignant": len(malignant),
        "n_melanoma": len(mel),
        "fires_on_benign": share(benign, lambda x: x["fires"]),
        "fires_on_malignant": share(malignant, lambda x: x["fires"]),
        "fires_on_melanoma": share(mel, lambda x: x["fires"]),
        "melanoma_sensitivity_argmax": {
            "before": share(mel, lambda x: x["top_melanoma"]),
            "after": share(mel, lambda x: x["top_melanoma"] or x["fires"]),
        },
        "melanoma_sensitivity_urgent_tier": {
            "before": share(mel, lambda x: x["urgent_before"]),
            "after": share(mel, lambda x: x["urgent_after"]),
        },
        "benign_urgent_rate": {
            "before": share(benign, lambda x: x["urgent_before"]),
            "after": share(benign, lambda x: x["urgent_after"]),
        },
    }


def _diagnoser(diagnoser_id: str) -> tuple[Any, Callable[[Image.Image], Any]]:
    """The configured diagnoser, called the way a turn calls it (no heat map), on a bare context."""
    import tempfile

    from dermchat.context import TurnContext
    from dermchat.plugin_manager import PluginManager
    from dermchat.results import TurnResult
    from dermchat.settings import load_settings

    registry = PluginManager().collect()
    provider = registry.get("diagnoser", diagnoser_id)
    ok, why = provider.available()
    if not ok:
        raise RuntimeError(f"diagnoser {diagnoser_id!r} is unavailable: {why}")
    settings = load_settings()
    options = dict(settings.provider_options(diagnoser_id))
    if "heatmap" in provider.Options.model_fields:
        options["heatmap"] = False
    provider.configure(options)
    workdir = Path(tempfile.mkdtemp(prefix="dermchat-bench-morphology-"))

    def diagnose(image: Image.Image) -> Any:
        ctx = TurnContext(
            image=image, settings=settings, workdir=workdir, result=TurnResult(turn_id="bench", audience="clinician")
        )
        return provider.diagnose(ctx)  # type: ignore[attr-defined]

    return provider, diagnose


def _weights_fingerprint(provider: Any) -> str | None:
    """First 12 hex digits of the SHA-256 of the diagnoser's weights file, when it has one (which model ran)."""
    folder = getattr(provider, "weights_dir", None)
    folder = folder() if callable(folder) else folder
    if folder is None:
        return None
    files = sorted(Path(folder).glob("*.pt")) + sorted(Path(folder).glob("*.onnx"))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()[:12] if files else None


# -- compare: invariance and change ------------------------------------------------------------------------------
def rotate90(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(rgb))


def rescale(factor: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def apply(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)

    return apply


def relight(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A brighter, warmer lamp: about 15% more light, a little more red and less blue (channel gains only; a
    different tone curve or white balance that is not a gain is not covered)."""
    f = rgb.astype(np.float32) * np.array([1.2, 1.15, 1.08])
    return np.asarray(np.clip(f, 0, 255), dtype=np.uint8)


def grow(rgb: np.ndarray, mask: np.ndarray, area_factor: float = 1.3) -> np.ndarray:
    """The lesion enlarged about its centre so it covers ``area_factor`` times the area; the skin is kept."""
    import cv2

    ys, xs = np.nonzero(mask)
    cx, cy = float(xs.mean()), float(ys.mean())
    k = float(np.sqrt(area_factor))
    warp = np.array([[k, 0, (1 - k) * cx], [0, k, (1 - k) * cy]], dtype=np.float32)
    size = (rgb.shape[1], rgb.shape[0])
    bigger = cv2.warpAffine(rgb, warp, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    big_mask = cv2.warpAffine(mask.astype(np.float32), warp, size, flags=cv2.INTER_LINEAR)
    alpha = cv2.GaussianBlur(big_mask, (0, 0), 1.5)[..., None]
    return np.asarray(np.clip(alpha * bigger + (1 - alpha) * rgb, 0, 255), dtype=np.uint8)


DARK_BROWN_RGB = np.array([95.0, 60.0, 45.0], dtype=np.float32)


def add_dark_brown_patch(rgb: np.ndarray, mask: np.ndarray, share: float = 0.25) -> np.ndarray:
    """A round dark-brown patch covering ``share`` of the lesion, at its most interior point, texture kept."""
    import cv2

    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    cy, cx = np.unravel_index(int(np.argmax(distance)), distance.shape)
    radius = max(2, int(round(np.sqrt(share * mask.sum() / np.pi))))
    patch = np.zeros(mask.shape, np.float32)
    cv2.circle(patch, (int(cx), int(cy)), radius, 1.0, -1)
    patch = cv2.GaussianBlur(patch, (0, 0), 1.0)[..., None] * mask[..., None]
    texture = rgb.astype(np.float32) / max(float(rgb[mask].mean()), 1.0)
    brown = np.clip(DARK_BROWN_RGB * (0.85 + 0.15 * texture), 0, 255)
    return np.asarray(np.clip(patch * brown + (1 - patch) * rgb, 0, 255), dtype=np.uint8)


INVARIANT: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "rotated_90": rotate90,
    "rescaled_0.9": rescale(0.9),
    "rescaled_1.1": rescale(1.1),
    "relit": relight,
}
CHANGED: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "grown_30pct": grow,
    "dark_brown_patch": add_dark_brown_patch,
}


def compare_figures(data: Path, image_ids: list[str], outline_method: str = "auto") -> dict[str, Any]:
    """Share of "no clear change" per invariance and of "changed" per synthetic change."""
    from dermchat.morphology import describe
    from dermchat.morphology.compare import compare_descriptors
    from dermchat.morphology.outline import lesion_outline

    outcome: dict[str, list[bool]] = {name: [] for name in [*INVARIANT, *CHANGED]}
    used = 0
    for image_id in image_ids:
        rgb = _rgb(data / "images" / f"{image_id}.jpg")
        mask = lesion_outline(rgb, outline_method)
        if mask.sum() < 50:
            continue
        used += 1
        before = describe(rgb, mask)
        for name, transform in {**INVARIANT, **CHANGED}.items():
            after = describe(transform(rgb, mask), outline=outline_method)
            changed = compare_descriptors(before, after).changed
            outcome[name].append(changed if name in CHANGED else not changed)
    return {
        "n": used,
        "no_clear_change": {name: round(float(np.mean(outcome[name])), 4) for name in INVARIANT},
        "says_changed": {name: round(float(np.mean(outcome[name])), 4) for name in CHANGED},
    }


def describe_timing(paths: list[Path], repeats: int = 5, outline_method: str = "auto") -> dict[str, Any]:
    """ms per ``describe`` with the mask estimated (median over photos of the best of ``repeats``)."""
    from dermchat.morphology import describe

    per_image = []
    for path in paths:
        with Image.open(path) as im:
            image = im.convert("RGB")
        describe(image, outline=outline_method)  # warm imports and caches
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            describe(image, outline=outline_method)
            best = min(best, time.perf_counter() - t0)
        per_image.append(best * 1000)
    return {
        "describe_ms_median": round(statistics.median(per_image), 1),
        "describe_ms_max": round(max(per_image), 1),
        "n": len(per_image),
        "size": "x".join(map(str, Image.open(paths[0]).size)) if paths else None,
    }


def run(
    data: Path, limit: int | None, compare_n: int, diagnoser: str | None, progress: bool, outline: str = "auto"
) -> dict[str, Any]:
    lesions = validation_lesions(data)[: limit or None]
    t0 = time.perf_counter()
    figures, records = mask_figures(data, lesions, outline)
    out: dict[str, Any] = {
        "data": str(data),
        "split": "validation lesions of dermchat/weights/ham_cnn/split.json",
        "outline": _outline_name(outline),
        "mask_agreement": figures,
    }
    if progress:
        print(f"descriptors: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if diagnoser:
        out["consistency_check"] = consistency_figures(data, records, diagnoser)
        if progress:
            print(f"consistency: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    out["compare"] = compare_figures(data, [image_id for image_id, _ in lesions[:compare_n]], outline)
    out["timing"] = describe_timing([data / "images" / f"{i}.jpg" for i, _ in lesions[:20]], outline_method=outline)
    return out


def _outline_name(method: str) -> str:
    """Which outline ``method`` resolves to here (``auto`` depends on whether the segmenter's weights load)."""
    from dermchat.morphology.segmenter import default_segmenter

    if method == "classical" or (method == "auto" and default_segmenter() is None):
        return "classical (colour-refined darkness threshold)"
    return "learned (U-Net, dermchat/weights/lesion_unet)"


def _print_human(figures: dict[str, Any]) -> None:
    for section, values in figures.items():
        print(f"{section}: {json.dumps(values, default=str)}")


def main(argv: list[str] | None = None) -> int:
    from dermchat.morphology.outline import OUTLINE_METHODS
    from dermchat.paths import default_data_dir

    parser = argparse.ArgumentParser(prog="python -m dermchat bench-morphology", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="HAM-layout folder with masks/ (default: DERMCHAT_DATA_DIR or ../shared)")
    parser.add_argument("--limit", type=int, help="at most this many validation lesions (default: all)")
    parser.add_argument("--compare-n", type=int, default=100, help="lesions used for the compare tests")
    parser.add_argument("--diagnoser", default="ham-cnn", help="diagnoser for the consistency figures ('' to skip)")
    parser.add_argument(
        "--outline",
        choices=OUTLINE_METHODS,
        default="auto",
        help="lesion outline to measure (default: learned if present)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    data = Path(args.data) if args.data else default_data_dir()
    if not (data / "masks").is_dir():
        return fail(f"{data / 'masks'} not found: --data must be a HAM-layout folder with expert masks")
    try:
        figures = run(data, args.limit, args.compare_n, args.diagnoser or None, not args.json, args.outline)
    except (FileNotFoundError, RuntimeError, KeyError) as exc:
        return fail(exc)
    return emit(figures, args.json, _print_human)
