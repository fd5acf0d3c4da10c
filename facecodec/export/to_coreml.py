"""Core ML export: ML Program packages (``.mlpackage``) for iOS.

- Deployment target iOS 16 by default, the last iOS the iPhone 8 (A11) runs; iOS 15 is the
  oldest target with ML Programs. Higher targets would lock the iPhone 8 out.
- FP16 compute for the networks (what Core ML runs on the GPU), except the resampling path:
  Core ML's ``resample`` (our ``grid_sample``) is wrong in FP16 (coremltools issue 2068,
  docs/environment.md), and sampling coordinates deserve more than FP16's 11 bits
  (an error of 2^-11 is 0.06 pixel at 256). So every ``resample`` op and every op
  computing its ``coordinates`` (keypoint motions, the softmax-weighted flow, the flow
  resizing) stay FP32, and so does the tail of every output marked ``fp32`` (the sender's
  transmitted values, the cached flows): only conv outputs enter these paths in FP16.
- Inputs and outputs are FP32 tensors (MLMultiArray), named and described as in
  :mod:`facecodec.export.wrappers`.

coremltools converts on Linux but cannot run a model there (``predict`` needs macOS): the
checks here read the saved spec back (:func:`describe_package`).
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
from facecodec.models.blocks import BICUBIC_TAPS
from facecodec.models.decoder import Decoder

IOS_TARGETS = (15, 16)
"""ML Program needs iOS 15; the iPhone 8 stops at iOS 16."""

HEAVY_OPS = frozenset({"conv", "conv_transpose"})
"""Where the walk back along an FP32 path stops: convolutions stay FP16 (the cost is there).
Everything else on those paths is cheap: elementwise work on flows, the keypoints' spatial
softmax and centre of mass (a ``linear`` against the coordinate grid), the expression
MLP (~17 kMAC)."""


def coremltools() -> Any:
    """Import coremltools quietly (on Linux it logs that its native runtime is missing and
    that torch is newer than it was tested with: neither matters for conversion)."""
    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import coremltools as ct  # noqa: PLC0415 - optional dependency (the 'export' extra)
    except ImportError:
        raise InputError("coremltools is not installed: pip install -e '.[export]'") from None
    finally:
        log.setLevel(level)
    return ct


def check_ios(ios: int) -> None:
    if ios not in IOS_TARGETS:
        raise InputError(f"iOS target must be one of {IOS_TARGETS} (ML Programs need iOS 15, "
                         f"the iPhone 8 stops at iOS 16), got {ios}")


def fp32_ops(block: Any, fp32_outputs: tuple[int, ...] = ()) -> set[Any]:
    """The ops of a MIL block that must stay FP32: each ``resample``, the producers of its
    ``coordinates`` and those of the block outputs numbered ``fp32_outputs``, walked back
    until a convolution (exclusive) or a model input."""
    resamples = [op for op in block.operations if op.op_type == "resample"]
    # a resample met on the way (flows sampled by flows: the receiver composes driving ->
    # reference -> source) is walked through, its ``x`` included
    walked: set[Any] = set()
    stack = [op.inputs["coordinates"].op for op in resamples]
    stack += [block.outputs[i].op for i in fp32_outputs]
    while stack:
        op = stack.pop()
        if op is None or op in walked or op.op_type in HEAVY_OPS:
            continue
        walked.add(op)
        for var in op.inputs.values():
            for v in var if isinstance(var, list | tuple) else (var,):
                stack.append(v.op)
    return walked | set(resamples)


class FP16ExceptSampling:
    """``op_selector`` for ``ct.transform.FP16ComputePrecision``: True = run in FP16. The FP32
    set is computed on the first call, while the block is still the converted FP32 program."""

    def __init__(self, fp32_outputs: tuple[int, ...] = ()) -> None:
        self.fp32_outputs = fp32_outputs
        self.fp32: dict[int, set[Any]] = {}

    def __call__(self, op: Any) -> bool:
        block = op.enclosing_block
        if id(block) not in self.fp32:
            self.fp32[id(block)] = fp32_ops(block, self.fp32_outputs)
        return op not in self.fp32[id(block)]


def trace(net: ExportNetwork) -> torch.jit.ScriptModule:
    """TorchScript trace of ``net`` on its example inputs: the path coremltools' guide calls
    the stable and more performant one (its ``torch.export`` frontend is beta). torch 2.13
    flags ``jit.trace`` as deprecated, and the tracer warns about Python comparisons of
    shapes (``resize_flow``): shapes are fixed at export, so those hold."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.trace(net.module, net.example_inputs(), check_trace=False,
                               strict=False)


def convert(net: ExportNetwork, ios: int = 16, fp16: bool = True,
            metadata: dict[str, str] | None = None, quiet: bool = True) -> Any:
    """``net`` -> a Core ML ML Program (``ct.models.MLModel``), described for Xcode."""
    check_ios(ios)
    ct = coremltools()
    with _bilinear_taps(net.module):
        traced = trace(net)
    keep = tuple(i for i, spec in enumerate(net.outputs) if spec.fp32)
    precision = (ct.transform.FP16ComputePrecision(op_selector=FP16ExceptSampling(keep))
                 if fp16 else ct.precision.FLOAT32)
    # coremltools draws its own progress bars and numpy warnings on stderr; the CLI shows one
    # bar per network instead. Errors still raise.
    sink = contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()
    with sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            traced,
            # FP32 I/O: from iOS 16 on, coremltools would make them FP16 under FP16 compute,
            # rounding landmarks, flows and the transmitted values to 11 bits
            inputs=[ct.TensorType(name=s.name, shape=s.shape, dtype=np.float32)
                    for s in net.inputs],
            outputs=[ct.TensorType(name=s.name, dtype=np.float32) for s in net.outputs],
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, f"iOS{ios}"),
            compute_precision=precision,
            compute_units=ct.ComputeUnit.ALL,
        )
    model.short_description = f"facecodec {net.name}: {net.doc}"
    model.author = "facecodec"
    for spec in net.inputs:
        model.input_description[spec.name] = f"{spec.doc}; shape {list(spec.shape)}"
    for spec in net.outputs:
        model.output_description[spec.name] = f"{spec.doc}; shape {list(spec.shape)}"
    model.user_defined_metadata.update({"network": net.name, **(metadata or {})})
    return model


@contextlib.contextmanager
def _bilinear_taps(module: torch.nn.Module):  # noqa: ANN202
    """Core ML's ``resample`` samples bilinear or nearest only: a decoder whose pixel warp
    is bicubic is traced with the bicubic made of bilinear taps
    (:func:`facecodec.models.blocks.bicubic_by_bilinear_taps`, equal to float rounding)."""
    bicubic = [m for m in module.modules()
               if isinstance(m, Decoder) and m.pixel_warp == "bicubic"]
    for m in bicubic:
        m.pixel_warp = BICUBIC_TAPS
    try:
        yield
    finally:
        for m in bicubic:
            m.pixel_warp = "bicubic"


def save(model: Any, path: Path) -> Path:
    path = Path(path)
    with contextlib.redirect_stderr(io.StringIO()):
        model.save(str(path))
    return path


def package_bytes(path: Path) -> int:
    """Size on disk of an ``.mlpackage`` (a directory)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def describe_package(path: Path) -> dict[str, Any]:
    """What a saved ``.mlpackage`` declares, read back from its spec: ``inputs``/``outputs``
    ({name: (shape, dtype)}), ``ops`` ({op type: count}), ``op_dtypes`` ({op type: set of
    output dtypes}), ``opset`` (e.g. "CoreML6"), ``spec_version``, ``bytes``."""
    ct = coremltools()
    from coremltools.proto import FeatureTypes_pb2, MIL_pb2  # noqa: PLC0415 - optional dependency

    spec = ct.utils.load_spec(str(path))
    array = FeatureTypes_pb2.ArrayFeatureType

    def features(descs: Any) -> dict[str, tuple[tuple[int, ...], str]]:
        return {d.name: (tuple(d.type.multiArrayType.shape),
                         array.ArrayDataType.Name(d.type.multiArrayType.dataType))
                for d in descs}

    main = spec.mlProgram.functions["main"]
    opset = main.opset
    ops: dict[str, int] = {}
    dtypes: dict[str, set[str]] = {}
    for op in main.block_specializations[opset].operations:
        ops[op.type] = ops.get(op.type, 0) + 1
        for out in op.outputs:
            if out.type.HasField("tensorType"):
                dt = MIL_pb2.DataType.Name(out.type.tensorType.dataType)
                dtypes.setdefault(op.type, set()).add(dt)
    return {"inputs": features(spec.description.input),
            "outputs": features(spec.description.output),
            "ops": ops, "op_dtypes": dtypes, "opset": opset,
            "spec_version": spec.specificationVersion, "bytes": package_bytes(path),
            "metadata": dict(spec.description.metadata.userDefined)}


def fp16_inputs_of_fp32_paths(path: Path, fp32_outputs: tuple[str, ...] = ()) -> set[str]:
    """Read back from a saved package: the types of the FP16 ops whose values enter the
    FP32 paths (every resample's ``coordinates``, a resample met on the way, the outputs
    named ``fp32_outputs``). By design only ``conv`` (see the module doc); any other type
    means an FP16 op computes sampling coordinates or transmitted values."""
    ct = coremltools()
    from coremltools.proto import MIL_pb2  # noqa: PLC0415 - optional dependency

    spec = ct.utils.load_spec(str(path))
    main = spec.mlProgram.functions["main"]
    ops = list(main.block_specializations[main.opset].operations)
    producer = {out.name: op for op in ops for out in op.outputs}

    def dtype(op: Any) -> str:
        return MIL_pb2.DataType.Name(op.outputs[0].type.tensorType.dataType)

    def producers(op: Any, *names: str) -> list[Any]:
        keys = names or tuple(op.inputs)
        return [producer[a.name] for k in keys if k in op.inputs
                for a in op.inputs[k].arguments if a.name in producer]

    stack = [p for op in ops if op.type == "resample" for p in producers(op, "coordinates")]
    outputs = main.block_specializations[main.opset].outputs
    stack += [producer[name] for name in outputs if name in fp32_outputs and name in producer]
    seen: set[int] = set()
    found: set[str] = set()
    while stack:
        op = stack.pop()
        if id(op) in seen or op.type == "const":
            continue
        seen.add(id(op))
        if dtype(op) == "FLOAT16":
            found.add(op.type)  # an FP16 value: where the FP32 path starts
            continue
        stack += producers(op)
    return found


def unsupported_ops(ops: dict[str, int] | set[str], ios: int) -> list[str]:
    """Op types not in Core ML's MIL opset of iOS ``ios`` (custom or newer ops)."""
    ct = coremltools()
    # coremltools: the optional 'export' extra
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry  # noqa: PLC0415

    target = getattr(ct.target, f"iOS{ios}")
    return sorted(t for t in ops if not any(
        v <= target for v in SSAOpRegistry.core_ops.get(t, {})))
