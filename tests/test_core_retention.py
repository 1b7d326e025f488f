"""Retention: uploads and turn folders (copies of a health photo) are deleted after the retention time."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from dermchat.request import TurnRequest
from dermchat.retention import claim_dir, prune_expired
from dermchat.settings import SettingsError, load_settings

HOUR = 3600.0


def _age(path: Path, seconds: float) -> None:
    """Set mtime ``seconds`` in the past without following a link."""
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def _turn_folder(root: Path, name: str, age_s: float) -> Path:
    folder = root / name
    (folder / "references").mkdir(parents=True)
    (folder / "heatmap.png").write_bytes(b"png")
    (folder / "references" / "ref.png").write_bytes(b"png")
    for path in [folder / "references" / "ref.png", folder / "references", folder / "heatmap.png", folder]:
        _age(path, age_s)
    return folder


def test_old_entries_go_recent_ones_stay(tmp_path: Path) -> None:
    root = claim_dir(tmp_path / "turns")  # only a folder the app made (and marked) is ever pruned
    old = _turn_folder(root, "old", 2 * HOUR)
    fresh = _turn_folder(root, "fresh", 5 * 60)
    stale_file = root / "abc.png"
    stale_file.write_bytes(b"x")
    _age(stale_file, 2 * HOUR)
    removed = prune_expired(root, 60, force=True)
    assert set(removed) == {old, stale_file}
    assert not old.exists() and not stale_file.exists() and fresh.exists()


def test_a_turn_still_writing_keeps_its_folder(tmp_path: Path) -> None:
    """The folder itself is old (created long ago) but a file deep inside was just written."""
    root = claim_dir(tmp_path / "turns")
    running = _turn_folder(root, "running", 2 * HOUR)
    (running / "references" / "ref.png").write_bytes(b"new step")  # mtime now
    assert prune_expired(root, 60, force=True) == []
    assert running.exists()


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "user_files"
    outside.mkdir()
    precious = outside / "photo.jpg"
    precious.write_bytes(b"keep me")
    _age(precious, 5 * HOUR)
    _age(outside, 5 * HOUR)
    root = claim_dir(tmp_path / "uploads")
    link = root / "planted"
    link.symlink_to(outside, target_is_directory=True)
    _age(link, 5 * HOUR)
    assert prune_expired(root, 60, force=True) == [link]
    assert precious.read_bytes() == b"keep me"  # only the link went
    linked_root = tmp_path / "linked-root"
    linked_root.symlink_to(outside, target_is_directory=True)
    assert prune_expired(linked_root, 60, force=True) == [] and precious.exists()


def test_only_direct_children_and_at_most_once_a_minute(tmp_path: Path) -> None:
    root = claim_dir(tmp_path / "turns")
    assert prune_expired(root, 60) == []  # first call scans (nothing to do) and starts the interval
    stale = root / "late.png"
    stale.write_bytes(b"x")
    _age(stale, 2 * HOUR)
    assert prune_expired(root, 60) == [] and stale.exists()  # throttled: called again within the minute
    assert prune_expired(root, 60, force=True) == [stale]
    assert prune_expired(tmp_path / "missing", 60, force=True) == []


def test_retention_floor_protects_slow_turns(tmp_path: Path) -> None:
    root = claim_dir(tmp_path / "turns")
    folder = _turn_folder(root, "slow", 5 * 60)  # 5 minutes old
    assert prune_expired(root, 1, force=True) == [] and folder.exists()  # 1 minute is raised to 10


def test_setting_comes_from_the_environment() -> None:
    assert load_settings(environ={}).retention_minutes == 60
    assert load_settings(environ={"DERMCHAT_RETENTION_MINUTES": "1440"}).retention_minutes == 1440
    with pytest.raises(SettingsError, match="DERMCHAT_RETENTION_MINUTES"):
        load_settings(environ={"DERMCHAT_RETENTION_MINUTES": "5"})


def test_saving_an_upload_removes_expired_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ham_image: Path
) -> None:
    from dermchat_ui.uploads import sanitize_upload

    monkeypatch.setattr("dermchat.retention.MIN_INTERVAL_S", 0.0)  # every upload may scan in this test
    settings = load_settings(environ={}, overrides={"retention_minutes": 60})
    uploads = tmp_path / "uploads"
    monkeypatch.setenv("DERMCHAT_UPLOAD_DIR", str(uploads))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    (tmp_path / "gradio").mkdir()

    def upload(name: str) -> Path:
        cached = tmp_path / "gradio" / name
        shutil.copyfile(ham_image, cached)  # Gradio's cached original (deleted by sanitize_upload)
        clean, error = sanitize_upload(str(cached), settings)
        assert error is None and clean is not None
        return Path(clean)

    first = upload("a.jpg")
    _age(first, 2 * HOUR)
    Image.open(ham_image).rotate(90, expand=True).save(tmp_path / "gradio" / "b.png")
    clean, _ = sanitize_upload(str(tmp_path / "gradio" / "b.png"), settings)
    assert clean and Path(clean).exists() and not first.exists()  # the expired copy went
    again = upload("c.jpg")  # the first photo again, after it expired: written anew
    assert again == first and again.exists()
    _age(again, 50 * 60)
    upload("d.jpg")  # the same photo once more: its clock restarts
    assert time.time() - again.stat().st_mtime < 60


def test_a_turn_prunes_the_apps_own_turn_folders_but_never_a_callers_folder(tmp_path: Path) -> None:
    from core_helpers import fake_app, solid_image

    from dermchat.engine import turns_dir

    app = fake_app(tmp_path)
    photo = solid_image(tmp_path / "spot.png", (200, 160, 140))
    stale = _turn_folder(turns_dir(app.settings), "old-turn", 2 * HOUR)
    mine = tmp_path / "mine"
    kept = _turn_folder(mine, "old-turn", 2 * HOUR)
    app.run_turn_sync(TurnRequest(image=photo, workdir=mine))  # the caller's folder: nothing in it is deleted
    assert kept.exists() and stale.exists()
    result = app.run_turn_sync(TurnRequest(image=photo))  # the app's scratch area: expired turn folders go
    assert not stale.exists() and kept.exists()
    assert (turns_dir(app.settings) / result.turn_id).is_dir()  # this turn's own folder stays
