"""``dermchat bench-serve``: the served app under load, beside the engine alone, measured in one run.

Why: ``dermchat bench`` times the engine (a turn in ~0.13 s), but users wait for what sits around it — the
upload, Gradio's queue, streamed events, the files the answer links to. Issue 23 found 134 ms engine turns
served at 5.5 s p50 under eight users. This command drives the real HTTP API with ``gradio_client`` and real
HAM photos: the public ``/turn`` endpoint, and the chat's own events as a browser sends them
(``/add_message`` then ``/respond``). It prints p50/p95 per endpoint, throughput, errors, the server's peak
RSS, where the time goes, and the engine-only p50 measured in the same run, on the same photos.

The clients run in a separate process: on a 2-core machine their HTTP and JSON work would otherwise share the
server's GIL and be counted as the server's. Their CPU time is reported, since they still share the cores.

Only loopback traffic, ever: the app is started in-process on 127.0.0.1, or ``--url`` must name a loopback
address. Every phase is bounded in turns and in time (``--max-seconds``).

``dermchat/`` never imports gradio: the app is started through ``dermchat_ui.app`` (as ``dermchat serve`` does) and the
load generator only uses ``gradio_client``, both imported inside functions.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dermchat.bench import peak_rss_mb, percentile
from dermchat.cli_output import emit, fail
from dermchat.paths import default_data_dir
from dermchat.request import TurnRequest
from dermchat.safety import NOT_A_DIAGNOSIS

QUESTION = "Should I worry about this spot?"
ENDPOINTS = ("turn", "chat")
OK_STATUSES = {"ok", "abstained"}


class BenchServeError(Exception):
    """A mistake in the command line or the environment, printed as one ``error:`` line (exit 2)."""


# -- arguments and inputs -----------------------------------------------------------------------------------
def loopback_url(url: str) -> str:
    """``url`` unchanged when it names this machine (127.0.0.0/8, ::1 or localhost); otherwise refuse it.

    A load test sends dozens of health photos as fast as it can: never to another machine.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BenchServeError(f"--url must look like http://127.0.0.1:7860/ (got {url!r})")
    host = parsed.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise BenchServeError(
            f"--url must be a loopback address (127.0.0.1, ::1 or localhost), not {host!r}: "
            "bench-serve only sends photos to this machine"
        )
    return url if url.endswith("/") else url + "/"


def pick_photos(data_dir: Path, count: int) -> list[Path]:
    """``count`` distinct real photos spread over the sorted HAM folder (the same ones on every run)."""
    images = sorted((data_dir / "images").glob("*.jpg"))
    if not images:
        raise BenchServeError(f"no HAM photos in {data_dir / 'images'} (set DERMCHAT_DATA_DIR or pass --data)")
    step = max(1, len(images) // max(1, count))
    return [images[(i * step) % len(images)] for i in range(count)]


# -- one timed call -------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One turn as a client saw it, plus what the server reported about it (``/turn`` only)."""

    endpoint: str
    ok: bool
    total_ms: float
    upload_ms: float = 0.0
    download_ms: float = 0.0
    files: int = 0
    status: str = ""
    error: str = ""
    steps_ms: dict[str, float] = field(default_factory=dict)
    server_ms: dict[str, float] = field(default_factory=dict)


class _Meter:
    """Times gradio_client's own upload and download calls for one client (one thread uses one client).

    Each client fetches a file once, as a browser's cache does: gradio_client would download the whole chat
    history's files again on every streamed update (about 30 downloads per chat turn, the photo each time), and
    on a 2-core machine that client work took the cores from the server being measured.
    """

    def __init__(self, client: Any) -> None:
        self.upload_s = 0.0
        self.download_s = 0.0
        self.files = 0
        self._fetched: dict[str, Any] = {}
        for endpoint in client.endpoints.values():
            endpoint._upload_file = self._timed(endpoint._upload_file, "upload_s")
            endpoint._download_file = self._cached(self._timed(endpoint._download_file, "download_s"))

    def _cached(self, download: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        def wrapper(file: dict[str, Any]) -> Any:
            key = str(file.get("url") or file.get("path"))
            if key not in self._fetched:
                self._fetched[key] = download(file)
            return self._fetched[key]

        return wrapper

    def _timed(self, fn: Callable[..., Any], attr: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(self, attr, getattr(self, attr) + time.perf_counter() - start)
                if attr == "download_s":
                    self.files += 1

        return wrapper

    def reset(self) -> None:
        self.upload_s = self.download_s = 0.0
        self.files = 0


def _client(url: str, download_dir: str) -> tuple[Any, _Meter]:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=download_dir, analytics_enabled=False)
    return client, _Meter(client)


@dataclass(frozen=True)
class Asks:
    """What each ``/turn`` call asks for beyond the JSON (both off by default, as for API clients since issue 23):
    the Grad-CAM heat map, and the reference images as files to download. The engine-only run asks the same."""

    heatmap: bool = False
    reference_images: bool = False


def _turn_call(
    client: Any, photo: str | Path, timeout_s: float, asks: Asks
) -> tuple[str, dict[str, float], dict[str, float]]:
    """One ``/turn`` call; returns (status, engine step timings, server timings)."""
    from gradio_client import handle_file

    job = client.submit(
        handle_file(photo),
        QUESTION,
        "clinician",
        True,
        None,
        "",
        "",
        asks.heatmap,
        asks.reference_images,
        api_name="/turn",
    )
    final = job.result(timeout=timeout_s)
    result = final.get("result") or {}
    return str(result.get("status", "")), dict(result.get("timings_ms") or {}), dict(final.get("serving_ms") or {})


def _chat_call(
    client: Any, photo: str | Path, timeout_s: float, asks: Asks
) -> tuple[str, dict[str, float], dict[str, float]]:
    """One chat turn as the browser sends it: the message with its photo, then the streamed answer (the clinician
    view, which draws its heat map whatever ``asks`` says)."""
    from gradio_client import handle_file

    history, _box = client.submit(
        [], {"text": QUESTION, "files": [handle_file(photo)]}, api_name="/add_message"
    ).result(timeout=timeout_s)
    outputs = client.submit(history, "clinician", None, "not given", None, api_name="/respond").result(
        timeout=timeout_s
    )
    chat = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    last = chat[-1] if chat else {}
    answered = NOT_A_DIAGNOSIS in _text_of(last)  # every answer carries the notice
    return ("answered" if answered else "no answer"), {}, {}


def _text_of(message: Any) -> str:
    """A chat message's text: Gradio 6 sends content as a string or as a list of ``{"type": "text"}`` blocks."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


CALLS: dict[str, Callable[[Any, str | Path, float, Asks], tuple[str, dict[str, float], dict[str, float]]]] = {
    "turn": _turn_call,
    "chat": _chat_call,
}


def _timed_call(endpoint: str, client: Any, meter: _Meter, photo: str | Path, timeout_s: float, asks: Asks) -> Sample:
    meter.reset()
    sent_at = time.time()  # wall clock: the server's handler start is compared with it (same machine)
    start = time.perf_counter()
    try:
        status, steps, server = CALLS[endpoint](client, photo, timeout_s, asks)
        error = ""
    except Exception as exc:  # noqa: BLE001 - every failure is a counted error with its reason
        status, steps, server, error = "error", {}, {}, f"{type(exc).__name__}: {exc}"[:300]
    total = (time.perf_counter() - start) * 1000
    if "started_at" in server:  # the handler's wall-clock start -> ms after this call was sent
        server["started_after"] = round(server.pop("started_at") * 1000 - sent_at * 1000, 1)
    ok = not error and (status in OK_STATUSES if endpoint == "turn" else status == "answered")
    return Sample(
        endpoint=endpoint,
        ok=ok,
        total_ms=round(total, 1),
        upload_ms=round(meter.upload_s * 1000, 1),
        download_ms=round(meter.download_s * 1000, 1),
        files=meter.files,
        status=status,
        error=error,
        steps_ms=steps,
        server_ms=server,
    )


# -- the load generator (runs in its own process) -------------------------------------------------------------
def drive(
    url: str, endpoint: str, plan: Sequence[Sequence[str | Path]], max_seconds: float, asks: Asks = Asks()
) -> dict[str, Any]:
    """Each inner list is one client's photos, sent one after the other; all clients start together.

    No new turn starts after ``max_seconds``; a call still running then may take ``max_seconds`` more.
    Returns the samples, the wall time and this process's CPU time.
    """
    samples: list[Sample] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="dermchat-bench-serve-") as downloads:
        clients = [_client(url, downloads) for _ in plan]  # connecting is not part of the measured load
        barrier = threading.Barrier(len(plan) + 1)
        deadline = [0.0]

        def user(index: int) -> None:
            client, meter = clients[index]
            barrier.wait()
            for photo in plan[index]:
                if time.perf_counter() > deadline[0]:
                    break
                sample = _timed_call(endpoint, client, meter, photo, max_seconds, asks)
                with lock:
                    samples.append(sample)

        threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(len(plan))]
        for thread in threads:
            thread.start()
        cpu0 = time.process_time()
        start = time.perf_counter()
        deadline[0] = start + max_seconds
        barrier.wait()
        for thread in threads:
            thread.join(timeout=2 * max_seconds + 30)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    return {
        "samples": [asdict(s) for s in samples],
        "wall_s": wall,
        "client_cpu_s": cpu,
        "unfinished_clients": sum(t.is_alive() for t in threads),
    }


# -- summaries ------------------------------------------------------------------------------------------------
def _p(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


def summarize(samples: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """p50/p95 of whole calls, throughput of good calls, errors with their reasons, and where the time went."""
    totals = [s["total_ms"] for s in samples]
    good = [s for s in samples if s["ok"]]
    errors = [s for s in samples if not s["ok"]]
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[s["status"]] = statuses.get(s["status"], 0) + 1
    return {
        "calls": len(samples),
        "errors": len(errors),
        "error_examples": sorted({s["error"] or f"status {s['status']}" for s in errors})[:3],
        "statuses": statuses,
        "p50_ms": _p(totals, 0.5),
        "p95_ms": _p(totals, 0.95),
        "turns_per_s": round(len(good) / wall_s, 2) if wall_s > 0 else None,
        "wall_s": round(wall_s, 2),
        "files_downloaded": sum(s.get("files", 0) for s in samples),
        "where_ms_p50": breakdown(samples),
    }


def breakdown(samples: list[dict[str, Any]]) -> dict[str, float | None]:
    """Median milliseconds per part of a call. Client side: the upload, the file downloads ("serving files");
    server side (``/turn`` reports ``serving_ms``): stripping the upload, the engine's steps, the rest of the
    engine (decode, safety, notices), encoding the result (``writing_outputs``: the JSON; files a step writes,
    such as the heat map, are inside that step), the time Gradio took over streamed events. The handler's
    wall-clock start splits the rest into ``queue_wait`` (sent to started, less the upload) and ``transport``
    (Gradio's result processing, moving returned files into its cache, the last event's delivery); calls without
    server figures keep them together as ``queue_wait_and_transport``. A step's own timing also covers the
    moments its progress events were being streamed, so ``engine:other`` can come out a few ms below zero."""
    parts: dict[str, list[float]] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None:
            parts.setdefault(name, []).append(float(value))

    for s in samples:
        add("upload", s["upload_ms"])
        add("serving_files", s["download_ms"])
        server, steps = s["server_ms"], s["steps_ms"]
        for step, ms in steps.items():
            add(f"engine:{step}", ms)
        if server:
            add("strip_upload", server.get("strip"))
            add("engine:other", server.get("engine", 0.0) - sum(steps.values()))
            add("writing_outputs", server.get("encode"))
            add("stream_events", server.get("stream"))
            handler = server.get("handler", 0.0)
        else:
            handler = sum(steps.values())  # without server figures only the steps are known
        outside = s["total_ms"] - s["upload_ms"] - s["download_ms"] - handler
        if "started_after" in server:
            queue_wait = max(0.0, server["started_after"] - s["upload_ms"])
            add("queue_wait", queue_wait)
            add("transport", outside - queue_wait)
        else:
            add("queue_wait_and_transport", outside)
    return {name: _p(values, 0.5) for name, values in parts.items()}


# -- the server side ------------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_page(url: str, timeout_s: float = 120.0) -> float:
    """Seconds until ``url`` answers 200 (the page is served)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # loopback only, checked
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchServeError(f"the page at {url} was not served within {timeout_s:.0f} s")


@dataclass
class Server:
    url: str
    app: Any = None  # the in-process DermChat, when this command started the app
    page_s: float | None = None
    models_ready_s: float | None = None
    close: Callable[[], None] = lambda: None


def start_in_process() -> Server:
    """The real app (settings from the environment, as ``python app.py``) on a free loopback port."""
    start = time.perf_counter()
    from dermchat_ui import app as gradio_app  # the Gradio app, installed beside dermchat

    port = free_port()
    app, demo = gradio_app.launch(host="127.0.0.1", port=port, block=False)
    url = f"http://127.0.0.1:{port}/"
    wait_for_page(url)
    page_s = time.perf_counter() - start
    app.wait_until_ready()
    return Server(
        url=url,
        app=app,
        page_s=round(page_s, 2),
        models_ready_s=round(time.perf_counter() - start, 2),
        close=demo.close,
    )


def server_peak_rss_mb(url: str) -> float | None:
    """Peak RSS (VmHWM) of the process listening on ``url``'s port, read from /proc; None when not found."""
    port = urllib.parse.urlsplit(url).port
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    for proc in Path("/proc").iterdir() if inodes else []:
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            continue
    return None


# -- the engine alone -----------------------------------------------------------------------------------------
def engine_only(app: Any, photos: list[Path], asks: Asks = Asks()) -> dict[str, Any]:
    """The same photos through ``run_turn`` directly, one after the other, with the server idle, asking for the
    heat map exactly when the ``/turn`` calls do."""
    from dermchat.context import heatmap_request

    totals: list[float] = []
    steps: dict[str, list[float]] = {}
    turn = TurnRequest(question=QUESTION, audience="clinician", force=True, options=heatmap_request(asks.heatmap))
    app.run_turn_sync(dataclasses.replace(turn, image=photos[0]))  # first-call costs are not a turn's
    for photo in photos:
        start = time.perf_counter()
        result = app.run_turn_sync(dataclasses.replace(turn, image=photo))
        totals.append((time.perf_counter() - start) * 1000)
        for step, ms in result.timings_ms.items():
            steps.setdefault(step, []).append(ms)
    return {
        "turns": len(totals),
        "p50_ms": _p(totals, 0.5),
        "p95_ms": _p(totals, 0.95),
        "step_p50_ms": {step: _p(v, 0.5) for step, v in steps.items()},
    }


def _local_engine() -> Any:
    from dermchat.engine import DermChat

    app = DermChat()
    app.warm_up()
    return app


# -- the whole run --------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    url = loopback_url(args.url) if args.url else None  # refused before anything else happens
    photos = pick_photos(Path(args.data) if args.data else default_data_dir(), args.clients * args.turns)
    server = Server(url=url) if url else start_in_process()
    asks = Asks(heatmap=args.heatmap, reference_images=args.reference_images)
    figures: dict[str, Any] = {
        "url": server.url,
        "in_process": server.app is not None,
        "clients": args.clients,
        "turns_per_client": args.turns,
        "asks": asdict(asks),
        "launch": {"page_served_s": server.page_s, "models_ready_s": server.models_ready_s},
    }
    spawn = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            # the first turn also waits for the models
            warm = pool.submit(drive, server.url, "turn", [photos[:1]], args.max_seconds, asks).result()
            figures["warm_up_turn"] = summarize(warm["samples"], warm["wall_s"])
            engine_photos = photos[: max(3, min(10, len(photos)))]
            figures["engine_only"] = engine_only(server.app or _local_engine(), engine_photos, asks)
            single = pool.submit(drive, server.url, "turn", [photos[: args.single]], args.max_seconds, asks).result()
            figures["single_client_turn"] = summarize(single["samples"], single["wall_s"])
            plan = [photos[i * args.turns : (i + 1) * args.turns] for i in range(args.clients)]
            figures["endpoints"] = {}
            figures["client_cpu_s"] = {}
            for endpoint in args.endpoints:
                load = pool.submit(drive, server.url, endpoint, plan, args.max_seconds, asks).result()
                figures["endpoints"][endpoint] = summarize(load["samples"], load["wall_s"])
                figures["endpoints"][endpoint]["unfinished_clients"] = load["unfinished_clients"]
                figures["client_cpu_s"][endpoint] = round(load["client_cpu_s"], 1)
    finally:
        with contextlib.redirect_stdout(sys.stderr):  # Gradio prints "Closing server..."; stdout is the JSON
            server.close()
    figures["server_peak_rss_mb"] = (
        round(peak_rss_mb(), 1) if server.app is not None else server_peak_rss_mb(server.url)
    )
    single_p50 = figures["single_client_turn"]["p50_ms"]
    engine_p50 = figures["engine_only"]["p50_ms"]
    figures["single_turn_overhead_ms"] = round(single_p50 - engine_p50, 1) if single_p50 and engine_p50 else None
    return figures


def print_text(figures: dict[str, Any]) -> None:
    launch = figures["launch"]
    print(f"app: {figures['url']} ({'started in-process' if figures['in_process'] else 'already running'})")
    if launch["page_served_s"] is not None:
        print(f"launch: page served after {launch['page_served_s']} s, models ready after {launch['models_ready_s']} s")
    print(f"/turn asks for: {', '.join(k for k, v in figures['asks'].items() if v) or 'the JSON only'}")
    engine = figures["engine_only"]
    print(
        f"engine only: p50 {engine['p50_ms']} ms, p95 {engine['p95_ms']} ms over {engine['turns']} turns "
        f"(steps p50: {json.dumps(engine['step_p50_ms'])})"
    )
    single = figures["single_client_turn"]
    print(
        f"single client /turn: p50 {single['p50_ms']} ms, p95 {single['p95_ms']} ms "
        f"(+{figures['single_turn_overhead_ms']} ms over the engine)"
    )
    for endpoint, s in figures["endpoints"].items():
        print(
            f"{endpoint} x {figures['clients']} clients: {s['calls']} calls, {s['errors']} errors, "
            f"p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, {s['turns_per_s']} turns/s over {s['wall_s']} s; "
            f"{s['files_downloaded']} files downloaded; client CPU {figures['client_cpu_s'][endpoint]} s"
        )
        for part, ms in s["where_ms_p50"].items():
            print(f"    {part:<26} p50 {ms} ms")
        for example in s["error_examples"]:
            print(f"    ! {example}")
    print(f"server peak RSS: {figures['server_peak_rss_mb']} MB")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dermchat bench-serve",
        description="the served app under load (loopback only), beside the engine alone",
    )
    p.add_argument("--clients", type=int, default=8, help="concurrent gradio_client users (default 8)")
    p.add_argument("--turns", type=int, default=5, help="turns per client and endpoint (default 5)")
    p.add_argument("--single", type=int, default=5, help="sequential /turn calls by one client (default 5)")
    p.add_argument("--endpoints", nargs="+", choices=ENDPOINTS, default=list(ENDPOINTS))
    p.add_argument("--url", help="a running app on this machine (127.0.0.1, ::1 or localhost only)")
    p.add_argument("--data", help="HAM-layout folder with images/ (default: DERMCHAT_DATA_DIR or ../shared)")
    p.add_argument("--max-seconds", type=float, default=180.0, help="no new turn starts after this, per phase")
    p.add_argument("--heatmap", action="store_true", help="/turn calls (and the engine-only run) ask for the heat map")
    p.add_argument("--reference-images", action="store_true", help="/turn calls download the reference images")
    p.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.clients < 1 or args.turns < 1 or args.single < 1 or args.max_seconds <= 0:
        return fail("--clients, --turns, --single and --max-seconds must be positive")
    try:
        figures = run(args)
    except BenchServeError as exc:
        return fail(exc)
    return emit(figures, args.json, print_text, indent=2)
