"""ONNX export (``torch.onnx.export`` with the ``torch.export`` based exporter) and an
onnxruntime session to check an exported graph against PyTorch.

The TorchScript-based exporter is deprecated in torch 2.9+ (it warns that it will be
removed); the ``torch.export`` one needs ``onnxscript`` and takes ~4 s per network.
Opset 18: the oldest the new exporter emits natively (GridSample exists since opset 16).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facecodec.errors import InputError
from facecodec.export.wrappers import ExportNetwork

OPSET = 18


def export(net: ExportNetwork, path: Path, opset: int = OPSET, quiet: bool = True) -> Path:
    """Write ``net`` as one self-contained ``.onnx`` file (weights inside: the networks are
    a few MB, far under protobuf's 2 GB limit)."""
    try:
        import onnx  # noqa: PLC0415 - optional dependency, checked here

        # the exporter needs it: fail here with a clear message
        import onnxscript  # noqa: F401, PLC0415 - optional dependency, checked here
    except ImportError:
        raise InputError("onnx/onnxscript are not installed: pip install onnx onnxscript") \
            from None
    path = Path(path)
    # torch.onnx logs that torchvision is absent (its ops are not needed) and prints its
    # steps on stdout; the CLI shows one progress bar per network instead
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    sink = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
    try:
        with sink, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                net.module, net.example_inputs(), str(path), dynamo=True,
                input_names=[s.name for s in net.inputs],
                output_names=[s.name for s in net.outputs],
                opset_version=opset, external_data=False, verbose=False)
    finally:
        log.setLevel(level)
    model = onnx.load(str(path))
    model.doc_string = f"facecodec {net.name}: {net.doc}"
    docs = {s.name: f"{s.doc}; shape {list(s.shape)}" for s in (*net.inputs, *net.outputs)}
    for value in (*model.graph.input, *model.graph.output):
        value.doc_string = docs.get(value.name, "")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def session(path: Path, threads: int = 1) -> Any:
    """An onnxruntime CPU session (``threads`` intra-op threads, none across ops)."""
    try:
        import onnxruntime as ort  # noqa: PLC0415 - optional dependency, checked here
    except ImportError:
        raise InputError("onnxruntime is not installed: pip install onnxruntime") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(sess: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name for inputs by name (float32)."""
    names = [o.name for o in sess.get_outputs()]
    feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
    return dict(zip(names, sess.run(names, feed), strict=True))


def torch_outputs(net: ExportNetwork, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The PyTorch reference for the same named inputs."""
    args = [torch.from_numpy(np.ascontiguousarray(inputs[s.name], dtype=np.float32))
            for s in net.inputs]
    with torch.no_grad():
        out = net.module(*args)
    out = out if isinstance(out, tuple) else (out,)
    return {s.name: t.numpy() for s, t in zip(net.outputs, out, strict=True)}
