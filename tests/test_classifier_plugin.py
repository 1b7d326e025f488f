"""The ham-cnn diagnoser through the plugin system, on real HAM10000 images and on non-skin images."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from classifier_fixtures import document_image, flat_wall_image, random_pattern_image, weights_dir_or_skip
from PIL import Image

import plugins.ham_classifier as ham_plugin
from dermchat.context import HEATMAP_OPTION, TurnContext
from dermchat.plugin_manager import PluginManager
from dermchat.registry import Registry
from dermchat.request import TurnRequest
from dermchat.results import QualityReport, TurnResult
from dermchat.settings import Settings
from dermchat.vocabulary import get_vocabulary

HAM_IDS = {
    "melanocytic_nevus",
    "melanoma",
    "benign_keratosis",
    "basal_cell_carcinoma",
    "actinic_keratosis",
    "vascular_lesion",
    "dermatofibroma",
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    pm = PluginManager(load_entry_points=False)
    pm.register(ham_plugin, "ham_classifier")
    return pm.collect()


@pytest.fixture(scope="module")
def diagnoser(registry: Registry) -> ham_plugin.HamCnnDiagnoser:
    weights = weights_dir_or_skip()
    provider = registry.get("diagnoser", "ham-cnn")
    assert isinstance(provider, ham_plugin.HamCnnDiagnoser)
    provider.configure({"weights_dir": str(weights)})
    return provider


def make_ctx(
    image: Image.Image, registry: Registry, workdir: Path, quality: QualityReport | None = None, heatmap: bool = False
) -> TurnContext:
    sha = hashlib.sha256(image.tobytes()).hexdigest()
    return TurnContext(
        image=image,
        settings=Settings(),
        workdir=workdir,
        request=TurnRequest(question="what is this?", options={HEATMAP_OPTION: True} if heatmap else {}),
        result=TurnResult(turn_id="test", image_sha256=sha, audience="clinician", quality=quality),
    )


def test_weights_load_through_the_plugin(diagnoser: ham_plugin.HamCnnDiagnoser) -> None:
    ok, reason = diagnoser.available()
    assert ok, reason
    diagnoser.load()
    assert diagnoser.loaded
    predictor = diagnoser.predictor
    assert 0.2 < predictor.temperature < 10
    assert 0.0 < predictor.melanoma_threshold < 1.0


def test_prediction_on_real_image_is_a_distribution_over_the_vocabulary(
    diagnoser: ham_plugin.HamCnnDiagnoser, registry: Registry, ham_image: Path, tmp_path: Path
) -> None:
    with Image.open(ham_image) as im:
        image = im.convert("RGB")
    dx = diagnoser.diagnose(make_ctx(image, registry, tmp_path, heatmap=True))
    vocab = get_vocabulary()
    ids = [e.condition_id for e in dx.differential]
    assert set(ids) == HAM_IDS and all(i in vocab for i in ids)
    assert sum(e.probability for e in dx.differential) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= e.probability <= 1.0 for e in dx.differential)
    assert dx.prediction_set and set(dx.prediction_set) <= HAM_IDS
    assert dx.top(1)[0].condition_id in dx.prediction_set  # the set always holds the top class
    assert dx.coverage == pytest.approx(0.9)
    assert dx.triage_hint in {"reassure", "routine", "urgent"}
    if any(vocab.get(c).malignant for c in dx.prediction_set):
        assert dx.triage_hint == "urgent"
    assert dx.heatmap_path and Path(dx.heatmap_path).parent == tmp_path
    with Image.open(dx.heatmap_path) as heat:
        assert heat.format == "PNG" and heat.size == (384, 288)


def test_the_heat_map_is_drawn_only_when_the_turn_asks_for_it(
    diagnoser: ham_plugin.HamCnnDiagnoser, registry: Registry, ham_image: Path, tmp_path: Path
) -> None:
    """Grad-CAM and its PNG cost a third of a turn; a patient or API turn that will not show it skips both."""
    with Image.open(ham_image) as im:
        image = im.convert("RGB")
    plain = diagnoser.diagnose(make_ctx(image, registry, tmp_path / "plain"))
    assert plain.heatmap_path is None and not (tmp_path / "plain").exists()
    asked = diagnoser.diagnose(make_ctx(image, registry, tmp_path / "asked", heatmap=True))
    assert asked.heatmap_path and Path(asked.heatmap_path).is_file()
    assert asked.differential == plain.differential  # the heat map explains the answer, it never changes it


def test_known_melanoma_is_flagged_urgent(
    diagnoser: ham_plugin.HamCnnDiagnoser, registry: Registry, ham_dir: Path, tmp_path: Path
) -> None:
    """Held-out (validation-split) melanomas come out 'urgent' (the threshold targets 90% sensitivity)."""
    split = json.loads((diagnoser.weights_dir() / "split.json").read_text())
    held_out = set(split["val"])
    with (ham_dir / "metadata.csv").open() as fh:
        mel = [r["image_id"] for r in csv.DictReader(fh) if r["dx"] == "mel" and r["image_id"] in held_out][:20]
    assert len(mel) == 20, "not enough validation melanomas found"
    urgent = 0
    for image_id in mel:
        with Image.open(ham_dir / "images" / f"{image_id}.jpg") as im:
            dx = diagnoser.diagnose(make_ctx(im.convert("RGB"), registry, tmp_path))
        urgent += dx.triage_hint == "urgent"
    assert urgent / len(mel) >= 0.75


@pytest.mark.parametrize(
    "make_image",
    [document_image, flat_wall_image, random_pattern_image],
    ids=["document", "flat-wall", "random-pattern"],
)
def test_obviously_non_skin_images_abstain(
    diagnoser: ham_plugin.HamCnnDiagnoser, registry: Registry, tmp_path: Path, make_image
) -> None:
    dx = diagnoser.diagnose(make_ctx(make_image(), registry, tmp_path))
    assert dx.abstained, dx.extra
    assert "out of its depth" in (dx.abstain_reason or "")
    assert not dx.differential and not dx.prediction_set


def test_quality_step_saying_not_skin_makes_it_abstain(
    diagnoser: ham_plugin.HamCnnDiagnoser, registry: Registry, ham_image: Path, tmp_path: Path
) -> None:
    report = QualityReport(provider_id="test", score=80, acceptable=True, threshold=50, band="good", is_skin=False)
    with Image.open(ham_image) as im:
        dx = diagnoser.diagnose(make_ctx(im.convert("RGB"), registry, tmp_path, quality=report))
    assert dx.abstained and "skin" in (dx.abstain_reason or "")


def test_unavailable_with_a_clear_reason_when_weights_are_missing(tmp_path: Path) -> None:
    provider = ham_plugin.HamCnnDiagnoser()
    provider.configure({"weights_dir": str(tmp_path / "nowhere")})
    ok, reason = provider.available()
    assert not ok and "weights not found at" in reason and "nowhere" in reason


def test_benchmark_is_registered(registry: Registry) -> None:
    assert "ham-cnn" in registry.benchmarks
