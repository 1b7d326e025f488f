"""The training command end to end on a tiny subset, plus the lesion split and augmentation invariants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from core_helpers import tiny_training_args

from dermchat.classifier.data import DataError, read_metadata, split_by_lesion


def test_split_is_by_lesion_seeded_and_stratified(ham_dir: Path) -> None:
    records = read_metadata(ham_dir)
    split = split_by_lesion(records, seed=0)
    assert split == split_by_lesion(records, seed=0)
    assert split != split_by_lesion(records, seed=1)
    lesion_of = {r.image_id: r.lesion_id for r in records}
    parts = {name: {lesion_of[i] for i in ids} for name, ids in split.items()}
    assert (
        not parts["train"] & parts["val"] and not parts["train"] & parts["calib"] and not parts["val"] & parts["calib"]
    )
    assert sum(len(v) for v in split.values()) == len(records)
    for name, share in (("train", 0.70), ("val", 0.15), ("calib", 0.15)):
        mel = sum(1 for i in split[name] if i in {r.image_id for r in records if r.dx == "mel"})
        assert abs(len(split[name]) / len(records) - share) < 0.03
        assert mel > 50  # every part has melanomas to learn / check from


def test_bad_data_folder_gives_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"metadata\.csv is missing"):
        read_metadata(tmp_path)


def test_augmentation_keeps_shapes_and_moves_the_mask_with_the_image() -> None:
    import torch

    from dermchat.classifier.augment import AugmentConfig, affine_warp, augment_batch

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 96, 128)
    mask = torch.zeros(4, 1, 96, 128)
    mask[:, :, 10:40, 10:50] = 1.0
    out, out_mask = augment_batch(x, mask, AugmentConfig(), gen)
    assert out.shape == x.shape and out_mask is not None and out_mask.shape == mask.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    still = AugmentConfig(max_rotation_deg=0.0, scale_range=(1.0, 1.0), max_translate=0.0)
    img = torch.zeros(1, 3, 96, 128)
    img[:, :, 10:40, 10:50] = 1.0
    warped, warped_mask = affine_warp(img, mask[:1], still, gen)
    assert warped_mask is not None
    # with only flips left, the image's bright block and the mask stay aligned
    assert torch.allclose((warped[:, :1] > 0.5).float(), (warped_mask > 0.5).float())


def test_train_command_fine_tunes_the_imagenet_backbone_end_to_end_on_a_tiny_subset(
    ham_dir: Path, tmp_path: Path
) -> None:
    import torch

    from dermchat.classifier.lite import imagenet_weights_path
    from dermchat.classifier.model import load_model
    from dermchat.classifier.predictor import Predictor
    from dermchat.classifier.train import main

    out = tmp_path / "weights"
    rc = main([*tiny_training_args(ham_dir, max_batches=2), "--out", str(out)])
    assert rc == 0
    model, _ = load_model(out / "model.pt")
    assert model.config.backbone == "efficientnet-lite0" and model.config.input_size == (200, 150)
    # it started from ImageNet: two small steps leave the stem close to the ImageNet stem, far from a random one
    imagenet_stem = torch.load(imagenet_weights_path(), weights_only=True)["_conv_stem.weight"]
    trained_stem = model.state_dict()["net._conv_stem.weight"].float()
    assert torch.allclose(trained_stem, imagenet_stem, atol=0.05)
    assert "ImageNet weights" in (out / "training_log.txt").read_text()
    for name in (
        "model.pt",
        "split.json",
        "training_log.txt",
        "training_summary.json",
        "calibration.json",
        "ood_stats.npz",
        "patient_prior.json",
        "model.onnx",  # the folder is ready to ship: the chat path's export was written and checked against torch
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["images"] == 64 and summary["epochs_run"] == 1
    assert "--limit 64" in summary["command"]
    assert "epoch 1:" in (out / "training_log.txt").read_text()
    assert "ONNX Runtime export: wrote" in (out / "training_log.txt").read_text()
    predictor = Predictor(out)
    assert predictor.runtime == "onnxruntime", predictor.runtime_note
    frames = np.zeros((2, 150, 200, 3), dtype=np.uint8)
    probs = predictor.analyse(*predictor.forward_frames(frames))["probs"]
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_an_interrupted_run_resumes_where_it_stopped_and_ends_like_an_uninterrupted_one(
    ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from dermchat.classifier.model import load_model
    from dermchat.classifier.train import main

    tiny = [*tiny_training_args(ham_dir, limit=48, max_batches=2, batch_size=8, epochs=None), "--no-calibrate"]
    tiny += ["--seed", "2"]
    straight, split_run = tmp_path / "straight", tmp_path / "resumed"
    assert main([*tiny, "--out", str(straight), "--epochs", "2"]) == 0
    # the same run stopped after its first epoch (as a kill would), then resumed for the second
    assert main([*tiny, "--out", str(split_run), "--epochs", "2", "--stop-after", "1"]) == 0
    first_epoch_only = json.loads((split_run / "training_summary.json").read_text())
    assert first_epoch_only["epochs_run"] == 1
    assert main([*tiny, "--out", str(split_run), "--epochs", "2", "--resume"]) == 0
    log = (split_run / "training_log.txt").read_text()
    assert "resumed after epoch 1" in log and "epoch 2:" in log
    summary = json.loads((split_run / "training_summary.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    a, _ = load_model(straight / "model.pt")
    b, _ = load_model(split_run / "model.pt")
    assert summary["best_epoch"] == json.loads((straight / "training_summary.json").read_text())["best_epoch"]
    # the resumed run saw the same batches, augmentations and learning rates, so it ends with the same weights
    for k, v in a.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, b.state_dict()[k], atol=1e-3), k
    # a resumed run must be the same experiment
    assert main([*tiny, "--out", str(split_run), "--epochs", "3", "--resume", "--lr", "0.1"]) == 2
    assert "--lr" in capsys.readouterr().err
    assert main([*tiny, "--out", str(tmp_path / "never"), "--resume"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_command_reports_a_bad_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dermchat.classifier.train import main

    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "metadata.csv is missing" in capsys.readouterr().err


@pytest.mark.parametrize("backbone", ["dermnet", "efficientnet-lite0"])
def test_warm_start_continues_from_a_finished_run_on_the_same_split(
    ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], backbone: str
) -> None:
    """Both backbones (the Lite0 one was refused as "an ensemble" until this test covered it)."""
    import torch

    from dermchat.classifier.model import load_model
    from dermchat.classifier.train import main

    tiny = [*tiny_training_args(ham_dir), "--no-calibrate", "--backbone", backbone]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*tiny, "--out", str(first)]) == 0
    assert (
        main(
            [
                *tiny,
                "--out",
                str(second),
                "--init-from",
                str(first),
                "--seed",
                "3",
                "--split-seed",
                "0",
                "--lr",
                "1e-12",
            ]
        )
        == 0
    )
    log = (second / "training_log.txt").read_text()
    assert "warm start from" in log
    assert f"{backbone} weights from {first}" in log  # not the from-scratch CNN's widths, which mean nothing here
    start, _ = load_model(first / "model.pt")
    after, _ = load_model(second / "model.pt")
    conv = [k for k, v in start.state_dict().items() if v.ndim == 4]
    assert conv and all(torch.allclose(start.state_dict()[k], after.state_dict()[k], atol=1e-3) for k in conv)
    # without --init-from the same command starts from its own random weights, which are not the first run's
    assert main([*tiny, "--out", str(tmp_path / "third"), "--seed", "3", "--split-seed", "0", "--lr", "1e-12"]) == 0
    other, _ = load_model(tmp_path / "third" / "model.pt")
    assert not all(torch.allclose(start.state_dict()[k], other.state_dict()[k], atol=1e-3) for k in conv)
    # weights trained on another lesion split would have seen this run's held-out lesions: refused
    assert main([*tiny, "--out", str(tmp_path / "fourth"), "--init-from", str(first), "--split-seed", "1"]) == 2
    assert "different lesion split" in capsys.readouterr().err


def test_a_finished_network_fine_tunes_at_a_larger_input_size_and_with_colour_constancy(
    ham_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from dermchat.classifier.model import load_model
    from dermchat.classifier.predictor import Predictor
    from dermchat.classifier.train import main

    tiny = [*tiny_training_args(ham_dir), "--backbone", "dermnet"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*tiny, "--out", str(first), "--no-calibrate"]) == 0
    resize = ["--init-from", str(first), "--input-size", "160x120", "--colour-constancy", "6"]
    assert main([*tiny, "--out", str(second), *resize]) == 0
    log = (second / "training_log.txt").read_text()
    assert "input 160x120" in log and "Shades-of-Gray white balance p=6" in log
    assert "Shades-of-Gray" not in (first / "training_log.txt").read_text()
    assert load_model(first / "model.pt")[0].config.input_size == (128, 96)
    assert load_model(first / "model.pt")[0].config.colour_constancy == 0
    assert load_model(second / "model.pt")[0].config.input_size == (160, 120)
    assert load_model(second / "model.pt")[0].config.colour_constancy == 6  # saved, so inference corrects too
    predictor = Predictor(second)  # calibrated, and predicting, at the size it was fine-tuned at
    assert predictor.input_size == (160, 120)
    photo = next((ham_dir / "images").glob("*.jpg"))
    with Image.open(photo) as im:
        pred = predictor.predict_image(im.convert("RGB"))
    assert abs(sum(pred.as_dict().values()) - 1.0) < 1e-6


@pytest.mark.parametrize("bad", ["160", "160x100", "16x12", "axb"])
def test_input_size_must_be_a_4_by_3_frame(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    from dermchat.classifier.train import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--out", "unused", "--input-size", bad])
    assert exit_info.value.code == 2 and "--input-size" in capsys.readouterr().err


def test_mixup_blends_pairs_and_changes_what_is_learnt(ham_dir: Path, tmp_path: Path) -> None:
    import torch

    from dermchat.classifier.model import load_model
    from dermchat.classifier.train import main

    tiny = [*tiny_training_args(ham_dir, max_batches=2), "--no-calibrate", "--seed", "0", "--backbone", "dermnet"]
    assert main([*tiny, "--out", str(tmp_path / "plain")]) == 0
    assert main([*tiny, "--out", str(tmp_path / "again")]) == 0
    assert main([*tiny, "--out", str(tmp_path / "mixed"), "--mixup", "0.4"]) == 0
    plain, _ = load_model(tmp_path / "plain" / "model.pt")
    again, _ = load_model(tmp_path / "again" / "model.pt")
    mixed, _ = load_model(tmp_path / "mixed" / "model.pt")
    conv = [k for k, v in plain.state_dict().items() if v.ndim == 4]
    assert all(torch.equal(plain.state_dict()[k], again.state_dict()[k]) for k in conv)  # a seeded run repeats
    # same seed, same batches: only the blending differs, so the learnt weights do too
    assert not all(torch.allclose(plain.state_dict()[k], mixed.state_dict()[k]) for k in conv)
    assert "--mixup 0.4" in (tmp_path / "mixed" / "training_log.txt").read_text()


def test_distillation_loss_is_zero_at_the_teacher_and_pulls_the_student_towards_it() -> None:
    import torch

    from dermchat.classifier.distill import distillation_loss

    torch.manual_seed(0)
    teacher = torch.randn(8, 7) * 3
    soft = torch.softmax(teacher / 2.0, dim=1)
    weights = torch.rand(8) + 0.5
    assert float(distillation_loss(teacher, soft, 2.0, weights)) == pytest.approx(0.0, abs=1e-5)
    student = torch.randn(8, 7, requires_grad=True)
    before = distillation_loss(student, soft, 2.0, weights)
    assert float(before.detach()) > 0.1
    before.backward()
    assert student.grad is not None
    with torch.no_grad():
        stepped = student - 5.0 * student.grad
    assert float(distillation_loss(stepped, soft, 2.0, weights)) < float(before.detach())


def test_distillation_from_a_finished_run_caches_the_teacher_and_resumes(
    ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from dermchat.classifier.data import read_split
    from dermchat.classifier.model import batched_inference, load_model
    from dermchat.classifier.train import main

    tiny = [*tiny_training_args(ham_dir, epochs=None), "--no-calibrate", "--backbone", "dermnet", "--split-seed", "0"]
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert main([*tiny, "--epochs", "1", "--out", str(teacher)]) == 0
    distill = ["--distill-from", str(teacher), "--distill-weight", "0.7", "--seed", "5", "--out", str(student)]
    assert main([*tiny, "--epochs", "2", "--stop-after", "1", *distill]) == 0
    log = (student / "training_log.txt").read_text()
    assert "distilling from 1 teacher(s) (weight 0.7, temperature 2)" in log
    with np.load(student / "teacher_logits.npz") as z:
        cached_ids, cached = list(z["image_ids"]), z["logits"]
    train_ids = read_split(student / "split.json")["train"]
    assert sorted(cached_ids) == sorted(train_ids) and cached.shape == (len(train_ids), 7)
    # the cache holds the teacher's flip-averaged logits for those training images, not anything else
    from dermchat.classifier.data import load_pixels, read_metadata

    model, _ = load_model(teacher / "model.pt")
    ids = [r.image_id for r in read_metadata(ham_dir)]
    pixels, _ = load_pixels(ham_dir, ids, use_cache=False, size=model.config.input_size)
    rows = [ids.index(i) for i in cached_ids[:8]]
    expected = batched_inference(model, pixels[rows], tta=True)["logits"]
    assert torch.allclose(torch.as_tensor(cached[:8]), expected, atol=1e-4)
    # the resumed sitting reuses the cached logits instead of running the teacher again
    assert main([*tiny, "--epochs", "2", "--resume", *distill]) == 0
    assert "teacher logits from" in (student / "training_log.txt").read_text()
    # a teacher that saw this run's held-out lesions is refused
    other = tmp_path / "other-split"
    assert (
        main(
            [
                *tiny_training_args(ham_dir),
                "--no-calibrate",
                "--backbone",
                "dermnet",
                "--split-seed",
                "1",
                "--out",
                str(other),
            ]
        )
        == 0
    )
    assert main([*tiny, "--epochs", "1", "--out", str(tmp_path / "x"), "--distill-from", str(other)]) == 2
    assert "--distill-from" in capsys.readouterr().err


def test_the_ema_follows_the_weights_by_its_decay_and_copies_batchnorm_statistics() -> None:
    import copy

    import torch

    from dermchat.classifier.fit import update_ema

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = copy.deepcopy(model)
    before = [p.detach().clone() for p in ema.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(8, 3))  # moves the BatchNorm running statistics
    update_ema(ema, model, 0.9)
    for old, new, current in zip(before, ema.parameters(), model.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * current)
    for be, bm in zip(ema.buffers(), model.buffers()):
        assert torch.equal(be, bm)


def test_frames_and_masks_come_as_network_input_from_the_decoded_arrays() -> None:
    import torch

    from dermchat.classifier.fit import FrameSource

    pixels = np.full((5, 12, 16, 3), 255, dtype=np.uint8)
    masks = np.zeros((5, 12, 16), dtype=np.uint8)
    masks[:, :6] = 255
    x, m = FrameSource(pixels, masks, torch.device("cpu")).batch(np.array([4, 0]))
    assert x.shape == (2, 3, 12, 16) and float(x.max()) == 1.0
    assert m.shape == (2, 1, 12, 16) and float(m.mean()) == 0.5


def test_training_says_which_device_and_precision_it_runs_and_refuses_a_missing_gpu(
    ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from dermchat.classifier.train import main, native_bf16

    out = tmp_path / "fp32"
    args = [*tiny_training_args(ham_dir, limit=32, batch_size=8), "--no-calibrate", "--out", str(out)]
    assert main([*args, "--device", "cpu", "--precision", "fp32"]) == 0
    assert "CPU threads, float32" in (out / "training_log.txt").read_text()
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["precision"] == "fp32" and summary["device"] == "cpu"
    assert isinstance(native_bf16(torch.device("cpu")), bool)
    if not torch.cuda.is_available():
        assert main([*tiny_training_args(ham_dir, limit=32), "--device", "cuda", "--out", str(tmp_path / "gpu")]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def test_per_sitting_settings_do_not_block_a_resume() -> None:
    """The device, thread count and cuDNN autotuning may change between the sittings of one run."""
    from dermchat.classifier.train import build_parser, resumable_args

    base = ["--out", "run", "--epochs", "3"]
    plain = build_parser().parse_args(base)
    assert plain.cudnn_benchmark is False  # measured: a minute of autotuning per process, no faster epochs
    changed = build_parser().parse_args([*base, "--cudnn-benchmark", "--device", "cpu", "--threads", "4"])
    assert resumable_args(changed) == resumable_args(plain)
    assert resumable_args(build_parser().parse_args([*base, "--seed", "9"])) != resumable_args(plain)


def test_fold_in_val_trains_on_the_validation_lesions_keeps_the_last_epoch_and_says_so(
    ham_dir: Path, tmp_path: Path
) -> None:
    from dermchat.classifier.data import read_split, read_trained_on
    from dermchat.classifier.train import main

    out = tmp_path / "final"
    tiny = [*tiny_training_args(ham_dir, epochs=3), "--backbone", "dermnet", "--no-calibrate", "--patience", "1"]
    assert main([*tiny, "--out", str(out), "--fold-in-val"]) == 0
    split = read_split(out / "split.json")
    assert read_trained_on(out / "split.json") == ("train", "val")
    log = (out / "training_log.txt").read_text()
    assert f"training on {len(split['train']) + len(split['val'])} images (train + val)" in log
    assert "epoch 1: train loss" in log and "val (in-sample) acc" in log and "(val (in-sample) score" in log
    summary = json.loads((out / "training_summary.json").read_text())
    # in-sample validation figures choose nothing: every epoch replaces the last, and none stops the run early
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 3
    plain = tmp_path / "plain"
    assert main([*tiny, "--out", str(plain)]) == 0
    assert read_trained_on(plain / "split.json") == ("train",)
    assert "in-sample" not in (plain / "training_log.txt").read_text()
