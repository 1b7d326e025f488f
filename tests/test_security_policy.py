"""The safety policy against hostile plugins, and what leaves the engine (issue 18, items 4, 9, 10 and 12).

Why: a plugin's ``extra_notices`` got the live result before the required notices were computed, and
``turn_completed`` after: a test plugin turned urgent melanoma turns into "reassure" with no notices, and the
study stored that. Plugin exception text (paths, tokens) reached API clients and the study database, and the
``/turn`` JSON carried absolute server paths. Each test here failed before its fix.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from core_helpers import fake_app, solid_image

from dermchat.hookspecs import hookimpl
from dermchat.providers import Diagnoser, Explainer
from dermchat.request import TurnRequest
from dermchat.results import Diagnosis, DifferentialEntry, Triage
from dermchat.safety import NOT_A_DIAGNOSIS, SEE_CLINICIAN_URGENT

SECRET_PATH = "/srv/dermchat-secrets/weights.bin"
TOKEN = "hf_SECRETTOKEN123"


class Hostile:
    """Tries every way a plugin could switch the policy off: on the live result, in both policy hooks."""

    @hookimpl
    def extra_notices(self, result: Any, audience: str) -> list[str]:
        result.triage = Triage(tier="reassure", reason="nothing to see")
        result.notices.clear()
        if result.diagnosis is not None:
            result.diagnosis.prediction_set = ["melanocytic_nevus"]
            result.diagnosis.differential = [DifferentialEntry(condition_id="melanocytic_nevus", probability=1.0)]
        return ["All clear, no need to see anyone."]

    @hookimpl
    def turn_completed(self, result: Any, context: Any) -> None:
        if result.triage is not None:
            result.triage.tier = "reassure"
        result.notices[:] = ["All clear."]
        if context.options.get("study"):
            context.options["study"]["participant"] = "SOMEONE-ELSE"


class Recorder:
    """An observer registered before the hostile one, so it runs after it (pluggy calls the last first)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    @hookimpl
    def turn_completed(self, result: Any, context: Any) -> None:
        self.seen.append(result.model_dump(mode="json"))


@pytest.fixture()
def dark(tmp_path: Path) -> Path:
    return solid_image(tmp_path / "dark.png", (60, 40, 30))  # the fake diagnoser says melanoma (urgent)


def _assert_policy(result: dict[str, Any]) -> None:
    assert result["triage"]["tier"] == "urgent"
    assert NOT_A_DIAGNOSIS in result["notices"] and SEE_CLINICIAN_URGENT in result["notices"]
    assert "melanoma" in result["diagnosis"]["prediction_set"]


def test_a_hostile_plugin_cannot_switch_the_policy_off(tmp_path: Path, dark: Path) -> None:
    recorder = Recorder()
    app = fake_app(tmp_path, [(recorder, "recorder"), (Hostile(), "hostile")], quality_gate=False)
    for _ in range(3):
        result = app.run_turn_sync(TurnRequest(image=dark, audience="patient"))
        _assert_policy(result.model_dump(mode="json"))
        assert "All clear, no need to see anyone." in result.notices  # plugins may still add notices
    assert len(recorder.seen) == 3
    for seen in recorder.seen:  # what observers see is the policy-checked result, not the hostile one's copy
        _assert_policy(seen)


def test_the_study_stores_the_policy_checked_result(tmp_path: Path, dark: Path, ham_dir: Path) -> None:
    from study_fixtures import load

    from dermchat.study.session import StudyFlow
    from dermchat.study.store import StudyStore

    store = StudyStore(tmp_path / "study.sqlite")
    study = load()  # every case shows the dark photo, which the fake diagnoser calls melanoma (urgent)
    cases = study.cases.model_copy(
        update={"items": [c.model_copy(update={"image": dark.name}) for c in study.cases.items]}
    )
    flow = StudyFlow(study.model_copy(update={"data_dir": str(dark.parent), "cases": cases}), store)
    app = fake_app(tmp_path, [(Hostile(), "hostile")], quality_gate=False)
    state = flow.enter_code(flow.consent(flow.start(), True), None)
    list(flow.run_case(state, app))
    turns = [e for e in store.events() if e["type"] == "turn"]
    assert len(turns) == 1 and turns[0]["participant_code"] == state.code  # one writer, the right participant
    _assert_policy(turns[0]["payload"]["result"])
    assert turns[0]["payload"]["shown"]["triage"] == "urgent"


# -- item 9: no raw exception text to clients or stored events ----------------------------------------------------
class LeakyExplainer(Explainer):
    id = "leaky-explainer"
    label = "Leaky explainer"

    def explain(self, ctx: Any) -> Any:
        raise RuntimeError(f"could not open {SECRET_PATH} with token {TOKEN}")


class LeakyPlugin:
    @hookimpl
    def register_explainers(self, register: Any) -> None:
        register(LeakyExplainer())

    @hookimpl
    def turn_completed(self, result: Any, context: Any) -> None:
        raise RuntimeError(f"database at {SECRET_PATH} refused {TOKEN}")


def test_exception_text_stays_in_the_server_log(tmp_path: Path, dark: Path, caplog: pytest.LogCaptureFixture) -> None:
    from dermchat.study.store import StudyStore
    from dermchat.study.turnlog import log_turn
    from dermchat_ui.api import api_result

    app = fake_app(tmp_path, [(LeakyPlugin(), "leaky")], explainer="leaky-explainer", quality_gate=False)
    with caplog.at_level(logging.WARNING):
        result = app.run_turn_sync(TurnRequest(image=dark))
    assert result.errors, "the explainer failure should be recorded"
    for client_view in (json.dumps(api_result(result)), json.dumps(app.plugins.listing(), default=str)):
        assert SECRET_PATH not in client_view and TOKEN not in client_view
    error_ids = [re.search(r"error id ([0-9a-f]{8})", e.message) for e in result.errors]
    assert all(error_ids), [e.message for e in result.errors]
    assert all(error_id.group(1) in caplog.text for error_id in error_ids)  # the log has the same id...
    assert SECRET_PATH in caplog.text  # ...and the details
    store = StudyStore(tmp_path / "study.sqlite")
    store.enrol("s", "AB12-CD34-EF56", lambda seq: ["a"])
    log_turn(store, {"study_id": "s", "participant": "AB12-CD34-EF56", "step": 0, "case_id": "c", "arm": "a"}, result)
    stored = json.dumps(store.events())
    assert SECRET_PATH not in stored and TOKEN not in stored


# -- item 10: no server paths in the /turn JSON ---------------------------------------------------------------------
class HeatmapDiagnoser(Diagnoser):
    id = "heatmap-dx"
    label = "Diagnoser with a heat map"

    def diagnose(self, ctx: Any) -> Diagnosis:
        heat = ctx.workdir / "heatmap.png"
        ctx.image.save(heat)
        return Diagnosis(
            provider_id=self.id,
            heatmap_path=str(heat),
            prediction_set=["melanocytic_nevus"],
            differential=[DifferentialEntry(condition_id="melanocytic_nevus", probability=1.0)],
        )


class HeatmapPlugin:
    @hookimpl
    def register_diagnosers(self, register: Any) -> None:
        register(HeatmapDiagnoser())


def _strings_outside_files(value: Any) -> list[str]:
    """Every string of the JSON except the paths of nested files (Gradio replaces those by its cache URL)."""
    if isinstance(value, dict):
        if value.get("meta", {}).get("_type") == "gradio.FileData":
            return []
        return [s for item in value.values() for s in _strings_outside_files(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings_outside_files(item)]
    return [value] if isinstance(value, str) else []


def test_the_turn_json_holds_no_server_paths(tmp_path: Path, dark: Path) -> None:
    from dermchat.engine import turns_dir
    from dermchat_ui.api import api_result

    app = fake_app(tmp_path, [(HeatmapPlugin(), "heat")], diagnoser="heatmap-dx", quality_gate=False)
    result = app.run_turn_sync(TurnRequest(image=dark))
    assert result.diagnosis is not None and Path(result.diagnosis.heatmap_path).exists()
    data = api_result(result)
    root = str(turns_dir(app.settings).resolve())
    leaks = [s for s in _strings_outside_files(data) if root in s or str(tmp_path) in s]
    assert leaks == []
    heat = data["diagnosis"]["heatmap"]
    assert heat["meta"]["_type"] == "gradio.FileData" and Path(heat["path"]).exists()  # still downloadable
    assert data["diagnosis"]["heatmap_path"] == f"{Path(result.diagnosis.heatmap_path).parent.name}/heatmap.png"


# -- item 12: per-plugin error lists stay bounded ----------------------------------------------------------------
def test_a_plugin_failing_on_every_turn_does_not_grow_its_error_list(tmp_path: Path) -> None:
    from dermchat.plugin_manager import PluginManager

    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        @hookimpl
        def turn_completed(self, result: Any, context: Any) -> None:
            self.calls += 1
            raise RuntimeError(f"failure number {self.calls}")

    pm = PluginManager(load_entry_points=False)
    pm.register(Flaky(), "flaky")
    for _ in range(200):
        pm.call_each("turn_completed", result=None, context=None)
    errors = pm.records["flaky"].errors
    assert 1 <= len(errors) <= 20, len(errors)
    assert any("200" in e for e in errors), errors  # the count of failures is kept
