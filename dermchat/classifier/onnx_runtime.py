"""The classifier's forward pass through ONNX Runtime, and the command that exports it.

Why: on one CPU thread ONNX Runtime runs EfficientNet-Lite0 about 2.3x faster than eager torch (measured at
256x192: 10 ms against 24 ms), which is what lets the chat path read the photo at a higher resolution and still
stay inside its 30 ms budget. Only the forward pass moves: calibration, sets and the out-of-distribution gate are
the same numpy code whichever runtime produced the logits, and Grad-CAM still needs torch's gradients.

`model.onnx` sits next to `model.pt` in the weights folder and records the sha256 of the `model.pt` it was
exported from; a stale export (weights retrained, ONNX not) is ignored and the predictor falls back to torch.

`python -m dermchat export-onnx --weights DIR` writes it (after `train-classifier`, before shipping a folder).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.onnx_support import cpu_session, export_atomically
from dermchat.paths import file_sha256

ONNX_FILE = "model.onnx"
SOURCE_KEY = "dermchat_model_pt_sha256"
INPUT_NAME = "frames_uint8_nhwc"
OUTPUT_NAMES = ("logits", "embedding")


def export_onnx(weights_dir: Path, out: Path | None = None) -> Path:
    """Export `weights_dir/model.pt` (a single network or an ensemble, without flip averaging) to ONNX.

    The graph takes the same uint8 NHWC frames `to_model_frame` builds (any batch size, the model's input size)
    and returns logits and the pooled embedding, so the predictor feeds it exactly what it feeds torch.
    """
    import torch

    from dermchat.classifier.model import load_model, uint8_to_input
    from dermchat.classifier.predictor import MODEL_FILE

    source = Path(weights_dir) / MODEL_FILE
    model, _ = load_model(source)
    width, height = model.config.input_size

    class FramesToOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.model.forward_all(uint8_to_input(frames))
            return out["logits"], out["embedding"]

    target = Path(out) if out else Path(weights_dir) / ONNX_FILE
    example = torch.zeros((1, height, width, 3), dtype=torch.uint8)
    export_atomically(
        FramesToOutputs(),
        (example,),
        target,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}, "embedding": {0: "batch"}},
    )
    _stamp_source(target, file_sha256(source), (width, height))
    return target


def _stamp_source(path: Path, sha256: str, size: tuple[int, int]) -> None:
    """Record which model.pt (and input size) the graph was exported from, inside the ONNX file itself."""
    import onnx

    graph = onnx.load(str(path))
    for key, value in ((SOURCE_KEY, sha256), ("dermchat_input_size", f"{size[0]}x{size[1]}")):
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    partial = path.with_name(f"{path.name}.stamped.partial")
    onnx.save(graph, str(partial))
    partial.replace(path)


ONNX_BATCH = 32
"""Frames per ONNX Runtime call over an array. ORT keeps a whole batch's activations in its arena: at 320x240 a batch
of 256 took `eval` of 1,275 images to 12 GB resident (a 5,918-image pass to 16 GB); 32 keeps it under about 3 GB
more than the frames themselves, at the same speed."""


class OnnxForward:
    """An ONNX Runtime session over uint8 frames; `run` is thread-safe (ORT sessions are)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.session = cpu_session(path, threads)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def source_sha256(self) -> str | None:
        return self.metadata.get(SOURCE_KEY)

    def run(self, frames: np.ndarray, batch_size: int = ONNX_BATCH) -> tuple[np.ndarray, np.ndarray]:
        logits, embeddings = [], []
        for start in range(0, len(frames), batch_size):
            chunk = np.ascontiguousarray(frames[start : start + batch_size], dtype=np.uint8)
            out: list[Any] = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: chunk})
            logits.append(out[0])
            embeddings.append(out[1])
        return np.concatenate(logits).astype(np.float64), np.concatenate(embeddings).astype(np.float64)


def open_matching(weights_dir: Path, threads: int = 1) -> tuple[OnnxForward | None, str]:
    """The folder's ONNX session if it was exported from the folder's model.pt; else None and why not."""
    from dermchat.classifier.predictor import MODEL_FILE

    path = Path(weights_dir) / ONNX_FILE
    if not path.is_file():
        return None, f"no {ONNX_FILE} in {weights_dir}"
    try:
        forward = OnnxForward(path, threads=threads)
    except ImportError:
        return None, "onnxruntime is not installed"
    except Exception as exc:  # noqa: BLE001 - a damaged file must not take the diagnoser down: torch serves
        return None, f"{path} could not be loaded ({exc}); run `python -m dermchat export-onnx`"
    if forward.source_sha256 != file_sha256(Path(weights_dir) / MODEL_FILE):
        return None, f"{ONNX_FILE} was exported from another model.pt (run `python -m dermchat export-onnx`)"
    return forward, ""


def export_checked(weights_dir: Path, check_images: int = 64, tolerance: float = 1e-2) -> tuple[Path | None, str]:
    """Export, then compare with torch on random frames; an export that disagrees is removed (torch serves).

    Returns the file (or None) and one line saying what happened, for the command's output and training logs.
    """
    target = export_onnx(weights_dir)
    line = f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)"
    if check_images <= 0:
        return target, line
    worst = max_logit_difference(weights_dir, check_images)
    line += f"; largest logit difference from torch on {check_images} random frames {worst:.2e}"
    if worst > tolerance:
        target.unlink()  # the file this call just wrote
        return None, line + f" is above {tolerance}: removed, the chat path stays on torch"
    return target, line


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dermchat export-onnx",
        description="export a train-classifier weights folder's model.pt to model.onnx (the chat path's runtime)",
    )
    p.add_argument("--weights", type=Path, required=True, help="folder with model.pt (train-classifier --out)")
    p.add_argument("--check-images", type=int, default=64, help="random frames to compare with torch (0 = skip)")
    args = p.parse_args(argv)
    from dermchat.classifier.predictor import MODEL_FILE

    if not (args.weights / MODEL_FILE).is_file():
        print(f"error: no {MODEL_FILE} in {args.weights}", file=sys.stderr)
        return 2
    target, line = export_checked(args.weights, args.check_images)
    print(line, file=sys.stdout if target else sys.stderr)
    return 0 if target else 1


def max_logit_difference(weights_dir: Path, n: int, seed: int = 0) -> float:
    """Largest absolute logit difference between the exported graph and torch on random frames."""
    from dermchat.classifier.model import batched_inference, load_model
    from dermchat.classifier.predictor import MODEL_FILE

    model, _ = load_model(Path(weights_dir) / MODEL_FILE)
    width, height = model.config.input_size
    frames = np.random.default_rng(seed).integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)
    reference = batched_inference(model, frames, tta=False)["logits"].numpy()
    logits, _ = OnnxForward(Path(weights_dir) / ONNX_FILE).run(frames)
    return float(np.abs(logits - reference).max())
