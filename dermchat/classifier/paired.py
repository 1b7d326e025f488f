"""`python -m dermchat eval-paired --truth TRUTH.csv BASE.csv OTHER.csv ...`: is one classifier better than another
on the same lesions, or is the difference noise?

Why: on about 1,270 held-out images, two fine-tunes of the same network routinely differ by a point or two of
accuracy and by several points of balanced accuracy (which rests on 14-21 images of the rarest classes). A single
figure per model cannot tell a better model from a luckier one. Scoring both on the same images and bootstrapping
the *difference* can: the shared images cancel most of the noise. Resampling is over whole lesions, because HAM10000
has several photos of one lesion. Those photos are not independent, and resampling them one by one would make the
intervals too narrow.

Input is the ISIC 2018 task 3 CSVs that `eval --predictions-csv / --truth-csv` write (`image,MEL,NV,...`), so the
models compared need not be loadable here: any tool that writes that format works. Lesion ids come from the
`metadata.csv` of `--data` (default: the shared HAM10000 folder). Images it does not list are resampled one by one,
and the report says so.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.classifier import HAM_CLASSES
from dermchat.classifier import metrics as M
from dermchat.classifier.data import DataError, default_data_dir, read_metadata
from dermchat.classifier.evaluate import ISIC_COLUMNS, ISIC_TO_HAM, nan_to_none
from dermchat.cli_output import emit, fail

FIGURES: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_auc", "melanoma_auc")
MELANOMA = HAM_CLASSES.index("mel")


@dataclass(frozen=True)
class IsicTable:
    """One ISIC task 3 CSV: image ids and rows in HAM_CLASSES order."""

    path: Path
    image_ids: list[str]
    rows: np.ndarray


def read_isic_csv(path: Path) -> IsicTable:
    """Read a file `eval --predictions-csv` (or `--truth-csv`, or the ISIC challenge) wrote."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        expected = ["image", *(name for name, _ in ISIC_COLUMNS)]
        if [h.strip() for h in header] != expected:
            raise DataError(f"{path} is not an ISIC 2018 task 3 file: its header must be {','.join(expected)}")
        ids: list[str] = []
        values: list[list[float]] = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                values.append([float(v) for v in row[1:]])
            except ValueError:
                raise DataError(f"{path}, line {line}: not a number in {row[1:]}") from None
            if len(values[-1]) != len(ISIC_COLUMNS):
                raise DataError(f"{path}, line {line}: {len(values[-1])} values, expected {len(ISIC_COLUMNS)}")
            ids.append(row[0].strip())
    if not ids:
        raise DataError(f"{path} has no rows")
    if len(set(ids)) != len(ids):
        raise DataError(f"{path} lists some images twice")
    in_file_order = np.asarray(values, dtype=np.float64)
    rows = np.empty_like(in_file_order)
    rows[:, list(ISIC_TO_HAM)] = in_file_order
    return IsicTable(path, ids, rows)


def aligned(table: IsicTable, image_ids: Sequence[str]) -> np.ndarray:
    """`table`'s rows in the order of `image_ids`; every truth image must have a prediction."""
    where = {image_id: i for i, image_id in enumerate(table.image_ids)}
    missing = [i for i in image_ids if i not in where]
    if missing:
        raise DataError(
            f"{table.path} has no prediction for {len(missing)} of the {len(image_ids)} truth images "
            f"(e.g. {', '.join(missing[:3])}): score every model on the same images"
        )
    return table.rows[[where[i] for i in image_ids]]


def lesion_groups(image_ids: Sequence[str], data_dir: Path | None) -> tuple[list[np.ndarray], int]:
    """Row indices of each lesion, and how many images had no lesion id (each then stands alone)."""
    lesion_of: dict[str, str] = {}
    if data_dir is not None and (Path(data_dir) / "metadata.csv").is_file():
        lesion_of = {r.image_id: r.lesion_id for r in read_metadata(data_dir)}
    keys = [lesion_of.get(image_id, f"image:{image_id}") for image_id in image_ids]
    unknown = sum(image_id not in lesion_of for image_id in image_ids)
    by_key: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        by_key.setdefault(key, []).append(row)
    return [np.asarray(rows) for rows in by_key.values()], unknown


def headline_figures(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The figures issue 17 sets targets for that a probability table alone determines, in FIGURES order."""
    preds = probs.argmax(axis=1)
    return np.array(
        [
            M.accuracy(labels, preds),
            M.balanced_accuracy(labels, preds, probs.shape[1]),
            M.macro_auc(probs, labels),
            M.binary_auc(probs[:, MELANOMA], labels == MELANOMA),
        ]
    )


def paired_bootstrap(
    labels: np.ndarray,
    models: dict[str, np.ndarray],
    groups: list[np.ndarray],
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Each model's figures, and each later model minus the first on the same resampled lesions."""
    names = list(models)
    whole = {n: headline_figures(models[n], labels) for n in names}  # on every image, once per model
    report: dict[str, Any] = {
        "figures": {n: dict(zip(FIGURES, map(nan_to_none, whole[n]))) for n in names},
        "differences": {},
    }
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {n: [] for n in names[1:]}
    for _ in range(resamples):
        rows = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        base = headline_figures(models[names[0]][rows], labels[rows])
        for n in names[1:]:
            draws[n].append(headline_figures(models[n][rows], labels[rows]) - base)
    for n in names[1:]:
        d = np.array(draws[n])
        point = whole[n] - whole[names[0]]
        report["differences"][f"{n} - {names[0]}"] = {
            figure: interval(float(point[i]), d[:, i]) for i, figure in enumerate(FIGURES)
        }
    return report


def interval(point: float, draws: np.ndarray) -> dict[str, Any]:
    """The observed difference, its 95% percentile interval over the resamples, and what that means."""
    draws = draws[~np.isnan(draws)]
    if np.isnan(point) or len(draws) == 0:
        return {"difference": None, "ci95": None, "verdict": "not measured: the images lack a class this figure needs"}
    low, high = (float(x) for x in np.percentile(draws, (2.5, 97.5)))
    if low > 0:
        verdict = "higher"
    elif high < 0:
        verdict = "lower"
    else:
        verdict = "no difference beyond noise"
    return {"difference": round(point, 4), "ci95": [round(low, 4), round(high, 4)], "verdict": verdict}


def compare(args: argparse.Namespace) -> dict[str, Any]:
    truth = read_isic_csv(args.truth)
    if not np.all(np.isin(truth.rows, (0.0, 1.0))) or not np.all(truth.rows.sum(axis=1) == 1):
        raise DataError(f"{args.truth} is not a truth file: every row must be one-hot (eval --truth-csv writes one)")
    labels = truth.rows.argmax(axis=1)
    tables = [read_isic_csv(p) for p in args.predictions]
    names = [t.path.name for t in tables]
    if len(set(names)) != len(names):
        names = [str(t.path) for t in tables]
    models = {n: aligned(t, truth.image_ids) for n, t in zip(names, tables)}
    data_dir = args.data if args.data is not None else default_data_dir()
    groups, unknown = lesion_groups(truth.image_ids, data_dir)
    report = paired_bootstrap(labels, models, groups, args.resamples, args.seed)
    return {
        "truth": str(args.truth),
        "images": len(labels),
        "lesions": len(groups),
        "images_without_lesion_id": unknown,
        "lesion_ids_from": str(data_dir),
        "resamples": args.resamples,
        "seed": args.seed,
        "baseline": names[0],
        **report,
    }


def print_human(r: dict[str, Any]) -> None:
    print(
        f"{r['images']} images, {r['lesions']} lesions, {r['resamples']} resamples of whole lesions (seed {r['seed']})"
    )
    if r["images_without_lesion_id"]:
        print(
            f"  {r['images_without_lesion_id']} images are not in {r['lesion_ids_from']}/metadata.csv: "
            "each was resampled on its own (give --data the folder they come from)"
        )
    width = max(len(n) for n in [*r["figures"], *r["differences"]]) + 2
    print("".ljust(width) + "".join(f.replace("_", " ").rjust(26) for f in FIGURES))
    for name, figures in r["figures"].items():
        print(name.ljust(width) + "".join(("-" if v is None else f"{v:.4f}").rjust(26) for v in figures.values()))
    for name, diffs in r["differences"].items():
        cells = [
            "-" if d["ci95"] is None else f"{d['difference']:+.4f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
            for d in (diffs[f] for f in FIGURES)
        ]
        print(name.ljust(width) + "".join(c.rjust(26) for c in cells))
        for figure in FIGURES:
            print(f"  {figure.replace('_', ' ')}: {diffs[figure]['verdict']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dermchat eval-paired", description=__doc__.splitlines()[0])
    p.add_argument("--truth", type=Path, required=True, help="one-hot truth CSV (eval --truth-csv)")
    p.add_argument(
        "predictions",
        type=Path,
        nargs="+",
        metavar="PREDICTIONS.csv",
        help="two or more eval --predictions-csv files for the same images; the first is the baseline",
    )
    p.add_argument("--data", type=Path, default=None, help="HAM-layout folder for lesion ids (default: shared data)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if len(args.predictions) < 2:
        return fail(DataError("give at least two prediction files: a baseline and a model to compare with it"))
    if args.resamples < 100:
        return fail(DataError("--resamples must be at least 100 for a 95% interval to mean anything"))
    try:
        report = compare(args)
    except DataError as exc:
        return fail(exc)
    return emit(report, args.json, print_human)


if __name__ == "__main__":
    raise SystemExit(main())
