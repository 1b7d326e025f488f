"""The real app (built-in plugins, offline profile) launched in-process on a free port, once per session."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
"""The browser the UI tests drive (through Playwright); they skip when it is missing."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Headless and offline: no GPU, no background fetches, nothing the sandbox of a CI machine refuses."""


def require_chromium() -> None:
    """Skip the calling test when Debian's chromium or Playwright is missing (``make test`` installs both)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")


@contextmanager
def chromium_page(width: int, height: int) -> Iterator[Any]:
    """A page in a fresh headless Chromium profile with a ``width`` x ``height`` viewport, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": width, "height": height},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    """(url, DermChat) of the real app; closed at the end of the session."""
    import os

    os.environ.setdefault("DERMCHAT_UPLOAD_DIR", str(tmp_path_factory.mktemp("uploads")))
    os.environ.setdefault("DERMCHAT_FEEDBACK_DB", str(tmp_path_factory.mktemp("feedback") / "feedback.sqlite"))
    from dermchat.engine import DermChat
    from dermchat.settings import load_settings
    from dermchat_ui.app import CSS, HEAD, build_demo, served_paths

    settings = load_settings(environ={}, overrides={"workdir": str(tmp_path_factory.mktemp("turns"))})
    app = DermChat(settings)
    demo = build_demo(app)
    demo.queue(default_concurrency_limit=2)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        css=CSS,
        head=HEAD,
        allowed_paths=served_paths(app),
    )
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        demo.close()
