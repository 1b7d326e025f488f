"""Serving (issue 23): the page before the models, early turns that wait, and ``bench-serve``'s own logic.

The app here uses the fake providers with a diagnoser whose loading blocks until the test lets it finish, so
"served while loading" is checked as a fact, not a race.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from core_helpers import fake_app, solid_image
from fake_plugins import FakeDiagnoser

from dermchat import bench_serve
from dermchat.hookspecs import hookimpl
from dermchat.request import TurnRequest
from dermchat.results import Diagnosis


class SlowLoadingDiagnoser(FakeDiagnoser):
    """The fake diagnoser, with a ``_load`` that lasts until ``release`` is set (a model loading)."""

    id = "slow-dx"
    label = "Slow-loading diagnoser"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.loads = 0

    def _load(self) -> None:
        self.loads += 1
        assert self.release.wait(30), "the test never released the model"

    def diagnose(self, ctx: Any) -> Diagnosis:
        assert self.loaded, "diagnose ran before the model had loaded"
        return super().diagnose(ctx)


class SlowPlugin:
    def __init__(self) -> None:
        self.provider = SlowLoadingDiagnoser()

    @hookimpl
    def register_diagnosers(self, register: Any) -> None:
        register(self.provider)


@pytest.fixture()
def slow(tmp_path: Path) -> tuple[Any, SlowLoadingDiagnoser]:
    plugin = SlowPlugin()
    app = fake_app(tmp_path, plugins=[(plugin, "slow")], diagnoser="slow-dx")
    yield app, plugin.provider
    plugin.provider.release.set()


def _run_in_thread(app: Any, image: Path) -> tuple[list, threading.Thread]:
    events: list = []

    def work() -> None:
        events.extend(app.run_turn(TurnRequest(image=image, question="what is it?", force=True)))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return events, thread


def test_a_turn_during_the_warm_up_waits_for_the_models_as_a_visible_step(slow, tmp_path: Path) -> None:
    app, provider = slow
    image = solid_image(tmp_path / "skin.png", (180, 120, 100))
    app.start_warm_up()
    assert not app.ready
    events, thread = _run_in_thread(app, image)
    time.sleep(1.5)
    assert thread.is_alive(), "the turn should wait while the models load"
    assert [(e.step, e.kind) for e in events[:1]] == [("turn", "start")]
    assert "Loading" in events[0].message
    provider.release.set()
    thread.join(10)
    result = events[-1].result
    assert result is not None and result.status == "ok", result and result.message
    assert result.diagnosis.provider_id == "slow-dx"
    assert ("turn", "done") in [(e.step, e.kind) for e in events]
    assert provider.loads == 1, "the waiting turn must not load a second copy beside the warm-up"
    assert app.ready and app.loading == ""


def test_warm_up_problems_are_kept_and_the_app_becomes_ready(tmp_path: Path) -> None:
    class Broken(FakeDiagnoser):
        id = "broken-dx"

        def _load(self) -> None:
            raise RuntimeError("weights are corrupt")

    class Plugin:
        @hookimpl
        def register_diagnosers(self, register: Any) -> None:
            register(Broken())

    app = fake_app(tmp_path, plugins=[(Plugin(), "broken")], diagnoser="broken-dx")
    app.start_warm_up().join(10)
    assert app.ready
    assert any("broken-dx" in p and "weights are corrupt" in p for p in app.warm_up_problems)


def test_the_page_is_served_while_models_load_and_an_early_api_turn_waits(slow, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    from dermchat_ui import app as gradio_app

    app, provider = slow
    port = bench_serve.free_port()
    started = time.perf_counter()
    _, demo = gradio_app.launch("127.0.0.1", port, app=app, block=False)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert bench_serve.wait_for_page(url, timeout_s=30) >= 0
        assert not app.ready, "launch must not wait for the models"
        assert time.perf_counter() - started < 25
        with urllib.request.urlopen(url + "config", timeout=10) as response:
            config = response.read().decode()
        assert "Loading the models" in config, "the page should say that the models are loading"
        client = Client(url, verbose=False, analytics_enabled=False)
        photo = solid_image(tmp_path / "skin.png", (180, 120, 100))
        job = client.submit(handle_file(str(photo)), "what is it?", "clinician", True, api_name="/turn")
        time.sleep(2.0)
        assert not job.done(), "an early turn should wait for the models"
        provider.release.set()
        final = job.result(timeout=60)
        assert final["result"]["status"] == "ok"
        assert final["events"][0]["step"] == "turn" and final["events"][0]["kind"] == "start"
        assert {"strip", "engine", "encode", "handler", "stream"} <= set(final["serving_ms"])
    finally:
        provider.release.set()
        demo.close()


# -- bench-serve's own logic ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:7860", "http://localhost:7860/", "http://[::1]:7860/", "http://127.0.0.2:8000/"]
)
def test_loopback_urls_are_accepted(url: str) -> None:
    assert bench_serve.loopback_url(url).endswith("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:7860/",
        "https://example.org/",
        "http://0.0.0.0:7860/",
        "http://192.168.1.20:7860",
        "ftp://127.0.0.1/",
        "127.0.0.1:7860",
    ],
)
def test_other_urls_are_refused_before_anything_is_sent(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(bench_serve.BenchServeError):
        bench_serve.loopback_url(url)
    assert bench_serve.main(["--url", url, "--data", "/nonexistent"]) == 2
    assert "error:" in capsys.readouterr().err


def test_photos_are_distinct_real_files_spread_over_the_folder(ham_dir: Path) -> None:
    photos = bench_serve.pick_photos(ham_dir, 40)
    assert len(set(photos)) == 40 and all(p.is_file() for p in photos)
    assert photos == bench_serve.pick_photos(ham_dir, 40)


def test_summary_counts_errors_and_splits_the_time() -> None:
    def sample(total: float, ok: bool = True, status: str = "ok") -> dict[str, Any]:
        return {
            "endpoint": "turn",
            "ok": ok,
            "total_ms": total,
            "upload_ms": 10.0,
            "download_ms": 20.0,
            "files": 6,
            "status": status,
            "error": "" if ok else "TimeoutError: 180 s",
            "steps_ms": {"quality": 15.0, "diagnosis": 30.0},
            "server_ms": {"strip": 5.0, "engine": 60.0, "encode": 2.0, "stream": 8.0, "handler": 75.0},
        }

    samples = [sample(t) for t in (200.0, 300.0, 400.0)] + [sample(900.0, ok=False, status="error")]
    summary = bench_serve.summarize(samples, wall_s=2.0)
    assert summary["calls"] == 4 and summary["errors"] == 1 and summary["turns_per_s"] == 1.5
    assert summary["p50_ms"] == 350.0 and summary["error_examples"] == ["TimeoutError: 180 s"]
    where = summary["where_ms_p50"]
    assert where["engine:other"] == 15.0  # 60 in the engine, 45 of it in the timed steps
    assert where["queue_wait_and_transport"] == 350.0 - 10 - 20 - 75
    assert where["upload"] == 10.0 and where["serving_files"] == 20.0 and where["strip_upload"] == 5.0
    assert summary["files_downloaded"] == 24

    timed = sample(300.0)
    timed["server_ms"]["started_after"] = 110.0  # the handler started 110 ms after the call was sent
    where = bench_serve.breakdown([timed])
    assert where["queue_wait"] == 100.0 and where["transport"] == 300.0 - 10 - 20 - 75 - 100
    assert "queue_wait_and_transport" not in where


def test_load_generator_drives_both_endpoints_of_a_live_app(slow, ham_dir: Path) -> None:
    from dermchat_ui import app as gradio_app

    app, provider = slow
    provider.release.set()
    port = bench_serve.free_port()
    _, demo = gradio_app.launch("127.0.0.1", port, app=app, block=False)
    try:
        url = f"http://127.0.0.1:{port}/"
        photos = [str(p) for p in bench_serve.pick_photos(ham_dir, 4)]
        files = bench_serve.Asks(reference_images=True)
        for endpoint, asks in (("turn", files), ("chat", files), ("turn", bench_serve.Asks())):
            load = bench_serve.drive(url, endpoint, [photos[:2], photos[2:]], max_seconds=60, asks=asks)
            samples = load["samples"]
            assert len(samples) == 4 and all(s["ok"] for s in samples), samples
            assert all(s["upload_ms"] > 0 and (s["files"] > 0) == (asks == files) for s in samples)
            summary = bench_serve.summarize(samples, load["wall_s"])
            assert summary["errors"] == 0 and summary["turns_per_s"] > 0
            if endpoint == "turn":  # the server's start splits the queue wait from the transport
                assert summary["where_ms_p50"]["queue_wait"] >= 0 and "transport" in summary["where_ms_p50"]
    finally:
        demo.close()


def test_concurrency_comes_from_the_settings_with_a_default_per_profile(tmp_path: Path) -> None:
    from dermchat.settings import load_settings
    from dermchat_ui import app as gradio_app

    assert load_settings(environ={"DERMCHAT_CONCURRENCY": "3"}).concurrency == 3
    cpu = fake_app(tmp_path)
    assert gradio_app.serving_concurrency(cpu) == gradio_app.CPU_CONCURRENCY == 2  # one turn per core
    gpu = fake_app(tmp_path, profile="gpu-hub")
    assert gradio_app.serving_concurrency(gpu) == 1
    assert gradio_app.serving_concurrency(fake_app(tmp_path, concurrency=5)) == 5


def test_each_running_turn_gets_its_share_of_the_cores_as_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from dermchat_ui import app as gradio_app

    for name in gradio_app.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(gradio_app.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # not imported yet: the variables tell it
    assert gradio_app.limit_cpu_threads(2) == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # an operator's choice is kept
    assert gradio_app.limit_cpu_threads(2) == 2
    for name in gradio_app.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert gradio_app.limit_cpu_threads(1) == 2 and os.environ["MKL_NUM_THREADS"] == "2"


def test_the_queue_looks_for_waiting_turns_every_few_milliseconds_not_every_one() -> None:
    import gradio as gr

    from dermchat_ui import app as gradio_app

    with gr.Blocks() as demo:
        gr.Button().click(lambda: None)
    demo.queue()
    gradio_app.calm_queue_polling(demo)
    assert demo._queue.sleep_when_free == gradio_app.QUEUE_POLL_S
