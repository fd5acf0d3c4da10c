"""The onnxruntime generator renders what the PyTorch one renders, and its graph is built
once per model and source count."""

import numpy as np
import pytest
from codec_helpers import make_package

from facecodec.errors import InputError
from facecodec.models.package import find_model
from facecodec.receiver.renderer import Renderer
from facecodec.receiver.runtime import available, choose_backend

pytestmark = pytest.mark.skipif(not available(), reason="onnxruntime not installed")


def values(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"sup": rng.uniform(-0.6, 0.6, (33, 2)), "iris": rng.uniform(-0.3, 0.3, (2, 2)),
            "unsup": rng.uniform(-0.6, 0.6, (10, 2)),
            "jac": np.eye(2) + rng.uniform(-0.1, 0.1, (10, 2, 2)),
            "expr": rng.uniform(-1, 1, 16)}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    models, _ = make_package(tmp_path_factory.mktemp("runtime"))
    return find_model(models / "tiny_codec")


def test_onnxruntime_matches_torch_and_caches_the_graph(package, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("FACECODEC_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    renderers = {b: Renderer(package, backend=b) for b in ("torch", "onnxruntime")}
    sources = [(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), values(rng)) for _ in range(3)]
    frames = [values(rng) for _ in range(4)]
    out = {}
    for backend, r in renderers.items():
        for slot, (image, v) in enumerate(sources[:2]):
            r.set_source(slot, image, v)
        two = r.render(frames[:2])
        r.set_source(2, *sources[2])  # a third source: another graph
        out[backend] = np.concatenate([two, r.render(frames[2:])])
    assert out["torch"].shape == (4, 64, 64, 3)
    diff = np.abs(out["torch"].astype(int) - out["onnxruntime"].astype(int))
    assert diff.max() <= 1, diff.max()  # float rounding may move a pixel by one level
    graphs = sorted(p.name for p in (tmp_path / "onnx").glob("*.onnx"))
    assert [g.split("-")[1] for g in graphs] == ["n2", "n3"]
    assert capfd.readouterr().err.count("preparing the onnxruntime generator") == 2

    again = Renderer(package, backend="onnxruntime")  # a second decoder reuses the graphs
    for slot, (image, v) in enumerate(sources):
        again.set_source(slot, image, v)
    assert np.array_equal(again.render(frames[2:]), out["onnxruntime"][2:])
    assert "preparing" not in capfd.readouterr().err


def test_backend_names(monkeypatch):
    assert choose_backend("torch") == "torch"
    assert choose_backend("auto") == "onnxruntime"  # drawing at the model's own size
    assert choose_backend("auto", upscaled=True) == "torch"  # measured faster there
    assert choose_backend("onnxruntime", upscaled=True) == "onnxruntime"
    monkeypatch.setenv("FACECODEC_BACKEND", "torch")
    assert choose_backend(None) == "torch"
    with pytest.raises(InputError, match="unknown backend 'tensorrt'"):
        choose_backend("tensorrt")


def test_output_size_warps_the_sources_at_that_size(package, tmp_path, monkeypatch):
    """output_size above the model's resolution: both backends draw frames of that size
    from sources given at that size, and agree."""
    monkeypatch.setenv("FACECODEC_CACHE", str(tmp_path))
    rng = np.random.default_rng(1)
    sources = [(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), values(rng))
               for _ in range(2)]
    frames = [values(rng) for _ in range(2)]
    out = {}
    for backend in ("torch", "onnxruntime"):
        r = Renderer(package, backend=backend, output_size=128)
        for slot, (image, v) in enumerate(sources):
            r.set_source(slot, image, v)
        out[backend] = r.render(frames)
    assert out["torch"].shape == (2, 128, 128, 3)
    diff = np.abs(out["torch"].astype(int) - out["onnxruntime"].astype(int))
    assert diff.max() <= 1, diff.max()
    assert [p.name.split("-")[2] for p in (tmp_path / "onnx").glob("*.onnx")] == ["s128"]
    small = Renderer(package, backend="torch")  # the model's own size is still the default
    for slot, (image, v) in enumerate(sources):
        small.set_source(slot, image, v)
    assert small.render(frames).shape == (2, 64, 64, 3)
