"""A "loading models" line at the top of the page while the app loads its models in the background.

Why: the page is served as soon as Gradio is ready (``DermChat.start_warm_up``), seconds before the models are.
A visitor must see that the app is not broken, and may already write: a turn sent meanwhile waits for the
models (the chat shows that as a step) instead of failing.
"""

from __future__ import annotations

import gradio as gr

from dermchat.engine import DermChat


def loading_text(app: DermChat) -> str:
    if app.ready:
        return ""
    what = f" ({app.loading})" if app.loading else ""
    return (
        f"⏳ **Loading the models{what}…** You can write your message and attach a photo now; "
        "an answer sent meanwhile starts as soon as they are ready."
    )


def build_loading_status(app: DermChat, demo: gr.Blocks) -> None:
    """The line, refreshed each second (per open page, only while loading) and on every page load."""
    status = gr.Markdown(loading_text(app), elem_id="loading-status", visible=not app.ready)
    timer = gr.Timer(1.0, active=not app.ready)

    def refresh() -> tuple[gr.Markdown, gr.Timer]:
        ready = app.ready
        return gr.Markdown(loading_text(app), visible=not ready), gr.Timer(active=not ready)

    timer.tick(refresh, None, [status, timer], queue=False, show_progress="hidden", api_visibility="private")
    demo.load(refresh, None, [status, timer], queue=False, show_progress="hidden", api_visibility="private")
