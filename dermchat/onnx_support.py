"""What every ONNX Runtime path in the app shares: an atomic `torch.onnx.export` and a CPU session.

Two capabilities run a torch network through ONNX Runtime for speed on one CPU thread: the knowledge base's
question encoder (`dermchat.knowledge.onnx_query`) and the lesion classifier (`dermchat.classifier.onnx_runtime`).
Both trace with the TorchScript exporter (the dynamo exporter needs onnxscript, which is not installed) and both
want a file that is either whole or absent, so two processes exporting at once never leave half a graph.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

OPSET = 17


def export_atomically(module: Any, example: tuple[Any, ...], path: Path, **options: Any) -> Path:
    """`torch.onnx.export(module, example)` into a private partial file, then renamed onto `path`."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        # the tracer warns about Python values computed from shapes; the dynamic axes say which shapes may vary
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), example, str(partial), opset_version=OPSET, dynamo=False, **options)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def cpu_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session on `threads` intra-op threads (one inter-op thread), quiet on load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
