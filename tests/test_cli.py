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
    return subprocess.run([sys.executable, "-m", "dermchat", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


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
    proc = run_cli("turn", str(ham_image), "--question", "what is it?", "--audience", "clinician",
                   "--out", str(out), "--json", "--age", "60", "--sex", "female", "--site", "upper back")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["status"] in {"ok", "abstained"}
    if result["status"] == "ok" and result["diagnosis"]["provider_id"] == "ham-cnn":
        assert result["diagnosis"]["extra"]["patient_info_used"] == "age 60, female, back"
    assert "[quality] start" in proc.stderr  # step events stream to stderr
    manifest = json.loads((out / "references.json").read_text())
    assert manifest and all(Path(item["path"]).exists() and Path(item["path"]).parent == out for item in manifest)
    assert json.loads((out / "result.json").read_text())["turn_id"] == result["turn_id"]


def test_unknown_command_is_an_argparse_error() -> None:
    proc = run_cli("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
