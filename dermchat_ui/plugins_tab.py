"""The Plugins tab: every plugin and provider, availability and any load/call error (like `llm plugins`)."""

from __future__ import annotations

import gradio as gr

from dermchat.engine import DermChat


def plugins_markdown(app: DermChat) -> str:
    listing = app.plugins.listing()
    lines = ["### Plugins", "| Plugin | Source | Status | Providers |", "|---|---|---|---|"]
    for plugin in listing["plugins"]:
        status = "✅ loaded" if plugin["loaded"] and not plugin["errors"] else "❌ " + "; ".join(plugin["errors"])
        lines.append(f"| {plugin['name']} | {plugin['source']} | {status} | {', '.join(plugin['providers']) or '—'} |")
    lines += ["", "### Providers", "| Capability | Id | Label | GPU | Available |", "|---|---|---|---|---|"]
    for capability, providers in listing["providers"].items():
        for prov in providers:
            ok = "✅" if prov["available"] else f"✗ {prov['reason']}"
            lines.append(
                f"| {capability} | `{prov['id']}` | {prov['label']} | {'yes' if prov['needs_gpu'] else ''} | {ok} |"
            )
    if app.configuration_errors:
        lines += ["", "### Configuration errors", *[f"- {err}" for err in app.configuration_errors]]
    return "\n".join(lines)


def build_plugins_tab(app: DermChat) -> None:
    view = gr.Markdown(plugins_markdown(app), elem_id="plugins-listing")
    gr.Button("Refresh").click(lambda: plugins_markdown(app), None, view, queue=False)
