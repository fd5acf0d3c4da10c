"""The enhancement layer (issue 20): its fusion network, its training data and its trainer,
on the synthetic face-tube cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facecodec.config import ConfigError
from facecodec.config.enhancer import EnhancerConfig
from facecodec.eval.clips import ClipRef
from facecodec.models.enhancer import Enhancer
from facecodec.training.enhance import EnhanceTrainer, enlarge, export_enhancer, load_enhancer
from facecodec.training.enhance_data import BuildRequest, build, layer_name
from facecodec.training.synthetic import write_synthetic_cache

LAYERS = ((64, 58), (256, 63))


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> tuple[Path, Path]:
    """(face-tube cache, enhancement cache) of 3 synthetic clips, 8 frames each."""
    root = write_synthetic_cache(tmp_path_factory.mktemp("tubes"), clips=3, frames=12,
                                 val_clips=1)
    index = json.loads((root / "index.json").read_text())
    refs = [ClipRef(c["name"], None, root / c["name"]) for c in index["clips"]]
    out = tmp_path_factory.mktemp("enhance")
    build(BuildRequest(refs, out, LAYERS, max_frames=8), say=lambda _: None)
    return root, out


def tiny_config(root: Path, cache: Path, steps: int = 4) -> EnhancerConfig:
    return EnhancerConfig.from_dict({
        "net": {"width": 8, "depth": 1, "expansion": 2},
        "data": {"root": str(root), "cache": str(cache), "crop": 32, "batch": 2},
        "optim": {"lr": 1e-3, "milestones": [3], "steps": steps},
        "run": {"validate_every": 2, "log_every": 1, "val_clips": 1, "val_stride": 4}})


def test_enhancer_starts_as_the_average_and_runs_on_any_multiple_of_16() -> None:
    net = Enhancer(width=8, depth=1, expansion=2).eval()
    anim, base = torch.rand(2, 3, 48, 64), torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        out = net(anim, base, torch.tensor([128, 256]), torch.tensor([52, 63]))
    assert out.shape == anim.shape
    torch.testing.assert_close(out, (anim + base) / 2)


def test_build_writes_the_animation_and_each_layer(caches) -> None:
    root, out = caches
    folder = out / "synth_000"
    info = json.loads((folder / "info.json").read_text())
    assert info["frames"] == 8 and info["anim_steady_kbps"] > 0
    assert set(info["layers"]) == {layer_name(s, q) for s, q in LAYERS}
    assert np.load(folder / "anim.npy").shape == (8, 256, 256, 3)
    small = np.load(folder / "base_64_58.npy")
    assert small.shape == (8, 64, 64, 3) and small.dtype == np.uint8
    # the layer is the clip at 64 px, coded: close to it, not equal
    orig = np.load(root / "synth_000" / "tube256.npy")[:8]
    err = np.abs(enlarge(small).astype(float) - orig).mean()
    assert 0.5 < err < 40
    # a second build finds everything done and rewrites nothing
    stamp = (folder / "anim.npy").stat().st_mtime_ns
    build(BuildRequest([ClipRef("synth_000", None, root / "synth_000")], out, LAYERS,
                       max_frames=8), say=lambda _: None)
    assert (folder / "anim.npy").stat().st_mtime_ns == stamp


def test_training_resumes_bit_for_bit(caches, tmp_path) -> None:
    root, cache = caches
    whole = EnhanceTrainer(tiny_config(root, cache), tmp_path / "whole")
    whole.run(progress=False)
    first = EnhanceTrainer(tiny_config(root, cache, steps=2), tmp_path / "split")
    first.run(progress=False)
    # the same run continued to 4 steps from its step-2 checkpoint (the config changes
    # only in its length: a checkpoint of another config is refused)
    with pytest.raises(Exception, match="another config"):
        EnhanceTrainer(tiny_config(root, cache), tmp_path / "split").run(progress=False)
    ckpt = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)
    ckpt["config"] = tiny_config(root, cache).to_dict()
    torch.save(ckpt, tmp_path / "split" / "checkpoint.pt")
    second = EnhanceTrainer(tiny_config(root, cache), tmp_path / "split")
    second.run(progress=False)
    assert second.step == whole.step == 4
    for a, b in zip(whole.net.state_dict().values(), second.net.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the exported weights are the trained ones
    net, _, step = load_enhancer(export_enhancer(tmp_path / "whole" / "checkpoint.pt",
                                                 tmp_path / "export"))
    assert step == 4
    for a, b in zip(net.state_dict().values(), whole.net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    records = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").open()]
    val = [r["val"] for r in records if "val" in r]
    assert len(val) == 2  # steps 2 and 4
    assert {"anim", "base_64_58", "fused_base_64_58", "base_256_63"} <= set(val[-1])
    assert all(0 < v["lpips"] < 1 and v["psnr"] > 5 for v in val[-1].values())


def test_config_is_strict() -> None:
    with pytest.raises(ConfigError, match="data.crops"):
        EnhancerConfig.from_dict({"data": {"crops": 64}})
