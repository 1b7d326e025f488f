"""Shades-of-Gray colour constancy inside the classifier: a colour cast on a real lesion is undone, the setting
is saved with the weights, and the ONNX export (what the chat runs) applies the same correction as torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dermchat.classifier.data import to_model_frame
from dermchat.classifier.model import (
    ModelConfig,
    build_model,
    load_model,
    normalise_input,
    save_model,
    shades_of_gray,
    uint8_to_input,
)


def _real_frame(ham_image: Path) -> torch.Tensor:
    with Image.open(ham_image) as im:
        return uint8_to_input(to_model_frame(im, (200, 150)))


def _illuminant(x: torch.Tensor, p: float = 6.0) -> torch.Tensor:
    return x.pow(p).mean(dim=(2, 3)).pow(1 / p).flatten()


def test_a_colour_cast_on_a_real_lesion_is_undone_up_to_brightness(ham_image: Path) -> None:
    frame = _real_frame(ham_image)
    cast = frame * torch.tensor([0.95, 0.75, 0.55]).view(1, 3, 1, 1)  # a warm tungsten-like cast
    balanced, balanced_cast = shades_of_gray(frame, 6), shades_of_gray(cast, 6)
    before = frame / frame.sum(1, keepdim=True).clamp(min=1e-3) - cast / cast.sum(1, keepdim=True).clamp(min=1e-3)
    after = balanced / balanced.sum(1, keepdim=True).clamp(min=1e-3)
    after = after - balanced_cast / balanced_cast.sum(1, keepdim=True).clamp(min=1e-3)
    assert after.abs().mean() < before.abs().mean() / 5  # chromaticity: the cast is (almost) gone
    for out in (balanced, balanced_cast):
        light = _illuminant(out)
        assert (light.max() - light.min()) / light.mean() < 0.05  # the estimated light is now grey
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_off_by_default_and_then_the_plain_input_scaling(ham_image: Path) -> None:
    frame = _real_frame(ham_image)
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    assert ModelConfig().colour_constancy == 0
    assert torch.equal(normalise_input(frame, mean, std, 0.0), (frame - mean) / std)
    assert not torch.allclose(normalise_input(frame, mean, std, 6.0), (frame - mean) / std)


def test_the_setting_travels_with_the_weights_into_the_onnx_graph(ham_image: Path, tmp_path: Path) -> None:
    from dermchat.classifier.onnx_runtime import ONNX_FILE, OnnxForward, export_onnx

    torch.manual_seed(0)
    config = ModelConfig.for_backbone("efficientnet-lite0", input_size=(96, 72), colour_constancy=6.0)
    model = build_model(config, imagenet=True).eval()  # real features, so the input's colours matter
    save_model(model, tmp_path / "model.pt")
    loaded, _ = load_model(tmp_path / "model.pt")
    assert loaded.config.colour_constancy == 6.0
    export_onnx(tmp_path)
    with Image.open(ham_image) as im:
        frame = to_model_frame(im, (96, 72))
    frames = np.stack([frame, (frame * np.array([1.0, 0.8, 0.6])).astype(np.uint8)])
    logits, embedding = OnnxForward(tmp_path / ONNX_FILE).run(frames)
    with torch.no_grad():
        reference = loaded.forward_all(uint8_to_input(frames))
    assert np.abs(logits - reference["logits"].numpy()).max() < 1e-3
    assert np.abs(embedding - reference["embedding"].numpy()).max() < 1e-3
    plain = build_model(ModelConfig.for_backbone("efficientnet-lite0", input_size=(96, 72))).eval()
    plain.load_state_dict(loaded.state_dict())
    with torch.no_grad():
        uncorrected = plain.forward_all(uint8_to_input(frames))["embedding"].numpy()
        balanced_first = plain.forward_all(shades_of_gray(uint8_to_input(frames), 6.0))["embedding"].numpy()
    assert np.abs(embedding - balanced_first).max() < 1e-3  # the graph is: white balance, then the network
    assert np.abs(embedding - uncorrected).max() > 0.05  # and the balance changes what the network sees
