"""The chat path's ONNX Runtime forward pass: exported from the real weights, it must give torch's answers, be
used only when it matches the folder's model.pt, and be what the shipped folder runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from classifier_fixtures import weights_dir_or_skip
from PIL import Image

from dermchat.classifier import HAM_CLASSES
from dermchat.classifier.model import load_model, save_model, uint8_to_input
from dermchat.classifier.onnx_runtime import ONNX_FILE, SOURCE_KEY, OnnxForward, main
from dermchat.classifier.predictor import MODEL_FILE, Predictor
from dermchat.paths import file_sha256

WEIGHT_FILES = ("model.pt", "calibration.json", "ood_stats.npz", "patient_prior.json", "split.json")


def _copy_weights(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in WEIGHT_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    return target


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped weights folder with a fresh export made by the command users run."""
    folder = _copy_weights(weights_dir_or_skip(), tmp_path_factory.mktemp("onnx") / "weights")
    assert main(["--weights", str(folder), "--check-images", "4"]) == 0
    return folder


def _lesion_photo() -> Image.Image:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:300, 0:400]
    inside = ((yy - 150) / 90.0) ** 2 + ((xx - 200) / 120.0) ** 2 < 1
    px = np.where(inside[..., None], [95, 60, 45], [215, 170, 150]) + rng.normal(0, 6, (300, 400, 3))
    return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))


def test_export_records_its_source_and_matches_torch_on_real_frames(exported: Path) -> None:
    forward = OnnxForward(exported / ONNX_FILE)
    assert forward.metadata[SOURCE_KEY] == file_sha256(exported / MODEL_FILE)
    model, _ = load_model(exported / MODEL_FILE)
    width, height = model.config.input_size
    frames = np.random.default_rng(0).integers(0, 256, size=(3, height, width, 3), dtype=np.uint8)
    logits, embedding = forward.run(frames)
    with torch.no_grad():
        reference = model.forward_all(uint8_to_input(frames))
    assert logits.shape == (3, len(HAM_CLASSES))
    assert np.abs(logits - reference["logits"].numpy()).max() < 1e-3
    assert np.abs(embedding - reference["embedding"].numpy()).max() < 1e-3


def test_predictor_uses_the_export_and_agrees_with_torch(exported: Path, tmp_path: Path) -> None:
    torch_only = _copy_weights(exported, tmp_path / "torch-only")  # the same weights without model.onnx
    fast, slow = Predictor(exported), Predictor(torch_only)
    assert (fast.runtime, slow.runtime) == ("onnxruntime", "torch")
    photo = _lesion_photo()
    a, b = fast.predict_image(photo), slow.predict_image(photo)
    assert np.abs(a.probabilities - b.probabilities).max() < 1e-4
    assert a.prediction_set == b.prediction_set and a.urgent == b.urgent
    assert a.out_of_distribution == b.out_of_distribution


def test_a_stale_export_is_ignored_and_says_how_to_fix_it(exported: Path, tmp_path: Path) -> None:
    folder = _copy_weights(exported, tmp_path / "retrained")
    shutil.copy2(exported / ONNX_FILE, folder / ONNX_FILE)
    model, extra = load_model(folder / MODEL_FILE)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # "retrained": model.pt changes, the export does not
    save_model(model, folder / MODEL_FILE, extra)
    predictor = Predictor(folder)
    assert predictor.runtime == "torch"
    assert "export-onnx" in predictor.runtime_note


def test_flip_averaging_stays_in_torch(exported: Path) -> None:
    predictor = Predictor(exported, tta=True)
    assert predictor.runtime == "torch"
    assert "flip" in predictor.runtime_note


def test_the_shipped_weights_run_on_onnx_runtime() -> None:
    """Guards the release step: retrained weights shipped without `export-onnx` would silently lose the speed."""
    predictor = Predictor(weights_dir_or_skip())
    assert predictor.runtime == "onnxruntime", predictor.runtime_note


def test_export_command_refuses_a_folder_without_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--weights", str(tmp_path)]) == 2
    assert "no model.pt" in capsys.readouterr().err


def test_a_damaged_export_falls_back_to_torch(exported: Path, tmp_path: Path) -> None:
    folder = _copy_weights(exported, tmp_path / "damaged")
    (folder / ONNX_FILE).write_bytes((exported / ONNX_FILE).read_bytes()[:5000])
    predictor = Predictor(folder)
    assert predictor.runtime == "torch"
    assert "could not be loaded" in predictor.runtime_note
    assert predictor.predict_image(_lesion_photo()).probabilities.sum() == pytest.approx(1.0)
