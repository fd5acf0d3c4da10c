"""The receiver's pose weighting of the source pixels (facecodec/receiver/mixing.py)."""

import pytest
import torch
from training_helpers import tiny_config

from facecodec.models.generator import SourceCache
from facecodec.models.registry import build_model
from facecodec.receiver.mixing import POSE_TEMPERATURE, SMOOTHING, SourceMixer, pose_weights


def _poses(seed: int, n: int = 3, k: int = 12) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, n, k, 2, generator=gen) * 1.6 - 0.8


def test_the_nearest_source_gets_the_weight_whatever_the_shift() -> None:
    sources = _poses(0)
    gen = torch.Generator().manual_seed(1)
    # the driving frame: source 1's pose, moved across the crop and jittered a little
    kp = sources[:, 1] + 0.3 + 0.01 * torch.randn(1, 12, 2, generator=gen)
    w = pose_weights(sources, kp, POSE_TEMPERATURE)
    assert w.shape == (1, 3) and torch.allclose(w.sum(dim=1), torch.ones(1))
    assert int(w.argmax()) == 1 and float(w[0, 1]) > 0.99
    # a hot temperature spreads the weight, still most on the nearest
    hot = pose_weights(sources, kp, 10.0)
    assert int(hot.argmax()) == 1 and float(hot.min()) > 0.3


def test_the_mix_moves_smoothly_and_restarts_on_reset() -> None:
    sources = _poses(2)
    mixer = SourceMixer()
    near0, near2 = sources[:, 0], sources[:, 2]
    first = mixer(sources, near0)[0]
    assert float(first[0]) > 0.99  # nothing to smooth against: the target itself
    # the head jumps to source 2's pose: the mix follows geometrically, not at once
    steps = mixer(sources, near2.expand(3, -1, -1))
    assert [round(float(s[2]), 3) for s in steps] == pytest.approx(
        [1 - SMOOTHING ** t for t in (1, 2, 3)], abs=0.01)
    mixer.reset()
    assert float(mixer(sources, near2)[0, 2]) > 0.99


def test_config_section_sets_or_switches_off_the_weighting() -> None:
    default = SourceMixer.from_config({})
    assert default is not None and (default.temperature, default.smoothing) == (
        POSE_TEMPERATURE, SMOOTHING)
    custom = SourceMixer.from_config({"inference": {"pose_temperature": 0.01,
                                                    "pose_smoothing": 0}})
    assert custom is not None and (custom.temperature, custom.smoothing) == (0.01, 0.0)
    assert SourceMixer.from_config({"inference": {"pose_temperature": 0}}) is None
    with pytest.raises(ValueError, match="smoothing"):
        SourceMixer(0.01, 1.0)


def test_a_one_hot_mix_draws_that_source_alone() -> None:
    """The pixels of a frame mixed (0, 1) are source 1's warped pixels alone, what a
    one-source cache draws; without a mix they blend both sources."""
    model = build_model(tiny_config()).eval()
    gen = torch.Generator().manual_seed(6)
    src = torch.rand(1, 2, 3, 64, 64, generator=gen)
    layout = model.layout
    with torch.no_grad():
        sv = {"sup": torch.rand(1, 2, 33, 2, generator=gen) - 0.5,
              "iris": torch.rand(1, 2, 2, 2, generator=gen) - 0.5,
              **{k: v.reshape(1, 2, *v.shape[1:]) for k, v in
                 model.sender(src.flatten(0, 1)).items()}}
        dv = {k: v[:, 0] for k, v in sv.items()}
        cache = model.receiver.embed_sources(src, {k: v for k, v in sv.items()
                                                   if k in layout.streams})
        learned = model.receiver.render(cache, dv)
        mixed = model.receiver.render(cache, dv, torch.tensor([[0.0, 1.0]]))
        alone = SourceCache(cache.embedding, cache.images[:, 1:], cache.flows[:, 1:],
                            cache.weights[:, 1:])
        one = model.receiver._warp_source_pixels(alone, mixed.flow)
    assert torch.allclose(mixed.warped_pixels, one, atol=1e-6)
    assert not torch.allclose(learned.warped_pixels, one, atol=1e-3)
