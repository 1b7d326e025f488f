"""Ensembles of networks trained by train-classifier: built, calibrated and served like one model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from core_helpers import tiny_training_args


def _train(ham_dir: Path, out: Path, seed: int, lr: str, split_seed: int | None = None) -> Path:
    from dermchat.classifier.train import main

    extra = ["--split-seed", str(split_seed)] if split_seed is not None else []
    tiny = tiny_training_args(ham_dir, max_batches=2)
    rc = main([*tiny, "--out", str(out), "--seed", str(seed), "--lr", lr, "--no-calibrate", *extra])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def members(ham_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("members")
    # a different init/augmentation seed on the same lesion split: how extra members are trained
    return [_train(ham_dir, root / "a", 0, "3e-3"), _train(ham_dir, root / "b", 1, "1e-2", split_seed=0)]


def test_ensemble_command_averages_members_and_calibrates(ham_dir: Path, members: list[Path], tmp_path: Path) -> None:
    import torch

    from dermchat.classifier.ensemble import main
    from dermchat.classifier.model import Ensemble, load_model, uint8_to_input
    from dermchat.classifier.predictor import Predictor

    out = tmp_path / "ens"
    assert main(["--members", *map(str, members), "--out", str(out), "--data", str(ham_dir), "--threads", "1"]) == 0
    for name in (
        "model.pt",
        "split.json",
        "calibration.json",
        "ood_stats.npz",
        "member1_training_log.txt",
        "member2_training_summary.json",
    ):
        assert (out / name).is_file(), name
    ensemble, extra = load_model(out / "model.pt")
    assert isinstance(ensemble, Ensemble) and [m["folder"] for m in extra["members"]] == list(map(str, members))
    singles = [load_model(m / "model.pt")[0] for m in members]
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 96, 128, 3), dtype=np.uint8)
    x = uint8_to_input(frames)
    with torch.no_grad():
        expected = torch.stack([s(x) for s in singles]).mean(dim=0)
        assert not torch.allclose(singles[0](x), singles[1](x))  # the members really differ
        assert torch.allclose(ensemble(x), expected, atol=1e-5)
    predictor = Predictor(out)
    logits, emb = predictor.forward_frames(frames)
    assert np.allclose(logits, expected.numpy(), atol=1e-5)  # an ensemble runs without flip averaging
    assert emb.shape == (3, 2 * int(singles[0].forward_all(x)["embedding"].shape[1]))  # members side by side
    probs = predictor.analyse(logits, emb)["probs"]
    assert np.allclose(probs.sum(axis=1), 1.0)
    heat = predictor.heatmap(frames[0], int(np.argmax(probs[0])))
    assert heat.shape == (96, 128) and heat.min() >= 0.0 and heat.max() <= 1.0


def test_members_from_different_splits_are_refused(
    ham_dir: Path, members: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermchat.classifier.ensemble import main

    other = _train(ham_dir, tmp_path / "c", 1, "3e-3")  # --seed 1 alone also moves the split
    assert main(["--members", str(members[0]), str(other), "--out", str(tmp_path / "e"), "--data", str(ham_dir)]) == 2
    assert "different lesion split" in capsys.readouterr().err


def test_members_reading_different_input_sizes_are_refused(members: list[Path]) -> None:
    from dermchat.classifier.model import Ensemble, load_model

    first, second = (load_model(m / "model.pt")[0] for m in members)
    second.config.input_size = (160, 120)
    with pytest.raises(ValueError, match="same input size"):
        Ensemble([first, second])
