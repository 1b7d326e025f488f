"""Kill-and-restart: a real process running participants is SIGKILLed mid-run; nothing committed is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from study_fixtures import answer_for, load, make_app

from dermchat.study.session import StudyFlow
from dermchat.study.store import StudyStore, to_url

FIXTURES = Path(__file__).resolve().parent / "study_fixtures.py"


def test_sigkill_mid_run_loses_nothing_committed(tmp_path: Path, ham_dir: Path) -> None:
    db = tmp_path / "durable.sqlite"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES), "crash-worker", to_url(db), str(tmp_path / "turns")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    committed: list[tuple[str, int]] = []
    enrolled: list[str] = []
    deadline = time.monotonic() + 240
    try:
        assert proc.stdout is not None
        # Kill in the middle of the second participant's run, after a few of their steps were committed.
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            kind, *rest = line.split()
            if kind == "ENROLLED":
                enrolled.append(rest[0])
            elif kind == "COMMITTED":
                committed.append((rest[0], int(rest[1])))
            if len(enrolled) == 2 and sum(1 for code, _ in committed if code == enrolled[1]) >= 3:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert len(enrolled) == 2, "the worker did not get far enough before the deadline"

    store = StudyStore(db)  # "restart": a new process-level view of the same file
    for code, step in committed:
        completed = store.completed_steps("reference_images_within", code)
        assert step in completed, (code, step)
        assert store.answers(code=code), code
    first, second = enrolled
    assert store.participant("reference_images_within", first).status == "done"  # type: ignore[union-attr]
    assert store.participant("reference_images_within", second).status == "active"  # type: ignore[union-attr]

    # The interrupted participant resumes with their code at the first unfinished step and finishes.
    flow = StudyFlow(load(), store)
    app = make_app(tmp_path / "turns2")
    state = flow.enter_code(flow.consent(flow.start(), True), second)
    done_before = store.completed_steps("reference_images_within", second)
    assert state.step == min(set(range(len(state.steps))) - done_before)
    while state.stage != "done":
        if state.stage == "case":
            list(flow.run_case(state, app))
        state = flow.submit(state, {item.id: answer_for(item) for item in flow.items(state)})
    completed = [e["step"] for e in store.events(code=second) if e["type"] == "step_completed"]
    assert sorted(completed) == list(range(len(state.steps)))
