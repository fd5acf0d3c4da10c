"""Sampling (section 3.3), augmentation and the cache reader, on the synthetic cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from training_helpers import tiny_config

from facecodec.config import AugmentConfig
from facecodec.training.data import (
    ClipStore,
    FrameSampleDataset,
    StepSampler,
    colour_jitter,
    crop_frame,
    flip_sample,
    mean_frontal_layout,
    sample_rotation4,
)
from facecodec.training.mirror import MEDIAPIPE_MIRROR, flip_permutation
from facecodec.training.synthetic import (
    FLIP_PERMUTATION,
    LAYOUT,
    project,
    render,
    write_synthetic_cache,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return write_synthetic_cache(tmp_path_factory.mktemp("cache"), clips=4, frames=24)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1.2, 1.2, allow_nan=False), min_size=4, max_size=60),
       st.integers(0, 2**31))
@example([0.3, 0.25, -4.7462684344792067e-153, 0.0], 0)
def test_rotation4_constraints(yaw_list: list[float], seed: int) -> None:
    yaw = np.array(yaw_list)
    picked = sample_rotation4(yaw, np.random.default_rng(seed), 0.3, 0.1)
    # "C below A by more than 0.3" in the sampler's arithmetic (yaw_C < yaw_A - 0.3): at
    # float precision yaw_A - yaw_C > 0.3 can disagree (hypothesis: yaw_C = -4.7e-153)
    if not yaw.min() < yaw.max() - 0.3:
        assert picked is None
    if picked is None:
        return
    a, b1, b2, c = picked
    assert yaw[a] > yaw[b1] > yaw[c] and yaw[c] < yaw[a] - 0.3
    assert abs(yaw[a] - yaw[b2]) < 0.1 and b2 != a


def test_dataset_samples_are_deterministic_and_follow_section_3_3(cache) -> None:  # noqa: ANN001
    cfg = tiny_config()
    store = ClipStore(cache, 64)
    ds = FrameSampleDataset(store, cfg.data, "train", seed=3, augment=False, flip_perm=None)
    rotated = 0
    for n in range(40):
        s = ds[n]
        assert s["sources"].shape == (2, 64, 64, 3) and s["sources"].dtype == np.uint8
        assert s["drivers"].shape == (2, 64, 64, 3) and s["drv_sup"].shape == (2, 33, 2)
        if s["rotated"]:
            rotated += 1
            (ya, yc), (yb1, yb2) = s["src_yaw"], s["drv_yaw"]
            assert ya > yb1 > yc and ya - yc > 0.3 and abs(ya - yb2) < 0.1
    assert 0 < rotated < 40  # the still clip falls back to random frames
    a, b = ds[5], ds[5]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(ds[6]["drivers"], a["drivers"])


def test_frames_are_only_valid_ones(cache) -> None:  # noqa: ANN001
    cfg = tiny_config("data.strategy=random")
    store = ClipStore(cache, 128)
    ds = FrameSampleDataset(store, cfg.data, "train", seed=0, augment=False, flip_perm=None)
    invalid = {tuple(np.round(store.meta(c)["sup"][12].ravel(), 5)) for c in ds.clips}
    for n in range(60):
        s = ds[n]
        for sup in np.concatenate([s["src_sup"], s["drv_sup"]]):
            assert tuple(np.round(sup.ravel(), 5)) not in invalid  # frame 12 is invalid


def test_flip_mirrors_images_and_relabels_landmarks() -> None:
    """Flipping a face turned by +yaw must give the face turned by -yaw: same landmark
    semantics (left eye stays index-of-left-eye), mirrored geometry and image."""
    bg = np.full((128, 128, 3), 90, np.uint8)
    yaw, mouth = 0.35, 0.05
    img, sup, iris = render(128, yaw, mouth, 1, bg)
    img_m, sup_m, iris_m = render(128, -yaw, mouth, 1, bg)
    sample = {"sources": img[None], "drivers": img[None], "src_sup": sup[None],
              "drv_sup": sup[None], "src_iris": iris[None], "drv_iris": iris[None],
              "src_yaw": np.array([yaw]), "drv_yaw": np.array([yaw])}
    f = flip_sample(sample, FLIP_PERMUTATION)
    assert np.allclose(f["src_sup"][0], sup_m, atol=1e-6)
    assert np.allclose(f["src_iris"][0], iris_m, atol=1e-6)
    assert f["src_yaw"][0] == -yaw
    diff = np.abs(f["sources"][0].astype(int) - img_m).mean()
    assert diff < 1.5 < np.abs(img.astype(int) - img_m).mean()
    back = flip_sample(f, FLIP_PERMUTATION)
    assert all(np.array_equal(back[k], sample[k]) for k in sample)


def test_mediapipe_mirror_table() -> None:
    m = np.array(MEDIAPIPE_MIRROR)
    assert len(m) == 478 and np.array_equal(m[m], np.arange(478))
    for a, b in ((33, 263), (61, 291), (133, 362), (70, 300), (468, 473)):
        assert m[a] == b and m[b] == a
    assert m[1] == 1 and m[152] == 152
    perm = flip_permutation([33, 1, 263, 61, 291])
    assert perm is not None and perm.tolist() == [2, 1, 0, 4, 3]
    assert flip_permutation([33, 1]) is None  # 263 missing: not closed under mirroring


def test_colour_jitter_is_shared_across_frames() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    aug = AugmentConfig(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
    out = colour_jitter(np.concatenate([frame, frame]), np.random.default_rng(1), aug)
    assert out.dtype == np.uint8 and np.array_equal(out[0], out[1])
    assert not np.array_equal(out[0], frame[0])
    zero = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    same = colour_jitter(frame, np.random.default_rng(1), zero)
    assert np.abs(same.astype(int) - frame).max() <= 1  # identity up to rounding


def test_mean_frontal_layout_is_the_frontal_face(cache) -> None:  # noqa: ANN001
    layout = mean_frontal_layout(ClipStore(cache, 64), "train")
    assert layout.shape == (35, 2)
    assert np.abs(layout[:33] - project(LAYOUT, 0.0, 0.06)).max() < 0.1


def test_step_sampler_numbers_are_disjoint_across_ranks_and_steps() -> None:
    seen = set()
    for rank in range(2):
        it = iter(StepSampler(3, start_step=5, rank=rank, world=2))
        for _ in range(4):
            batch = next(it)
            assert not seen & set(batch)
            seen |= set(batch)
    resumed = next(iter(StepSampler(3, start_step=6, rank=0, world=2)))
    first = iter(StepSampler(3, start_step=5, rank=0, world=2))
    next(first)
    assert next(first) == resumed


def test_the_senders_supervised_landmarks_can_be_flipped() -> None:
    landmarks = pytest.importorskip("facecodec.sender.landmarks")
    from facecodec.training.mirror import supervised_flip_permutation

    perm = supervised_flip_permutation()
    assert perm is not None and np.array_equal(perm[perm], np.arange(33))
    idx = np.array(landmarks.SUPERVISED_LANDMARKS)
    assert np.array_equal(np.array(MEDIAPIPE_MIRROR)[idx], idx[perm])
    # the irises are stored right-then-left: a flip swaps them, as flip_sample does
    assert MEDIAPIPE_MIRROR[landmarks.IRIS_CENTRES[0]] == landmarks.IRIS_CENTRES[1]


def test_rotation4_rounding_edge_has_no_a_without_c() -> None:
    # found by hypothesis in CI: 1e-38 - 0.3 rounds to -0.3, so an A test written as
    # yaw_min + 0.3 admitted an A with no C strictly 0.3 below it (rng.choice on nothing)
    yaw = np.array([0.0, 0.0, 1.1754943508222875e-38, -0.3])
    assert sample_rotation4(yaw, np.random.default_rng(0), 0.3, 0.1) is None


def test_crop_moves_the_landmarks_with_the_picture() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    image[40:44, 12:16] = 255  # a bright 4-px square centred at pixel edge (14, 42)
    point = np.array([[14 / 32 - 1, 42 / 32 - 1]], np.float32)  # in tube coordinates
    same, (kept,) = crop_frame(image, [point], 1.0, 0.0, 0.0)
    assert np.array_equal(same, image) and np.allclose(kept, point)
    out, (moved,) = crop_frame(image, [point], 0.5, 0.125, 0.5)
    # the 32-px square from (8, 32) doubled: the dot's centre (14, 42) -> (12, 20)
    assert np.allclose(moved, [[12 / 32 - 1, 20 / 32 - 1]])
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert abs(xs.mean() + 0.5 - 12) < 0.6 and abs(ys.mean() + 0.5 - 20) < 0.6


def test_crop_augmentation_moves_each_frame_and_leaves_other_configs_alone(cache) -> None:  # noqa: ANN001
    from dataclasses import replace

    cfg = tiny_config()
    store = ClipStore(cache, 64)
    plain = FrameSampleDataset(store, cfg.data, "train", seed=3, augment=True)
    zero = replace(cfg.data, augment=replace(cfg.data.augment, crop=0.0))
    again = FrameSampleDataset(store, zero, "train", seed=3, augment=True)
    assert all(np.array_equal(plain[7][k], again[7][k]) for k in plain[7])
    moved = replace(cfg.data, augment=replace(cfg.data.augment, crop=0.3))
    cropped = FrameSampleDataset(store, moved, "train", seed=3, augment=True)[7]
    base = plain[7]
    assert cropped["sources"].shape == base["sources"].shape
    # the landmarks spread out (a crop enlarges), never shrink
    for key in ("src_sup", "drv_sup"):
        spread = np.ptp(cropped[key], axis=1) / np.ptp(base[key], axis=1)
        assert (spread > 0.99).all() and (spread < 1 / 0.7 + 0.01).all()
