"""The page without a browser: triage words, plain settings for patients, and the sealed study mode."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from app_fixtures import live_app  # noqa: F401 - fixture
from study_fixtures import make_app

from dermchat.render import TRIAGE_BADGE, render, triage_line
from dermchat.results import Triage, TurnResult
from dermchat_ui.plugins_tab import plugins_markdown
from dermchat_ui.settings_panel import UNAVAILABLE, provider_choices

EMOJI = ("🔴", "🟡", "🟢")


@pytest.mark.parametrize("tier", ["urgent", "routine", "reassure"])
@pytest.mark.parametrize("audience", ["patient", "clinician"])
def test_the_triage_tier_is_words_on_a_badge_never_an_emoji(tier: str, audience: str) -> None:
    html = triage_line(tier, audience, html=True)
    assert f'class="triage-badge triage-{tier}">{TRIAGE_BADGE[tier]}</span>' in html
    plain = render(TurnResult(turn_id="t", triage=Triage(tier=tier, reason="r")), audience)
    assert f"[{TRIAGE_BADGE[tier]}]" in plain and "<span" not in plain  # CLI and logs: the word, no HTML
    assert not any(e in html + plain for e in EMOJI)


def test_settings_tell_patients_plainly_and_the_plugins_tab_keeps_the_reason(live_app) -> None:
    _, app = live_app
    lines = [
        line for cap in ("quality", "diagnoser", "explainer", "references") for line in provider_choices(app, cap)[1]
    ]
    assert lines, "the offline profile has unavailable providers (hub models, an OpenAI server)"
    technical = ("base_url", "HF_HUB_OFFLINE", "option", "=", "`", "Error")
    assert all(line.endswith(UNAVAILABLE) and not any(t in line for t in technical) for line in lines), lines
    reasons = [p["reason"] for ps in app.registry.listing().values() for p in ps if not p["available"]]
    listing = plugins_markdown(app)
    assert all(reason in listing for reason in reasons)


def api_names(demo: gr.Blocks) -> set[str]:
    return {dep.get("api_name") for dep in demo.config["dependencies"] if dep.get("api_name")}


def labels(demo: gr.Blocks) -> set[str]:
    return {c.get("props", {}).get("label") for c in demo.config["components"] if c.get("type") == "tabitem"}


def test_study_mode_seals_the_page_to_the_study_flow(
    tmp_path: Path, ham_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dermchat_ui.app import build_demo

    monkeypatch.setenv("DERMCHAT_STUDY_DIR", str(tmp_path / "studies"))
    app = make_app(tmp_path / "turns")
    sealed = build_demo(app, "reference_images_within")
    names = api_names(sealed)
    assert labels(sealed) == {"Study", "Researcher"}, labels(sealed)
    assert not names & {"respond", "continue_anyway", "turn"}  # a hidden tab would still answer these
    assert any(n.startswith("reference_images_within_") for n in names)
    assert not any(n.startswith("citations_between_") for n in names)  # no other study by ?study=
    chat = build_demo(app)
    assert {"Chat", "Plugins"} <= labels(chat) and {"respond", "turn"} <= api_names(chat)
