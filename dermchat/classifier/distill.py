"""Knowledge distillation for `train-classifier --distill-from`: a finished network (or several) teaches the one being
trained with its soft probabilities, not only the one-hot labels.

Why: the chat path can afford one Lite0 forward pass per photo on one CPU thread, but an ensemble or a larger
network (trained where a GPU is available) ranks the classes better. Distillation moves part of that into the
single network that ships. The teacher's probabilities also say which wrong classes are plausible (a melanoma
that looks like a nevus), which is a gentler target than label smoothing.

Choices:
- the teacher's logits are computed once, before the first epoch, on the un-augmented training frames at the
  teacher's own input size, averaged over a horizontal flip and over teachers. Every augmentation the student
  sees (flips, rotations, zoom, shifts, colour) keeps the diagnosis, so the teacher's answer for the clean frame
  stands for the augmented one, and the epochs stay as cheap as without a teacher;
- the logits are stored in the output folder (`teacher_logits.npz`, with the image ids and the teachers' model
  hashes), so `--resume` does not pay for them again and a changed teacher is noticed;
- the loss is Hinton's: (1 - weight) x the usual weighted cross-entropy + weight x temperature^2 x
  KL(teacher || student) at that temperature, per image weighted by the class weight of its label, so the
  minority classes keep the emphasis the hard loss gives them;
- a teacher must have been trained on the same lesion split, or its soft labels would carry what it learnt from
  this run's validation and calibration lesions (checked, as for `--init-from`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dermchat.classifier.train import finished_run
from dermchat.paths import file_sha256

if TYPE_CHECKING:
    import torch

TEACHER_FILE = "teacher_logits.npz"


def teacher_logits(
    folders: Sequence[Path],
    split: dict[str, list[str]],
    image_ids: Sequence[str],
    frames: Callable[[tuple[int, int]], np.ndarray],
    cache: Path,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> np.ndarray:
    """Mean flip-averaged logits of the teachers for `image_ids` (N x classes, float32), from `cache` when it holds
    exactly these images and teachers, else computed and written there.

    `frames(size)` returns the uint8 frames of `image_ids` at a (width, height): the training run passes its own
    decoded array when a teacher reads the same size, so nothing is decoded twice. The passes run on `device`."""
    from dermchat.classifier.model import batched_inference, load_model

    paths = [finished_run(Path(f), split, "--distill-from") for f in folders]
    hashes = np.array([file_sha256(p) for p in paths])
    ids = np.array(list(image_ids))
    if cache.is_file():
        with np.load(cache) as z:
            if np.array_equal(z["image_ids"], ids) and np.array_equal(z["teachers"], hashes):
                log(f"teacher logits from {cache}")
                return np.asarray(z["logits"], dtype=np.float32)
        log(f"{cache} was made for other images or teachers: recomputing")
    per_teacher = []
    for path in paths:
        model, _ = load_model(path)
        model.to(device)
        size = (int(model.config.input_size[0]), int(model.config.input_size[1]))
        out = batched_inference(model, frames(size), batch_size=64, tta=True, progress=f"teacher {path.parent.name}")
        per_teacher.append(out["logits"].numpy())
        log(f"teacher {path}: logits for {len(ids)} training images at {size[0]}x{size[1]} (flip-averaged)")
    mean: np.ndarray = np.mean(per_teacher, axis=0).astype(np.float32)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, logits=mean, image_ids=ids, teachers=hashes)
    tmp.replace(cache)
    return mean


def distillation_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float, sample_weights: torch.Tensor
) -> torch.Tensor:
    """temperature^2 x KL(teacher || student), both softened by `temperature`, weighted mean over the batch.

    `teacher_probs` are already softened (and, under mixup, blended like the labels); the temperature^2 factor
    keeps the gradient's size independent of the temperature (Hinton et al. 2015).
    """
    from torch.nn import functional as F

    log_student = F.log_softmax(student_logits / temperature, dim=1)
    kl = (teacher_probs * (teacher_probs.clamp_min(1e-8).log() - log_student)).sum(dim=1)
    return (temperature**2) * (kl * sample_weights).sum() / sample_weights.sum().clamp_min(1e-8)
