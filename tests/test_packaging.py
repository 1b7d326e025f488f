"""``python -m dermchat serve`` from the built wheel, installed in a fresh venv away from the checkout.

Why: ``serve`` once did ``sys.path.insert`` + ``import app`` from the repo root, so a pip-installed dermchat had
no page to serve, and no test noticed because every test ran inside the checkout. Here the wheel is the only
dermchat the new venv sees: the project's dependencies are reachable through a ``.pth`` file that lists the
project venv's site-packages as plain path lines (so its editable-install finder is never activated).
"""

from __future__ import annotations

import os
import shutil
import site
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dermchat.bench_serve import BenchServeError, free_port, wait_for_page

REPO = Path(__file__).resolve().parent.parent
NOT_PACKAGED = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "runs", "out")
PAGE_TIMEOUT_S = 240  # the machine may be busy: the page itself needs only Gradio to start


def run(*command: str | Path, cwd: Path) -> str:
    """Run a setup command and return its stdout; a failure shows its output instead of a bare exit code."""
    proc = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


def build_wheel(out: Path) -> Path:
    """The wheel of a copy of the checkout: setuptools' ``build/`` keeps modules deleted since the last build and
    would put them in the wheel, and the checkout stays free of build leftovers."""
    source = out / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_PACKAGED))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, source, cwd=out)
    [wheel] = out.glob("dermchat-*.whl")
    return wheel


def venv_with_wheel(root: Path, wheel: Path) -> Path:
    """A fresh venv holding only the wheel (no network, no dependencies), plus a ``.pth`` pointing at the
    project venv's site-packages for gradio, torch and the rest; returns its python."""
    run(sys.executable, "-m", "venv", "--without-pip", root / "venv", cwd=root)
    python = root / "venv" / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=root)
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root))
    (purelib / "project_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    return python


def isolated_env(root: Path) -> dict[str, str]:
    """No checkout on the path, offline, and every folder the app writes to inside ``root``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        DERMCHAT_PROFILE="offline-cpu",
        DERMCHAT_WORKDIR=str(root / "turns"),
        DERMCHAT_UPLOAD_DIR=str(root / "uploads"),
        DERMCHAT_FEEDBACK_DB=str(root / "feedback.sqlite"),
        GRADIO_TEMP_DIR=str(root / "gradio"),
    )
    return env


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_serve_works_from_the_wheel_in_a_fresh_venv(tmp_path: Path) -> None:
    assert REPO not in tmp_path.resolve().parents, "the app must start from a folder outside the checkout"
    wheel = build_wheel(tmp_path)
    python = venv_with_wheel(tmp_path, wheel)
    env = isolated_env(tmp_path)
    where = run(
        python,
        "-c",
        "import dermchat, dermchat_ui, plugins; print(dermchat.__file__, dermchat_ui.__file__, plugins.__file__)",
        cwd=tmp_path,
    )
    venv = (tmp_path / "venv").resolve()
    assert all(venv in Path(f).resolve().parents for f in where.split()), f"not the wheel's copy: {where}"
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(python), "-m", "dermchat", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_page(f"http://127.0.0.1:{port}/", timeout_s=PAGE_TIMEOUT_S)
    except BenchServeError:
        pytest.fail(f"the page was not served; the server said:\n{log.read_text()[-4000:]}")
    finally:
        stop(server)
    assert server.returncode is not None and refuses_connections(port)


def stop(server: subprocess.Popen[bytes]) -> None:
    """Ask the server to stop, then insist."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)
