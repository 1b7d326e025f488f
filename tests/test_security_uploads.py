"""Security and data handling of uploads and the app's folders (issue 18, items 1-3, 11 and 12).

Why: a clone under the temp dir lost two images of ``../shared`` because the upload sanitiser deleted any file
under the temp dir; identical photos uploaded at once broke each other; retention emptied a folder the app
was pointed at; fixed temp paths followed a planted link. Each test here failed before its fix.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from dermchat.request import TurnRequest
from dermchat.settings import load_settings

HOUR = 3600.0
SHA_DIR = "5f" * 32  # what Gradio names the folder of one upload: the sha256 of the bytes (64 hex characters)


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed) with the sha256 of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _fake_shared_tree(root: Path, ham_dir: Path, count: int = 4) -> list[Path]:
    """A copy of part of ``../shared/data/ham10000`` (images + metadata), as a clone under the temp dir has."""
    images = root / "data" / "ham10000" / "images"
    images.mkdir(parents=True)
    lines = (ham_dir / "metadata.csv").read_text().splitlines()
    copied = []
    for name in sorted(p.name for p in (ham_dir / "images").glob("ISIC_00243*.jpg"))[:count]:
        shutil.copyfile(ham_dir / "images" / name, images / name)
        copied.append(images / name)
    (root / "data" / "ham10000" / "metadata.csv").write_text("\n".join(lines[: count + 1]) + "\n")
    (root / "notes").mkdir()
    (root / "notes" / "stack-notes.md").write_text("not an image\n")
    return copied


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp), follow_symlinks=False)


@pytest.fixture()
def settings():
    return load_settings(environ={}, overrides={"retention_minutes": 60})


@pytest.fixture()
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp dir for this test (``tempfile.gettempdir()``), with Gradio's cache in its default place."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    monkeypatch.delenv("DERMCHAT_UPLOAD_DIR", raising=False)
    return root


def _gradio_upload(cache: Path, source: Path, name: str = "photo.jpg") -> Path:
    """What Gradio's upload route does: write the bytes to a temp file and rename it to <cache>/<sha>/<name>."""
    folder = cache / SHA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    staging = cache / f"tmp{uuid.uuid4().hex[:8]}"
    shutil.copyfile(source, staging)
    os.replace(staging, folder / name)
    return folder / name


# -- item 1: only Gradio's own cached copy is ever deleted --------------------------------------------------------
def test_a_clone_under_the_temp_dir_keeps_every_file_of_shared(temp_root: Path, settings, ham_dir: Path) -> None:
    from core_helpers import fake_app

    from dermchat_ui.uploads import sanitize_upload

    clone_parent = temp_root / "ci-clone"
    shared = clone_parent / "shared"  # ../shared beside a clone in the temp dir
    images = _fake_shared_tree(shared, ham_dir)
    before = _snapshot(shared)
    assert len(before) == len(images) + 2
    for image in images:  # what the chat does with a path a caller (or a test) passes
        clean, error = sanitize_upload(str(image), settings)
        assert error is None and clean is not None and Path(clean).exists()
    _clean, error = sanitize_upload(str(shared / "notes" / "stack-notes.md"), settings)  # the error path too
    assert error
    app = fake_app(clone_parent / "work", workdir=None)  # turns in the temp dir's own scratch folder
    for image in images:
        app.run_turn_sync(TurnRequest(image=str(image)))
    assert _snapshot(shared) == before


def test_only_the_exact_gradio_cache_layout_is_deleted(temp_root: Path, settings, ham_image: Path) -> None:
    from dermchat_ui.uploads import gradio_cache_dir, sanitize_upload

    cache = gradio_cache_dir()
    assert cache == (temp_root / "gradio").resolve()
    loose = cache / "loose.jpg"  # in the cache, but not where Gradio puts an upload
    cache.mkdir(parents=True)
    shutil.copyfile(ham_image, loose)
    deep = cache / SHA_DIR / "nested" / "deep.jpg"
    deep.parent.mkdir(parents=True)
    shutil.copyfile(ham_image, deep)
    for kept in (loose, deep):
        assert sanitize_upload(str(kept), settings)[1] is None
        assert kept.exists()
    cached = _gradio_upload(cache, ham_image)
    clean, error = sanitize_upload(str(cached), settings)
    assert error is None and not cached.exists() and Path(clean).exists()  # Gradio's copy (EXIF and all) goes


# -- item 2: identical photos at once --------------------------------------------------------------------------------
def test_identical_photos_uploaded_at_once_all_get_through(temp_root: Path, settings, ham_image: Path) -> None:
    from dermchat_ui.uploads import gradio_cache_dir, sanitize_upload

    cache = gradio_cache_dir()
    for _ in range(6):  # six people send the same photo: Gradio keeps one file for all six uploads
        cached = _gradio_upload(cache, ham_image)
    results = [sanitize_upload(str(cached), settings) for _ in range(6)]  # the first one used to delete it
    assert [error for _, error in results] == [None] * 6
    assert len({clean for clean, _ in results}) == 1 and not cached.exists()

    barrier = threading.Barrier(6)
    outcomes: list[tuple[str | None, str | None]] = []

    def one() -> None:
        _gradio_upload(cache, ham_image)
        barrier.wait()
        outcomes.append(sanitize_upload(str(cache / SHA_DIR / "photo.jpg"), settings))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 6 and all(error is None for _, error in outcomes), outcomes
    clean = Path(outcomes[0][0])
    from PIL import Image

    with Image.open(clean) as im:  # a complete PNG, never one half written by another thread
        im.load()
    assert not (cache / SHA_DIR / "photo.jpg").exists()


# -- item 3: retention only prunes the app's own folders ------------------------------------------------------------
def test_a_configured_folder_the_app_did_not_make_is_refused_and_kept(
    tmp_path: Path, temp_root: Path, settings, monkeypatch: pytest.MonkeyPatch, ham_image: Path
) -> None:
    from dermchat.retention import ForeignFolderError, prune_expired
    from dermchat_ui.uploads import gradio_cache_dir, sanitize_upload

    home = tmp_path / "Documents"
    (home / "Photos").mkdir(parents=True)
    notes, holiday = home / "notes.txt", home / "Photos" / "holiday.jpg"
    notes.write_text("mine")
    shutil.copyfile(ham_image, holiday)
    for path in (notes, holiday, home / "Photos"):
        _age(path, 5 * HOUR)
    before = _snapshot(home)
    monkeypatch.setenv("DERMCHAT_UPLOAD_DIR", str(home))
    with pytest.raises(ForeignFolderError, match="did not create"):
        sanitize_upload(str(_gradio_upload(gradio_cache_dir(), ham_image)), settings)
    assert prune_expired(home, 60, force=True) == []  # no marker: never pruned, even when asked directly
    assert _snapshot(home) == before

    from core_helpers import fake_app

    work = tmp_path / "work"
    (work / "dermchat-turns").mkdir(parents=True)  # the turn folder root, already there with someone's file
    (work / "dermchat-turns" / "notes.txt").write_text("mine")
    _age(work / "dermchat-turns" / "notes.txt", 5 * HOUR)
    with pytest.raises(ForeignFolderError):
        fake_app(work).run_turn_sync(TurnRequest(image=str(ham_image)))
    assert (work / "dermchat-turns" / "notes.txt").read_text() == "mine"


def test_an_empty_folder_is_adopted_and_only_the_apps_entries_expire(
    tmp_path: Path, temp_root: Path, settings, monkeypatch: pytest.MonkeyPatch, ham_image: Path
) -> None:
    from dermchat.retention import MARKER, prune_expired
    from dermchat_ui.uploads import gradio_cache_dir, sanitize_upload

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setenv("DERMCHAT_UPLOAD_DIR", str(uploads))
    clean, error = sanitize_upload(str(_gradio_upload(gradio_cache_dir(), ham_image)), settings)
    assert error is None and (uploads / MARKER).is_file()
    _age(Path(clean), 2 * HOUR)
    (uploads / MARKER).touch()
    _age(uploads / MARKER, 5 * HOUR)
    assert prune_expired(uploads, 60, force=True) == [Path(clean)]
    assert (uploads / MARKER).is_file()  # the marker itself is never pruned


# -- item 11: private folders and files, no planted links ------------------------------------------------------------
def test_planted_links_at_the_fixed_temp_paths_are_not_followed(
    tmp_path: Path, temp_root: Path, settings, ham_image: Path
) -> None:
    from core_helpers import fake_app

    from dermchat.engine import turns_dir
    from dermchat_ui.uploads import gradio_cache_dir, sanitize_upload, upload_dir

    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    (temp_root / "dermchat-turns").symlink_to(elsewhere, target_is_directory=True)
    (temp_root / "dermchat-uploads").symlink_to(elsewhere, target_is_directory=True)
    app = fake_app(tmp_path, workdir=None)
    result = app.run_turn_sync(TurnRequest(image=str(ham_image)))
    _clean, error = sanitize_upload(str(_gradio_upload(gradio_cache_dir(), ham_image)), settings)
    assert error is None and result.status in {"ok", "abstained"}
    assert list(elsewhere.iterdir()) == []  # nothing written through the planted links
    for folder in (turns_dir(app.settings), upload_dir()):
        assert not folder.is_symlink() and elsewhere not in folder.resolve().parents
        assert stat.S_IMODE(folder.lstat().st_mode) == 0o700


def test_uploads_turn_files_and_study_databases_are_private(
    tmp_path: Path, temp_root: Path, settings, ham_image: Path
) -> None:
    from core_helpers import fake_app

    from dermchat.study.store import StudyStore
    from dermchat_ui.uploads import gradio_cache_dir, sanitize_upload

    clean, _ = sanitize_upload(str(_gradio_upload(gradio_cache_dir(), ham_image)), settings)
    assert stat.S_IMODE(os.stat(clean).st_mode) == 0o600
    assert stat.S_IMODE(Path(clean).parent.stat().st_mode) == 0o700
    app = fake_app(tmp_path / "work")
    result = app.run_turn_sync(
        TurnRequest(image=str(ham_image))
    )  # the fake reference generator writes images into the turn folder
    written = [Path(ref.path) for ref in result.references + result.hidden_references]
    assert written
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store = StudyStore(tmp_path / "studies" / "private.sqlite")
    store.enrol("s", "AB12-CD34-EF56", lambda seq: ["a"])
    for path in (tmp_path / "studies").glob("private.sqlite*"):  # the database, its WAL and shared memory
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# -- item 12: housekeeping ---------------------------------------------------------------------------------------
def test_the_turn_endpoint_leaves_no_empty_temp_files_in_gradios_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ham_image: Path
) -> None:
    import gradio as gr
    from core_helpers import fake_app
    from gradio.data_classes import FileData

    from dermchat_ui.api import build_api

    cache = tmp_path / "gradio-cache"
    cache.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    with gr.Blocks() as demo:
        build_api(fake_app(tmp_path))
    files = [block for block in demo.blocks.values() if isinstance(block, gr.File)]
    assert len(files) == 2  # the photo and the optional earlier photo of the same spot
    upload = _gradio_upload(cache, ham_image)
    before = sorted(cache.iterdir())
    for _ in range(20):
        for block in files:
            assert block.preprocess(FileData(path=str(upload), orig_name="photo.jpg")) == str(upload)
    assert sorted(cache.iterdir()) == before  # Gradio's gr.File left one empty tmp* file per call
