"""The evaluation command on a small slice of the held-out split: it runs, prints every figure, writes plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier_fixtures import weights_dir_or_skip


def test_eval_prints_all_figures_and_writes_plots(ham_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from dermchat.classifier.evaluate import main

    weights = weights_dir_or_skip()
    rc = main(["--data", str(ham_dir), "--weights", str(weights), "--json", "--plots", str(tmp_path),
               "--limit", "120", "--timing-images", "3", "--threads", "1"])
    assert rc == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["n_images"] == 120 and "validation" in figures["evaluated_on"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc_ovr"):
        assert 0.0 <= figures[key] <= 1.0
    assert set(figures["per_class"]) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert {"ece_before", "ece_after"} <= set(figures["calibration"])
    assert {"coverage", "mean_set_size"} <= set(figures["conformal"])
    assert "sensitivity" in figures["melanoma_urgent_threshold"]
    assert set(figures["subgroups_balanced_accuracy"]) == {"sex", "age_band", "site"}
    assert figures["speed"]["ms_per_image_median"] > 0
    assert figures["patient_info"]["used"] and figures["patient_info"]["images_with_details"] > 100
    assert {"accuracy", "balanced_accuracy", "macro_auc_ovr", "ece_after", "coverage"} <= set(figures["image_only"])
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000


def test_eval_on_a_folder_without_weights_fails_clearly(ham_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from dermchat.classifier.evaluate import main

    assert main(["--data", str(ham_dir), "--weights", str(tmp_path)]) == 2
    assert "weights not found" in capsys.readouterr().err


def test_eval_image_only_ignores_the_details_and_matches_the_image_only_block(
        ham_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dermchat.classifier.evaluate import main

    weights = weights_dir_or_skip()
    common = ["--data", str(ham_dir), "--weights", str(weights), "--json", "--limit", "60", "--timing-images", "1",
              "--threads", "1"]
    assert main(common) == 0
    with_details = json.loads(capsys.readouterr().out)
    assert main(common + ["--image-only"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert not alone["patient_info"]["used"] and "image_only" not in alone
    for key in ("accuracy", "balanced_accuracy", "macro_auc_ovr"):
        assert alone[key] == with_details["image_only"][key]
