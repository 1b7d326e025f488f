"""Study YAML: the shipped examples validate; malformed files are rejected with the offending line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermchat.study.cli import main as study_cli
from dermchat.study.definition import StudyDefinitionError, load_study, study_path

REPO = Path(__file__).resolve().parent.parent
GOOD = """\
id: tiny
title: Tiny study
consent: You agree.
design: within
arms:
  - id: a
    settings: {show_references: true}
  - id: b
    settings:
      show_references: false
cases:
  image_dir: images
  items:
    - {id: c1, image: ISIC_0024698.jpg, ground_truth: nv}
    - {id: c2, image: ISIC_0025964.jpg, ground_truth: mel}
case_questions:
  - {id: guess, kind: choice, text: What is it, choices: conditions, scored: true}
questionnaires:
  - id: q
    when: after_arm
    items:
      - {id: trust, kind: likert, text: I trust it, scale: 7, anchors: [Disagree, Agree]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def rejected(tmp_path: Path, text: str) -> StudyDefinitionError:
    with pytest.raises(StudyDefinitionError) as info:
        load_study(write(tmp_path, text))
    return info.value


@pytest.mark.parametrize("name", ["reference_images_within", "citations_between"])
def test_shipped_examples_validate(name: str, ham_dir: Path) -> None:
    study = load_study(study_path(name))
    assert study.id == name
    assert all(study.image_path(case).is_file() for case in study.cases.items)
    assert len(study.arms) == 2


def test_good_file_loads(tmp_path: Path, ham_dir: Path) -> None:
    study = load_study(write(tmp_path, GOOD))
    assert [a.id for a in study.arms] == ["a", "b"]
    assert study.ground_truth_id(study.case("c2")) == "melanoma"
    assert study.case_questions[0].options()[-1] == "I don't know"


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("    settings: {show_references: true}", "    settings: {show_referencs: true}", 7, "not a DermChat setting"),
        ("      show_references: false", "      show_references: maybe", 10, "show_references"),
        ("    settings: {show_references: true}", "    settings: {study: other}", 7, "may not change"),
        (
            "    - {id: c2, image: ISIC_0025964.jpg, ground_truth: mel}",
            "    - {id: c2, image: NOPE.jpg, ground_truth: mel}",
            15,
            "image not found",
        ),
        (
            "    - {id: c2, image: ISIC_0025964.jpg, ground_truth: mel}",
            "    - {id: c2, image: ISIC_0025964.jpg, ground_truth: sunburnt toast}",
            15,
            "unknown condition",
        ),
        (
            "    - {id: c2, image: ISIC_0025964.jpg, ground_truth: mel}",
            "    - {id: c1, image: ISIC_0025964.jpg, ground_truth: mel}",
            15,
            "duplicate case id",
        ),
        (
            "      - {id: trust, kind: likert, text: I trust it, scale: 7, anchors: [Disagree, Agree]}",
            "      - {id: trust, kind: slider, text: I trust it}",
            22,
            "kind must be one of",
        ),
        (
            "      - {id: trust, kind: likert, text: I trust it, scale: 7, anchors: [Disagree, Agree]}",
            "      - {id: trust, kind: likert, text: I trust it, scale: 70}",
            22,
            "scale",
        ),
        ("design: within", "design: crossover", 4, "design"),
        ("design: within", "design: within\ntitle: again", 5, "duplicate key"),
        ("  - id: q", "  - id: q\n    colour: red", 20, "unknown field"),
        ("    - {id: c1, image: ISIC_0024698.jpg, ground_truth: nv}", "    - {id: c1, image: [unclosed", 14, "YAML"),
    ],
)
def test_malformed_file_names_the_line(
    tmp_path: Path, ham_dir: Path, old: str, new: str, line: int, words: str
) -> None:
    assert old in GOOD
    error = rejected(tmp_path, GOOD.replace(old, new))
    assert error.first_line == line, str(error)
    assert words in str(error)
    assert f"study.yaml:{line}:" in str(error)


def test_between_design_rejects_after_arm_questionnaires(tmp_path: Path, ham_dir: Path) -> None:
    error = rejected(tmp_path, GOOD.replace("design: within", "design: between"))
    assert error.first_line == 20 and "after_arm" in str(error)


def test_cli_validate_reports_file_and_line(tmp_path: Path, ham_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, GOOD.replace("scale: 7", "scale: 1"))
    assert study_cli(["validate", str(bad)]) == 1
    assert f"{bad}:22:" in capsys.readouterr().err
    assert study_cli(["validate", str(REPO / "studies" / "citations_between.yaml")]) == 0
    assert "citations_between" in capsys.readouterr().out


def test_study_names_cannot_escape_the_folder() -> None:
    with pytest.raises(ValueError):
        study_path("../../etc/passwd")


def test_readme_documents_every_export_column() -> None:
    """An analyst opens the CSVs with studies/README.md beside them: each file's columns must be explained there."""
    import re

    from dermchat.study.export import COLUMNS

    readme = (REPO / "studies" / "README.md").read_text(encoding="utf-8")
    for name, columns in COLUMNS.items():
        match = re.search(rf"^- `{re.escape(name)}`.*?(?=^- `|^#|\Z)", readme, flags=re.M | re.S)
        assert match, f"studies/README.md does not describe {name}"
        documented = set(re.findall(r"`([a-z_0-9]+)`", match.group(0)))
        assert set(columns) <= documented, f"{name}: undocumented columns {sorted(set(columns) - documented)}"
    assert "events.jsonl" in readme
