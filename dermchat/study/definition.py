"""The study YAML: what researchers write instead of code, and its validation with line numbers.

A malformed study must stop the app at start-up with the line that is wrong, not fail halfway through a
participant's session. The file is parsed with ``yaml.compose`` so every value keeps its position; pydantic
errors (and the cross-field checks below) are mapped back to the offending entry's ``file:line``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic_core import ErrorDetails

from dermchat.paths import REPO_DIR, default_data_dir
from dermchat.settings import Settings
from dermchat.vocabulary import get_vocabulary

STUDIES_DIR = REPO_DIR / "studies"
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
CONDITIONS_CHOICE = "conditions"
DONT_KNOW = "I don't know"
# Settings an arm may not change: they pick the study itself or where files go, not what participants see.
FORBIDDEN_ARM_SETTINGS = {"study", "workdir", "profile", "options"}

Loc = tuple[str | int, ...]


class StudyDefinitionError(ValueError):
    """A study file that cannot be used; ``str(exc)`` lists each problem as ``file:line: message``."""

    def __init__(self, path: Path, problems: list[tuple[int | None, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}:{line}: {msg}" if line else f"{path}: {msg}" for line, msg in problems]
        super().__init__("invalid study file:\n" + "\n".join(lines))

    @property
    def first_line(self) -> int | None:
        return next((line for line, _ in self.problems if line), None)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LikertItem(_Strict):
    """A rating from 1 to ``scale``; anchors label the ends (two labels) or every point (``scale`` labels)."""

    kind: Literal["likert"]
    id: str = Field(pattern=IDENTIFIER)
    text: str = Field(min_length=1)
    scale: int = Field(7, ge=2, le=11)
    anchors: list[str] = Field(default_factory=list)
    required: bool = True

    def choices(self) -> list[tuple[str, int]]:
        """(label, value) pairs for a radio group: anchors shown next to their points."""
        labels: dict[int, str] = {}
        if len(self.anchors) == self.scale:
            labels = {i + 1: a for i, a in enumerate(self.anchors)}
        elif len(self.anchors) == 2:
            labels = {1: self.anchors[0], self.scale: self.anchors[1]}
        return [(f"{v} – {labels[v]}" if v in labels else str(v), v) for v in range(1, self.scale + 1)]


class TextItem(_Strict):
    kind: Literal["text"]
    id: str = Field(pattern=IDENTIFIER)
    text: str = Field(min_length=1)
    required: bool = False
    max_chars: int = Field(2000, ge=1, le=20000)


class ChoiceItem(_Strict):
    """One option among ``choices``; ``choices: conditions`` lists the condition vocabulary (+ "I don't know")."""

    kind: Literal["choice"]
    id: str = Field(pattern=IDENTIFIER)
    text: str = Field(min_length=1)
    choices: list[str] | Literal["conditions"]
    required: bool = True
    scored: bool = Field(False, description="compare the answer with the case's ground truth (accuracy per arm)")

    _conditions: list[str] = PrivateAttr(default_factory=list)

    def options(self) -> list[str]:
        """The answer options; ``choices: conditions`` lists the study's conditions (set at load) + "I don't know"."""
        if self.choices == CONDITIONS_CHOICE:
            vocab = get_vocabulary()
            ids = self._conditions or [c.id for c in vocab]
            return [vocab.get(c).patient_name for c in ids] + [DONT_KNOW]
        return list(self.choices)


Item = Annotated[LikertItem | TextItem | ChoiceItem, Field(discriminator="kind")]


class Questionnaire(_Strict):
    """Items shown together; ``after_arm`` repeats them after each arm's block of cases (within-subject)."""

    id: str = Field(pattern=IDENTIFIER)
    title: str = ""
    intro: str = ""
    when: Literal["end", "after_arm"] = "end"
    items: list[Item] = Field(min_length=1)


class Arm(_Strict):
    """One condition of the study: settings overrides applied to every turn shown under it."""

    id: str = Field(pattern=IDENTIFIER)
    label: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)


class Case(_Strict):
    id: str = Field(pattern=IDENTIFIER)
    image: str = Field(min_length=1, description="path relative to the cases' image_dir")
    ground_truth: str | None = None
    question: str = Field("", description="what the participant 'asks' DermChat with this photo")


class CaseSet(_Strict):
    """Images from a folder (relative to ``DERMCHAT_DATA_DIR``) listed inline or in a CSV next to the study."""

    image_dir: str = "images"
    items: list[Case] = Field(default_factory=list)
    csv: str | None = Field(None, description="CSV with columns id,image[,ground_truth,question]")


class Privacy(_Strict):
    store_images: bool = Field(False, description="store the (EXIF-stripped) case images, not only their hash")
    record_user_agent: bool = Field(False, description="record the browser's user agent with the participant")


class Study(_Strict):
    id: str = Field(pattern=IDENTIFIER)
    title: str = Field(min_length=1)
    consent: str = Field(min_length=1, description="consent text shown before anything is recorded")
    thank_you: str = "Thank you for taking part. You can close this page now."
    design: Literal["within", "between"]
    counterbalancing: Literal["latin_square", "random"] = "latin_square"
    seed: int = 0
    arms: list[Arm] = Field(min_length=1)
    cases: CaseSet
    case_questions: list[Item] = Field(default_factory=list)
    questionnaires: list[Questionnaire] = Field(default_factory=list)
    conditions: list[str] | None = Field(
        None,
        description="answer options of 'choices: conditions' questions (condition ids or HAM codes); "
        "default: the ground truths of the cases",
    )
    privacy: Privacy = Field(default_factory=Privacy)
    database_url: str | dict[str, str] | None = Field(
        None, description='SQLAlchemy URL, or {"$env": "NAME"} to read it from the environment (no secrets in git)'
    )
    allow_entered_codes: bool = Field(
        False,
        description=(
            "let participants start with a code they type (e.g. one the researcher issued); they are then shown a "
            "resume key once, since a typed code never resumes a session by itself"
        ),
    )
    source_path: str | None = Field(None, exclude=True)
    data_dir: str | None = Field(None, exclude=True, description="resolved image folder, filled by load_study")

    @field_validator("consent", "title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    # -- lookups ---------------------------------------------------------------------------------------------
    def arm(self, arm_id: str) -> Arm:
        for arm in self.arms:
            if arm.id == arm_id:
                return arm
        raise KeyError(f"study {self.id!r} has no arm {arm_id!r}")

    def case(self, case_id: str) -> Case:
        for case in self.cases.items:
            if case.id == case_id:
                return case
        raise KeyError(f"study {self.id!r} has no case {case_id!r}")

    def questionnaire(self, questionnaire_id: str) -> Questionnaire:
        for questionnaire in self.questionnaires:
            if questionnaire.id == questionnaire_id:
                return questionnaire
        raise KeyError(f"study {self.id!r} has no questionnaire {questionnaire_id!r}")

    def image_path(self, case: Case) -> Path:
        base = Path(self.data_dir) if self.data_dir else default_data_dir() / self.cases.image_dir
        return base / case.image

    def ground_truth_id(self, case: Case) -> str | None:
        return get_vocabulary().resolve(case.ground_truth) if case.ground_truth else None

    def answer_conditions(self) -> list[str]:
        """The condition ids offered by 'choices: conditions': the study's list, else what its cases can be
        (their ground truths, in the vocabulary's order), so photos of 7 lesion types never offer 46 answers."""
        vocab = get_vocabulary()
        if self.conditions is not None:
            wanted = [vocab.resolve(c) for c in self.conditions]
        else:
            wanted = [self.ground_truth_id(case) for case in self.cases.items]
        ids = {c for c in wanted if c}
        return [c.id for c in vocab if c.id in ids]


# -- YAML with positions -------------------------------------------------------------------------------------
def _compose(path: Path, text: str) -> yaml.Node:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # The entry that is wrong starts at the context mark ("while parsing a flow sequence"); the parser
        # only notices later, at the problem mark, so name both.
        start, noticed = exc.context_mark, exc.problem_mark
        mark = start or noticed
        line = mark.line + 1 if mark else None
        where = f" (noticed at line {noticed.line + 1})" if start and noticed and noticed.line != start.line else ""
        message = f"not valid YAML: {exc.context + ': ' if exc.context else ''}{exc.problem or exc}{where}"
        raise StudyDefinitionError(path, [(line, message)]) from None
    if node is None:
        raise StudyDefinitionError(path, [(None, "the file is empty")])
    _check_duplicate_keys(path, node)
    return node


def _check_duplicate_keys(path: Path, node: yaml.Node) -> None:
    """PyYAML keeps the last of two equal keys silently; in a study that hides a typo, so reject it."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                raise StudyDefinitionError(path, [(key.start_mark.line + 1, f"duplicate key {key.value!r}")])
            seen.add(key.value)
            _check_duplicate_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(path, item)


def _line_of(root: yaml.Node, loc: Loc) -> int:
    """The line of the deepest node along ``loc`` (pydantic's error location) that exists in the file."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                continue  # a union tag such as 'likert' in pydantic's location, or a missing key
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and p in {"likert", "text", "choice"}))
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    elif error["type"] == "union_tag_invalid":
        message = "kind must be one of: likert, text, choice"
    elif error["type"] == "union_tag_not_found":
        message = "missing 'kind' (likert, text or choice)"
    return f"{where}: {message}" if where else message


# -- cross-field checks -----------------------------------------------------------------------------------------
def _semantic_problems(study: Study, *, check_images: bool) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []

    def unique(items: list[Any], loc: Loc, what: str) -> None:
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.id in seen:
                problems.append(((*loc, index, "id"), f"duplicate {what} id {item.id!r}"))
            seen.add(item.id)

    unique(study.arms, ("arms",), "arm")
    unique(study.cases.items, ("cases", "items"), "case")
    unique(study.case_questions, ("case_questions",), "question")
    unique(study.questionnaires, ("questionnaires",), "questionnaire")
    for q_index, questionnaire in enumerate(study.questionnaires):
        unique(questionnaire.items, ("questionnaires", q_index, "items"), "item")
        if questionnaire.when == "after_arm" and study.design == "between":
            problems.append(
                (
                    ("questionnaires", q_index, "when"),
                    "'after_arm' needs a within-subject design (between-subject participants see one arm: use 'end')",
                )
            )
    for index, arm in enumerate(study.arms):
        problems.extend(_arm_problems(arm, ("arms", index, "settings")))
    if not study.cases.items:
        problems.append((("cases",), "no cases: list them under 'items' or name a 'csv'"))
    if study.design == "within" and len(study.cases.items) < len(study.arms):
        problems.append((("cases",), f"a within-subject study needs at least one case per arm ({len(study.arms)})"))
    vocab = get_vocabulary()
    for index, case in enumerate(study.cases.items):
        if case.ground_truth and vocab.resolve(case.ground_truth) is None:
            problems.append((("cases", "items", index, "ground_truth"), f"unknown condition {case.ground_truth!r}"))
        if check_images and not study.image_path(case).is_file():
            problems.append(
                (
                    ("cases", "items", index, "image"),
                    f"image not found: {study.image_path(case)} (set DERMCHAT_DATA_DIR to the data folder)",
                )
            )
    problems.extend(_condition_problems(study))
    for index, item in enumerate(study.case_questions):
        if isinstance(item, ChoiceItem) and item.scored and not any(c.ground_truth for c in study.cases.items):
            problems.append((("case_questions", index, "scored"), "scored questions need cases with ground_truth"))
    return problems


def _condition_problems(study: Study) -> list[tuple[Loc, str]]:
    """The answer options must be known conditions, include every case's ground truth, and exist at all."""
    vocab = get_vocabulary()
    problems: list[tuple[Loc, str]] = []
    for index, name in enumerate(study.conditions or []):
        if vocab.resolve(name) is None:
            problems.append((("conditions", index), f"unknown condition {name!r}"))
    if study.conditions is not None and not problems:
        offered = set(study.answer_conditions())
        if len(offered) < len(study.conditions):
            problems.append((("conditions",), "the same condition is listed twice"))
        for index, case in enumerate(study.cases.items):
            truth = study.ground_truth_id(case)
            if truth and truth not in offered:
                problems.append(
                    (
                        ("cases", "items", index, "ground_truth"),
                        f"{case.ground_truth!r} is not among the study's conditions (a participant could "
                        "never answer it)",
                    )
                )
    asks = [
        i
        for i, item in enumerate(study.case_questions)
        if isinstance(item, ChoiceItem) and item.choices == CONDITIONS_CHOICE
    ]
    if asks and not study.answer_conditions():
        problems.append(
            (
                ("case_questions", asks[0], "choices"),
                "'choices: conditions' needs a 'conditions' list or cases with ground_truth",
            )
        )
    return problems


def _arm_problems(arm: Arm, loc: Loc) -> list[tuple[Loc, str]]:
    forbidden = sorted(FORBIDDEN_ARM_SETTINGS & set(arm.settings))
    if forbidden:
        return [((*loc, forbidden[0]), f"an arm may not change {', '.join(forbidden)}")]
    unknown = sorted(set(arm.settings) - set(Settings.model_fields))
    if unknown:
        return [((*loc, unknown[0]), f"{unknown[0]!r} is not a DermChat setting")]
    try:
        Settings(**arm.settings)
    except ValidationError as exc:
        return [((*loc, *err["loc"]), f"{err['msg']}") for err in exc.errors()]
    return []


def _cases_from_csv(path: Path, csv_name: str) -> list[dict[str, Any]]:
    csv_path = (path.parent / csv_name).resolve()
    if not csv_path.is_file():
        raise FileNotFoundError(f"cases CSV not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"id", "image"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"cases CSV {csv_path} needs columns id,image (missing: {', '.join(sorted(missing))})")
    return [{k: v for k, v in row.items() if v not in (None, "")} for row in rows]


# -- entry points -------------------------------------------------------------------------------------------------
def load_study(path: str | Path, *, check_images: bool = True, data_dir: str | Path | None = None) -> Study:
    """Parse and validate a study file; raises ``StudyDefinitionError`` naming ``file:line`` of each problem."""
    path = Path(path)
    if not path.is_file():
        raise StudyDefinitionError(path, [(None, "no such file")])
    node = _compose(path, path.read_text(encoding="utf-8"))
    data = yaml.SafeLoader("").construct_document(node)
    if not isinstance(data, dict):
        raise StudyDefinitionError(path, [(node.start_mark.line + 1, "expected a mapping (key: value) at the top")])
    cases = data.get("cases")
    if isinstance(cases, dict) and cases.get("csv"):
        try:
            cases["items"] = list(cases.get("items") or []) + _cases_from_csv(path, str(cases["csv"]))
        except (OSError, ValueError) as exc:
            raise StudyDefinitionError(path, [(_line_of(node, ("cases", "csv")), str(exc))]) from None
    try:
        study = Study.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[int | None, str]] = [
            (_line_of(node, tuple(err["loc"])), _describe(err)) for err in exc.errors()
        ]
        raise StudyDefinitionError(path, problems) from None
    base = Path(data_dir) if data_dir else default_data_dir()
    study = study.model_copy(update={"source_path": str(path.resolve()), "data_dir": str(base / study.cases.image_dir)})
    semantic = _semantic_problems(study, check_images=check_images)
    if semantic:
        raise StudyDefinitionError(
            path, [(_line_of(node, loc), f"{'.'.join(map(str, loc))}: {msg}") for loc, msg in semantic]
        )
    conditions = study.answer_conditions()
    for item in [*study.case_questions, *(i for q in study.questionnaires for i in q.items)]:
        if isinstance(item, ChoiceItem):
            item._conditions = conditions
    return study


def study_path(ref: str, studies_dir: Path = STUDIES_DIR) -> Path:
    """A study by file path, or by name in ``studies/`` (the ``?study=<name>`` URL parameter)."""
    candidate = Path(ref)
    if candidate.suffix in {".yaml", ".yml"} and candidate.is_file():
        return candidate
    if not re.fullmatch(IDENTIFIER, ref):
        raise ValueError(f"not a study name: {ref!r}")
    for suffix in (".yaml", ".yml"):
        named = studies_dir / f"{ref}{suffix}"
        if named.is_file():
            return named
    raise ValueError(f"no study named {ref!r} in {studies_dir}")


def discover_studies(studies_dir: Path = STUDIES_DIR, *, check_images: bool = True) -> dict[str, Study]:
    """Every study in a folder by id; one malformed file raises (the app must not start half-configured)."""
    studies: dict[str, Study] = {}
    for path in sorted(studies_dir.glob("*.y*ml")):
        study = load_study(path, check_images=check_images)
        if study.id in studies:
            raise StudyDefinitionError(path, [(None, f"study id {study.id!r} is also used by another file")])
        studies[study.id] = study
    return studies
