"""`python -m dermchat.classifier.ensemble --members DIR DIR [...] --out DIR`: average trained networks.

Each member folder is the output of `train-classifier` on the same lesion split (the same `--split-seed`, or
the same `--seed` when no split seed is given; different `--seed`s then vary the networks). This is
checked here, because averaging networks that saw each other's validation or calibration lesions would
make every held-out figure optimistic). The combined `model.pt` holds all members in one file; the split
is copied, and calibration is then fitted for the ensemble as a whole on the calibration split.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from dermchat.classifier.calibrate import calibrate_dir
from dermchat.classifier.data import DataError, default_data_dir, read_split
from dermchat.classifier.train import LOG_FILE, MODEL_FILE, SPLIT_FILE, SUMMARY_FILE, same_split
from dermchat.cli_output import fail


def check_same_split(members: Sequence[Path]) -> dict[str, list[str]]:
    """The members' splits, which must be identical image for image."""
    splits = [read_split(Path(m) / SPLIT_FILE) for m in members]
    for member, split in zip(members[1:], splits[1:]):
        if not same_split(split, splits[0]):
            raise ValueError(
                f"{member} was trained on a different lesion split than {members[0]}: "
                "train the members with the same --split-seed"
            )
    return splits[0]


def build_ensemble(members: Sequence[Path], out: Path) -> Path:
    """Write `out/model.pt` (all members) and `out/split.json`; returns the model path."""
    from dermchat.classifier.model import Ensemble, load_model, save_model

    if len(members) < 2:
        raise ValueError("give at least two --members")
    check_same_split(members)
    nets, sources = [], []
    for member in members:
        model, extra = load_model(Path(member) / MODEL_FILE)
        if isinstance(model, Ensemble):
            raise ValueError(f"{member}/{MODEL_FILE} is already an ensemble; list its members instead")
        nets.append(model)
        sources.append({"folder": str(member), "epoch": extra.get("epoch"), "seed": extra.get("seed")})
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    save_model(Ensemble(nets), path, extra={"members": sources})
    if Path(members[0]).resolve() != out.resolve():
        shutil.copyfile(Path(members[0]) / SPLIT_FILE, out / SPLIT_FILE)
    for i, member in enumerate(members, start=1):  # provenance: each member's own training record
        for name in (LOG_FILE, SUMMARY_FILE):
            if (Path(member) / name).is_file():
                shutil.copyfile(Path(member) / name, out / f"member{i}_{name}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dermchat.classifier.ensemble", description=__doc__.splitlines()[0])
    p.add_argument("--members", type=Path, nargs="+", required=True, help="train-classifier output folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None, help="HAM-layout folder for calibration")
    p.add_argument("--class-bias", action="store_true", help="calibrate with T + per-class bias")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(list(argv) if argv is not None else None)
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        path = build_ensemble(args.members, args.out)
        cal = calibrate_dir(args.out, args.data or default_data_dir(), class_bias=args.class_bias)
    except (DataError, FileNotFoundError, ValueError) as exc:
        return fail(exc)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with (args.out / LOG_FILE).open("a") as fh:
        fh.write(
            f"{stamp} ensemble: python -m dermchat.classifier.ensemble {' '.join(argv or sys.argv[1:])}; "
            f"temperature {cal['temperature']:.3f}, conformal threshold {cal['conformal']['threshold']:.4f}, "
            f"melanoma threshold {cal['melanoma']['threshold']:.4f}\n"
        )
    print(json.dumps({"model": str(path), "members": [str(m) for m in args.members], "calibration": cal}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
