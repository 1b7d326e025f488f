"""Estimate the cost of one ``train-lora`` step on Stable Diffusion 1.5 without a GPU or its weights.

Why: this project's machines have no GPU and cannot download SD 1.5, yet the README owes users a figure for
time and memory. So the exact SD 1.5 network shapes (UNet, VAE encoder, CLIP text encoder) are built on
PyTorch's ``meta`` device - shapes only, no weights, no arithmetic - and one training step (VAE encode, text
encode, UNet forward and backward with LoRA adapters on the attention projections) is run under
``FlopCounterMode`` while a saved-tensor hook adds up what autograd keeps for the backward pass.

The outputs are counts, not timings: floating-point operations per step, bytes of frozen weights, adapter
weights with their gradients and AdamW state, and saved activations (an upper bound: a tensor saved by two
operations is counted twice). Turning FLOPs into seconds needs an assumed sustained throughput, which
``--utilisation`` states; the README says which figure came from where.

    python -m dermchat.references.lora_estimate --resolution 512 --batch-size 1 --rank 8 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

GPU_PEAK_TFLOPS = {"L4": 121.0, "T4": 65.0, "A100": 312.0}
"""Dense FP16/BF16 tensor-core peaks from NVIDIA's data sheets (L4 242 and A100 624 with sparsity, halved)."""
SD15_UNET: dict[str, Any] = dict(
    sample_size=64,
    cross_attention_dim=768,
    attention_head_dim=8,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
)
SD15_VAE: dict[str, Any] = dict(
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)
SD15_TEXT: dict[str, Any] = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    vocab_size=49408,
    max_position_embeddings=77,
)


def _nbytes(tensor: Any) -> int:
    return int(tensor.numel()) * int(tensor.element_size())


def estimate(resolution: int = 512, batch_size: int = 1, rank: int = 8, text_encoder: bool = False) -> dict[str, Any]:
    """Counts for one optimiser micro-step of an SD 1.5 LoRA at ``resolution`` (half-precision frozen weights)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from peft import LoraConfig
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPTextConfig, CLIPTextModel

    from dermchat.references.train_lora import TEXT_TARGETS, UNET_TARGETS

    half = torch.float16
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET).to(half)
        vae = AutoencoderKL(**SD15_VAE).to(half)
        # transformers types its wrapped `to` for a PreTrainedModel `self` only, so a dtype argument looks wrong
        text = CLIPTextModel(CLIPTextConfig(**SD15_TEXT)).to(half)  # type: ignore[arg-type]
        for module in (unet, vae, text):
            module.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=UNET_TARGETS))
        if text_encoder:
            text.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TEXT_TARGETS))
        trainable = [p for m in (unet, text) for p in m.parameters() if p.requires_grad]
        frozen = sum(_nbytes(p) for m in (unet, vae, text) for p in m.parameters() if not p.requires_grad)
        pixels = torch.empty(batch_size, 3, resolution, resolution, dtype=half)
        ids = torch.zeros(batch_size, 77, dtype=torch.long)
        saved: list[int] = []

        def count_saved(t: torch.Tensor) -> torch.Tensor:
            """Record the bytes autograd keeps for the backward pass; the tensor itself is kept as is."""
            saved.append(_nbytes(t))
            return t

        with FlopCounterMode(display=False) as flops:
            with torch.no_grad():
                latents = vae.encode(pixels).latent_dist.mean
            with torch.autograd.graph.saved_tensors_hooks(count_saved, lambda t: t):
                states = text(ids, return_dict=False)[0]
                predicted = unet(latents, torch.zeros(batch_size, dtype=torch.long), states, return_dict=False)[0]
                loss = predicted.float().pow(2).mean()
            loss.backward()
    adapter = sum(p.numel() for p in trainable)
    return {
        "resolution": resolution,
        "batch_size": batch_size,
        "rank": rank,
        "train_text_encoder": text_encoder,
        "tflop_per_step": round(flops.get_total_flops() / 1e12, 3),
        "frozen_weights_gib": round(frozen / 2**30, 2),
        "adapter_params_m": round(adapter / 1e6, 2),
        "adapter_with_grad_and_adam_gib": round(adapter * 4 * 4 / 2**30, 3),  # fp32 weight, grad, two moments
        "saved_activations_gib_upper_bound": round(sum(saved) / 2**30, 2),
    }


def seconds_per_step(tflop: float, gpu: str, utilisation: float) -> float:
    return tflop / (GPU_PEAK_TFLOPS[gpu] * utilisation)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dermchat.references.lora_estimate", description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--train-text-encoder", action="store_true")
    p.add_argument("--utilisation", type=float, default=0.35, help="assumed share of the GPU's peak sustained")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    figures = estimate(args.resolution, args.batch_size, args.rank, args.train_text_encoder)
    figures["assumed_utilisation"] = args.utilisation
    figures["seconds_per_step_estimate"] = {
        gpu: round(seconds_per_step(figures["tflop_per_step"], gpu, args.utilisation), 3) for gpu in GPU_PEAK_TFLOPS
    }
    print(json.dumps(figures, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
