"""``python -m dermchat bench-quality``: how well the quality check sees real defects, and what it costs.

For each image of a HAM-layout folder (``metadata.csv`` + ``images/`` [+ ``masks/``]) every distortion of
:mod:`dermchat.quality.distortions` is applied at each severity; the overall score and BRISQUE alone are
compared on the same images:

* detection AUC, clean vs the moderate severity (1.0 = every distorted image scores below every clean one),
  for the overall score and for the expected reason's own score;
* Spearman correlation of score vs severity (clean = 0), per image and averaged, and the share of images whose
  score never rises with severity;
* top-reason accuracy: the reason with the lowest score is the one the distortion should cause;
* clean-image false-reject rate, ms per image at 200x150 and 4000x3000 and the ratio to JPEG decode time;
* IoU of the lesion estimate vs the expert masks, with a naive Otsu-on-a* baseline for reference.

Nothing here is timed inside tests; the figures are printed (``--json`` for machines).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

TARGET_AUC = 0.95
TARGET_REASON = 0.90
TARGET_IOU = 0.75


def auc(positive: list[float], negative: list[float]) -> float:
    """P(a positive scores higher than a negative), ties counting half (Mann-Whitney U / n1 n2)."""
    if not positive or not negative:
        return float("nan")
    pos = np.asarray(positive, dtype=float)
    neg = np.asarray(negative, dtype=float)
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def naive_otsu_a_star(rgb: np.ndarray) -> np.ndarray:
    """The baseline from the issue: Otsu on CIELAB a*, no clean-up."""
    import cv2
    from skimage.filters import threshold_otsu

    a = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[..., 1]
    mask: np.ndarray = a > threshold_otsu(a)
    return mask


def load_image_ids(data: Path, limit: int, seed: int) -> list[str]:
    """A deterministic random subset of image ids (one image per lesion, so near-duplicates do not count twice)."""
    meta = data / "metadata.csv"
    if not meta.exists():
        raise FileNotFoundError(f"{meta} not found: --data must point at a HAM-layout folder")
    by_lesion: dict[str, str] = {}
    with meta.open(newline="") as fh:
        for row in csv.DictReader(fh):
            by_lesion.setdefault(row.get("lesion_id") or row["image_id"], row["image_id"])
    ids = sorted(by_lesion.values())
    rng = np.random.default_rng(seed)
    ids = [ids[i] for i in rng.permutation(len(ids))]
    ids = [i for i in ids if (data / "images" / f"{i}.jpg").exists()]
    return ids[:limit]


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class Outcome(NamedTuple):
    """What the quality check said about one image."""

    score: float
    brisque: float | None
    worst: str | None
    """Id of the reason with the lowest score."""
    acceptable: bool
    is_skin: bool
    per_reason: dict[str, float]


def _all_known(values: list[float | None]) -> list[float] | None:
    """``values`` when every one is known; None when any is missing (BRISQUE is optional)."""
    known = [v for v in values if v is not None]
    return known if len(known) == len(values) else None


def _evaluate(rgb: np.ndarray, threshold: float) -> Outcome:
    """The quality check's verdict on one array."""
    from dermchat.quality.assess import assess_array

    report = assess_array(rgb, threshold=threshold)
    worst = min(report.reasons, key=lambda r: r.score) if report.reasons else None
    per_reason = {r.id: r.score for r in report.reasons}
    return Outcome(
        report.score, report.brisque, worst.id if worst else None, report.acceptable, report.is_skin, per_reason
    )


def distortion_figures(
    images: list[np.ndarray], threshold: float, progress: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-distortion figures, and the clean-image figures they are compared against."""
    from dermchat.quality.distortions import DISTORTIONS

    clean = [_evaluate(rgb, threshold) for rgb in images]
    figures: dict[str, Any] = {}
    for name, dist in DISTORTIONS.items():
        t0 = time.perf_counter()
        per_level = [
            [_evaluate(dist.apply(rgb, level, k), threshold) for k, rgb in enumerate(images)]
            for level in dist.severities
        ]
        figures[name] = f = _one_distortion(dist, clean, per_level)
        if progress:
            print(
                f"  {name:<17} AUC {f['auc_plugin']:.3f} (BRISQUE {f['auc_brisque']}) rho {f['spearman_plugin']:.3f} "
                f"(BRISQUE {f['spearman_brisque']}) reason {f['top_reason_accuracy']:.2f}  "
                f"[{time.perf_counter() - t0:.0f} s]",
                file=sys.stderr,
                flush=True,
            )
    return figures, _clean_figures(clean)


def _clean_figures(clean: list[Outcome]) -> dict[str, Any]:
    """How the undistorted photos fare: score spread, and how many are wrongly rejected and why."""
    scores = [c.score for c in clean]
    brisque = _all_known([c.brisque for c in clean])
    rejected = [c for c in clean if not c.acceptable]
    return {
        "n": len(clean),
        "score_median": round(statistics.median(scores), 1),
        "score_p10": round(float(np.percentile(scores, 10)), 1),
        "false_reject_rate": round(len(rejected) / len(clean), 4),
        "not_skin_rate": round(sum(1 for c in clean if not c.is_skin) / len(clean), 4),
        "false_reject_reasons": _counts(["not_skin" if not c.is_skin else c.worst for c in rejected]),
        "brisque_median": None if brisque is None else round(statistics.median(brisque), 1),
    }


def _one_distortion(dist: Any, clean: list[Outcome], per_level: list[list[Outcome]]) -> dict[str, Any]:
    """One distortion's figures: detection at the moderate level (overall score, BRISQUE, the expected reason),
    rank correlation with severity, monotonicity and which reason is named."""
    n = len(clean)
    clean_scores = [c.score for c in clean]
    clean_brisque = _all_known([c.brisque for c in clean])
    moderate = per_level[dist.moderate_index]
    moderate_brisque = _all_known([m.brisque for m in moderate])
    rho_plugin, rho_brisque, monotone = [], [], 0
    severity = list(range(len(dist.severities) + 1))
    for k in range(n):
        scores = [clean[k].score] + [lvl[k].score for lvl in per_level]
        rho_plugin.append(spearman(severity, [-s for s in scores]))
        monotone += all(b <= a + 1e-9 for a, b in itertools.pairwise(scores))
        bq = _all_known([clean[k].brisque] + [lvl[k].brisque for lvl in per_level])
        if bq is not None:
            rho_brisque.append(spearman(severity, bq))
    expected = dist.expected_reason
    return {
        "severities": list(dist.severities),
        "unit": dist.unit,
        "moderate": dist.moderate,
        "expected_reason": expected,
        "auc_plugin": round(auc(clean_scores, [m.score for m in moderate]), 4),
        "auc_brisque": round(auc([-b for b in clean_brisque], [-m for m in moderate_brisque]), 4)
        if clean_brisque is not None and moderate_brisque is not None
        else None,
        # the expected reason's own score: what the detector sees, without other reasons' false alarms
        "auc_expected_reason": round(
            auc(
                [c.per_reason.get(expected, 100.0) for c in clean],
                [m.per_reason.get(expected, 100.0) for m in moderate],
            ),
            4,
        ),
        "spearman_plugin": round(float(np.nanmean(rho_plugin)), 4),
        "spearman_brisque": round(float(np.nanmean(rho_brisque)), 4) if rho_brisque else None,
        "monotone_share": round(monotone / n, 4),
        "top_reason_accuracy": round(sum(1 for m in moderate if m.worst == expected) / n, 4),
        "top_reasons_named": _counts([m.worst for m in moderate]),
        "rejected_share_moderate": round(sum(1 for m in moderate if not m.acceptable) / n, 4),
        "score_median_by_severity": [round(statistics.median(clean_scores), 1)]
        + [round(statistics.median([x.score for x in lvl]), 1) for lvl in per_level],
    }


def _counts(values: list[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def segmentation_figures(data: Path, ids: list[str]) -> dict[str, Any] | None:
    """IoU of ``lesion_mask`` vs the expert masks (and of the naive baseline), when ``masks/`` exists."""
    from dermchat.quality.segmentation import lesion_mask

    mask_dir = data / "masks"
    if not mask_dir.is_dir():
        return None
    ious, base, small = [], [], []
    for image_id in ids:
        mpath = mask_dir / f"{image_id}.png"
        if not mpath.exists():
            continue
        rgb = _rgb(data / "images" / f"{image_id}.jpg")
        with Image.open(mpath) as im:
            truth = np.asarray(im.convert("L")) > 127
        value = iou(lesion_mask(rgb), truth)
        ious.append(value)
        base.append(iou(naive_otsu_a_star(rgb), truth))
        if truth.mean() < 0.1:
            small.append(value)
    if not ious:
        return None
    return {
        "n": len(ious),
        "iou_mean": round(float(np.mean(ious)), 4),
        "iou_median": round(float(np.median(ious)), 4),
        "share_iou_below_0_5": round(float(np.mean(np.array(ious) < 0.5)), 4),
        "iou_mean_small_lesions": round(float(np.mean(small)), 4) if small else None,
        "n_small_lesions": len(small),
        "baseline_naive_otsu_a_star_iou_mean": round(float(np.mean(base)), 4),
    }


def timing_figures(sample: Path, repeats: int = 5) -> dict[str, Any]:
    """ms per image at 200x150 and on a 4000x3000 JPEG, and the ratio to decoding that JPEG.

    The 4000x3000 JPEG is the sample photo enlarged (the only real pixels available) and saved at quality 90;
    the check is timed the way the plugin runs it (on the decoded image), and also straight from the file with
    the JPEG draft decode.
    """
    from dermchat.quality.assess import assess_array, assess_image
    from dermchat.quality.imageprep import open_for_quality

    def best_ms(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return float(statistics.median(times))

    with Image.open(sample) as im:
        small = im.convert("RGB")
    if small.size != (200, 150):
        small = small.resize((200, 150), Image.Resampling.BOX)
    assess_image(small)  # warm-up: lazy imports, BRISQUE weights
    small_ms = best_ms(lambda: assess_image(small))
    small_no_brisque_ms = best_ms(lambda: assess_image(small, use_brisque=False))
    with tempfile.TemporaryDirectory() as tmp:
        big_path = Path(tmp) / "big.jpg"
        small.resize((4000, 3000), Image.Resampling.BICUBIC).save(big_path, quality=90)

        def decode() -> Image.Image:
            with Image.open(big_path) as im:
                return im.convert("RGB")

        decode_ms = best_ms(decode)
        decoded = decode()
        big_ms = best_ms(lambda: assess_image(decoded))

        def from_file() -> None:
            arr, full = open_for_quality(big_path)
            assess_array(arr, full)

        file_ms = best_ms(from_file)
    return {
        "ms_per_image_200x150": round(small_ms, 1),
        "ms_per_image_200x150_without_brisque": round(small_no_brisque_ms, 1),
        "ms_per_image_4000x3000_decoded": round(big_ms, 1),
        "jpeg_decode_ms_4000x3000": round(decode_ms, 1),
        "ratio_check_to_decode_4000x3000": round(big_ms / decode_ms, 3),
        "ms_per_file_4000x3000_with_draft_decode": round(file_ms, 1),
        "ratio_file_check_to_full_decode": round(file_ms / decode_ms, 3),
        "repeats": repeats,
    }


def run(data: Path, limit: int, seed: int, threshold: float, progress: bool) -> dict[str, Any]:
    ids = load_image_ids(data, limit, seed)
    if not ids:
        raise FileNotFoundError(f"no images found under {data / 'images'}")
    images = [_rgb(data / "images" / f"{i}.jpg") for i in ids]
    t0 = time.perf_counter()
    if progress:
        print(f"bench-quality: {len(ids)} images from {data}", file=sys.stderr, flush=True)
    timing = timing_figures(data / "images" / f"{ids[0]}.jpg")
    segmentation = segmentation_figures(data, ids)
    if progress and segmentation:
        print(f"  segmentation IoU {segmentation['iou_mean']:.3f}", file=sys.stderr, flush=True)
    distortions, clean = distortion_figures(images, threshold, progress)
    held = distortions
    targets = {
        "auc_ge_0_95_every_distortion": all(v["auc_plugin"] >= TARGET_AUC for v in held.values()),
        "auc_better_than_brisque_every_distortion": all(
            v["auc_brisque"] is None or v["auc_plugin"] > v["auc_brisque"] for v in held.values()
        ),
        "top_reason_ge_0_90_every_distortion": all(v["top_reason_accuracy"] >= TARGET_REASON for v in held.values()),
        "lesion_iou_ge_0_75": None if segmentation is None else segmentation["iou_mean"] >= TARGET_IOU,
        "check_not_slower_than_decode": timing["ratio_check_to_decode_4000x3000"] <= 1.0,
    }
    return {
        "data": str(data),
        "n_images": len(ids),
        "seed": seed,
        "threshold": threshold,
        "clean": clean,
        "distortions": distortions,
        "segmentation": segmentation,
        "timing": timing,
        "targets": targets,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }


def _print_table(fig: dict[str, Any]) -> None:
    print(f"{fig['n_images']} images from {fig['data']}")
    c = fig["clean"]
    print(
        f"clean: median score {c['score_median']}, false-reject rate {c['false_reject_rate']:.1%}, "
        f"not-skin {c['not_skin_rate']:.1%}"
    )
    print(
        f"{'distortion':<18}{'AUC':>7}{'AUC reason':>12}{'AUC BRISQUE':>13}{'rho':>7}{'rho BRISQUE':>13}"
        f"{'reason':>8}  expected"
    )
    for name, f in fig["distortions"].items():
        ab = "-" if f["auc_brisque"] is None else f"{f['auc_brisque']:.3f}"
        rb = "-" if f["spearman_brisque"] is None else f"{f['spearman_brisque']:.3f}"
        print(
            f"{name:<18}{f['auc_plugin']:>7.3f}{f['auc_expected_reason']:>12.3f}{ab:>13}"
            f"{f['spearman_plugin']:>7.3f}{rb:>13}"
            f"{f['top_reason_accuracy']:>8.2f}  {f['expected_reason']}"
        )
    if fig["segmentation"]:
        s = fig["segmentation"]
        print(
            f"lesion IoU: mean {s['iou_mean']:.3f}, median {s['iou_median']:.3f}, small lesions "
            f"{s['iou_mean_small_lesions']}, naive Otsu a* {s['baseline_naive_otsu_a_star_iou_mean']:.3f}"
        )
    t = fig["timing"]
    print(
        f"timing: {t['ms_per_image_200x150']} ms at 200x150, {t['ms_per_image_4000x3000_decoded']} ms at "
        f"4000x3000 vs decode {t['jpeg_decode_ms_4000x3000']} ms (ratio {t['ratio_check_to_decode_4000x3000']})"
    )
    print("targets:", ", ".join(f"{k}={v}" for k, v in fig["targets"].items()))


def main(argv: list[str] | None = None) -> int:
    from dermchat.cli_output import emit, fail
    from dermchat.paths import default_data_dir

    parser = argparse.ArgumentParser(prog="dermchat bench-quality", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="HAM-layout folder (default: the shared data)")
    parser.add_argument("--limit", type=int, default=200, help="number of images (one per lesion)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=50.0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    data = args.data or default_data_dir()
    if args.limit < 2:
        return fail("--limit must be at least 2")
    try:
        figures = run(data, args.limit, args.seed, args.threshold, progress=not args.quiet)
    except FileNotFoundError as exc:
        return fail(exc)
    return emit(figures, args.json, _print_table, indent=2)


if __name__ == "__main__":
    sys.exit(main())
