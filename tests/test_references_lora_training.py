"""LesionGen-style captions, ``train-lora`` on 8 real HAM images with a tiny random SD pipeline, and the trained
LoRA inside ``sd-diffusion`` (its prompts come from the same caption builder; its images stay labelled synthetic)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from references_fixtures import build_atlas, diagnosis, diffusion_app, ham_rows, make_ctx

from dermchat.classifier.patient_info import SITES
from dermchat.references import SYNTHETIC_LABEL
from dermchat.references.captions import (
    LesionFacts,
    build_caption,
    caption_prompt,
    caption_records,
    diagnosis_name,
    load_describer,
)
from dermchat.registry import PluginRecord, Registry
from dermchat.request import PatientDetails, TurnRequest

DESCRIPTORS = {
    "asymmetry": 2,
    "border": 7,
    "colours": ["light brown", "dark brown", "blue-grey"],
    "blue_white_veil": True,
    "diameter_px": 120,
    "tds": 6.1,
    "mask_area_share": 0.31,
}


@pytest.fixture(autouse=True)
def one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def atlas(ham_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 real HAM images, two lesions each of four classes, in a HAM-layout folder outside the repository."""
    rows = [row for dx in ("nv", "mel", "bkl", "bcc") for row in ham_rows(ham_dir, dx, 2)]
    return build_atlas(tmp_path_factory.mktemp("atlas"), ham_dir, rows)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("peft")
    from dermchat.references.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "pipe")


@pytest.fixture(scope="module")
def captions(atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dermchat.references.captions import main

    out = tmp_path_factory.mktemp("captions") / "captions.jsonl"
    assert main(["--data", str(atlas), "--out", str(out), "--seed", "3", "--no-morphology"]) == 0
    return out


def fake_registry() -> Registry:
    from fake_plugins import FakeDiagnoser

    registry = Registry()
    registry.add("diagnoser", FakeDiagnoser(), PluginRecord(name="test"))
    return registry


def inputs(tiny_sd: Path, atlas: Path, captions: Path, out: Path) -> list[str]:
    """What every ``train-lora`` run here reads and writes: the atlas, its captions, the tiny base, 64 px."""
    paths = ["--data", str(atlas), "--captions", str(captions), "--base", str(tiny_sd), "--out", str(out)]
    return [*paths, "--resolution", "64"]


def train(tiny_sd: Path, atlas: Path, captions: Path, out: Path, *extra: str) -> dict[str, Any]:
    from dermchat.references.train_lora import REPORT, main

    argv = [
        *inputs(tiny_sd, atlas, captions, out),
        "--rank",
        "4",
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--grad-accum",
        "2",
        "--lr",
        "1e-2",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--sample-every",
        "2",
        "--sample-steps",
        "2",
        "--checkpoint-every",
        "2",
        "--verify-per-class",
        "1",
        "--verifier",
        "fake-dx",
        *extra,
    ]
    assert main(argv, registry=fake_registry()) == 0
    return json.loads((out / REPORT).read_text())


@pytest.fixture(scope="module")
def trained(tiny_sd: Path, atlas: Path, captions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA (UNet and text encoder) trained for 4 steps; a large rate so so few steps visibly move it."""
    out = tmp_path_factory.mktemp("lora") / "run"
    train(tiny_sd, atlas, captions, out, "--train-text-encoder")
    return out


# -- captions ----------------------------------------------------------------------------------------------------
def test_captions_are_deterministic_and_name_diagnosis_and_site(atlas: Path, captions: Path, tmp_path: Path) -> None:
    from dermchat.references.captions import main

    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    assert len(rows) == 8 and {r["dx"] for r in rows} == {"nv", "mel", "bkl", "bcc"}
    meta = {r["image_id"]: r for r in ham_rows_of(atlas)}
    for row in rows:
        text = row["caption"].lower()
        assert diagnosis_name(row["condition_id"]) in text
        site = meta[row["image_id"]]["localization"]
        if site in SITES:  # HAM's 'unknown' site is not put into words
            assert site in text, (site, text)
        assert row["morphology"] is None and "colour" not in text and "asymmetric" not in text
        assert "dermoscopic image" in text
    again = tmp_path / "again.jsonl"
    assert main(["--data", str(atlas), "--out", str(again), "--seed", "3", "--no-morphology"]) == 0
    assert again.read_bytes() == captions.read_bytes()
    other = tmp_path / "other.jsonl"
    assert main(["--data", str(atlas), "--out", str(other), "--seed", "4", "--no-morphology"]) == 0
    assert other.read_bytes() != captions.read_bytes()
    assert len({r["template"] for r in rows}) > 1  # the wording varies between images


def ham_rows_of(atlas: Path) -> list[dict[str, str]]:
    import csv

    with open(atlas / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_caption_with_descriptors_patient_and_every_template() -> None:
    seen = set()
    for seed in range(40):
        caption = build_caption(
            LesionFacts("melanoma", site="back", age=57, sex="female", morphology=DESCRIPTORS), seed=seed, key="ISIC_1"
        )
        seen.add(caption.template)
        text = caption.text.lower()
        for words in (
            "cutaneous melanoma",
            "back",
            "a woman in her 50s",
            "asymmetric along both axes",
            "an abrupt border",
            "light brown, dark brown and blue-grey colours",
            "a blue-white veil",
        ):
            assert words in text, (words, text)
        assert "none" not in text and len(text.split()) < 50
    assert seen == {0, 1, 2, 3}
    bare = build_caption(LesionFacts("dermatofibroma", site="unknown", age=None, sex="unknown"), seed=1)
    assert bare.text.lower().count("dermatofibroma") == 1 and "unknown" not in bare.text.lower()
    young = build_caption(LesionFacts("melanocytic_nevus", site="left forearm", age=15, sex="male"), seed=2)
    assert "upper extremity" in young.text and "a male patient under 20" in young.text


def test_captions_leave_morphology_out_when_the_module_is_missing(atlas: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dermchat.morphology", None)  # import fails as it does before issue 21
    assert load_describer() is None
    rows = caption_records(atlas, seed=3, describer=load_describer())
    assert all(r["morphology"] is None and "colour" not in r["caption"] for r in rows)


def test_captions_use_the_describer_when_there_is_one(atlas: Path) -> None:
    seen: list[tuple[tuple[int, int], Any]] = []

    class Described:
        def as_dict(self) -> dict[str, Any]:
            return DESCRIPTORS

    def describe(image: Image.Image, mask: np.ndarray | None = None) -> Described:
        seen.append((image.size, None if mask is None else mask.shape))
        return Described()

    rows = caption_records(atlas, seed=3, describer=describe)
    assert len(seen) == 8 and all(mask == size[::-1] for size, mask in seen)  # HAM's expert mask went along
    assert all("blue-white veil" in r["caption"] and r["morphology"]["tds"] == 6.1 for r in rows)


def test_caption_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dermchat.cli import main

    assert main(["captions", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.jsonl")]) == 2
    assert "metadata.csv is missing" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"file": "images/x.jpg"}\n')
    assert (
        main(
            [
                "train-lora",
                "--data",
                str(tmp_path),
                "--captions",
                str(bad),
                "--base",
                "x",
                "--out",
                str(tmp_path / "o"),
                "--steps",
                "1",
            ]
        )
        == 2
    )
    assert "not a caption record" in capsys.readouterr().err


# -- training ----------------------------------------------------------------------------------------------------
def test_train_lora_writes_weights_card_samples_checkpoints_and_verification(trained: Path) -> None:
    from dermchat.references.train_lora import MANIFEST, REPORT, WEIGHTS

    report = json.loads((trained / REPORT).read_text())
    assert (trained / WEIGHTS).is_file() and report["steps"] == 4 and len(report["loss_log"]) == 4
    assert all(np.isfinite(report["loss_log"]))
    classes = ["melanocytic_nevus", "melanoma", "benign_keratosis", "basal_cell_carcinoma"]
    assert report["classes"] == classes
    for step in (2, 4):
        for cid in classes:
            sample = Image.open(trained / "samples" / f"step-{step:06d}" / f"{cid}.png")
            assert sample.size == (64, 64) and sample.text["DermChat-Label"] == SYNTHETIC_LABEL
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    verification = report["verification"]
    assert verification["verifier"] == "fake-dx" and set(verification["per_class"]) == set(classes)
    for row in verification["per_class"].values():
        assert row["generated"] == 1 and row["unchecked"] == 0 and 0 <= row["top1"] <= row["top3"] <= 1
    card = (trained / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "HAM10000" in card and "--train-text-encoder" in card
    assert "| melanoma | 1 |" in card
    manifest = json.loads((trained / MANIFEST).read_text())
    assert manifest["modality"] == "dermoscopic image" and manifest["caption_version"] == "lesiongen-v1"
    from safetensors.torch import load_file

    keys = load_file(str(trained / WEIGHTS)).keys()
    assert any(k.startswith("unet.") for k in keys) and any(k.startswith("text_encoder.") for k in keys)


def test_resume_continues_exactly(tiny_sd: Path, atlas: Path, captions: Path, tmp_path: Path) -> None:
    """Straight through 4 steps == 2 steps, then --resume from that checkpoint to 4 (order, noise, optimiser)."""
    from safetensors.torch import load_file

    from dermchat.references.train_lora import WEIGHTS

    straight = tmp_path / "straight"
    train(tiny_sd, atlas, captions, straight, "--verify-per-class", "0", "--sample-every", "0")
    resumed = tmp_path / "resumed"
    report = train(
        tiny_sd,
        atlas,
        captions,
        resumed,
        "--verify-per-class",
        "0",
        "--sample-every",
        "0",
        "--resume",
        str(straight / "checkpoints" / "step-000002"),
    )
    assert report["resumed_from"] == 2 and len(report["loss_log"]) == 2
    a, b = load_file(str(straight / WEIGHTS)), load_file(str(resumed / WEIGHTS))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-6)
    first = load_file(str(straight / "checkpoints" / "step-000002" / WEIGHTS))
    assert any(not np.allclose(first[k].numpy(), a[k].numpy()) for k in a)  # steps 3-4 did change it


def test_resume_refuses_a_checkpoint_of_other_settings(
    tiny_sd: Path, atlas: Path, captions: Path, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermchat.references.train_lora import main

    code = main(
        [
            *inputs(tiny_sd, atlas, captions, tmp_path / "o"),
            "--rank",
            "8",
            "--steps",
            "4",
            "--device",
            "cpu",
            "--resume",
            str(trained / "checkpoints" / "step-000002"),
        ]
    )
    assert code == 2 and "rank 4 (now 8)" in capsys.readouterr().err


# -- use in sd-diffusion -----------------------------------------------------------------------------------------
def generated(tiny_sd: Path, workdir: Path, photo: Image.Image, **options: Any) -> Any:
    from plugins.diffusion import DiffusionProvider

    provider = DiffusionProvider()
    provider.configure(
        {"model": str(tiny_sd), "steps": 2, "size": 64, "scheduler": "ddim", "device": "cpu", "cache": False, **options}
    )
    ctx = make_ctx(photo, workdir, diagnosis(("melanoma", 0.7), ("melanocytic_nevus", 0.3)), body_site="upper back")
    ctx.request.patient = PatientDetails(age=47.0, sex="male", body_site="upper back")
    return provider.references(ctx)


def test_the_trained_lora_changes_sd_diffusion_and_is_prompted_with_captions(
    tiny_sd: Path, trained: Path, ham_image: Path, tmp_path: Path
) -> None:
    photo = Image.open(ham_image).convert("RGB")
    base = generated(tiny_sd, tmp_path / "base", photo)
    with_lora = generated(tiny_sd, tmp_path / "lora", photo, lora=str(trained))
    stock_words = generated(tiny_sd, tmp_path / "same-prompt", photo, prompts="caption", modality="dermoscopic image")
    assert base[0].extra["prompt_style"] == "concept" and with_lora[0].extra["prompt_style"] == "caption"
    expected = caption_prompt(
        "melanoma", seed=0, body_site="upper back", age=47.0, sex="male", modality="dermoscopic image", morphology=None
    )
    if load_describer() is None:  # the photo's descriptors join the top condition's caption once issue 21 lands
        assert with_lora[0].extra["prompt"] == expected.prompt
    assert (
        "cutaneous melanoma" in with_lora[0].extra["prompt"].lower() and "back" in with_lora[0].extra["prompt"].lower()
    )
    assert "a man in his 40s" in with_lora[1].extra["prompt"]
    for ref in with_lora:
        assert ref.synthetic and ref.caption.endswith(SYNTHETIC_LABEL) and ref.extra["lora"] == str(trained)
        assert Image.open(ref.path).text["DermChat-Label"] == SYNTHETIC_LABEL
    same = np.asarray(Image.open(stock_words[0].path), dtype=np.int16)
    changed = np.asarray(Image.open(with_lora[0].path), dtype=np.int16)
    assert stock_words[0].extra["prompt"] == with_lora[0].extra["prompt"]  # same words; only the LoRA differs
    assert np.abs(changed - same).mean() > 1.0


def test_a_turn_with_the_trained_lora_labels_and_verifies_its_images(
    tiny_sd: Path, trained: Path, ham_image: Path, tmp_path: Path
) -> None:
    app = diffusion_app(tmp_path, tiny_sd, lora=str(trained))
    result = app.run_turn_sync(TurnRequest(image=ham_image, force=True))
    assert result.status == "ok", result.errors
    refs = result.references + result.hidden_references
    assert refs and all(r.synthetic and r.caption.endswith(SYNTHETIC_LABEL) for r in refs)
    assert all(r.verified is not None and r.extra["verification"]["verifier"] == "fake-dx" for r in refs)
    assert all(r.extra["prompt_style"] == "caption" and "LoRA" in r.provenance for r in refs)
    assert all(Image.open(r.path).text["DermChat-Label"] == SYNTHETIC_LABEL for r in result.references)


def test_the_gpu_profile_names_a_trained_lora(tiny_sd: Path, trained: Path) -> None:
    """DERMCHAT_OPTIONS merges into gpu-hub's sd-diffusion options: the profile's model, the trained LoRA."""
    from dermchat.references.diffusion import lora_manifest
    from dermchat.settings import load_settings
    from plugins.diffusion import DiffusionProvider

    env = {"DERMCHAT_PROFILE": "gpu-hub", "DERMCHAT_OPTIONS": json.dumps({"sd-diffusion": {"lora": str(trained)}})}
    provider = DiffusionProvider()
    provider.configure(load_settings(environ=env).provider_options("sd-diffusion"))
    assert provider.opts.lora == str(trained) and provider.opts.model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert lora_manifest(str(trained))["base_model"] == str(tiny_sd)  # type: ignore[index]
    assert lora_manifest(str(trained / "pytorch_lora_weights.safetensors")) is not None  # the file's folder
    assert lora_manifest("someone/not-cached-lora") is None and lora_manifest(None) is None
