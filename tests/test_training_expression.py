"""Issue 19's training pieces: expressive drivers (data.pick_expressive) and the eye and
mouth crops of losses.regions, with expected outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_helpers import tiny_config

from facecodec.training.data import (
    ClipStore,
    FrameSampleDataset,
    expression_features,
    pick_expressive,
)
from facecodec.training.losses import (
    EYE_POINTS,
    MOUTH_POINTS,
    crop_regions,
    region_boxes,
)
from facecodec.training.synthetic import write_synthetic_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return write_synthetic_cache(tmp_path_factory.mktemp("cache"), clips=4, frames=24)


def test_region_boxes_centre_and_size() -> None:
    sup = torch.zeros(1, 33, 2)
    # right eye corners at x = -0.5 and -0.3, lids at y = 0 +- 0.02: centre (-0.4, 0)
    sup[0, list(EYE_POINTS[0])] = torch.tensor([[-0.5, 0.0], [-0.4, -0.02], [-0.3, 0.0],
                                                [-0.4, 0.02]])
    sup[0, list(EYE_POINTS[1])] = torch.tensor([[0.3, 0.0], [0.4, -0.02], [0.5, 0.0],
                                                [0.4, 0.02]])
    mouth = torch.zeros(10, 2)
    mouth[:, 1] = 0.5
    mouth[0, 0], mouth[4, 0] = -0.2, 0.2  # corners 0.4 apart
    sup[0, list(MOUTH_POINTS)] = mouth
    boxes = region_boxes(sup, eye_box=1.6, mouth_box=1.5)
    expected = torch.tensor([[[-0.4, 0.0, 0.16], [0.4, 0.0, 0.16], [0.0, 0.5, 0.3]]])
    assert torch.allclose(boxes, expected, atol=1e-6)


def test_crop_regions_reads_the_box() -> None:
    # an image whose pixel value is its column index: a box crop must read its columns
    w = 64
    img = torch.arange(w, dtype=torch.float32).expand(1, 1, w, w).contiguous()
    # box centred on x = 0 (the edge between columns 31 and 32), half side 0.25 of the
    # [-1, 1] range (8 px): 32 samples over columns 24..40, at pixel centres 23.75 + k / 2
    crop = crop_regions(img, torch.tensor([[[0.0, 0.0, 0.25]]]), size=32)
    assert crop.shape == (1, 1, 32, 32)
    expected = 23.75 + 0.5 * torch.arange(32, dtype=torch.float32)
    assert torch.allclose(crop[0, 0, 0], expected, atol=1e-4)
    # two regions of one image come out in order
    two = crop_regions(img, torch.tensor([[[-0.5, 0.0, 0.25], [0.5, 0.0, 0.25]]]), size=32)
    assert two.shape == (2, 1, 32, 32) and two[0].mean() < two[1].mean()


def test_pick_expressive_takes_the_farthest_share() -> None:
    feats = np.zeros((20, 2))
    feats[[4, 9], 0] = -5.0  # two blink frames
    feats[15, 1] = 8.0  # one open mouth
    rng = np.random.default_rng(0)
    picks = {pick_expressive(np.arange(1, 20), feats, [0], rng, top=0.15) for _ in range(50)}
    assert picks == {4, 9, 15}  # ceil(0.15 * 19) = 3 farthest, every one drawn
    # distance is to the nearest source: a source that blinks makes blinks ordinary
    picks = {pick_expressive(np.arange(1, 20), feats, [0, 4], rng, top=0.05) for _ in range(20)}
    assert picks == {15}


def test_expression_features_are_in_clip_units() -> None:
    t = 30
    sup = np.zeros((t, 33, 2), np.float32)
    sup[:, 23, 0], sup[:, 27, 0] = -0.2, 0.2
    sup[:, 32, 1] = np.linspace(0.0, 0.1, t)  # the mouth opens steadily
    eyes = np.full(t, 0.05, np.float32)
    eyes[10] = 0.0  # a blink
    f = expression_features({"sup": sup, "eyes_open": eyes})
    assert f.shape == (t, 2)
    assert np.argmin(f[:, 0]) == 10 and np.all(np.diff(f[:, 1]) > 0)


def test_expressive_sampling_changes_only_the_last_driver(cache) -> None:  # noqa: ANN001
    plain = tiny_config()
    store = ClipStore(cache, 64)
    base = FrameSampleDataset(store, plain.data, "train", seed=3, augment=False,
                              flip_perm=None)
    again = FrameSampleDataset(store, tiny_config("data.expression_drivers=0.0").data,
                               "train", seed=3, augment=False, flip_perm=None)
    expr = FrameSampleDataset(store, tiny_config("data.expression_drivers=1.0").data,
                              "train", seed=3, augment=False, flip_perm=None)
    changed = 0
    for n in range(20):
        a, b, c = base[n], again[n], expr[n]
        assert all(np.array_equal(a[k], b[k]) for k in a)  # share 0 = as before
        assert c["drivers"].shape == a["drivers"].shape
        if c["rotated"]:
            assert abs(c["src_yaw"][0] - c["drv_yaw"][1]) < 0.1  # B2 keeps A's pose
        changed += not np.array_equal(a["drv_sup"][-1], c["drv_sup"][-1])
    assert changed > 0
