"""``python -m dermchat train-lora``: fine-tune a Stable Diffusion LoRA on captioned dermoscopic images.

Why: SkinGEN fine-tunes Stable Diffusion on dermatology images and LesionGen trains on concept-rich captions;
a stock SD 1.5 does not draw convincing dermoscopic lesions. This command trains low-rank adapters on the
UNet's attention projections (and optionally the text encoder's) with diffusers + peft, on the captions that
``python -m dermchat captions`` wrote, and leaves a folder that ``sd-diffusion`` loads as its ``lora``.

The recipe is the usual text-to-image LoRA one (diffusers' ``train_text_to_image_lora.py``, written again
here so it reads this project's data and captions): frozen VAE, text encoder and UNet; latents of the image
scaled by the VAE factor; noise added at a uniformly drawn timestep; the LoRA-adapted UNet predicts the noise
(or the velocity, for v-prediction bases) under an MSE loss; AdamW on the adapter weights only.

Everything random (data order, crops, flips, noise, timesteps) comes from seeded generators whose state is
saved in each checkpoint, so ``--resume`` continues exactly where a run stopped. At the end it writes:
``pytorch_lora_weights.safetensors`` (diffusers' format, what ``load_lora_weights`` reads),
``dermchat_lora.json`` (how its captions were written, so chat prompts use the same words), ``README.md``
(a model card: data, captions, command, licence), sample images per class, and ``training_report.json``
with the verification of generated images by the project's image classifier, per class.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermchat.paths import file_sha256
from dermchat.references.captions import CAPTION_VERSION, DEFAULT_MODALITY, LesionFacts, build_caption

MANIFEST = "dermchat_lora.json"
WEIGHTS = "pytorch_lora_weights.safetensors"
REPORT = "training_report.json"
UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
LR_SCHEDULES = ("constant", "constant_with_warmup", "cosine", "linear")


class TrainError(ValueError):
    """Bad input to train-lora (data, captions, base model, options); printed as one ``error:`` line."""


@dataclass(frozen=True)
class Example:
    path: Path
    caption: str
    condition_id: str


# -- input -------------------------------------------------------------------------------------------------------
def read_captions(data_dir: Path, captions: Path) -> list[Example]:
    """The caption file's records as examples, checking that each names an image that exists."""
    if not captions.is_file():
        raise TrainError(f"{captions}: no such captions file (write one with python -m dermchat captions)")
    examples: list[Example] = []
    for number, line in enumerate(captions.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            example = Example(data_dir / row["file"], str(row["caption"]), str(row["condition_id"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TrainError(
                f"{captions}:{number}: not a caption record with file, caption and condition_id ({exc})"
            ) from None
        if not example.path.is_file():
            raise TrainError(
                f"{captions}:{number}: image {example.path} not found (is --data the folder the captions were made from?)"
            )
        examples.append(example)
    if not examples:
        raise TrainError(f"{captions} holds no captions")
    return examples


def resolve_precision(choice: str, device: str) -> str:
    """'auto' is bf16 on GPUs that have it, else fp16 on CUDA, else full precision; fp16 needs CUDA."""
    import torch

    if choice == "auto":
        if device != "cuda":
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if choice == "fp16" and device != "cuda":
        raise TrainError("--mixed-precision fp16 needs a CUDA GPU (use bf16 or no on this device)")
    return choice


# -- model -------------------------------------------------------------------------------------------------------
def load_pipeline(base: str, device: str, precision: str) -> Any:
    """The base pipeline with frozen weights (half precision under mixed precision; adapters stay float32)."""
    import torch
    from diffusers import StableDiffusionPipeline

    from dermchat.references.diffusion import model_available

    ok, reason = model_available(base)
    if not ok:
        raise TrainError(reason)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            base, safety_checker=None, requires_safety_checker=False, dtype=dtype
        )
    except (OSError, ValueError) as exc:
        raise TrainError(f"the base model {base!r} could not be loaded as a Stable Diffusion pipeline: {exc}") from exc
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        module.requires_grad_(False)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def add_adapters(pipe: Any, rank: int, alpha: float, text_encoder: bool) -> list[Any]:
    """Attach LoRA adapters (peft) and return the trainable parameters, kept in float32."""
    import torch
    from peft import LoraConfig

    # [arg-type]: peft annotates lora_alpha as int but only divides it by r, so a fractional alpha works as intended
    pipe.unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=UNET_TARGETS)  # type: ignore[arg-type]
    )
    if text_encoder:
        pipe.text_encoder.add_adapter(
            LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=TEXT_TARGETS)  # type: ignore[arg-type]
        )
    params = []
    for module in trained_modules(pipe, text_encoder):
        for param in module.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.float32)
                params.append(param)
    return params


def trained_modules(pipe: Any, text_encoder: bool) -> list[Any]:
    return [pipe.unet, pipe.text_encoder] if text_encoder else [pipe.unet]


def trainable_state(pipe: Any, text_encoder: bool) -> dict[str, Any]:
    """The adapter weights by parameter name (what a checkpoint stores; the frozen base is never copied)."""
    return {
        f"{i}.{name}": p.detach().cpu().clone()
        for i, module in enumerate(trained_modules(pipe, text_encoder))
        for name, p in module.named_parameters()
        if p.requires_grad
    }


def load_trainable_state(pipe: Any, text_encoder: bool, state: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for i, module in enumerate(trained_modules(pipe, text_encoder)):
            for name, p in module.named_parameters():
                if p.requires_grad:
                    p.copy_(state[f"{i}.{name}"])


def save_lora(pipe: Any, out_dir: Path, text_encoder: bool) -> Path:
    """Write the adapters in diffusers' LoRA format (``load_lora_weights`` and sd-diffusion read it)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    out_dir.mkdir(parents=True, exist_ok=True)
    unet_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    text_layers = (
        convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder)) if text_encoder else None
    )
    StableDiffusionPipeline.save_lora_weights(
        save_directory=str(out_dir),
        unet_lora_layers=unet_layers,
        text_encoder_lora_layers=text_layers,
        safe_serialization=True,
        unet_lora_adapter_metadata=pipe.unet.peft_config["default"].to_dict(),
        text_encoder_lora_adapter_metadata=pipe.text_encoder.peft_config["default"].to_dict() if text_encoder else None,
    )
    return out_dir / WEIGHTS


# -- data --------------------------------------------------------------------------------------------------------
def example_order(n: int, seed: int, epoch: int) -> list[int]:
    """The data order of one epoch: a permutation fixed by (seed, epoch), so a resumed run sees the same order."""
    import numpy as np

    return [int(i) for i in np.random.default_rng([seed, epoch]).permutation(n)]


def image_tensor(path: Path, resolution: int, generator: Any, random_crop: bool, flip: bool) -> Any:
    """Shorter side to ``resolution``, a square crop (centre or random), a random flip; pixels in [-1, 1]."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    scale = resolution / min(rgb.size)
    size = (max(resolution, round(rgb.width * scale)), max(resolution, round(rgb.height * scale)))
    rgb = rgb.resize(size, Image.Resampling.BICUBIC)
    spare_x, spare_y = rgb.width - resolution, rgb.height - resolution
    if random_crop:
        left = int(torch.randint(0, spare_x + 1, (1,), generator=generator))
        top = int(torch.randint(0, spare_y + 1, (1,), generator=generator))
    else:
        left, top = spare_x // 2, spare_y // 2
    rgb = rgb.crop((left, top, left + resolution, top + resolution))
    if flip and bool(torch.rand((1,), generator=generator) < 0.5):
        rgb = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    array = np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def micro_batch(examples: list[Example], index: int, batch_size: int, seed: int) -> list[Example]:
    """The ``index``-th micro-batch of the endless, epoch-by-epoch shuffled stream of examples."""
    picked = []
    for k in range(index * batch_size, (index + 1) * batch_size):
        epoch, offset = divmod(k, len(examples))
        picked.append(examples[example_order(len(examples), seed, epoch)[offset]])
    return picked


# -- one step ----------------------------------------------------------------------------------------------------
def diffusion_loss(
    pipe: Any,
    noise_scheduler: Any,
    batch: list[Example],
    args: argparse.Namespace,
    generator: Any,
    device: str,
    precision: str,
) -> Any:
    """The denoising loss of one micro-batch (the standard epsilon / v-prediction MSE)."""
    import torch
    import torch.nn.functional as F

    pixels = torch.stack(
        [image_tensor(e.path, args.resolution, generator, args.random_crop, not args.no_flip) for e in batch]
    ).to(device, dtype=pipe.vae.dtype)
    autocast = torch.autocast(
        device_type=device.split(":")[0],
        dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
        enabled=precision in {"fp16", "bf16"},
    )
    with autocast:
        with torch.no_grad():
            latents = pipe.vae.encode(pixels).latent_dist.sample(generator=generator) * pipe.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
        timesteps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator
        ).to(device)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        ids = pipe.tokenizer(
            [e.caption for e in batch],
            padding="max_length",
            truncation=True,
            max_length=pipe.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids.to(device)
        states = pipe.text_encoder(ids, return_dict=False)[0]
        if noise_scheduler.config.prediction_type == "v_prediction":
            target = noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        predicted = pipe.unet(noisy, timesteps, states, return_dict=False)[0]
    return F.mse_loss(predicted.float(), target.float())


# -- samples and verification ------------------------------------------------------------------------------------
def class_prompt(condition_id: str, seed: int, modality: str) -> str:
    """A class's sample prompt: the caption builder with the diagnosis alone (no site, patient or morphology)."""
    return build_caption(LesionFacts(condition_id), seed=seed, key=condition_id, modality=modality).text


def generate(pipe: Any, prompt: str, seed: int, args: argparse.Namespace) -> Any:
    import torch

    from dermchat.references.prompts import NEGATIVE_PROMPT

    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        return pipe(
            prompt=prompt,
            negative_prompt=NEGATIVE_PROMPT,
            num_inference_steps=args.sample_steps,
            guidance_scale=args.guidance,
            height=args.resolution,
            width=args.resolution,
            generator=generator,
        ).images[0]


def write_samples(pipe: Any, classes: list[str], step: int, args: argparse.Namespace) -> Path:
    """One labelled-synthetic image per class, same seed every time, so the folders show training progress."""
    from dermchat.references.synthetic_mark import save_synthetic

    folder: Path = args.out / "samples" / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    for condition_id in classes:
        prompt = class_prompt(condition_id, args.seed, args.modality)
        image = generate(pipe, prompt, args.seed, args)
        save_synthetic(image, folder / f"{condition_id}.png", f"LoRA sample at step {step}; prompt: {prompt}")
    return folder


def verification_report(
    pipe: Any, classes: list[str], args: argparse.Namespace, registry: Any = None
) -> dict[str, Any]:
    """Per class: how many generated images the image classifier ranks as the intended condition.

    SkinGEN and LesionGen judge their generators with a classifier; here it is the configured diagnoser
    (``ham-cnn`` by default) from the provider registry, judged by ``verify.judge`` as at chat time.
    """
    from dermchat.references.synthetic_mark import save_synthetic

    if registry is None:
        from dermchat.engine import DermChat

        registry = DermChat().registry
    folder = args.out / "verification"
    folder.mkdir(parents=True, exist_ok=True)
    check = _image_check(registry, args.verifier, folder)
    per_class: dict[str, Any] = {}
    for condition_id in classes:
        prompt = class_prompt(condition_id, args.seed, args.modality)
        row: dict[str, Any] = {"generated": 0, "top1": 0, "top3": 0, "unchecked": 0, "prompt": prompt}
        for k in range(args.verify_per_class):
            image = generate(pipe, prompt, args.seed + 1000 + k, args)
            save_synthetic(image, folder / f"{condition_id}_{k}.png", f"verification image; prompt: {prompt}")
            verified, details = check(image, condition_id)
            row["generated"] += 1
            if verified is None:
                row["unchecked"] += 1
                row["reason"] = details.get("reason")
            else:
                row["top3"] += int(verified)
                row["top1"] += int(details.get("target_rank") == 1)
        per_class[condition_id] = row
    checked = sum(r["generated"] - r["unchecked"] for r in per_class.values())
    return {
        "verifier": args.verifier,
        "per_class": per_class,
        "top3_rate": round(sum(r["top3"] for r in per_class.values()) / checked, 3) if checked else None,
        "top1_rate": round(sum(r["top1"] for r in per_class.values()) / checked, 3) if checked else None,
    }


def _image_check(
    registry: Any, verifier_id: str, workdir: Path
) -> Callable[[Any, str], tuple[bool | None, dict[str, Any]]]:
    """``check(image, condition_id)``: the verifier's verdict on one generated image, as the engine's references
    step reaches it (``None`` with the reason when the image model cannot judge it)."""
    from dermchat.context import TurnContext
    from dermchat.providers import Diagnoser
    from dermchat.references import verify
    from dermchat.results import TurnResult
    from dermchat.settings import Settings

    found = registry.providers.get(Diagnoser.capability, {}).get(verifier_id)
    verifier = found if isinstance(found, Diagnoser) else None

    def check(image: Any, condition_id: str) -> tuple[bool | None, dict[str, Any]]:
        reason = verify.why_unchecked(verifier, verifier_id, condition_id)
        if verifier is None or reason is not None:
            return None, {"verifier": verifier_id, "reason": reason}
        verifier.load()
        ctx = TurnContext(
            settings=Settings(),
            workdir=workdir,
            image=image,  # the generated image, as a turn of its own
            result=TurnResult(turn_id="verification", image_sha256=verify.image_sha256(image)),
        )
        return verify.judge(verifier.diagnose(ctx), condition_id, verifier_id)

    return check


# -- the run -----------------------------------------------------------------------------------------------------
@dataclass
class LoraRun:
    """The pipeline with its adapters and what a step and a checkpoint need beside it, in one object."""

    args: argparse.Namespace
    pipe: Any
    params: list[Any]
    """The adapter weights: the only ones the optimiser moves."""
    noise_scheduler: Any
    optimizer: Any
    lr_schedule: Any
    scaler: Any
    """A GradScaler under fp16, else None."""
    generator: Any
    """The one CPU generator of every random draw (order, crops, flips, noise, timesteps): saved in checkpoints."""
    device: str
    precision: str


def start_run(args: argparse.Namespace) -> LoraRun:
    """Load the base pipeline, add the adapters and build the optimiser, schedule and generator (seeded)."""
    import torch
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    from dermchat.references.diffusion import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.mixed_precision, device)
    torch.manual_seed(args.seed)
    pipe = load_pipeline(args.base, device, precision)
    params = add_adapters(pipe, args.rank, args.lora_alpha or args.rank, args.train_text_encoder)
    if args.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    return LoraRun(
        args=args,
        pipe=pipe,
        params=params,
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
        optimizer=optimizer,
        lr_schedule=get_scheduler(
            args.lr_schedule, optimizer, num_warmup_steps=args.warmup, num_training_steps=args.steps
        ),
        scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None,
        generator=torch.Generator("cpu").manual_seed(args.seed),
        device=device,
        precision=precision,
    )


def optimiser_step(run: LoraRun, examples: list[Example], step: int) -> float:
    """Gradient accumulation over `--grad-accum` micro-batches, clipping, one update; returns the step's loss."""
    import torch

    args = run.args
    run.pipe.unet.train()
    step_loss = 0.0
    for micro in range(args.grad_accum):
        batch = micro_batch(examples, step * args.grad_accum + micro, args.batch_size, args.seed)
        loss = diffusion_loss(run.pipe, run.noise_scheduler, batch, args, run.generator, run.device, run.precision)
        loss = loss / args.grad_accum
        (run.scaler.scale(loss) if run.scaler is not None else loss).backward()
        step_loss += float(loss.detach())
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.params, args.max_grad_norm)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.lr_schedule.step()
    run.optimizer.zero_grad(set_to_none=True)
    return step_loss


# -- checkpoints -------------------------------------------------------------------------------------------------
def save_checkpoint(run: LoraRun, step: int) -> Path:
    """Adapter weights, optimiser, schedule and RNG state (never the frozen base) under checkpoints/step-N."""
    import torch

    args = run.args
    folder: Path = args.out / "checkpoints" / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "step": step,
            "trainable": trainable_state(run.pipe, args.train_text_encoder),
            "optimizer": run.optimizer.state_dict(),
            "lr_schedule": run.lr_schedule.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "generator": run.generator.get_state(),
            "settings": resume_settings(args),
        },
        folder / "training_state.pt",
    )
    save_lora(run.pipe, folder, args.train_text_encoder)  # a checkpoint is also a usable LoRA
    old = sorted((args.out / "checkpoints").glob("step-*"))[: -args.keep_checkpoints] if args.keep_checkpoints else []
    for stale in old:
        shutil.rmtree(stale)
    return folder


def resume_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options a resumed run must share with the one it continues (else the state would not fit)."""
    return {
        "base": args.base,
        "rank": args.rank,
        "train_text_encoder": args.train_text_encoder,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "resolution": args.resolution,
    }


def find_checkpoint(choice: str, out: Path) -> Path:
    if choice == "latest":
        found = sorted((out / "checkpoints").glob("step-*"))
        if not found:
            raise TrainError(f"--resume latest: no checkpoint under {out / 'checkpoints'}")
        return found[-1]
    path = Path(choice)
    if not (path / "training_state.pt").is_file():
        raise TrainError(f"--resume {choice}: not a checkpoint folder (no training_state.pt)")
    return path


def restore(checkpoint: Path, run: LoraRun) -> int:
    """Load a checkpoint into the run (refusing one made with other settings); returns the step it was saved at."""
    import torch

    args = run.args
    state = torch.load(checkpoint / "training_state.pt", map_location="cpu", weights_only=False)
    differs = {
        k: (v, state["settings"].get(k)) for k, v in resume_settings(args).items() if state["settings"].get(k) != v
    }
    if differs:
        raise TrainError(
            "--resume: the checkpoint was made with other settings: "
            + ", ".join(f"{k} {old!r} (now {new!r})" for k, (new, old) in differs.items())
        )
    load_trainable_state(run.pipe, args.train_text_encoder, state["trainable"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.lr_schedule.load_state_dict(state["lr_schedule"])
    if run.scaler is not None and state["scaler"] is not None:
        run.scaler.load_state_dict(state["scaler"])
    run.generator.set_state(state["generator"])
    return int(state["step"])


# -- outputs -----------------------------------------------------------------------------------------------------
def write_manifest(args: argparse.Namespace, classes: list[str], captions_sha: str) -> None:
    """What ``sd-diffusion`` reads to prompt this LoRA in its own words (caption version and modality)."""
    manifest = {
        "format": "dermchat-lora-1",
        "base_model": args.base,
        "caption_version": CAPTION_VERSION,
        "modality": args.modality,
        "classes": classes,
        "rank": args.rank,
        "resolution": args.resolution,
        "train_text_encoder": args.train_text_encoder,
        "steps": args.steps,
        "captions_sha256": captions_sha,
    }
    (args.out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def model_card(args: argparse.Namespace, report: dict[str, Any], per_class: Counter[str], argv: Sequence[str]) -> str:
    """README.md next to the weights: what it is, what it was trained on and how, what it may be used for."""
    verification = report.get("verification") or {}
    rows = (
        "\n".join(
            f"| {cid} | {r['generated']} | {r['top1']} | {r['top3']} | {r['unchecked']} |"
            for cid, r in (verification.get("per_class") or {}).items()
        )
        or "| (not run) | | | | |"
    )
    counts = ", ".join(f"{cid} {n}" for cid, n in sorted(per_class.items()))
    command = "python -m dermchat train-lora " + " ".join(shlex.quote(a) for a in argv)
    return f"""---
license: cc-by-nc-4.0
base_model: {args.base}
library_name: diffusers
tags: [stable-diffusion, lora, text-to-image, dermatology, dermoscopy, synthetic-images, dermchat]
---

# DermChat dermoscopy LoRA ({args.rank}-rank, {args.resolution} px)

A LoRA for `{args.base}` trained with `python -m dermchat train-lora` to draw **synthetic** dermoscopic
images of skin lesions for DermChat's reference gallery, in the style of SkinGEN and LesionGen.
**Not a diagnostic tool.** Every image it makes is synthetic and DermChat labels it so (a visible band,
a PNG text label, the `synthetic` flag); it must never be presented as a photo of a real patient.

## Training data
{report["images"]} images from a HAM10000-layout folder (`{args.data}`), per class: {counts}.
HAM10000: Tschandl P., Rosendahl C., Kittler H., *Scientific Data* 5, 180161 (2018),
doi:10.1038/sdata.2018.161, licensed **CC BY-NC 4.0**; these weights are derived from it and inherit the
non-commercial terms. The base model's own licence applies as well.

## Captions
`{args.captions.name}` (sha256 `{report["captions_sha256"][:16]}…`), written by `python -m dermchat captions`
in version `{CAPTION_VERSION}` (LesionGen-style: diagnosis, body site, age band and sex, ABCD morphology
descriptors when available; templates documented in `dermchat/references/captions.py`). Modality words:
"{args.modality}". DermChat prompts this LoRA with the same caption builder (see `{MANIFEST}`).

## Training
Command: `{command}`

Rank {args.rank} (alpha {args.lora_alpha or args.rank}), UNet attention projections{" and text encoder" if args.train_text_encoder else ""};
{report["steps"]} optimiser steps, batch {args.batch_size} x {args.grad_accum} accumulation, learning rate {args.lr}
({args.lr_schedule}, {args.warmup} warm-up steps), AdamW, seed {args.seed}, resolution {args.resolution},
mixed precision `{report["precision"]}`, device `{report["device"]}`; {report["seconds"]:.0f} s
({report["seconds_per_step"]:.3f} s/step), final loss {report["final_loss"]}.

## Verification by the image classifier
Generated images per class ranked by `{verification.get("verifier", args.verifier)}` (top-1 / top-3 = the
intended condition first / among the first three; unchecked = the classifier could not judge it):

| condition | generated | top-1 | top-3 | unchecked |
|---|---|---|---|---|
{rows}

## Use in DermChat
`DERMCHAT_OPTIONS='{{"sd-diffusion": {{"model": "{args.base}", "lora": "<this folder or its hub id>"}}}}'`
with the `gpu-hub` profile. Images are checked by the classifier before they are shown and always labelled synthetic.

## Limitations
Trained on dermoscopic images of seven pigmented-lesion classes from a few centres, mostly light skin;
it does not know other conditions, clinical (non-dermoscopic) photos or darker skin well. A picture it draws
can look convincing and still be wrong.
"""


# -- command line ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dermchat train-lora", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="HAM-layout folder the captions refer to")
    p.add_argument("--captions", type=Path, required=True, help="JSON Lines from python -m dermchat captions")
    p.add_argument(
        "--base", required=True, help="diffusers Stable Diffusion 1.x/2.x folder or hub id (in the local cache)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (weights, model card, samples, checkpoints)")
    p.add_argument("--resolution", type=int, default=512, help="square training size in pixels (multiple of 8)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank")
    p.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: the rank, i.e. scale 1)")
    p.add_argument("--train-text-encoder", action="store_true", help="also adapt the CLIP text encoder")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=4, help="micro-batches per optimiser step")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="cosine")
    p.add_argument("--warmup", type=int, default=0, help="learning-rate warm-up steps")
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mixed-precision",
        choices=["auto", "no", "fp16", "bf16"],
        default="auto",
        help="auto: bf16 (or fp16) on a CUDA GPU, full precision on CPU",
    )
    p.add_argument("--gradient-checkpointing", action="store_true", help="less GPU memory, about 20%% slower")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--random-crop", action="store_true", help="random instead of centre square crops")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--modality", default=DEFAULT_MODALITY, help="modality words of the sample and chat prompts")
    p.add_argument(
        "--checkpoint-every", type=int, default=500, help="save a resumable checkpoint every N steps (0: off)"
    )
    p.add_argument("--keep-checkpoints", type=int, default=3, help="keep the newest N checkpoints (0: all)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT|latest", help="continue from a checkpoint folder")
    p.add_argument(
        "--sample-every", type=int, default=250, help="sample images per class every N steps (0: only at the end)"
    )
    p.add_argument("--sample-steps", type=int, default=25, help="denoising steps of samples and verification images")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance of samples")
    p.add_argument("--verify-per-class", type=int, default=8, help="images per class judged by the classifier (0: off)")
    p.add_argument("--verifier", default="ham-cnn", help="diagnoser id that judges the generated images")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.resolution < 64 or args.resolution % 8:
        raise TrainError("--resolution must be a multiple of 8, at least 64")
    for name in ("rank", "steps", "batch_size", "grad_accum", "sample_steps"):
        if getattr(args, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr <= 0:
        raise TrainError("--lr must be positive")
    if args.out.exists() and any(args.out.iterdir()) and not args.resume:
        raise TrainError(f"{args.out} is not empty: choose a new --out or continue with --resume latest")


def main(argv: Sequence[str] | None = None, registry: Any = None) -> int:
    """Run the command; ``registry`` lets a test hand in its own diagnosers for the verification."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        report = train(args, argv, registry)
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in report.items() if k != "loss_log"}, indent=2))
    return 0


def train(args: argparse.Namespace, argv: Sequence[str], registry: Any = None) -> dict[str, Any]:
    """Train, checkpoint and sample as asked, then write the weights, manifest, samples, report and model card."""
    examples = read_captions(args.data, args.captions)  # before the heavy imports: bad input fails fast
    from tqdm import tqdm

    vocabulary_order = {cid: i for i, cid in enumerate(_vocabulary_ids())}
    classes = sorted({e.condition_id for e in examples}, key=lambda c: vocabulary_order.get(c, len(vocabulary_order)))
    run = start_run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    start = restore(find_checkpoint(args.resume, args.out), run) if args.resume else 0
    if run.device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    losses: list[float] = []
    started = time.perf_counter()
    bar = tqdm(
        range(start, args.steps),
        initial=start,
        total=args.steps,
        desc="train-lora",
        unit="step",
        file=sys.stderr,
        mininterval=2,
    )
    for step in bar:
        losses.append(optimiser_step(run, examples, step))
        done = step + 1
        bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{run.lr_schedule.get_last_lr()[0]:.2e}")
        if args.checkpoint_every and done % args.checkpoint_every == 0 and done < args.steps:
            save_checkpoint(run, done)
        if args.sample_every and done % args.sample_every == 0 and done < args.steps:
            run.pipe.unet.eval()
            write_samples(run.pipe, classes, done, args)
    bar.close()
    return finish(run, examples, classes, losses, start, time.perf_counter() - started, argv, registry)


def finish(
    run: LoraRun,
    examples: list[Example],
    classes: list[str],
    losses: list[float],
    start: int,
    seconds: float,
    argv: Sequence[str],
    registry: Any,
) -> dict[str, Any]:
    """The trained run's outputs: weights, last checkpoint, manifest, samples, verification, report, model card."""
    args, pipe = run.args, run.pipe
    pipe.unet.eval()
    weights = save_lora(pipe, args.out, args.train_text_encoder)
    if args.checkpoint_every:
        save_checkpoint(run, args.steps)
    captions_sha = file_sha256(args.captions)
    write_manifest(args, classes, captions_sha)
    samples = write_samples(pipe, classes, args.steps, args)
    trained = max(1, args.steps - start)
    report: dict[str, Any] = {
        "weights": str(weights),
        "images": len(examples),
        "classes": classes,
        "steps": args.steps,
        "resumed_from": start or None,
        "device": run.device,
        "precision": run.precision,
        "seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / trained, 4),
        "final_loss": round(float(sum(losses[-10:]) / max(1, len(losses[-10:]))), 5) if losses else None,
        "peak_memory_mb": _peak_memory_mb(run.device),
        "captions_sha256": captions_sha,
        "samples": str(samples),
        "loss_log": [round(v, 5) for v in losses],
    }
    report["verification"] = verification_report(pipe, classes, args, registry) if args.verify_per_class else None
    (args.out / REPORT).write_text(json.dumps(report, indent=2), encoding="utf-8")
    (args.out / "README.md").write_text(
        model_card(args, report, Counter(e.condition_id for e in examples), argv), encoding="utf-8"
    )
    return report


def _vocabulary_ids() -> list[str]:
    from dermchat.vocabulary import get_vocabulary

    return get_vocabulary().ids()


def _peak_memory_mb(device: str) -> dict[str, float]:
    """Peak GPU memory allocated by torch (CUDA) and the process's peak resident memory."""
    out = {"process_rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device == "cuda":
        import torch

        out["cuda_allocated"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
