"""Test-wide settings: offline, single-threaded torch, and shared fixtures.

Offline variables are set before anything imports transformers/huggingface_hub, so a test can never hang
on the unreachable hub.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest

from dermchat.paths import default_data_dir


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def ham_dir() -> Path:
    """The real HAM10000 folder; tests that need it skip with a clear reason when it is absent."""
    path = default_data_dir()
    if not (path / "metadata.csv").exists():
        pytest.skip(f"HAM10000 data not found at {path} (set DERMCHAT_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def ham_image(ham_dir: Path) -> Path:
    """One real dermoscopic image (a melanocytic nevus from the first metadata rows)."""
    return ham_dir / "images" / "ISIC_0024307.jpg"


@pytest.fixture()
def turn_workdir(tmp_path: Path) -> Path:
    path = tmp_path / "turns"
    path.mkdir()
    return path
