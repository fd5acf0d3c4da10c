"""Export a model package (``models/<name>/``) to a directory of Core ML or ONNX networks
plus a ``manifest.json`` that tells an app what each file takes and returns.

    DIR/FacecodecSender.mlpackage    or  DIR/sender.onnx
    DIR/FacecodecSource.mlpackage        DIR/source.onnx
    DIR/FacecodecGenerator.mlpackage     DIR/generator.onnx
    DIR/manifest.json

Core ML files are CamelCase because Xcode names the generated Swift class after the file.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from facecodec.errors import FacecodecError, InputError
from facecodec.export import macs as mac_counter
from facecodec.export import to_coreml, to_onnx
from facecodec.export.wrappers import ExportNetwork, export_networks
from facecodec.models.animation import KeypointAnimationModel
from facecodec.models.package import ModelPackage
from facecodec.models.registry import load_model

FORMATS = ("coreml", "onnx")
RUNS = {"sender": "per frame, sender", "source": "once per set of sources, receiver",
        "generator": "per frame, receiver"}


@dataclass
class ExportedNetwork:
    name: str
    file: str
    runs: str
    doc: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    macs_dense: int
    macs_sampling: int
    bytes: int
    seconds: float
    checks: dict[str, Any] = field(default_factory=dict)


def file_name(fmt: str, network: str) -> str:
    if fmt == "coreml":
        return f"Facecodec{network.capitalize()}.mlpackage"
    return f"{network}.onnx"


def load_for_export(package: ModelPackage) -> KeypointAnimationModel:
    model = load_model(package.path)
    if not isinstance(model, KeypointAnimationModel):
        raise InputError(f"{package.path}: family {package.profile.family!r} has no "
                         "export wrappers yet")
    return model


def export_bundle(fmt: str, package: ModelPackage, out: Path, *,
                  model: KeypointAnimationModel | None = None, num_sources: int | None = None,
                  ios: int = 16, fp16: bool = True, opset: int | None = None,
                  output_size: int | None = None, progress: bool = True
                  ) -> list[ExportedNetwork]:
    """Export every network of ``package`` (weights loaded from it unless ``model`` is
    given) in format ``fmt`` into ``out``; writes ``out/manifest.json``. ``output_size``:
    the side of the generator's source images and frame (default: the model's
    resolution; see :func:`facecodec.export.wrappers.generator_network`)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "coreml":
        to_coreml.check_ios(ios)
    opset = opset or to_onnx.OPSET
    model = model if model is not None else load_for_export(package)
    nets = export_networks(model, num_sources, output_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    with tqdm(nets, desc=f"export {fmt}", unit="network", disable=not progress) as bar:
        for net in bar:
            bar.set_postfix_str(net.name)
            done.append(_export_one(fmt, net, package, out, ios, fp16, opset))
    manifest = {
        "format": fmt, "model": package.name, "family": package.profile.family,
        "resolution": package.resolution, "num_sources": _num_sources(nets),
        "output_size": _output_size(nets),
        "streams": list(model.layout.streams),
        "receiver_weights_sha256_16": package.weights_hash().hex(),
        **({"ios_target": ios, "fp16": fp16} if fmt == "coreml" else {"opset": opset}),
        "networks": [asdict(d) for d in done],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return done


def _output_size(nets: list[ExportNetwork]) -> int:
    generator = next(n for n in nets if n.name == "generator")
    return int(generator.outputs[0].shape[-1])


def _num_sources(nets: list[ExportNetwork]) -> int:
    source = next(n for n in nets if n.name == "source")
    return source.inputs[0].shape[1]


def _export_one(fmt: str, net: ExportNetwork, package: ModelPackage, out: Path, ios: int,
                fp16: bool, opset: int) -> ExportedNetwork:
    path = out / file_name(fmt, net.name)
    if path.is_dir():
        shutil.rmtree(path)  # an .mlpackage is a directory; save() would merge into it
    start = time.perf_counter()
    checks: dict[str, Any] = {}
    if fmt == "coreml":
        meta = {"model": package.name, "resolution": str(package.resolution),
                "receiver_weights_sha256_16": package.weights_hash().hex()}
        to_coreml.save(to_coreml.convert(net, ios, fp16, meta), path)
        seconds = time.perf_counter() - start
        desc = to_coreml.describe_package(path)
        size = desc["bytes"]
        checks["ops"] = desc["ops"]
        # conversion for a target should already refuse newer ops; a package iOS could not
        # load must never be left looking like a success
        bad = to_coreml.unsupported_ops(desc["ops"], ios)
        if bad:
            raise FacecodecError(f"{path.name} uses ops outside the iOS {ios} opset: {bad}")
        checks["unsupported_ops"] = bad
    else:
        to_onnx.export(net, path, opset)
        seconds = time.perf_counter() - start
        size = path.stat().st_size
        # a quick numerical check on random inputs (not the traced ones); the tests check
        # real face crops
        inputs = {s.name: t.numpy() for s, t in zip(net.inputs, net.example_inputs(1),
                                                     strict=True)}
        got = to_onnx.run(to_onnx.session(path), inputs)
        want = to_onnx.torch_outputs(net, inputs)
        checks["max_abs_diff_random_inputs"] = max(
            float(np.abs(got[k] - want[k]).max()) for k in want)
    count = mac_counter.count(net)
    return ExportedNetwork(
        net.name, path.name, RUNS[net.name], net.doc,
        [{"name": s.name, "shape": list(s.shape), "doc": s.doc} for s in net.inputs],
        [{"name": s.name, "shape": list(s.shape), "doc": s.doc} for s in net.outputs],
        count.dense, count.sampling, size, round(seconds, 2), checks)
