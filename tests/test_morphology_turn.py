"""The morphology step in a turn: descriptors carried, disagreement raised, change since an earlier photo, and
the commands `describe`, `compare` and `bench-morphology`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from core_helpers import fake_app, soft_edged, without_segmenter_weights
from PIL import Image

import plugins.morphology as morphology_plugin
from dermchat.render import render
from dermchat.request import TurnRequest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
SKIN = (208, 162, 172)


def _spot(path: Path, halves: tuple[tuple[int, int, int], tuple[int, int, int]], radius: int = 35) -> Path:
    """A drawn spot on skin (left and right halves may differ in colour); bright enough for the fake's "nevus"."""
    rng = np.random.default_rng(1)
    h, w = 150, 200
    skin = np.clip(np.array(SKIN, float) + rng.normal(0, 3, (h, w, 3)), 0, 255)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 <= radius**2
    painted = skin.copy()
    painted[disc & (xx < w / 2)] = halves[0]
    painted[disc & (xx >= w / 2)] = halves[1]
    rgb = soft_edged(skin, painted, disc)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return path


BROWN = (150, 100, 80)


def _app(tmp_path: Path):
    return fake_app(tmp_path, [(morphology_plugin, "morphology")])


def test_turn_carries_the_descriptors_and_renders_them_for_both_audiences(tmp_path: Path) -> None:
    result = _app(tmp_path).run_turn_sync(TurnRequest(image=_spot(tmp_path / "calm.png", (BROWN, BROWN))))
    assert result.status == "ok" and result.morphology is not None
    d = result.morphology.descriptors
    assert {"asymmetry", "border", "colours", "blue_white_veil", "diameter_px", "tds", "mask_area_share"} <= set(d)
    assert d["colours"] == ["light brown"] and not result.morphology.disagrees
    assert result.triage is not None and result.triage.tier == "reassure"
    assert result.providers["morphology"].id == "classic-morphology"
    patient = render(result, "patient")
    assert "What the photo shows:" in patient and "one colour: light brown" in patient and "can be wrong" in patient
    clinician = render(result, "clinician")
    assert (
        "| TDS-style score |" in clinician
        and "| Stolz TDS |" in clinician
        and "1.3A+0.1B+0.5C+0.5D" in clinician
        and "disagreement" not in clinician
    )


def test_benign_conclusion_with_high_risk_features_is_flagged_widened_and_raised(tmp_path: Path, ham_dir: Path) -> None:
    """A real melanoma (veil, four colours) that the fake diagnoser calls a mole: the features must win."""
    result = _app(tmp_path).run_turn_sync(TurnRequest(image=ham_dir / "images" / "ISIC_0024962.jpg"))
    assert result.diagnosis is not None and result.diagnosis.top(1)[0].condition_id == "melanocytic_nevus"
    assert result.morphology is not None and result.morphology.disagrees
    assert "melanoma" in result.diagnosis.prediction_set
    assert result.triage is not None and result.triage.tier == "urgent" and "disagree" in result.triage.reason
    assert any("does not fit the image model's answer" in n for n in result.notices)
    clinician = render(result, "clinician")
    assert "Observation–diagnosis disagreement" in clinician and "blue-white veil" in clinician


def test_a_spot_that_grew_since_the_earlier_photo_raises_the_triage(tmp_path: Path) -> None:
    app = _app(tmp_path)
    earlier = _spot(tmp_path / "earlier.png", (BROWN, BROWN), radius=32)
    later = _spot(tmp_path / "later.png", (BROWN, BROWN), radius=40)
    result = app.run_turn_sync(TurnRequest(image=later, earlier_image=earlier))
    comparison = result.morphology.comparison  # type: ignore[union-attr]
    assert comparison["grew"] and comparison["red_flag"]
    assert result.triage is not None and result.triage.tier == "urgent"
    assert any("seems to have grown" in n for n in result.notices)
    assert "Compared with the earlier photo:" in render(result, "patient")
    same = app.run_turn_sync(TurnRequest(image=later, earlier_image=later))
    assert not same.morphology.comparison["changed"] and same.triage.tier == "reassure"  # type: ignore[union-attr]


def test_an_unreadable_earlier_photo_or_a_missing_describer_is_said_not_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "earlier.jpg"
    bad.write_text("not a photo")
    photo = _spot(tmp_path / "now.png", (BROWN, BROWN))
    result = _app(tmp_path).run_turn_sync(TurnRequest(image=photo, earlier_image=bad))
    assert result.status == "ok" and result.morphology is not None and result.morphology.comparison is None
    assert any("earlier photo could not be used" in n for n in result.notices)
    without = fake_app(tmp_path).run_turn_sync(TurnRequest(image=photo, earlier_image=photo))
    assert without.status == "ok" and without.morphology is None
    assert any("earlier photo could not be compared" in n for n in without.notices)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dermchat", *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300
    )


def test_describe_and_compare_commands_print_json(ham_image: Path, tmp_path: Path) -> None:
    proc = _cli("describe", str(ham_image), "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert {"asymmetry", "border", "colours", "blue_white_veil", "diameter_px", "tds", "mask_area_share"} <= set(d)
    proc = _cli("compare", str(ham_image), str(ham_image), "--json")
    assert proc.returncode == 0, proc.stderr
    c = json.loads(proc.stdout)
    assert c["changed"] is False and c["then_vs_now"]["colours"][0] == d["colours"]
    bad = tmp_path / "x.jpg"
    bad.write_text("nope")
    for args in (("describe", str(bad)), ("compare", str(ham_image), str(tmp_path / "missing.jpg"))):
        proc = _cli(*args)
        assert proc.returncode == 2 and proc.stderr.startswith("error:"), proc.stderr
    classical = json.loads(_cli("describe", str(ham_image), "--outline", "classical", "--json").stdout)
    assert set(classical) == set(d) and classical["mask_area_share"] != d["mask_area_share"]  # another outline


def test_bench_morphology_runs_on_a_few_lesions(ham_dir: Path) -> None:
    proc = _cli(
        "bench-morphology", "--data", str(ham_dir), "--limit", "6", "--compare-n", "2", "--diagnoser", "", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["mask_agreement"]["n"] == 6 and "spearman_border" in figures["mask_agreement"]
    assert figures["outline"].startswith("learned")
    assert set(figures["compare"]["no_clear_change"]) == {"rotated_90", "rescaled_0.9", "rescaled_1.1", "relit"}
    assert figures["timing"]["describe_ms_median"] > 0


def test_without_outline_weights_the_describer_says_why_and_the_turn_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_segmenter_weights(monkeypatch, tmp_path / "no-weights")
    result = _app(tmp_path).run_turn_sync(TurnRequest(image=_spot(tmp_path / "calm.png", (BROWN, BROWN))))
    assert result.status == "ok" and result.morphology is None and result.diagnosis is not None
    [error] = [e for e in result.errors if e.step == "morphology"]
    assert error.provider_id == "classic-morphology" and "option outline to 'classical'" in error.message
