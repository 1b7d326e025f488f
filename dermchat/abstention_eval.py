"""``python -m dermchat eval-abstention``: does the app say "can't assess" where it cannot, and only there?

The set is built in memory, nothing is written: real HAM10000 dermoscopic photos (clean, and degraded: darkened
to a tenth, heavily blurred, shrunk into a phone-style frame of plain skin) and ordinary pictures from
scikit-image's samples (a cat, an astronaut's face, a cup of coffee, a printed page) plus a dark irregular spot
drawn on plain skin (the issue's phone photo). Each runs through a whole turn with the configured quality check
and diagnoser, pressing "continue anyway" like a user who ignores the retake advice. Reported per group:
how often the answer is a confident one (a differential with a tier), "can't assess" (abstained, not skin,
refused at intake) and urgent; and, for melanomas, whether the degraded copy ever comes out calmer than the
original photo.
"""

from __future__ import annotations

import argparse
import io
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dermchat.cli_output import emit, fail
from dermchat.paths import default_data_dir
from dermchat.request import TurnRequest
from dermchat.results import TRIAGE_ORDER, TurnResult

CANT_ASSESS = {"abstained", "not_skin", "invalid_input"}
PLAIN_SKIN = (224, 178, 150)  # an ordinary photo's light skin tone (orange hue, not dermoscopic pink)


def darkened(img: Image.Image) -> Image.Image:
    return Image.fromarray((np.asarray(img, np.float32) * 0.1).astype(np.uint8))


def blurred(img: Image.Image) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(6))


def phone_framed(img: Image.Image, seed: int = 0) -> Image.Image:
    """The lesion as a phone would see it from arm's length: a small patch in a wide frame of plain skin."""
    rng = np.random.default_rng(seed)
    canvas = np.full((600, 800, 3), PLAIN_SKIN, np.float32) + rng.normal(0, 3, (600, 800, 3))
    out = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    out.paste(img.resize((80, 60)), (360, 270))
    return out


def drawn_spot(seed: int = 0) -> Image.Image:
    """A dark irregular spot drawn on plain skin (the issue's "Mole 96%, probably harmless")."""
    rng = np.random.default_rng(seed)
    canvas = np.full((480, 640, 3), PLAIN_SKIN, np.float32) + rng.normal(0, 4, (480, 640, 3))
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    angles = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    radii = 40 + rng.uniform(-12, 12, angles.size)
    points = [(320 + r * np.cos(a), 240 + r * np.sin(a)) for r, a in zip(radii, angles)]
    ImageDraw.Draw(img).polygon(points, fill=(70, 45, 35))
    return img.filter(ImageFilter.GaussianBlur(1.5))


def skimage_pictures() -> dict[str, Image.Image]:
    """Ordinary photos from scikit-image's bundled samples (no download), and a face crop (clinical skin)."""
    from skimage import data

    astronaut = data.astronaut()
    pictures = {
        "cat": data.chelsea(),
        "astronaut": astronaut,
        "coffee": data.coffee(),
        "page": data.page(),
        "face_crop": astronaut[60:220, 150:300],
    }
    return {
        name: Image.fromarray(arr).convert("RGB") if arr.ndim == 3 else Image.fromarray(arr)
        for name, arr in pictures.items()
    }


def ham_sample(data_dir: Path, n: int, seed: int = 0) -> list[tuple[str, str, Path]]:
    """(image id, dx, path) of ``n`` HAM images, a third of them melanomas, reproducibly."""
    rows = [line.split(",") for line in (data_dir / "metadata.csv").read_text().splitlines()[1:]]
    rng = random.Random(seed)
    melanomas = [r for r in rows if r[2] == "mel"]
    others = [r for r in rows if r[2] != "mel"]
    picked = rng.sample(melanomas, n // 3) + rng.sample(others, n - n // 3)
    return [(r[1], r[2], data_dir / "images" / f"{r[1]}.jpg") for r in picked]


def _as_png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _outcome(result: TurnResult) -> dict[str, Any]:
    tier = result.triage.tier if result.triage is not None else None
    return {
        "status": result.status,
        "tier": tier,
        "dermoscopic": result.quality.dermoscopic if result.quality is not None else None,
    }


def cases(data_dir: Path, n_ham: int) -> Iterator[tuple[str, str, Image.Image, dict[str, Any]]]:
    """(group, name, image, info) for the whole set."""
    degrade: dict[str, Callable[[Image.Image], Image.Image]] = {
        "ham_darkened": darkened,
        "ham_blurred": blurred,
        "ham_phone_framed": phone_framed,
    }
    for image_id, dx, path in ham_sample(data_dir, n_ham):
        with Image.open(path) as im:
            clean = im.convert("RGB")
        yield "ham_clean", image_id, clean, {"dx": dx}
        for group, fn in degrade.items():
            yield group, image_id, fn(clean), {"dx": dx}
    for name, img in skimage_pictures().items():
        yield "non_dermoscopic", name, img, {}
    for seed in range(3):
        yield "non_dermoscopic", f"drawn_spot_{seed}", drawn_spot(seed), {}


def evaluate(n_ham: int = 30, data_dir: Path | None = None) -> dict[str, Any]:
    from dermchat.engine import DermChat

    app = DermChat()
    overrides: dict[str, Any] = {"explainer": None, "references": [], "second_opinion": None}
    rows: list[dict[str, Any]] = []
    for group, name, img, info in cases(data_dir or default_data_dir(), n_ham):
        request = TurnRequest(image=_as_png(img), question="", force=True, settings_overrides=overrides)
        result = app.run_turn_sync(request)
        rows.append({"group": group, "name": name, **info, **_outcome(result)})
    return summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for group in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == group]
        n = len(mine)
        groups[group] = {
            "n": n,
            "cant_assess": round(sum(r["status"] in CANT_ASSESS for r in mine) / n, 3),
            "confident_answer": round(sum(r["status"] == "ok" for r in mine) / n, 3),
            "urgent": round(sum(r["tier"] == "urgent" for r in mine) / n, 3),
            "judged_not_dermoscopic": round(sum(r["dermoscopic"] is False for r in mine) / n, 3),
            "tiers": dict(Counter(str(r["tier"]) for r in mine)),
        }
    clean = {r["name"]: r for r in rows if r["group"] == "ham_clean"}
    calmer = [
        f"{r['group']}:{r['name']}"
        for r in rows
        if r.get("dx") == "mel" and r["group"] != "ham_clean" and _order(r) < _order(clean[r["name"]])
    ]
    return {
        "groups": groups,
        "melanoma_degraded_calmer_than_original": calmer,
        "non_dermoscopic_cases": {r["name"]: r["status"] for r in rows if r["group"] == "non_dermoscopic"},
    }


def _order(row: dict[str, Any]) -> int:
    """How serious the outcome is: its tier, or "can't assess" for a photo refused before any tier was set."""
    if row["tier"] is None and row["status"] in CANT_ASSESS:
        return TRIAGE_ORDER["cant_assess"]
    return TRIAGE_ORDER.get(row["tier"] or "", -1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dermchat eval-abstention", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="HAM-layout folder (default: DERMCHAT_DATA_DIR or ../shared/data/ham10000)")
    parser.add_argument("--n", type=int, default=30, help="HAM photos to use (a third melanomas)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    data_dir = Path(args.data) if args.data else default_data_dir()
    if not (data_dir / "metadata.csv").exists():
        return fail(f"{data_dir}: no metadata.csv (a HAM10000-layout folder is needed)")
    return emit(evaluate(args.n, data_dir), args.json, print_groups, indent=2)


def print_groups(report: dict[str, Any]) -> None:
    print("\n".join(f"{group}: {json.dumps(figures)}" for group, figures in report["groups"].items()))
