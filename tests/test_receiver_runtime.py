"""The receiver runs on PyTorch only (facecodec/receiver/runtime.py): the backend names
resolve to it or fail on one line, the receiver never imports facecodec.export, and the
generator graph ``facecodec export onnx`` writes renders what the receiver renders."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from codec_helpers import make_package

from facecodec.codec import Decoder
from facecodec.errors import InputError
from facecodec.models.package import find_model
from facecodec.models.registry import load_model
from facecodec.receiver.renderer import Renderer
from facecodec.receiver.runtime import choose_backend

ROOT = Path(__file__).resolve().parents[1]


def values(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"sup": rng.uniform(-0.6, 0.6, (33, 2)), "iris": rng.uniform(-0.3, 0.3, (2, 2)),
            "unsup": rng.uniform(-0.6, 0.6, (10, 2)),
            "jac": np.eye(2) + rng.uniform(-0.1, 0.1, (10, 2, 2)),
            "expr": rng.uniform(-1, 1, 16)}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    models, _ = make_package(tmp_path_factory.mktemp("runtime"))
    return find_model(models / "tiny_codec")


def exported_render(renderer: Renderer, frames: list[dict], out: Path) -> np.ndarray:
    """``frames`` drawn by the generator graph `facecodec export onnx` writes (made here
    for the renderer's source count and output size), fed from the renderer's own source
    embedding: (B, S, S, 3) uint8, as ``Renderer.render`` returns."""
    pytest.importorskip("onnxruntime", reason="the export dependencies are not installed")
    # export-only code: tests may import it, the receiver may not
    from facecodec.export import to_onnx
    from facecodec.export.wrappers import generator_network

    n = len(renderer._images)
    model = load_model(renderer.package.path, parts=("receiver",))
    net, split = generator_network(model, n, renderer.output_size)
    sess = to_onnx.session(to_onnx.export(net, out / f"generator-n{n}.onnx"))
    names = [s.name for s in net.inputs]
    with torch.no_grad():
        per, _, mix = renderer.frame_values(frames)
    fixed = dict(zip(names, split(renderer._cache), strict=False))
    fixed["source_images"] = renderer._stacked
    images = []
    for i, v in enumerate(per):
        feed = {**fixed, **v, "source_mix": torch.ones(1, n) if mix is None else mix[i:i + 1]}
        feed = {k: feed[k].detach().numpy() for k in names}
        images.append(torch.from_numpy(to_onnx.run(sess, feed)["image"]))
    return Renderer._to_uint8(torch.cat(images))


def test_the_exported_generator_renders_what_the_receiver_renders(package, tmp_path):
    rng = np.random.default_rng(0)
    sources = [(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), values(rng)) for _ in range(3)]
    frames = [values(rng) for _ in range(4)]
    # two receivers: each renders a sequence of its own (the pose mix smooths over frames)
    out = {"torch": [], "onnxruntime": []}
    renderers = {b: Renderer(package, backend="torch") for b in out}
    draw = {"torch": lambda r, f: r.render(f),
            "onnxruntime": lambda r, f: exported_render(r, f, tmp_path)}
    for backend, r in renderers.items():
        for slot, (image, v) in enumerate(sources[:2]):
            r.set_source(slot, image, v)
        out[backend].append(draw[backend](r, frames[:2]))
        r.set_source(2, *sources[2])  # a third source: another graph
        out[backend].append(draw[backend](r, frames[2:]))
    out = {k: np.concatenate(v) for k, v in out.items()}
    assert out["torch"].shape == (4, 64, 64, 3)
    diff = np.abs(out["torch"].astype(int) - out["onnxruntime"].astype(int))
    assert diff.max() <= 1, diff.max()  # float rounding may move a pixel by one level
    graphs = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert [g.split("-")[1] for g in graphs] == ["n2.onnx", "n3.onnx"]


def test_backend_names(monkeypatch):
    assert choose_backend("torch") == "torch"
    assert choose_backend("auto") == "torch"
    assert choose_backend(None) == "torch"
    monkeypatch.setenv("FACECODEC_BACKEND", "torch")
    assert choose_backend(None) == "torch"
    with pytest.raises(InputError, match="unknown backend 'tensorrt'"):
        choose_backend("tensorrt")
    # onnxruntime was a backend: asking for it says where ONNX went, on one line
    for ask in (lambda: choose_backend("onnxruntime"), lambda: Decoder(backend="onnxruntime")):
        with pytest.raises(InputError, match="PyTorch only.*export onnx") as e:
            ask()
        assert "\n" not in str(e.value)
    monkeypatch.setenv("FACECODEC_BACKEND", "onnxruntime")
    with pytest.raises(InputError, match=r"\$FACECODEC_BACKEND"):
        choose_backend(None)


def test_the_receiver_does_not_import_the_export_package():
    code = ("import sys, facecodec, facecodec.codec, facecodec.receiver.renderer; "
            "print(facecodec.__file__); "
            "print(sorted(m for m in sys.modules if m.startswith('facecodec.export')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(ROOT), out[0]
    assert out[1] == "[]"


def test_output_size_warps_the_sources_at_that_size(package, tmp_path):
    """output_size above the model's resolution: the receiver and the exported graph draw
    frames of that size from sources given at that size, and agree."""
    rng = np.random.default_rng(1)
    sources = [(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), values(rng))
               for _ in range(2)]
    frames = [values(rng) for _ in range(2)]
    out = {}
    for backend in ("torch", "onnxruntime"):
        r = Renderer(package, backend="torch", output_size=128)
        for slot, (image, v) in enumerate(sources):
            r.set_source(slot, image, v)
        out[backend] = (r.render(frames) if backend == "torch"
                        else exported_render(r, frames, tmp_path))
    assert out["torch"].shape == (2, 128, 128, 3)
    diff = np.abs(out["torch"].astype(int) - out["onnxruntime"].astype(int))
    assert diff.max() <= 1, diff.max()
    small = Renderer(package, backend="torch")  # the model's own size is still the default
    for slot, (image, v) in enumerate(sources):
        small.set_source(slot, image, v)
    assert small.render(frames).shape == (2, 64, 64, 3)


def test_the_cli_refuses_the_onnxruntime_backend_on_one_line(tmp_path):
    (tmp_path / "in.fcs").write_bytes(b"x")
    r = subprocess.run([sys.executable, "-m", "facecodec", "decode", str(tmp_path / "in.fcs"),
                        str(tmp_path / "out.mp4"), "--backend", "onnxruntime"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "facecodec: error: backend 'onnxruntime': the receiver runs on PyTorch only (auto or "
        "torch); ONNX is an export format: facecodec export onnx, docs/export.md"]
    assert not (tmp_path / "out.mp4").exists()
