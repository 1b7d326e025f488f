"""DermChat's Gradio app: ``python -m dermchat serve`` (or ``python app.py`` in a checkout).

A thin adapter: it builds a ``DermChat`` core from the settings, then mounts the chat, plugins, and (when a
study is configured) the study and researcher tabs. All logic lives in ``dermchat/``; gradio lives in
``dermchat_ui/`` only. It is part of the installed package (not a script at the repo root) so a pip-installed
``dermchat serve`` has a page to serve.
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

import gradio as gr

from dermchat.engine import DermChat, turns_dir
from dermchat.safety import NOT_A_DIAGNOSIS
from dermchat.settings import SettingsError, load_settings
from dermchat_ui.api import build_api
from dermchat_ui.chat import ChatTab
from dermchat_ui.loading import build_loading_status
from dermchat_ui.plugins_tab import build_plugins_tab
from dermchat_ui.settings_panel import build_settings_panel
from dermchat_ui.uploads import upload_dir

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
/* Nothing wider than the screen: the page itself never scrolls sideways (the table above scrolls in its box). */
#contrast, #contrast .prose {min-width: 0 !important; max-width: 100%;}
/* Triage: a coloured badge with words (the colour alone, once an emoji, carried no meaning without an emoji font). */
.triage-badge {display: inline-block; padding: 2px 10px; border-radius: 999px; font-weight: 700; letter-spacing: .02em;
  border: 2px solid currentColor;}
.triage-urgent {background: #b3261e; color: #fff !important;}
.triage-routine {background: #ffd54f; color: #1f1f1f !important;}
.triage-reassure {background: #1b5e20; color: #fff !important;}
/* Readable text (WCAG AA): Gradio dims placeholders, small print, answers and captions below 4.5:1. */
:root, gradio-app, .gradio-container {--input-placeholder-color: #595959; --body-text-color-subdued: #4a4a4a; --link-text-color: #1a4fb4;
  --link-text-color-hover: #123a86; --link-text-color-visited: #5b2a86; --block-info-text-color: #4a4a4a;}
.gradio-container ::placeholder {color: #595959 !important; opacity: 1 !important;}
.gradio-container a, footer a, footer button {color: #1a4fb4 !important; opacity: 1 !important;}
#chatbot .prose.chatbot.md {opacity: 1;}
.gradio-container button[role=tab][aria-selected=true], .gradio-container button[role=tab].selected {color: #9a3412 !important;}
/* Reference captions: the condition's full name wraps instead of ending in "Real imag…", at full contrast. */
.gradio-container .caption-label {opacity: 1 !important; white-space: normal !important; text-overflow: clip !important;
  overflow: visible !important; max-width: calc(100% - 8px) !important; color: #111 !important; font-size: 12px;
  line-height: 1.25;}
/* The scroll-to-bottom arrow sits in a gutter at the right, not over the middle of the answer text. */
#chatbot .bubble-wrap {padding-right: 44px;}
#chatbot .scroll-down-button-container {left: auto !important; right: 4px !important; transform: none !important;}
#page-title h1 {margin-bottom: 0; font-size: 1.6rem;}
/* Phones: a shorter chat so the message box is on the first screen under the title and the notice. */
@media (max-width: 640px) {#chatbot {height: 30vh !important; min-height: 180px !important;}
  #medical-notice {font-size: 0.9em;}}
#page-title p, #medical-notice p {margin: 0;}
"""

# Gradio's own markup fails three axe-core rules once an answer is shown: the step notes' arrow buttons have no
# name and sit inside a role=button title (the arrow becomes the one named control), the photo's preview button has no name,
# and a table that scrolls sideways on a phone cannot be reached by keyboard. Patched as the page changes.
HEAD = """<script>
(() => {
  const fix = () => {
    document.querySelectorAll('.thought-group .title[role=button]').forEach(t => {
      const b = t.querySelector('button'); if (!b) return;
      t.removeAttribute('role'); t.removeAttribute('tabindex');
      b.setAttribute('aria-label', 'Show or hide: ' + t.innerText.trim()); });
    document.querySelectorAll('.image-container button, #chatbot button').forEach(b => {
      if (!b.getAttribute('aria-label') && !b.innerText.trim() && !b.closest('[aria-hidden=true]'))
        b.setAttribute('aria-label', 'Open the image'); });
    document.querySelectorAll('#contrast table, #quality-card table, #chatbot table').forEach(t => {
      if (!t.hasAttribute('tabindex')) { t.setAttribute('tabindex', '0'); t.setAttribute('role', 'region');
        t.setAttribute('aria-label', 'Table (scrolls sideways)'); } });
  };
  new MutationObserver(fix).observe(document.documentElement, {childList: true, subtree: true});
})();
</script>"""


CPU_CONCURRENCY = 2


def _offline_defaults(profile: str) -> None:
    """The offline profile never touches the hub: fail fast instead of hanging ~70 s on a lookup."""
    if profile == "offline-cpu":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def build_demo(app: DermChat, study: str | None = None) -> gr.Blocks:
    """The page. With a study (``--study`` or ``DERMCHAT_STUDY``) it is sealed: only that study's participant
    pages (and the password-locked researcher page) exist — no chat, no plugins tab, no ``/turn`` endpoint,
    which a hidden tab would still serve — so a participant in the "without reference images" arm cannot
    see references elsewhere, and no other study's pages can be reached with ``?study=``."""
    study = study or app.settings.study
    with gr.Blocks(title="DermChat", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# DermChat\nChat about a photo of your skin: attach a photo in the box below and ask a question."
            if not study
            else "# DermChat study",
            elem_id="page-title",
        )
        gr.Markdown(
            f"**Not a diagnosis.** {NOT_A_DIAGNOSIS} In an emergency call your local emergency number.",
            elem_id="medical-notice",
        )
        build_loading_status(app, demo)
        if study:
            _mount_sealed_study(app, study)
        else:
            _mount_chat(app, demo)
        gr.Markdown(
            f"<sub>{HAM_ATTRIBUTION} Photos are stripped of EXIF/GPS data before use; no IP addresses are logged.</sub>",
            elem_id="attribution",
        )
    return demo


def _mount_chat(app: DermChat, demo: gr.Blocks) -> None:
    """The chat, plugins and (for ``?study=`` links) study tabs of the ordinary app."""
    with gr.Tabs(selected="chat") as tabs:
        with gr.Tab("Chat", id="chat") as chat_tab:
            chat = ChatTab(app)
            chat.build()
            # Below the chat: on a phone the accordion above it pushed the message box out of view.
            overrides = build_settings_panel(app)
            chat.wire(overrides)
        with gr.Tab("Plugins", id="plugins"):
            build_plugins_tab(app)
        has_study = _mount_study(app, None)
    build_api(app)
    if has_study:
        demo.load(_study_from_url, None, [tabs, chat_tab], queue=False)


def _study_from_url(request: gr.Request) -> tuple[gr.Tabs, gr.Tab]:
    """``?study=<id>`` opens the participant pages and hides the free chat."""
    if request is not None and request.query_params.get("study"):
        return gr.Tabs(selected="study"), gr.Tab(visible=False)
    return gr.Tabs(), gr.Tab()


def _mount_study(app: DermChat, study: str | None) -> bool:
    """Study and researcher tabs (issue 8); returns whether they were mounted."""
    try:
        from dermchat_ui.researcher import build_researcher_tab
        from dermchat_ui.study import build_study_tab
    except ImportError as exc:
        log.warning("study mode unavailable: %s", exc)
        return False
    with gr.Tab("Study", id="study"):
        build_study_tab(app, study)
    with gr.Tab("Researcher", id="researcher"):
        build_researcher_tab(app, study)
    return True


def _mount_sealed_study(app: DermChat, study: str) -> None:
    """Study mode: the selected study only, then the researcher page (locked without its password)."""
    from dermchat_ui.researcher import build_researcher_tab
    from dermchat_ui.study import build_study_tab, load_studies

    studies, selected = load_studies(study)
    only = {selected: studies[selected]} if selected else {}
    with gr.Tabs(selected="study"):
        with gr.Tab("Study", id="study"):
            build_study_tab(app, selected, studies=only)
        with gr.Tab("Researcher", id="researcher"):
            build_researcher_tab(app, selected, studies=only)


def create_app() -> DermChat:
    settings = load_settings()
    _offline_defaults(settings.profile)
    return DermChat(settings)


def launch(
    host: str, port: int, study: str | None = None, *, app: DermChat | None = None, block: bool = True
) -> tuple[DermChat, gr.Blocks]:
    """Build and serve ``app`` (default: from the settings); with ``block=False`` return once the server listens.

    The models load in a background thread (``DermChat.start_warm_up``): the page is served as soon as Gradio
    is ready, shows "loading the models" meanwhile, and a turn sent early waits for them.
    """
    app = app or create_app()
    concurrency = serving_concurrency(app)
    limit_cpu_threads(concurrency)  # before the warm-up imports torch
    app.start_warm_up()
    demo = build_demo(app, study)
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    calm_queue_polling(demo)
    demo.launch(
        server_name=host,
        server_port=port,
        css=CSS,
        head=HEAD,
        footer_links=["api", "settings"],
        allowed_paths=served_paths(app),
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return app, demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Start the DermChat web app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--study", default=None, help="study YAML file (user-study mode)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app = create_app()
        upload_dir()  # a folder with someone's files in it is refused now, not at the first upload
        launch(args.host, args.port, args.study, app=app)
    except SettingsError as exc:  # a configuration mistake: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def serving_concurrency(app: DermChat) -> int:
    """Turns run at once: ``DERMCHAT_CONCURRENCY`` when set; else one on GPU profiles (one model, one GPU) and
    ``CPU_CONCURRENCY`` (one per core of the 2-core CPU Space) on the CPU profile.

    Why one per core: once the heat map, the reference downloads and torch's extra threads were gone (issue 23),
    a served turn is CPU-bound; more turns at once only share the same cores, with more memory held and every
    turn slower. ``dermchat bench-serve``, 8 clients x 5 /turn calls on the shared 2-core machine (busy, so
    scaled by the engine p50 of the same run): 2 slots 3.0 turns/s at a 228 ms engine p50, 3 slots 1.3 turns/s
    at 438 ms (0.69 vs 0.56 engine-turns of work per second); 8 slots with a thread per core per turn held
    2.0 GB. Each turn gets ``limit_cpu_threads``' share of the cores.
    """
    if app.settings.concurrency:
        return app.settings.concurrency
    return 1 if app.settings.profile != "offline-cpu" else CPU_CONCURRENCY


QUEUE_POLL_S = 0.005


def calm_queue_polling(demo: gr.Blocks) -> None:
    """Let Gradio's queue look for waiting turns every 5 ms instead of every 1 ms.

    Why: its loop wakes 1000 times a second whenever it is idle or every slot is busy (the state under load),
    and each wake takes the GIL from the turns: an idle app used 5-7% of a core, 2% at 5 ms (measured on the
    shared 2-core machine). A turn starts at most 5 ms later. Gradio keeps the interval on a private
    attribute; when a Gradio version has none, nothing changes.
    """
    queue = getattr(demo, "_queue", None)
    if queue is not None and getattr(queue, "sleep_when_free", 0) < QUEUE_POLL_S:
        queue.sleep_when_free = QUEUE_POLL_S


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_cpu_threads(concurrency: int) -> int:
    """Give each of the ``concurrency`` turns that run at once its share of the cores as torch intra-op threads.

    Why: torch starts one intra-op thread per core for every turn, so turns running at once on two cores kept
    four or more busy threads and waited on each other at every layer's barrier (a 270 ms engine turn took
    seconds under load). A thread count the operator set (``OMP_NUM_THREADS``) is kept. Returns the count.
    """
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return int(os.environ.get("OMP_NUM_THREADS") or os.environ["MKL_NUM_THREADS"])
    threads = max(1, len(os.sched_getaffinity(0)) // max(1, concurrency))
    torch = sys.modules.get("torch")
    if torch is not None:  # already imported (tests, a caller that embeds the app): tell it directly
        torch.set_num_threads(threads)
        return threads
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)  # read when torch is imported (the warm-up imports it)
    return threads


def served_paths(app: DermChat) -> list[str]:
    """Files API clients may download: only this app's turn folder (reference copies, heat maps)."""
    return [str(turns_dir(app.settings))]  # made (private, marked) by turns_dir


if __name__ == "__main__":
    main(sys.argv[1:])
