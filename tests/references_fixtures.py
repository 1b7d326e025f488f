"""Builders for the reference-image tests: tiny atlases of real HAM images, tiny LoRAs, turn contexts.

Atlases are built in ``tmp_path`` from real HAM10000 images (never copied into the repo) with synthetic
``localization``/``skin_tone`` columns, so ranking can be tested against known answers.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from dermchat.context import TurnContext
from dermchat.request import PatientDetails, TurnRequest
from dermchat.results import Diagnosis, DifferentialEntry, QualityReport, TurnResult
from dermchat.settings import Settings


def ham_rows(ham_dir: Path, dx: str, n: int, skip: int = 0) -> list[dict[str, str]]:
    """The first ``n`` metadata rows of one HAM code (one image per lesion), after ``skip`` of them."""
    rows: list[dict[str, str]] = []
    lesions: set[str] = set()
    with open(ham_dir / "metadata.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["dx"] != dx or row["lesion_id"] in lesions:
                continue
            lesions.add(row["lesion_id"])
            rows.append(row)
            if len(rows) == n + skip:
                break
    return rows[skip:]


def build_atlas(root: Path, ham_dir: Path, rows: list[dict[str, Any]], masks: bool = True) -> Path:
    """Write ``images/``, ``masks/`` and ``metadata.csv`` for ``rows`` (dicts with image_id, dx and any extra
    columns such as localization or skin_tone)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    if masks:
        (root / "masks").mkdir(exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
        shutil.copyfile(ham_dir / "images" / f"{row['image_id']}.jpg", root / "images" / f"{row['image_id']}.jpg")
        mask = ham_dir / "masks" / f"{row['image_id']}.png"
        if masks and mask.exists():
            shutil.copyfile(mask, root / "masks" / mask.name)
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return root


def diagnosis(*pairs: tuple[str, float]) -> Diagnosis:
    return Diagnosis(
        provider_id="test-differential",
        differential=[DifferentialEntry(condition_id=c, probability=p) for c, p in pairs],
        prediction_set=[pairs[0][0]],
    )


def make_ctx(
    image: Image.Image,
    workdir: Path,
    dx: Diagnosis,
    *,
    body_site: str | None = None,
    seen: set[str] | None = None,
    quality: QualityReport | None = None,
    audience: str = "patient",
    settings: Settings | None = None,
    progress: Any = None,
) -> TurnContext:
    ctx = TurnContext(
        image=image.convert("RGB"),
        settings=settings or Settings(),
        workdir=workdir,
        request=TurnRequest(patient=PatientDetails(body_site=body_site), seen_references=set(seen or ())),
        result=TurnResult(
            turn_id="test",
            image_sha256="0" * 64,
            audience=audience,  # type: ignore[arg-type]
            diagnosis=dx,
            quality=quality,
        ),
    )
    if progress is not None:
        ctx.progress = progress
    return ctx


def write_lora(
    pipe_dir: Path, out_dir: Path, *, rank: int = 2, zero: bool = False, seed: int = 0, scale: float = 1.0
) -> Path:
    """A LoRA for the tiny pipeline's UNet attention projections, in diffusers' (peft-style) file format:
    ``unet.<module>.lora_A.weight`` (rank x in) and ``lora_B.weight`` (out x rank) in
    ``pytorch_lora_weights.safetensors``. ``zero`` gives B = 0, i.e. a LoRA that changes nothing."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(pipe_dir / "unet")
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in {"to_q", "to_k", "to_v"}:
            down = torch.randn(rank, module.in_features, generator=generator) * scale
            up = (
                torch.zeros(module.out_features, rank)
                if zero
                else torch.randn(module.out_features, rank, generator=generator) * scale
            )
            tensors[f"unet.{name}.lora_A.weight"] = down.contiguous()
            tensors[f"unet.{name}.lora_B.weight"] = up.contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "pytorch_lora_weights.safetensors"))
    return out_dir


def diffusion_app(tmp_path: Path, tiny_sd: Path, **options: Any) -> Any:
    """The engine with the fake plugins and ``sd-diffusion`` on the tiny pipeline: two DDIM steps at 64 px on the
    CPU, each generated image verified by the fake colour-rule diagnoser (``options`` add to or replace these)."""
    from core_helpers import fake_app

    import plugins.diffusion

    sd = {"model": str(tiny_sd), "steps": 2, "size": 64, "scheduler": "ddim", "device": "cpu", "verifier": "fake-dx"}
    return fake_app(
        tmp_path,
        plugins=[(plugins.diffusion, "diffusion")],
        references=["sd-diffusion"],
        options={"sd-diffusion": {**sd, **options}},
    )
