"""LoRA weights for the diffusion pipeline, through diffusers' ``load_lora_weights`` (backed by peft).

peft is a pinned requirement, so there is no hand-written merge for when it is missing: diffusers reads the
state dict (kohya and other formats converted), peft adds the adapter and ``fuse_lora`` folds it into the base
weights, so generation costs what it did without a LoRA.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def peft_available() -> bool:
    return importlib.util.find_spec("peft") is not None


def apply_lora(pipe: Any, lora: str, scale: float = 1.0) -> str:
    """Apply a LoRA (folder, file or hub id) to ``pipe``; returns how it was applied (for provenance)."""
    if not peft_available():
        raise RuntimeError(f"LoRA {lora!r} needs the peft package (pip install -r requirements.txt)")
    pipe.load_lora_weights(lora, adapter_name="dermchat")
    pipe.fuse_lora(lora_scale=scale)
    return "peft (load_lora_weights + fuse_lora)"
