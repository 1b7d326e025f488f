"""The command line as a user runs it: subprocesses, exit codes, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dermchat", *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def test_plugins_json_lists_builtin_plugins_and_providers() -> None:
    proc = run_cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    names = {p["name"] for p in listing["plugins"]}
    assert {"quality", "ham_classifier", "knowledge", "exemplars"} <= names
    broken = [p for p in listing["plugins"] if p["errors"]]
    assert not broken, broken
    ids = {p["id"] for providers in listing["providers"].values() for p in providers}
    assert {"classic-quality", "ham-cnn", "kb-rag", "ham-exemplars"} <= ids


def test_turn_on_unreadable_input_exits_2_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "photo.jpg"
    bad.write_text("definitely not a jpeg")
    proc = run_cli("turn", str(bad), "--json", "--quiet")
    assert proc.returncode == 2
    assert "doesn't look like a photo" in json.loads(proc.stdout)["message"]
    missing = run_cli("turn", str(tmp_path / "nope.jpg"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_turn_writes_references_and_manifest(tmp_path: Path, ham_image: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(
        "turn",
        str(ham_image),
        "--question",
        "what is it?",
        "--audience",
        "clinician",
        "--out",
        str(out),
        "--json",
        "--age",
        "60",
        "--sex",
        "female",
        "--site",
        "upper back",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["status"] in {"ok", "abstained"}
    if result["status"] == "ok" and result["diagnosis"]["provider_id"] == "ham-cnn":
        assert result["diagnosis"]["extra"]["patient_info_used"] == "age 60, female, back"
    assert "[quality] start" in proc.stderr  # step events stream to stderr
    manifest = json.loads((out / "references.json").read_text())
    assert manifest and all(Path(item["path"]).exists() and Path(item["path"]).parent == out for item in manifest)
    for item in manifest:  # real or synthetic is in the file name too, not only in the manifest
        assert ("_synthetic_" if item["synthetic"] else "_real_") in Path(item["path"]).name
    assert json.loads((out / "result.json").read_text())["turn_id"] == result["turn_id"]
    assert "Loading weights" not in proc.stderr  # library progress bars stay out of the step log


def test_unknown_command_is_an_argparse_error() -> None:
    proc = run_cli("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("DERMCHAT_PROFILE", "nope", "unknown profile 'nope'"),
        ("DERMCHAT_OPTIONS", "{bad", "DERMCHAT_OPTIONS is not valid JSON"),
        ("DERMCHAT_CONFIG", "/nonexistent.yaml", "/nonexistent.yaml does not exist"),
        (
            "DERMCHAT_REFERENCES_PER_CONDITION",
            "abc",
            "DERMCHAT_REFERENCES_PER_CONDITION: input should be a valid integer",
        ),
    ],
)
def test_configuration_mistakes_print_one_line_not_a_traceback(
    ham_image: Path, variable: str, value: str, expected: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dermchat", "turn", str(ham_image)],
        cwd=REPO,
        env={**ENV, variable: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # exactly one line
    assert proc.stderr.startswith("error: ") and expected in proc.stderr and "Traceback" not in proc.stderr


def test_app_reports_a_configuration_mistake_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO,
        env={**ENV, "DERMCHAT_PROFILE": "nope"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: DERMCHAT_PROFILE: unknown profile 'nope'")


def test_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``python -m dermchat turn IMG | head -1``: the reader leaves before the output is written."""
    bad = tmp_path / "photo.jpg"
    bad.write_text("not a jpeg")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermchat", "turn", str(bad), "--json", "--quiet"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `head` exiting: every later write gets EPIPE
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr, stderr
    assert proc.returncode == 141
