"""DermChat's Gradio app: ``python app.py`` (or ``python -m dermchat serve``).

A thin adapter: it builds a ``DermChat`` core from the settings, then mounts the chat, plugins, and (when a
study is configured) the study and researcher tabs. All logic lives in ``dermchat/``; gradio lives here and
in ``ui/`` only.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# No outside lookups from the app (version check, telemetry) — set before gradio is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if os.environ.get("SPACES_ZERO_GPU"):
    import spaces  # noqa: F401  - ZeroGPU wants `spaces` imported before torch

import gradio as gr  # noqa: E402

from dermchat.engine import DermChat, turns_dir  # noqa: E402
from dermchat.safety import NOT_A_DIAGNOSIS  # noqa: E402
from dermchat.settings import SettingsError, load_settings  # noqa: E402
from ui.api import build_api  # noqa: E402
from ui.chat import ChatTab  # noqa: E402
from ui.loading import build_loading_status  # noqa: E402
from ui.plugins_tab import build_plugins_tab  # noqa: E402
from ui.settings_panel import build_settings_panel  # noqa: E402

log = logging.getLogger("dermchat.app")

HAM_ATTRIBUTION = (
    "Offline image model and real reference images: HAM10000 — Tschandl P., Rosendahl C., Kittler H., "
    "*The HAM10000 dataset*, Sci. Data 5, 180161 (2018), "
    "[doi:10.1038/sdata.2018.161](https://doi.org/10.1038/sdata.2018.161), CC BY-NC 4.0. Non-commercial use."
)
CSS = """
#medical-notice {border-left: 4px solid #d33; padding: 6px 12px; background: #fff4f4;}
#medical-notice p {margin: 0; color: #222;}
/* Tables (how to tell them apart, photo quality): Gradio's overflow-wrap:anywhere split words and numbers
   mid-way in narrow columns ("Mole (mel anoc ytic nevu s)", "Sc ore 10 0"); whole words, and on a phone the
   table scrolls sideways instead. */
#contrast table, #quality-card table, #chatbot table {display: block; overflow-x: auto; border: none;}
#contrast :is(th, td), #quality-card :is(th, td), #chatbot :is(th, td) {overflow-wrap: normal; word-break: normal;}
#contrast :is(th, td) {min-width: 8em;}
#contrast :is(th, td):first-child {min-width: 5em;}
"""


CPU_CONCURRENCY = 8


def _offline_defaults(profile: str) -> None:
    """The offline profile never touches the hub: fail fast instead of hanging ~70 s on a lookup."""
    if profile == "offline-cpu":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def build_demo(app: DermChat, study: str | None = None) -> gr.Blocks:
    study = study or app.settings.study
    with gr.Blocks(title="DermChat", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# 🩺 DermChat\nChat about a photo of your skin. Attach a photo, ask a question.")
        gr.Markdown(f"**Not a diagnosis.** {NOT_A_DIAGNOSIS} In an emergency call your local emergency number.",
                    elem_id="medical-notice")
        build_loading_status(app, demo)
        with gr.Tabs(selected="study" if study else "chat") as tabs:
            # In study mode the free chat is hidden: turns there would not belong to the study.
            with gr.Tab("Chat", id="chat", visible=not study) as chat_tab:
                overrides = build_settings_panel(app)
                chat = ChatTab(app)
                chat.build()
                chat.wire(overrides)
            with gr.Tab("Plugins", id="plugins"):
                build_plugins_tab(app)
            has_study = _mount_study(app, study)
        build_api(app)
        gr.Markdown(f"<sub>{HAM_ATTRIBUTION} Photos are stripped of EXIF/GPS data before use; no IP addresses are logged.</sub>",
                    elem_id="attribution")
        if has_study:
            demo.load(_study_from_url, None, [tabs, chat_tab], queue=False)
    return demo


def _study_from_url(request: gr.Request) -> tuple[gr.Tabs, gr.Tab]:
    """``?study=<id>`` opens the participant pages and hides the free chat."""
    if request is not None and request.query_params.get("study"):
        return gr.Tabs(selected="study"), gr.Tab(visible=False)
    return gr.Tabs(), gr.Tab()


def _mount_study(app: DermChat, study: str | None) -> bool:
    """Study and researcher tabs (issue 8); returns whether they were mounted."""
    try:
        from ui.researcher import build_researcher_tab
        from ui.study import build_study_tab
    except ImportError as exc:
        log.warning("study mode unavailable: %s", exc)
        return False
    with gr.Tab("Study", id="study"):
        build_study_tab(app, study)
    with gr.Tab("Researcher", id="researcher"):
        build_researcher_tab(app, study)
    return True


def create_app() -> DermChat:
    settings = load_settings()
    _offline_defaults(settings.profile)
    return DermChat(settings)


def launch(host: str, port: int, study: str | None = None, *, app: DermChat | None = None,
           block: bool = True) -> tuple[DermChat, gr.Blocks]:
    """Build and serve ``app`` (default: from the settings); with ``block=False`` return once the server listens.

    The models load in a background thread (``DermChat.start_warm_up``): the page is served as soon as Gradio
    is ready, shows "loading the models" meanwhile, and a turn sent early waits for them.
    """
    app = app or create_app()
    app.start_warm_up()
    demo = build_demo(app, study)
    demo.queue(default_concurrency_limit=serving_concurrency(app), max_size=64)
    demo.launch(server_name=host, server_port=port, css=CSS, footer_links=["api", "settings"],
                allowed_paths=served_paths(app), prevent_thread_lock=not block, quiet=not block)
    return app, demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Start the DermChat web app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--study", default=None, help="study YAML file (user-study mode)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        launch(args.host, args.port, args.study)
    except SettingsError as exc:  # a configuration mistake: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def serving_concurrency(app: DermChat) -> int:
    """Turns run at once: ``DERMCHAT_CONCURRENCY`` when set; else one on GPU profiles (one model, one GPU) and
    ``CPU_CONCURRENCY`` on the CPU profile.

    Why more turns than cores: a served turn spends much of its time outside the CPU-bound steps (Gradio
    sending streamed events, thread hand-offs, file copies), and two slots left the cores idle while eight
    users queued. ``dermchat bench-serve``, 8 clients x 5 /turn calls on 2 cores: 2 slots 1.7 turns/s (p95
    5.8 s), 4 slots 2.3, 8 slots 2.6 (p95 3.5 s), peak RSS 1.3 GB either way.
    """
    if app.settings.concurrency:
        return app.settings.concurrency
    return 1 if app.settings.profile != "offline-cpu" else CPU_CONCURRENCY


def served_paths(app: DermChat) -> list[str]:
    """Files API clients may download: only this app's turn folder (reference copies, heat maps)."""
    folder = turns_dir(app.settings)
    folder.mkdir(parents=True, exist_ok=True)
    return [str(folder)]


if __name__ == "__main__":
    main(sys.argv[1:])
