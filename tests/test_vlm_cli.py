"""``python -m dermchat serve-openai`` as a user runs it: a separate process serving a tiny model over HTTP."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dermchat.paths import REPO_DIR
from dermchat.vlm.openai_client import OpenAIChatClient
from tests.vlm_fixtures import tiny_llama_dir  # noqa: F401 - fixture


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_openai_command_serves_a_model_and_logs_no_client_address(tiny_llama_dir: Path) -> None:
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SERVE_KEY": "k1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dermchat",
            "serve-openai",
            "--model",
            str(tiny_llama_dir),
            "--port",
            str(port),
            "--name",
            "tiny-llama",
            "--api-key-env",
            "SERVE_KEY",
        ],
        cwd=REPO_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 240)  # a hang fails the test instead of blocking it
        assert ready, "serve-openai printed nothing within 240 s"
        banner = proc.stdout.readline()  # printed once the model is loaded and the port is bound
        assert banner.strip() == f"serving tiny-llama (text-generation) at http://127.0.0.1:{port}/v1", (
            proc.stderr.read() if proc.poll() is not None else banner
        )
        client = OpenAIChatClient(f"http://127.0.0.1:{port}/v1", "tiny-llama", api_key="k1", api_key_env=None)
        assert client.models() == ["tiny-llama"]
        chunks: list[str] = []
        text = client.chat([{"role": "user", "content": "What is a wart?"}], max_tokens=6, on_text=chunks.append)
        assert text == "".join(chunks)
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert "POST /v1/chat/completions" in stderr
    assert "('127.0.0.1'," not in stderr and "127.0.0.1 - -" not in stderr  # request logs never name the client


def test_serve_openai_refuses_a_missing_key_variable(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermchat.vlm.server import main

    monkeypatch.delenv("DERMCHAT_UNSET_KEY", raising=False)
    assert main(["--model", str(tiny_llama_dir), "--api-key-env", "DERMCHAT_UNSET_KEY"]) == 2
    assert "environment variable DERMCHAT_UNSET_KEY is not set" in capsys.readouterr().err
