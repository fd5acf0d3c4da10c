"""``facecodec export coreml``: conversion succeeds on a model with the shipped config, and
the saved specs say what docs/export.md promises. Core ML cannot run on Linux (``predict``
needs macOS), so these are spec checks: names, shapes and FP32 I/O, ML Program for iOS 16,
the op set (resample present, every op in the iOS 16 opset), FP16 compute with the
sampling path and the transmitted values in FP32, and the package sizes."""

from __future__ import annotations

import json

import pytest
from export_helpers import build_package, run_cli

pytest.importorskip("coremltools", reason="the 'export' extra is not installed")

from facecodec.errors import InputError  # noqa: E402
from facecodec.export import to_coreml  # noqa: E402
from facecodec.export.wrappers import export_networks  # noqa: E402
from facecodec.models.registry import load_model  # noqa: E402

SPEC_VERSION_IOS16 = 7  # Core ML model specification version of iOS 16
FP32_OUTPUTS = {"sender": ("unsup", "jac", "expr"), "source": ("source_flows",),
                "generator": ()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("coreml")
    pkg = build_package(root / "models" / "frontalizer_sup_unsup_expr")
    r = run_cli("export", "coreml", "--model", str(pkg), "--out", str(root / "out"),
                "--no-progress")
    assert r.exit_code == 0, r.output
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    return load_model(pkg), root / "out", manifest


def test_packages_declare_the_networks_inputs_and_outputs(exported) -> None:
    model, out, manifest = exported
    assert manifest["ios_target"] == 16 and manifest["fp16"]
    assert manifest["output_size"] == 256  # the default: the codec's crop size
    nets = export_networks(model, manifest["num_sources"], manifest["output_size"])
    assert [n.name for n in nets] == [n["name"] for n in manifest["networks"]]
    for net, entry in zip(nets, manifest["networks"], strict=True):
        desc = to_coreml.describe_package(out / entry["file"])
        assert entry["file"].endswith(".mlpackage")
        assert desc["spec_version"] == SPEC_VERSION_IOS16, net.name
        assert list(desc["inputs"]) == [s.name for s in net.inputs]
        assert list(desc["outputs"]) == [s.name for s in net.outputs]
        for spec in net.inputs:
            assert desc["inputs"][spec.name] == (spec.shape, "FLOAT32"), spec.name
        for spec in net.outputs:
            assert desc["outputs"][spec.name][1] == "FLOAT32", spec.name
        assert desc["metadata"]["network"] == net.name
        assert desc["metadata"]["receiver_weights_sha256_16"] == \
            manifest["receiver_weights_sha256_16"]


def test_op_set_and_precision(exported) -> None:
    _, out, manifest = exported
    for entry in manifest["networks"]:
        path = out / entry["file"]
        desc = to_coreml.describe_package(path)
        ops, dtypes = desc["ops"], desc["op_dtypes"]
        assert not to_coreml.unsupported_ops(ops, 16), entry["name"]
        assert not entry["checks"]["unsupported_ops"]
        # FP16 where it is safe: every convolution
        assert ops["conv"] >= 20 and dtypes["conv"] == {"FLOAT16"}, entry["name"]
        # the receiver warps: resample (grid_sample), always FP32 (coremltools issue 2068)
        if entry["name"] != "sender":
            assert ops["resample"] >= 1 and dtypes["resample"] == {"FLOAT32"}
        # only convolutions hand FP16 values to the sampling coordinates / sent values
        leaks = to_coreml.fp16_inputs_of_fp32_paths(path, FP32_OUTPUTS[entry["name"]])
        assert leaks <= {"conv"}, (entry["name"], leaks)
    gen = to_coreml.describe_package(out / "FacecodecGenerator.mlpackage")
    # flow -> features, flows -> flows (composition), source weights, and the source
    # pixels: the shipped config's bicubic warp as 3 x 3 bilinear taps (no bicubic in Core ML)
    assert gen["ops"]["resample"] == 3 + 9


def test_package_sizes(exported) -> None:
    """FP16 weights: about half the float32 state of each part (plus folded constants, e.g.
    the reference keypoints' coordinate offsets, which stay FP32)."""
    _, out, manifest = exported
    sizes = {e["name"]: e["bytes"] for e in manifest["networks"]}
    for name, size in sizes.items():
        assert size == to_coreml.package_bytes(out / f"Facecodec{name.capitalize()}.mlpackage")
    assert 1.0e6 < sizes["sender"] < 2.0e6  # 3.0 MB of float32 weights
    assert 1.0e6 < sizes["source"] < 2.5e6  # 1.8 MB
    assert 0.8e6 < sizes["generator"] < 1.8e6  # 1.8 MB


def test_fom_and_fp32_and_ios15_convert(tmp_path) -> None:
    """The FOM family (learned keypoints only: no landmark block, which once made an empty
    identity-Jacobian tensor that Core ML mis-sized) with the non-default options."""
    from export_helpers import ROOT

    pkg = build_package(tmp_path / "fom", ROOT / "configs" / "fom.yaml")
    nets = {n.name: n for n in export_networks(load_model(pkg))}
    assert [s.name for s in nets["source"].outputs] == ["embedding", "cache_kp", "cache_jac"]
    assert nets["source"].inputs[0].shape == (1, 1, 3, 128, 128)  # FOM animates one source
    path = to_coreml.save(to_coreml.convert(nets["generator"], 15, fp16=False),
                          tmp_path / "g.mlpackage")
    desc = to_coreml.describe_package(path)
    assert desc["opset"] == "CoreML5"  # iOS 15
    assert desc["op_dtypes"]["conv"] == {"FLOAT32"} and desc["ops"]["resample"] == 2
    assert not to_coreml.unsupported_ops(desc["ops"], 15)
    with pytest.raises(InputError, match="iOS target must be one of"):
        to_coreml.convert(nets["generator"], 17)
