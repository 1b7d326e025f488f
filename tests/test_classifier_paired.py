"""`eval-paired`: the paired lesion-level bootstrap that says whether one classifier beats another beyond noise,
read from the ISIC files `eval` writes, on real HAM10000 labels and lesion ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermchat.classifier import HAM_CLASSES
from dermchat.classifier.data import Record, read_metadata
from dermchat.classifier.evaluate import write_isic_csv
from dermchat.classifier.paired import lesion_groups, main, read_isic_csv


def _noisy_predictions(labels: np.ndarray, wrong_share: float, seed: int) -> np.ndarray:
    """Probabilities that put the most mass on the true class except for `wrong_share` of the images."""
    rng = np.random.default_rng(seed)
    k = len(HAM_CLASSES)
    probs = rng.dirichlet(np.ones(k), size=len(labels)) * 0.5
    guess = np.where(rng.random(len(labels)) < wrong_share, (labels + rng.integers(1, k, len(labels))) % k, labels)
    probs[np.arange(len(labels)), guess] += 0.6
    return probs / probs.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def scored(ham_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    """Truth and three prediction files for 600 real HAM images: a baseline, its exact copy, a clearly worse one."""
    records = read_metadata(ham_dir)[::14][:600]  # spread over the file, which is sorted by diagnosis
    labels = np.array([r.label for r in records])
    folder = tmp_path_factory.mktemp("paired")
    write_isic_csv(folder / "truth.csv", records, np.eye(len(HAM_CLASSES))[labels])
    base = _noisy_predictions(labels, 0.15, seed=1)
    write_isic_csv(folder / "base.csv", records, base)
    write_isic_csv(folder / "copy.csv", list(reversed(records)), base[::-1])  # same figures, another row order
    write_isic_csv(folder / "worse.csv", records, _noisy_predictions(labels, 0.45, seed=2))
    return folder, records


def _report(folder: Path, ham_dir: Path, capsys: pytest.CaptureFixture[str], *files: str) -> dict:
    argv = ["--truth", str(folder / "truth.csv"), *(str(folder / f) for f in files), "--data", str(ham_dir)]
    assert main([*argv, "--resamples", "200", "--json"]) == 0
    return json.loads(capsys.readouterr().out, parse_constant=_no_nan)


def _no_nan(constant: str) -> None:
    raise AssertionError(f"the report is not valid JSON: it contains {constant}")


def test_a_clearly_worse_model_is_lower_and_an_identical_one_is_noise(
    scored: tuple[Path, list[Record]], ham_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, records = scored
    report = _report(folder, ham_dir, capsys, "base.csv", "copy.csv", "worse.csv")
    assert report["images"] == 600 and report["images_without_lesion_id"] == 0
    assert report["lesions"] == len({r.lesion_id for r in records}) < 600  # several photos of one lesion
    same = report["differences"]["copy.csv - base.csv"]
    assert all(d["difference"] == 0 and d["ci95"] == [0, 0] for d in same.values())
    assert {d["verdict"] for d in same.values()} == {"no difference beyond noise"}
    worse = report["differences"]["worse.csv - base.csv"]
    assert worse["accuracy"]["verdict"] == "lower" and worse["accuracy"]["difference"] < -0.2
    assert worse["accuracy"]["ci95"][0] < worse["accuracy"]["difference"] < worse["accuracy"]["ci95"][1]
    assert report["figures"]["base.csv"]["accuracy"] == pytest.approx(0.85, abs=0.05)


def test_the_human_report_names_the_verdicts(
    scored: tuple[Path, list[Record]], ham_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = scored
    argv = ["--truth", str(folder / "truth.csv"), str(folder / "base.csv"), str(folder / "worse.csv")]
    assert main([*argv, "--data", str(ham_dir), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "600 images" in out and "resamples of whole lesions" in out and "accuracy: lower" in out


def test_a_figure_the_images_cannot_measure_is_null_not_nan(
    ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [r for r in read_metadata(ham_dir) if r.dx != "mel"][:150]
    labels = np.array([r.label for r in records])
    write_isic_csv(tmp_path / "truth.csv", records, np.eye(len(HAM_CLASSES))[labels])
    write_isic_csv(tmp_path / "a.csv", records, _noisy_predictions(labels, 0.2, seed=1))
    write_isic_csv(tmp_path / "b.csv", records, _noisy_predictions(labels, 0.3, seed=2))
    report = _report(tmp_path, ham_dir, capsys, "a.csv", "b.csv")  # parsed strictly: no NaN may appear
    assert report["figures"]["a.csv"]["melanoma_auc"] is None
    melanoma = report["differences"]["b.csv - a.csv"]["melanoma_auc"]
    assert melanoma["ci95"] is None and melanoma["verdict"].startswith("not measured")


def test_lesions_are_resampled_whole_and_unknown_images_alone(ham_dir: Path, tmp_path: Path) -> None:
    records = read_metadata(ham_dir)[:200]
    ids = [r.image_id for r in records] + ["ISIC_not_in_the_folder"]
    groups, unknown = lesion_groups(ids, ham_dir)
    assert unknown == 1 and sum(len(g) for g in groups) == len(ids)
    lesion = {r.image_id: r.lesion_id for r in records}
    for group in groups:
        assert len({lesion.get(ids[i], ids[i]) for i in group}) == 1
    assert lesion_groups(ids, tmp_path)[1] == len(ids)  # a folder without metadata: every image on its own


def test_files_that_do_not_match_are_refused_with_the_reason(
    scored: tuple[Path, list[Record]], ham_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, records = scored
    write_isic_csv(tmp_path / "partial.csv", records[:500], np.full((500, 7), 1 / 7))
    (tmp_path / "bad_header.csv").write_text("image,a,b\nISIC_1,0.5,0.5\n")
    truth = ["--truth", str(folder / "truth.csv"), "--data", str(ham_dir)]
    cases = {
        "no prediction for 100 of the 600": [*truth, str(folder / "base.csv"), str(tmp_path / "partial.csv")],
        "not an ISIC 2018 task 3 file": [*truth, str(folder / "base.csv"), str(tmp_path / "bad_header.csv")],
        "must be one-hot": ["--truth", str(folder / "base.csv"), str(folder / "base.csv"), str(folder / "worse.csv")],
        "at least two prediction files": [*truth, str(folder / "base.csv")],
        "no such file": [*truth, str(folder / "base.csv"), str(tmp_path / "missing.csv")],
    }
    for message, argv in cases.items():
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_the_reader_maps_the_challenge_columns_back_to_the_model_classes(
    scored: tuple[Path, list[Record]],
) -> None:
    folder, records = scored
    truth = read_isic_csv(folder / "truth.csv")
    assert truth.image_ids == [r.image_id for r in records]
    assert [HAM_CLASSES[i] for i in truth.rows.argmax(axis=1)] == [r.dx for r in records]
