"""``facecodec export onnx`` on a model with the shipped config, and the exported graphs
checked numerically with onnxruntime against PyTorch on real face crops: each network
alone, and chained sender -> source -> generator against the receiver API
(``embed_sources`` once, ``render`` per frame)."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
import torch
from export_helpers import build_package, real_frames, run_cli

from facecodec.export import to_onnx
from facecodec.models.keypoints import assemble
from facecodec.models.registry import load_model
from facecodec.receiver.mixing import POSE_TEMPERATURE, pose_weights

pytest.importorskip("onnxruntime", reason="the 'export' extra is not installed")

# Observed on real crops with random weights and with the dev model: ~1e-5 on images in
# [0, 1] (1/400 of an 8-bit level), ~1e-5 on keypoints. The bounds leave 10x headroom and
# stay far below what a viewer or the bitstream's quantizers could notice.
TOL = {"unsup": 1e-4, "jac": 1e-4, "expr": 1e-4, "embedding": 1e-3, "source_flows": 1e-4,
       "source_weights": 1e-4, "image": 2e-4}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, export dir): the CLI run once, as a user runs it."""
    root = tmp_path_factory.mktemp("onnx")
    pkg = build_package(root / "models" / "frontalizer_sup_unsup_expr")
    r = run_cli("export", "onnx", "--model", str(pkg), "--out", str(root / "out"),
                "--no-progress")
    assert r.exit_code == 0, r.output
    assert "sender.onnx" in r.output and "generator.onnx" in r.output
    torch.set_num_threads(1)
    return load_model(pkg), root / "out"


def test_cli_writes_the_networks_and_a_manifest(exported) -> None:
    model, out = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "onnx" and manifest["num_sources"] == 3
    assert manifest["streams"] == ["sup", "iris", "unsup", "jac", "expr"]
    nets = {n["name"]: n for n in manifest["networks"]}
    assert list(nets) == ["sender", "source", "generator"]
    for name, net in nets.items():
        sess = to_onnx.session(out / net["file"])
        assert [i.name for i in sess.get_inputs()] == [i["name"] for i in net["inputs"]]
        assert [o.name for o in sess.get_outputs()] == [o["name"] for o in net["outputs"]]
        assert [list(i.shape) for i in sess.get_inputs()] == [i["shape"] for i in net["inputs"]]
        # the export's own check on random inputs (random flows: a harder case than faces)
        assert net["checks"]["max_abs_diff_random_inputs"] < 1e-3, name
        assert 1e6 < net["bytes"] < 8e6, name
    assert [i["name"] for i in nets["generator"]["inputs"]] == [
        "embedding", "source_flows", "source_weights", "source_images", "source_mix",
        "sup", "iris", "unsup", "jac", "expr"]
    # the generator's per-frame MACs (docs/export.md); the source side is paid once
    assert 100e6 < nets["generator"]["macs_dense"] < 200e6


def _diff(got: dict[str, np.ndarray], want: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(np.abs(got[k] - want[k].numpy()).max()) for k in want}


def test_onnx_matches_pytorch_on_real_face_crops(exported) -> None:
    model, out = exported
    res = model.resolution
    frames = real_frames(256)  # the generator warps 256 sources (export --output-size)
    big = torch.from_numpy(frames["tube"]).permute(0, 3, 1, 2).float() / 255
    small = np.stack([cv2.resize(f, (res, res), interpolation=cv2.INTER_AREA)
                      for f in frames["tube"]])
    images = torch.from_numpy(small).permute(0, 3, 1, 2).float() / 255
    order = np.argsort(frames["yaw"])
    sources = [int(order[0]), int(order[len(order) // 3]), int(order[-1])]  # yaw spread
    drivers = [int(order[len(order) // 2]), int(order[1]), int(order[-2])]
    assert len(set(sources + drivers)) == 6
    sess = {n: to_onnx.session(out / f"{n}.onnx") for n in ("sender", "source", "generator")}

    with torch.no_grad():
        learned = model.sender(images)
    values = {"sup": torch.from_numpy(frames["sup"]), "iris": torch.from_numpy(frames["iris"]),
              **learned}
    worst: dict[str, float] = {}

    def record(d: dict[str, float]) -> None:
        for k, v in d.items():
            worst[k] = max(worst.get(k, 0.0), v)

    # sender: face crop -> unsup, jac, expr, frame by frame (batch 1, as on the phone)
    sent = {k: [] for k in learned}
    for i in [*sources, *drivers]:
        got = to_onnx.run(sess["sender"], {"image": images[i:i + 1].numpy()})
        record(_diff(got, {k: v[i:i + 1] for k, v in learned.items()}))
        for k in sent:
            sent[k].append(got[k])
    assert all(np.isfinite(v).all() for vs in sent.values() for v in vs)

    # source: the three sources -> cache, against embed_sources
    src_images = images[sources][None]
    src_values = {k: v[sources][None] for k, v in values.items() if k != "expr"}
    with torch.no_grad():
        cache = model.receiver.embed_sources(src_images, src_values, big[sources][None])
    feed = {"source_images": src_images.numpy(),
            **{f"source_{k}": v.numpy() for k, v in src_values.items()}}
    cached = to_onnx.run(sess["source"], feed)
    record(_diff(cached, {"embedding": cache.embedding, "source_flows": cache.flows,
                          "source_weights": cache.weights}))

    # generator, chained on the ONNX cache and the ONNX sender's values, against render
    source_kp = assemble(model.layout, src_values)[0]
    for j, i in enumerate(drivers):
        drv = {k: v[i:i + 1] for k, v in values.items()}
        mix = pose_weights(source_kp, assemble(model.layout, drv)[0], POSE_TEMPERATURE)
        with torch.no_grad():
            want = model.receiver.render(cache, drv, mix).image
        onnx_values = {"sup": drv["sup"].numpy(), "iris": drv["iris"].numpy(),
                       **{k: sent[k][len(sources) + j] for k in learned}}
        got = to_onnx.run(sess["generator"], {**cached,
                                              "source_images": big[sources][None].numpy(),
                                              "source_mix": mix.numpy(), **onnx_values})
        record(_diff(got, {"image": want}))
        assert float(want.std()) > 0.01  # a picture, not a constant

    print("max |onnxruntime - torch| on real face crops:", worst)
    for k, v in worst.items():
        assert v < TOL[k], (k, v)


def test_missing_model_is_one_line_error(tmp_path, monkeypatch, capsys) -> None:
    from facecodec.cli import main

    for fmt in ("onnx", "coreml"):
        monkeypatch.setattr(sys, "argv", ["facecodec", "export", fmt, "--model",
                                          "no_such_model", "--out", str(tmp_path / "o")])
        with pytest.raises(SystemExit) as e:
            main()
        assert e.value.code == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("facecodec: error: no model 'no_such_model'"), err
        assert len(err.splitlines()) == 1
        assert not (tmp_path / "o").exists()
