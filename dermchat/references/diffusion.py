"""The library of the ``sd-diffusion`` provider (``plugins/diffusion.py``): its options, whether weights can be
loaded here, LoRA manifests, the device, the img2img lesion crop and the cache key.

Kept apart from the provider because ``train-lora`` and the benchmarks use the same checks and settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dermchat.references.verify import DEFAULT_VERIFIER

log = logging.getLogger(__name__)

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",
}
CROP_MARGIN = 0.6  # context kept around the lesion box on each side, as a fraction of the box size


class DiffusionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="hub id (must be in the local HF cache offline) or local folder")
    lora: str | None = Field(None, description="LoRA weights: folder, .safetensors file or hub id")
    lora_scale: float = Field(1.0, ge=0, le=2)
    scheduler: Literal["default", "ddim", "ddpm", "dpm", "euler", "euler_a", "lms", "pndm", "unipc"] = "dpm"
    steps: int = Field(25, ge=1, le=150)
    guidance: float = Field(7.5, ge=0, le=30)
    mode: Literal["txt2img", "img2img"] = "txt2img"
    strength: float = Field(0.55, gt=0, le=1, description="img2img: how far the image may move from the photo")
    seed: int = Field(0, ge=0)
    size: int = Field(512, ge=64, le=1536)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    per_condition: int = Field(1, ge=1, le=4, description="images per condition")
    modality: str = Field("close-up clinical photograph", description="first words of the prompt")
    prompts: Literal["auto", "concept", "caption"] = Field(
        "auto",
        description="concept: LesionGen concept prompts for a stock model; caption: the caption builder "
        "that train-lora's captions use; auto: caption when the LoRA was trained by DermChat (has dermchat_lora.json)",
    )
    verify: bool = Field(True, description="check each image with the diagnosis model before it is shown")
    verifier: str = DEFAULT_VERIFIER
    cache: bool = True
    gpu_duration: int = Field(120, ge=10, le=600, description="ZeroGPU seconds reserved per generation call")

    @field_validator("size")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError("size must be a multiple of 8 (the VAE downsamples by 8)")
        return value


def is_local_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()


def model_available(model: str) -> tuple[bool, str]:
    """Whether pipeline weights can be loaded here without a network (cheap: reads one small file)."""
    if is_local_path(model):
        if (Path(model).expanduser() / "model_index.json").exists():
            return True, ""
        return False, f"{model} is not a diffusers pipeline folder (no model_index.json)"
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "model_index.json")
    if isinstance(found, str):
        return True, ""
    return False, (
        f"the weights of {model!r} are not in the local Hugging Face cache and the hub cannot be used offline: "
        f"download them first (hf download {model}) or set options.sd-diffusion.model to a local folder"
    )


def lora_available(lora: str) -> tuple[bool, str]:
    if is_local_path(lora):
        return (True, "") if Path(lora).expanduser().exists() else (False, f"LoRA weights not found at {lora}")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(lora, "pytorch_lora_weights.safetensors"), str):
        return True, ""
    return False, f"the LoRA {lora!r} is not in the local Hugging Face cache"


def lora_manifest(lora: str | None) -> dict[str, Any] | None:
    """The ``dermchat_lora.json`` that ``train-lora`` writes next to its weights (folder, file or cached hub
    id), or None for a LoRA trained elsewhere. It says how the LoRA's captions were written."""
    from dermchat.references.train_lora import MANIFEST

    if not lora:
        return None
    if is_local_path(lora):
        path = Path(lora).expanduser()
        found: Path | str | None = (path if path.is_dir() else path.parent) / MANIFEST
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(lora, MANIFEST)
    if not isinstance(found, (str, Path)) or not Path(found).is_file():
        return None
    try:
        return dict(json.loads(Path(found).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", found, exc)
        return None


def resolve_device(choice: str) -> str:
    import torch

    if choice != "auto":
        return choice
    if os.environ.get("SPACES_ZERO_GPU") or torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def lesion_crop(image: Image.Image, bbox: tuple[float, float, float, float] | None, size: int) -> Image.Image:
    """A square crop around the lesion (``bbox`` as pixels or fractions of the image), resized to ``size``.

    Keeping the lesion in view is the point of SkinGEN's img2img mode: the illustration must show the same
    patch of skin. Without a box the centre square is used.
    """
    rgb = image.convert("RGB")
    w, h = rgb.size
    if bbox is not None:
        x0, y0, x1, y1 = bbox
        if max(bbox) <= 1.0:
            x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
        side = max(x1 - x0, y1 - y0) * (1 + 2 * CROP_MARGIN)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    else:
        side, cx, cy = float(min(w, h)), w / 2, h / 2
    side = min(max(side, 16.0), float(min(w, h)))
    left = min(max(cx - side / 2, 0.0), w - side)
    top = min(max(cy - side / 2, 0.0), h - side)
    box = (int(round(left)), int(round(top)), int(round(left + side)), int(round(top + side)))
    return rgb.crop(box).resize((size, size), Image.Resampling.LANCZOS)


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
