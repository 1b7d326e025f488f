"""LoRA weights for the diffusion pipeline: diffusers' ``load_lora_weights`` when peft is installed, else a merge.

Why a fallback: diffusers only loads LoRA adapters through the peft package. Without it, the low-rank updates
can still be merged straight into the base weights (W += scale * alpha/r * B @ A), which is exactly what
``fuse_lora`` does; the state dict is read (and non-diffusers formats such as kohya converted) by diffusers'
own ``lora_state_dict``, so both paths accept the same files.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

log = logging.getLogger(__name__)

_PAIRS: tuple[tuple[str, str], ...] = (
    (".lora_A.weight", ".lora_B.weight"),
    (".lora.down.weight", ".lora.up.weight"),
    (".lora_down.weight", ".lora_up.weight"),
)
_PREFIXES = {"unet": "unet", "text_encoder": "text_encoder", "text_encoder_2": "text_encoder_2", "transformer": "transformer"}


def peft_available() -> bool:
    return importlib.util.find_spec("peft") is not None


def apply_lora(pipe: Any, lora: str, scale: float = 1.0) -> str:
    """Apply a LoRA (folder, file or hub id) to ``pipe``; returns how it was applied (for provenance)."""
    if peft_available():
        pipe.load_lora_weights(lora, adapter_name="dermchat")
        pipe.fuse_lora(lora_scale=scale)
        return "peft (load_lora_weights + fuse_lora)"
    state_dict, alphas = type(pipe).lora_state_dict(lora)
    merged = merge_lora_state_dict(pipe, state_dict, alphas or {}, scale)
    if merged == 0:
        raise ValueError(f"LoRA {lora!r}: no layer matched this pipeline (is it for a different base model?)")
    return f"merged into {merged} layers (peft not installed)"


def _split(key: str) -> tuple[str, str, str] | None:
    """'unet.a.b.lora_A.weight' -> ('unet', 'a.b', 'down') for the down/A matrix, 'up' for the up/B one."""
    for down, up in _PAIRS:
        for suffix, kind in ((down, "down"), (up, "up")):
            if key.endswith(suffix):
                head = key[: -len(suffix)]
                component, _, path = head.partition(".")
                if component not in _PREFIXES:
                    return None
                return component, path.replace(".processor.", ".").replace("_lora", ""), kind
    return None


def merge_lora_state_dict(pipe: Any, state_dict: dict[str, Any], alphas: dict[str, float], scale: float) -> int:
    """Add every LoRA update into the matching Linear/Conv weight of the pipeline; returns the layer count."""
    import torch

    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for key, tensor in state_dict.items():
        split = _split(key)
        if split is None:
            continue
        component, path, kind = split
        pairs.setdefault((component, path), {})[kind] = tensor
    merged = 0
    for (component, path), mats in pairs.items():
        if "down" not in mats or "up" not in mats:
            continue
        module = getattr(pipe, _PREFIXES[component], None)
        if module is None:
            continue
        try:
            layer = module.get_submodule(path)
        except AttributeError:
            log.warning("LoRA layer %s.%s not found in the pipeline", component, path)
            continue
        down, up = mats["down"].float(), mats["up"].float()
        rank = down.shape[0]
        alpha = alphas.get(f"{component}.{path}.alpha", alphas.get(f"{path}.alpha", rank))
        weight = layer.weight
        delta = (up.flatten(1) @ down.flatten(1)) * (float(alpha) / rank) * scale
        with torch.no_grad():
            weight += delta.reshape(weight.shape).to(weight.dtype, copy=False)
        merged += 1
    return merged
