"""``python -m dermchat <command>``: the headless face of the app.

Core commands (plugins, turn, serve, bench) live here; capability-specific commands are dispatched lazily
to the module that owns them, so ``dermchat plugins`` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dermchat.request import PatientDetails, TurnRequest

EXTERNAL_COMMANDS: dict[str, tuple[str, str]] = {
    "train-classifier": ("dermchat.classifier.train:main", "train the offline HAM10000 classifier"),
    "eval": ("dermchat.classifier.evaluate:main", "evaluate the offline classifier on a HAM-layout folder"),
    "eval-paired": (
        "dermchat.classifier.paired:main",
        "is one classifier better than another? paired lesion bootstrap of two eval prediction CSVs",
    ),
    "refit-head": (
        "dermchat.classifier.refit_head:main",
        "learn the classifier's last layer again on its frozen features, chosen on the validation lesions",
    ),
    "export-onnx": ("dermchat.classifier.onnx_runtime:main", "export classifier weights to ONNX (the chat runtime)"),
    "bench-quality": ("dermchat.quality.bench:main", "benchmark the image-quality check on distorted images"),
    "describe": ("dermchat.morphology.cli:describe_main", "dermoscopic ABCD descriptors of the lesion in a photo"),
    "compare": ("dermchat.morphology.cli:compare_main", "compare an earlier and a later photo of the same spot"),
    "train-segmenter": ("dermchat.morphology.train_segmenter:main", "train the lesion-outline U-Net on HAM10000 masks"),
    "bench-morphology": ("dermchat.morphology.bench:main", "validate the morphology descriptors on HAM10000"),
    "eval-rag": ("dermchat.knowledge.evaluate:main", "evaluate knowledge-base retrieval"),
    "captions": ("dermchat.references.captions:main", "write LesionGen-style captions for a HAM-layout folder"),
    "train-lora": ("dermchat.references.train_lora:main", "fine-tune a Stable Diffusion LoRA on captioned images"),
    "eval-redflags": ("dermchat.redflags.evaluate:main", "sensitivity and false alarms of the red-flag text screen"),
    "train-redflag-screen": (
        "dermchat.redflags.train:main",
        "fit the learned red-flag screen on the labelled phrasings",
    ),
    "eval-abstention": (
        "dermchat.abstention_eval:main",
        "can't-assess outcomes on non-dermoscopic and degraded photos",
    ),
    "study": ("dermchat.study.cli:main", "user-study tools: export, summary, delete"),
    "feedback": ("dermchat.feedback.cli:main", "answer feedback: export as CSV and JSONL"),
    "serve-openai": ("dermchat.vlm.server:main", "serve a local model through an OpenAI-compatible API"),
    "bench-serve": ("dermchat.bench_serve:main", "the served app under load (loopback only), beside the engine alone"),
}


def _dispatch(target: str, argv: list[str]) -> int:
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"error: this command is not available ({exc})", file=sys.stderr)
        return 2
    func: Callable[[list[str]], int] = getattr(module, func_name)
    return int(func(argv) or 0)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_plugins(args: argparse.Namespace) -> int:
    from dermchat.plugin_manager import PluginManager

    listing = PluginManager().listing()
    if args.json:
        _print_json(listing)
        return 0
    for plugin in listing["plugins"]:
        status = "ok" if plugin["loaded"] and not plugin["errors"] else "ERROR"
        print(f"{plugin['name']:<18} {status:<6} {plugin['module']}")
        for error in plugin["errors"]:
            print(f"    ! {error}")
    for capability, providers in listing["providers"].items():
        print(f"\n{capability}:")
        for prov in providers:
            state = "available" if prov["available"] else f"unavailable: {prov['reason']}"
            print(f"  {prov['id']:<20} {prov['label']:<40} {state}")
    return 0


def cmd_turn(args: argparse.Namespace) -> int:
    from dermchat.context import heatmap_request
    from dermchat.engine import DermChat
    from dermchat.render import render

    overrides: dict[str, Any] = {}
    if args.diagnoser:
        overrides["diagnoser"] = args.diagnoser
    if args.image is None and not (args.question or "").strip():
        print("error: give a photo, a --question, or both", file=sys.stderr)
        return 2
    if args.image is not None and not Path(args.image).exists():
        print(f"error: {args.image}: no such file", file=sys.stderr)
        return 2
    app = DermChat()
    out_dir = Path(args.out) if args.out else None
    result = None
    request = TurnRequest(
        image=args.image,
        question=args.question or "",
        audience=args.audience,
        force=args.force,
        settings_overrides=overrides or None,
        earlier_image=args.earlier,
        patient=PatientDetails(age=args.age, sex=args.sex, body_site=args.site),
        options=heatmap_request(args.audience == "clinician"),  # the clinician view keeps its heat map
    )
    for event in app.run_turn(request):
        if event.kind == "result":
            result = event.result
        elif not args.quiet:
            print(f"[{event.step}] {event.kind}: {event.message}", file=sys.stderr)
    assert result is not None
    if out_dir is not None:
        write_turn_files(result, out_dir)
    if args.json:
        _print_json(result.model_dump(mode="json"))
    else:
        print(render(result, args.audience))
    return 2 if result.status == "invalid_input" else 0


def write_turn_files(result: Any, out_dir: Path) -> None:
    """Copy reference images (and the heat map) next to a manifest so the folder stands on its own."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: list[dict[str, Any]] = []
    for index, ref in enumerate(result.references):
        source = Path(ref.path)
        kind = "synthetic" if ref.synthetic else "real"  # the label travels with the file, not only the manifest
        target = out_dir / f"reference_{index:02d}_{kind}_{ref.condition_id}{source.suffix or '.png'}"
        if source.exists():
            shutil.copyfile(source, target)
            ref.path = str(target)
        manifest.append(ref.model_dump(mode="json"))
    if result.diagnosis is not None and result.diagnosis.heatmap_path and Path(result.diagnosis.heatmap_path).exists():
        target = out_dir / "heatmap.png"
        shutil.copyfile(result.diagnosis.heatmap_path, target)
        result.diagnosis.heatmap_path = str(target)
    (out_dir / "references.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (out_dir / "result.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")


def cmd_serve(args: argparse.Namespace) -> int:
    """The Gradio app from the installed ``dermchat_ui`` package (gradio stays out of ``dermchat/``)."""
    argv = ["--host", args.host, "--port", str(args.port)] + (["--study", args.study] if args.study else [])
    return _dispatch("dermchat_ui.app:main", argv)


def cmd_bench(args: argparse.Namespace) -> int:
    from dermchat.bench import run_bench

    figures = run_bench(runs=args.runs, image=args.image)
    if args.json:
        _print_json(figures)
    else:
        for key, value in figures.items():
            print(f"{key}: {json.dumps(value, default=str)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dermchat", description="DermChat command line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list plugins, providers, availability and errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("turn", help="run one headless turn on an image, or a text-only turn with --question")
    p.add_argument("image", nargs="?", help="the photo (leave out for a text-only turn: red-flag screen + explanation)")
    p.add_argument("--question", default="")
    p.add_argument("--audience", choices=["patient", "clinician"], default="patient")
    p.add_argument("--out", help="write reference images, heat map and a JSON manifest here")
    p.add_argument("--diagnoser", help="provider id overriding the settings")
    p.add_argument("--force", action="store_true", help="continue even when the photo fails the quality gate")
    p.add_argument("--age", type=float, help="patient's age in years (optional; informs the offline model)")
    p.add_argument("--sex", choices=["female", "male"], help="patient's sex (optional; informs the offline model)")
    p.add_argument("--site", help="body site, e.g. 'back' or 'left forearm' (optional)")
    p.add_argument("--earlier", help="an earlier photo of the same spot: say what changed since")
    p.add_argument("--json", action="store_true", help="print the structured result as JSON")
    p.add_argument("--quiet", action="store_true", help="no step events on stderr")
    p.set_defaults(func=cmd_turn)

    p = sub.add_parser("serve", help="start the Gradio app (same as python app.py)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--study", help="study YAML file: start in user-study mode")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bench", help="per-step latency, cold start and peak memory")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--image", help="image to use (default: a HAM10000 image from the data folder)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    for name, (_target, help_text) in EXTERNAL_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


BROKEN_PIPE_EXIT = 141
"""128 + SIGPIPE: what ``yes | head -1`` reports for ``yes``; the shell's pipeline status ignores it."""


def _silence_stdout() -> None:
    """The reader went away (``| head``): point stdout at /dev/null so the final flush at exit is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one command; configuration mistakes print one line (exit 2), a closed pipe ends quietly."""
    from dermchat.settings import SettingsError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in EXTERNAL_COMMANDS:
            code = _dispatch(EXTERNAL_COMMANDS[argv[0]][0], argv[1:])
        else:
            args = build_parser().parse_args(argv)
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # surface a closed pipe here, not in the interpreter's exit
        return code
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_EXIT
