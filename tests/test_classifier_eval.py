"""The evaluation command on a small slice of the held-out split: it runs, prints every figure, writes plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from classifier_fixtures import weights_dir_or_skip


def eval_args(ham_dir: Path, limit: int, timing_images: int = 1) -> list[str]:
    """``eval`` of the shipped weights (skipping without them) on ``limit`` images, JSON out, one thread."""
    weights = weights_dir_or_skip()
    data = ["--data", str(ham_dir), "--weights", str(weights), "--json", "--limit", str(limit)]
    return [*data, "--timing-images", str(timing_images), "--threads", "1"]


def test_eval_prints_all_figures_and_writes_plots(
    ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermchat.classifier.evaluate import main

    rc = main([*eval_args(ham_dir, limit=120, timing_images=3), "--plots", str(tmp_path)])
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


def test_eval_on_a_folder_without_weights_fails_clearly(
    ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermchat.classifier.evaluate import main

    assert main(["--data", str(ham_dir), "--weights", str(tmp_path)]) == 2
    assert "weights not found" in capsys.readouterr().err


def test_eval_image_only_ignores_the_details_and_matches_the_image_only_block(
    ham_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermchat.classifier.evaluate import main

    common = eval_args(ham_dir, limit=60)
    assert main(common) == 0
    with_details = json.loads(capsys.readouterr().out)
    assert main([*common, "--image-only"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert not alone["patient_info"]["used"] and "image_only" not in alone
    for key in ("accuracy", "balanced_accuracy", "macro_auc_ovr"):
        assert alone[key] == with_details["image_only"][key]


def test_eval_writes_isic_submission_and_truth_files_one_row_per_image(
    ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv

    from dermchat.classifier.evaluate import main

    pred, truth = tmp_path / "pred.csv", tmp_path / "truth.csv"
    assert (
        main(
            [
                *eval_args(ham_dir, limit=30),
                "--heatmap-images",
                "0",
                "--image-only",
                "--predictions-csv",
                str(pred),
                "--truth-csv",
                str(truth),
            ]
        )
        == 0
    )
    figures = json.loads(capsys.readouterr().out)
    header = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    with pred.open() as fh:
        pred_rows = list(csv.reader(fh))
    with truth.open() as fh:
        truth_rows = list(csv.reader(fh))
    assert pred_rows[0] == header and truth_rows[0] == header
    assert len(pred_rows) == len(truth_rows) == 31
    assert [r[0] for r in pred_rows[1:]] == [r[0] for r in truth_rows[1:]]
    assert all(r[0].startswith("ISIC_") for r in pred_rows[1:])
    for row in pred_rows[1:]:
        assert abs(sum(float(v) for v in row[1:]) - 1.0) < 1e-4
    assert all(sorted(float(v) for v in row[1:]) == [0.0] * 6 + [1.0] for row in truth_rows[1:])
    # the truth file says what the metadata says: a melanoma row has MEL=1
    dx = {line.split(",")[1]: line.split(",")[2] for line in (ham_dir / "metadata.csv").read_text().splitlines()[1:]}
    for row in truth_rows[1:]:
        assert header[row.index("1.000000")].lower() == dx[row[0]]
    assert 0.0 <= figures["melanoma_auc"] <= 1.0


def test_the_heat_map_lights_the_lesion_not_the_skin_around_it(ham_dir: Path) -> None:
    """Grad-CAM of real held-back photos: more of the heat falls inside the expert mask than the mask's share of
    the frame, and most of it inside on most images."""
    from dermchat.classifier.data import read_metadata, read_split
    from dermchat.classifier.evaluate import heatmap_mask_share
    from dermchat.classifier.predictor import Predictor

    weights = weights_dir_or_skip()
    predictor = Predictor(weights)
    held_back = set(read_split(weights / "split.json")["val"])
    records = [r for r in read_metadata(ham_dir) if r.image_id in held_back]
    share = heatmap_mask_share(predictor, ham_dir, records, 24)
    assert share["images"] == 24
    assert share["heat_inside_mask_mean"] > share["mask_area_share_mean"] + 0.1
    assert share["heat_inside_mask_mean"] > 0.5


def test_eval_scores_only_lesions_the_network_never_trained_on(ham_dir: Path, tmp_path: Path) -> None:
    """A --fold-in-val network has seen the validation lesions: `auto` moves to the calibration split, and asking
    for the validation split anyway is labelled in-sample."""
    from dermchat.classifier.data import DataError, read_metadata, split_by_lesion, write_split
    from dermchat.classifier.evaluate import select_records

    records = read_metadata(ham_dir)
    split = split_by_lesion(records, seed=0)
    plain, folded = tmp_path / "plain.json", tmp_path / "folded.json"
    write_split(plain, split, 0, (0.7, 0.15, 0.15))
    write_split(folded, split, 0, (0.7, 0.15, 0.15), trained_on=("train", "val"))

    chosen, why = select_records(records, plain, "auto")
    assert {r.image_id for r in chosen} == set(split["val"]) and "never trained on" in why
    chosen, why = select_records(records, folded, "auto")
    assert {r.image_id for r in chosen} == set(split["calib"]) and "only lesions never trained on" in why
    _, why = select_records(records, folded, "val")
    assert "in-sample" in why and "NOT an estimate" in why
    _, why = select_records(records, plain, "train")
    assert "in-sample" in why
    unseen = [r for r in records if r.image_id in set(split["val"])]
    chosen, why = select_records(unseen, plain, "auto")  # a folder of lesions outside this network's training data
    assert len(chosen) == len(unseen) and "no overlap" in why
    with pytest.raises(DataError, match=r"none of the calib split images.*--split val"):  # the folded one saw them all
        select_records(unseen, folded, "auto")
