"""The settings accordion: pick a provider per capability from the registry.

Only available providers can be chosen; unavailable ones are listed in one plain line for patients ("not
available on this server"); the technical reason (an option to set, an offline flag) is in the Plugins tab. Choices
are per browser session (a ``gr.State`` of settings overrides), never a global that would leak between users.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from dermchat.engine import DermChat

UNAVAILABLE = "not available on this server (the Plugins tab says why)"
CAPABILITY_LABELS = {
    "quality": "Photo-quality check",
    "diagnoser": "Image model (diagnosis)",
    "explainer": "Explanations",
    "references": "Reference images",
}


def provider_choices(app: DermChat, capability: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(label, id) pairs of available providers, and plain lines for the unavailable ones."""
    available: list[tuple[str, str]] = []
    unavailable: list[str] = []
    for info in app.registry.listing().get(capability, []):
        if info["available"]:
            available.append((f"{info['label'] or info['id']} ({info['id']})", info["id"]))
        else:
            unavailable.append(f"{info['label'] or info['id']}: {UNAVAILABLE}")
    return available, unavailable


def build_settings_panel(app: DermChat) -> gr.State:
    """Render the accordion; returns the per-session overrides state consumed by the chat."""
    overrides = gr.State({})
    chosen = app.settings.chosen()
    with gr.Accordion("Settings", open=False, elem_id="settings"):
        dropdowns: dict[str, gr.Dropdown | gr.CheckboxGroup] = {}
        for capability, label in CAPABILITY_LABELS.items():
            choices, greyed = provider_choices(app, capability)
            ids = [pid for _, pid in choices]
            if capability == "references":
                value = [pid for pid in chosen["references"] or [] if pid in ids]
                dropdowns[capability] = gr.CheckboxGroup(choices=choices, value=value, label=label)
            else:
                current = chosen[capability]
                dropdowns[capability] = gr.Dropdown(
                    choices=choices,
                    value=current if current in ids else (ids[0] if ids else None),
                    label=label,
                    interactive=bool(ids),
                )
            if greyed:
                gr.Markdown("<sub>" + "  \n".join(greyed) + "</sub>", elem_classes=["unavailable-providers"])
        gate = gr.Checkbox(value=app.settings.quality_gate, label="Ask for a retake when the photo quality is low")

        def update(
            quality: str, diagnoser: str, explainer: str, references: list[str], quality_gate: bool
        ) -> dict[str, Any]:
            return {
                "quality": quality,
                "diagnoser": diagnoser,
                "explainer": explainer,
                "references": list(references or []),
                "quality_gate": bool(quality_gate),
            }

        inputs = [dropdowns["quality"], dropdowns["diagnoser"], dropdowns["explainer"], dropdowns["references"], gate]
        for component in inputs:
            component.change(update, inputs, overrides, queue=False)
    return overrides
