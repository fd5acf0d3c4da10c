"""The receiver's per-frame generator on onnxruntime.

PyTorch's eager CPU kernels are slow on this small mobile network (many thin convolutions,
batch 1) when it draws at its own resolution: there onnxruntime is faster (bench/codec_speed.py,
docs/BENCHMARKS.md). When the pixel blend draws larger frames than the model's resolution
(the shipped 128 model drawing at 256), the warps of the source pixels dominate and
PyTorch is faster, so ``auto`` picks by that (:func:`choose_backend`). The graph is the one
``facecodec export onnx`` writes, and its wrappers call the networks' own ``render``, so
both backends compute the same function within float rounding
(tests/test_receiver_runtime.py). It is traced from the local weights the first time a
model is used with N sources and kept in a cache directory; nothing is downloaded.

The cache is fed by streams from network peers, so nothing in its file names comes from a
stream: a graph is named by a hash of the model's weights, config and settings (a model
id like ``../../x`` once made the receiver write and load graphs outside it), each graph
is loaded only if its SHA-256 matches the one written beside it (else it is traced
again), and the cache keeps at most :data:`MAX_CACHED_GRAPHS` graphs (a stream's crop
size picks the output size, so many streams could otherwise fill the disk).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facecodec.bitstream.limits import MAX_SOURCES
from facecodec.errors import InputError
from facecodec.export import to_onnx
from facecodec.export.wrappers import generator_network
from facecodec.models.package import ModelPackage

BACKENDS = ("auto", "onnxruntime", "torch")
"""``auto``: PyTorch when the pixel blend draws frames larger than the model's resolution
(the shipped setup: 128 model, 256 frames), else onnxruntime when it is installed."""

_FORMAT = 2  # bump when the wrappers change what the cached graph computes

MAX_CACHED_GRAPHS = 64
"""Most graphs kept in :func:`cache_dir`; the least recently used go first. A stream
makes at most ``MAX_SOURCES`` graphs (one per source count, facecodec/bitstream/limits.py);
a machine's legitimate uses (a few models, source counts and output sizes) need far fewer."""


def cache_dir() -> Path:
    """``$FACECODEC_CACHE/onnx``, default ``~/.cache/facecodec/onnx``."""
    root = os.environ.get("FACECODEC_CACHE") or Path.home() / ".cache" / "facecodec"
    return Path(root) / "onnx"


def available() -> bool:
    try:
        # optional: without them the torch backend runs
        import onnx  # noqa: F401, PLC0415
        import onnxruntime  # noqa: F401, PLC0415
        import onnxscript  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def choose_backend(backend: str | None, upscaled: bool = False) -> str:
    """``backend`` or ``$FACECODEC_BACKEND`` or ``auto``, resolved to what will run for a
    generator that draws frames larger than its model's resolution (``upscaled``) or not.

    ``auto`` follows bench/codec_speed.py (docs/BENCHMARKS.md, one thread, two runs on
    different days agreeing): drawing 256 frames from the 128 model with 3 sources, PyTorch
    30.2 against onnxruntime 26.0 frames/s (earlier 34.1 / 25.1), and PyTorch needs no
    graph traced on the first decode; drawing at the model's own size, onnxruntime is
    faster (128: 48.4 / 39.0; FOM at 256: 43.9 / 28.7)."""
    backend = backend or os.environ.get("FACECODEC_BACKEND") or "auto"
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    if backend == "auto":
        return "onnxruntime" if available() and not upscaled else "torch"
    if backend == "onnxruntime" and not available():
        raise InputError("backend onnxruntime: onnx, onnxscript or onnxruntime is not "
                         "installed (pip install onnx onnxscript onnxruntime)")
    return backend


class OnnxGenerator:
    """The generator of ``model`` (a loaded :class:`KeypointAnimationModel`) for any number
    of sources, one onnxruntime session per source count."""

    def __init__(self, model, package: ModelPackage, threads: int | None = None,
                 output_size: int | None = None):
        self.model = model
        self.package = package
        self.output_size = output_size  # of the source images and the frame (None: model's)
        # One intra-op thread: measured faster than two on the 2-core target when first
        # measured (bench/codec_speed.py), and it leaves a core to the sender in a call.
        self.threads = threads or 1
        self._sessions: dict[int, tuple[object, list[str], object]] = {}
        self._fixed_for: object | None = None  # the cache self._fixed was made from
        self._fixed: dict[str, np.ndarray] = {}

    def _key(self, n: int) -> str:
        """The cache file name: only integers and a hash (of the receiver weights, the
        config and every setting the graph depends on), never a string from a stream."""
        import onnxruntime  # noqa: PLC0415 - optional dependency (see available())

        if not 1 <= n <= MAX_SOURCES:
            raise InputError(f"{n} sources: the generator takes 1..{MAX_SOURCES}")
        h = hashlib.sha256()
        for part in (self.package.weights_hash(), (self.package.path / "config.yaml").read_bytes(),
                     f"{n} {self.output_size} {_FORMAT} {torch.__version__} "
                     f"{onnxruntime.__version__}".encode()):
            h.update(part)
        size = f"-s{int(self.output_size)}" if self.output_size else ""
        return f"generator-n{int(n)}{size}-{h.hexdigest()[:32]}.onnx"

    def _build(self, n: int):
        net, split = generator_network(self.model, n, self.output_size)
        path = cache_dir() / self._key(n)
        graph = _read_verified(path)
        if graph is None:
            # the renderer runs under inference_mode, which tracing must leave
            with torch.inference_mode(False):
                graph = self._export(net, path, n)
        # the session is made from the bytes that were verified, not re-read from disk
        sess = _session(graph, self.threads)
        return sess, [s.name for s in net.inputs], split

    def _export(self, net, path: Path, n: int) -> bytes:
        """Trace the graph into ``path`` and its SHA-256 beside it; returns its bytes."""
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"facecodec: preparing the onnxruntime generator of {self.package.name} "
              f"for {n} source(s), once per machine ({path})", file=sys.stderr, flush=True)
        # under temporary names: a decoder killed half-way leaves no broken graph
        tmps = []
        try:
            for suffix in (".onnx", ".sha256"):
                fd, tmp = tempfile.mkstemp(suffix=suffix, dir=path.parent)
                os.close(fd)
                tmps.append(Path(tmp))
            to_onnx.export(net, tmps[0])
            graph = tmps[0].read_bytes()
            tmps[1].write_text(hashlib.sha256(graph).hexdigest() + "\n")
            os.replace(tmps[1], _digest_path(path))
            os.replace(tmps[0], path)
        finally:
            for tmp in tmps:
                tmp.unlink(missing_ok=True)
        _prune(path.parent, keep=path)
        return graph

    def render(self, cache, images: Tensor, values: dict[str, Tensor],
               source_mix: Tensor | None = None) -> Tensor:
        """One frame: ``cache`` from ``embed_sources`` (batch 1), the source ``images``
        (1, N, 3, S, S) at the output size, one frame's ``values`` (leading dim 1) and, for
        a Frontalizer, its ``source_mix`` (1, N; None: all ones) -> (1, 3, S, S)."""
        n = images.shape[1]
        if n not in self._sessions:
            self._sessions[n] = self._build(n)
        sess, names, split = self._sessions[n]
        if self._fixed_for is not cache:  # the source set's inputs: converted once per set
            fixed = dict(zip(names, split(cache), strict=False))
            if len(fixed) < len(names) and names[len(fixed)] == "source_images":
                fixed["source_images"] = images
            self._fixed = {k: np.ascontiguousarray(v.numpy(), dtype=np.float32)
                           for k, v in fixed.items()}
            self._fixed_for = cache
        arrays = dict(self._fixed)
        if "source_mix" in names:
            values = {**values, "source_mix": torch.ones(1, n) if source_mix is None
                      else source_mix}
        arrays.update({k: np.ascontiguousarray(values[k].numpy(), dtype=np.float32)
                       for k in names[len(self._fixed):]})
        (image,) = sess.run(None, arrays)
        return torch.from_numpy(image)


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_verified(path: Path) -> bytes | None:
    """The cached graph's bytes if its SHA-256 matches the one stored beside it, else None
    (missing, half-written, corrupted or replaced: it is traced again)."""
    try:
        graph = path.read_bytes()
        want = _digest_path(path).read_text().strip()
    except OSError:
        return None
    if hashlib.sha256(graph).hexdigest() != want:
        print(f"facecodec: the cached generator {path} does not match its checksum; "
              f"tracing it again", file=sys.stderr, flush=True)
        return None
    try:  # its age orders the pruning: least recently used first
        os.utime(path)
    except OSError:
        pass
    return graph


def _prune(directory: Path, keep: Path) -> None:
    """Delete the least recently used graphs beyond :data:`MAX_CACHED_GRAPHS`."""
    graphs = []
    for p in directory.glob("generator-*.onnx"):
        try:
            if p != keep:
                graphs.append((p.stat().st_mtime, p))
        except OSError:  # removed by another decoder meanwhile
            continue
    graphs.sort()
    for _, p in graphs[: max(0, len(graphs) - (MAX_CACHED_GRAPHS - 1))]:
        p.unlink(missing_ok=True)
        _digest_path(p).unlink(missing_ok=True)


def _session(graph: bytes, threads: int):
    """An onnxruntime CPU session on a serialized graph (the options of
    :func:`facecodec.export.to_onnx.session`)."""
    import onnxruntime as ort  # noqa: PLC0415 - optional dependency (see available())

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
