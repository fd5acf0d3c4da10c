"""Training samples from the face-tube cache (Oquab et al. section 3.3, "Training").

Cache contract (written by the data engineer's pipeline):
``<root>/index.json`` {"version": 1, "fps": 15, "clips": [{"name", "split", "person", "frames",
"src_fps"}...]}; per clip ``tube256.npy`` / ``tube128.npy`` uint8 (T, R, R, 3) RGB and
``meta.npz`` with ``sup`` (T, 33, 2) and ``iris`` (T, 2, 2) in [-1, 1], ``yaw`` (T,),
``valid`` (T,) bool, ``segment`` (T,) int32 and more (landmarks, pitch, roll, box, eyes_open).

Determinism: sample number ``n`` alone decides a sample (clip, frames, augmentation) through
``np.random.default_rng([seed, n])``. The sampler state is therefore one integer, resuming
is exact whatever the number of loader workers, and DDP ranks read disjoint numbers.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from facecodec.config import AugmentConfig, DataConfig
from facecodec.errors import InputError
from facecodec.training.mirror import supervised_flip_permutation

META_KEYS = ("sup", "iris", "yaw", "valid", "segment", "eyes_open")


@dataclass
class Clip:
    name: str
    split: str
    person: str
    frames: int


class ClipStore:
    """Lazy, per-process access to the cache: index, small metadata, memory-mapped tubes."""

    def __init__(self, root: Path, resolution: int):
        self.root = Path(root)
        index_path = self.root / "index.json"
        if not index_path.exists():
            raise InputError(f"no face-tube cache at {self.root} (index.json missing); "
                             "set data.root or FACECODEC_DATA")
        index = json.loads(index_path.read_text())
        if index.get("version") != 1:
            raise InputError(f"{index_path}: unsupported cache version {index.get('version')}")
        self.clips = [Clip(c["name"], c["split"], str(c["person"]), int(c["frames"]))
                      for c in index["clips"]]
        self.resolution = resolution
        self._meta: dict[str, dict[str, np.ndarray]] = {}
        self._tubes: dict[str, np.ndarray] = {}

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def meta(self, clip: Clip) -> dict[str, np.ndarray]:
        if clip.name not in self._meta:
            with np.load(self.root / clip.name / "meta.npz") as z:
                self._meta[clip.name] = {k: np.asarray(z[k]) for k in META_KEYS}
        return self._meta[clip.name]

    def frames(self, clip: Clip, idx: list[int]) -> np.ndarray:
        """uint8 (len(idx), R, R, 3) at the store resolution (resized from the nearest larger
        tube when R is neither 128 nor 256, e.g. the tiny test resolutions)."""
        src = 128 if self.resolution <= 128 else 256
        key = f"{clip.name}/{src}"
        if key not in self._tubes:
            self._tubes[key] = np.load(self.root / clip.name / f"tube{src}.npy", mmap_mode="r")
        out = np.asarray(self._tubes[key][idx])
        if src != self.resolution:
            r = self.resolution
            out = np.stack([cv2.resize(f, (r, r), interpolation=cv2.INTER_AREA) for f in out])
        return out


def sample_rotation4(yaw: np.ndarray, rng: np.random.Generator, min_rotation: float,
                     tolerance: float) -> tuple[int, int, int, int] | None:
    """Section 3.3 improved sampling: A, B1, B2, C with yaw_A > yaw_B1 > yaw_C,
    yaw_A - yaw_C > ``min_rotation`` and |yaw_A - yaw_B2| < ``tolerance`` (B2 != A).
    Positions into ``yaw``, or None when the frames do not turn that much."""
    n = len(yaw)
    # A needs some C below it by min_rotation and some B1 strictly in between; the test is
    # written as C's below (yaw_A - min_rotation, not yaw_min + min_rotation) so that float
    # rounding cannot admit an A that has no C
    a_choices = np.flatnonzero(yaw.min() < yaw - min_rotation)
    rng.shuffle(a_choices)
    for a in a_choices[:16]:
        c_choices = np.flatnonzero(yaw < yaw[a] - min_rotation)
        c = int(rng.choice(c_choices))
        b1_choices = np.flatnonzero((yaw < yaw[a]) & (yaw > yaw[c]))
        if len(b1_choices) == 0:
            continue
        b1 = int(rng.choice(b1_choices))
        b2_choices = np.flatnonzero((np.abs(yaw - yaw[a]) < tolerance) & (np.arange(n) != a))
        if len(b2_choices) == 0:
            continue
        return int(a), b1, int(rng.choice(b2_choices)), c
    return None


# Supervised-landmark positions (facecodec.sender.landmarks.SUPERVISED_LANDMARKS order) of
# the mouth corners (mesh 61, 291) and inner-lip middles (13, 14).
_MOUTH_CORNERS, _INNER_LIPS = (23, 27), (31, 32)


def expression_features(meta: dict[str, np.ndarray]) -> np.ndarray:
    """(T, 2) per-frame eye openness and mouth opening of a clip, each in units of the
    clip's median absolute deviation from its median, so that "far from the sources' in
    expression" reads alike for every person and camera distance."""
    sup = meta["sup"]
    width = np.linalg.norm(sup[:, _MOUTH_CORNERS[0]] - sup[:, _MOUTH_CORNERS[1]], axis=-1)
    mouth = np.linalg.norm(sup[:, _INNER_LIPS[0]] - sup[:, _INNER_LIPS[1]], axis=-1)
    feats = np.stack([meta["eyes_open"], mouth / np.maximum(width, 1e-6)], axis=1)
    mad = np.median(np.abs(feats - np.median(feats, axis=0)), axis=0)
    return feats / np.maximum(mad, 1e-6)


def pick_expressive(candidates: np.ndarray, feats: np.ndarray, sources: list[int],
                    rng: np.random.Generator, top: float = 0.25) -> int:
    """One of ``candidates`` (frame positions) drawn from the ``top`` share whose expression
    (``expression_features``) is farthest from every source's: blinks, open mouths and
    smiles that the sources do not show, the frames a warp of the sources cannot draw
    (issue 19). Drawn at random among them, so one clip gives many such samples."""
    dist = np.min([np.abs(feats[candidates] - feats[s]).sum(axis=1) for s in sources], axis=0)
    keep = max(1, int(np.ceil(top * len(candidates))))
    best = candidates[np.argsort(-dist, kind="stable")[:keep]]
    return int(rng.choice(best))


def colour_matrix(rng: np.random.Generator, saturation: float, hue: float) -> np.ndarray:
    """3x3 RGB map: rotate the chroma plane of YIQ by a random hue angle and scale it by a
    random saturation factor (linear, so one matrix product per frame)."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    s = rng.uniform(1 - saturation, 1 + saturation)
    th = rng.uniform(-hue, hue) * 2 * np.pi
    rot = np.array([[1, 0, 0], [0, s * np.cos(th), -s * np.sin(th)],
                    [0, s * np.sin(th), s * np.cos(th)]])
    return (np.linalg.inv(to_yiq) @ rot @ to_yiq).astype(np.float32)


def colour_jitter(frames: np.ndarray, rng: np.random.Generator, aug: AugmentConfig
                  ) -> np.ndarray:
    """The same brightness / contrast / saturation / hue change on every frame of a sample
    (sources and drivers must keep one appearance, as FOM jitters whole videos)."""
    x = frames.astype(np.float32) / 255.0
    x = x @ colour_matrix(rng, aug.saturation, aug.hue).T
    x = x * rng.uniform(1 - aug.brightness, 1 + aug.brightness)
    mean = float(x.mean())
    x = (x - mean) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + mean
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def crop_frame(image: np.ndarray, points: list[np.ndarray], side: float, x0: float, y0: float
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The square of ``side`` (a fraction of the frame) with its top-left corner at
    (``x0``, ``y0``) (fractions, within [0, 1 - side]), enlarged back to the frame's size
    (bilinear), and ``points`` ((..., 2) tube coordinates: -1 and +1 at the frame's pixel
    edges) moved with it."""
    r = image.shape[0]
    # destination pixel centre u -> source x = (x0 * r) + (u + 0.5) * side - 0.5
    m = np.array([[side, 0.0, x0 * r + 0.5 * side - 0.5],
                  [0.0, side, y0 * r + 0.5 * side - 0.5]], dtype=np.float64)
    out = cv2.warpAffine(image, m, (r, r), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    origin = np.array([x0, y0], dtype=np.float32)
    moved = [(((p + 1) / 2 - origin) / side * 2 - 1).astype(np.float32) for p in points]
    return out, moved


def crop_sample(sample: dict[str, np.ndarray], rng: np.random.Generator, crop: float
                ) -> dict[str, np.ndarray]:
    """:func:`crop_frame` on every source and driver, each with its own random square
    (``AugmentConfig.crop``, in [0, 1))."""
    if not 0.0 <= crop < 1.0:
        raise ValueError(f"data.augment.crop must be in [0, 1), got {crop}")
    out = dict(sample)
    for key, side_key in (("sources", "src"), ("drivers", "drv")):
        images, sups, irises = [], [], []
        for i, image in enumerate(sample[key]):
            side = 1.0 - crop * rng.random()
            x0, y0 = rng.uniform(0.0, 1.0 - side, 2)
            img, (sup, iris) = crop_frame(image, [sample[f"{side_key}_sup"][i],
                                                  sample[f"{side_key}_iris"][i]], side, x0, y0)
            images.append(img)
            sups.append(sup)
            irises.append(iris)
        out[key] = np.stack(images)
        out[f"{side_key}_sup"], out[f"{side_key}_iris"] = np.stack(sups), np.stack(irises)
    return out


def flip_sample(sample: dict[str, np.ndarray], perm: np.ndarray) -> dict[str, np.ndarray]:
    """Mirror images left-right; landmarks get x -> -x and the mirror re-indexing (the left
    eye corner of the flipped face is the mirrored right eye corner); irises swap."""
    out = dict(sample)
    for key in ("sources", "drivers"):
        out[key] = np.ascontiguousarray(sample[key][:, :, ::-1])
    for side in ("src", "drv"):
        sup = sample[f"{side}_sup"][:, perm].copy()
        sup[..., 0] *= -1
        out[f"{side}_sup"] = sup
        iris = sample[f"{side}_iris"][:, ::-1].copy()
        iris[..., 0] *= -1
        out[f"{side}_iris"] = iris
        out[f"{side}_yaw"] = -sample[f"{side}_yaw"]
    return out


class FrameSampleDataset(Dataset):
    """Map-style dataset over sample numbers: ``ds[n]`` is sample n (see module docstring).

    Returns numpy arrays: ``sources`` uint8 (N, R, R, 3), ``drivers`` uint8 (D, R, R, 3),
    ``src_sup`` (N, 33, 2), ``src_iris`` (N, 2, 2), ``drv_sup``, ``drv_iris``, ``src_yaw``,
    ``drv_yaw``, ``rotated`` (1 if the rotation constraint was met, else 0) and ``video``
    (the clip's index in the split).
    """

    def __init__(self, store: ClipStore, config: DataConfig, split: str, seed: int,
                 augment: bool, flip_perm: np.ndarray | None | str = "auto"):
        self.store = store
        self.cfg = config
        self.seed = seed
        self.clips = store.split(split)
        if not self.clips:
            raise InputError(f"no '{split}' clips in {store.root}")
        self.persons = sorted({c.person for c in self.clips})
        self._index = {c.name: i for i, c in enumerate(self.clips)}
        self.augment = augment
        if flip_perm == "auto":
            flip_perm = supervised_flip_permutation() if augment and config.augment.flip else None
        self.flip_perm = flip_perm if isinstance(flip_perm, np.ndarray) else None
        self.n_src, self.n_drv = config.num_sources, config.num_drivers
        self._expr: dict[str, np.ndarray] = {}
        if config.strategy == "rotation4" and (self.n_src > 2 or self.n_drv > 2):
            raise ValueError("rotation4 sampling gives at most 2 sources (A, C) and 2 drivers")

    def __len__(self) -> int:
        return 2**31 - 1

    def _pick_clip(self, rng: np.random.Generator) -> Clip:
        if self.cfg.by_person:
            person = self.persons[int(rng.integers(len(self.persons)))]
            clips = [c for c in self.clips if c.person == person]
            return clips[int(rng.integers(len(clips)))]
        return self.clips[int(rng.integers(len(self.clips)))]

    def _pick_frames(self, clip: Clip, rng: np.random.Generator) -> tuple[list[int], list[int],
                                                                          bool] | None:
        meta = self.store.meta(clip)
        need = self.n_src + self.n_drv
        valid = np.flatnonzero(meta["valid"])
        segments, counts = np.unique(meta["segment"][valid], return_counts=True)
        ok = counts >= need
        if not ok.any():
            return None
        seg = rng.choice(segments[ok], p=counts[ok] / counts[ok].sum())
        frames = valid[meta["segment"][valid] == seg]
        if self.cfg.strategy == "rotation4":
            picked = sample_rotation4(meta["yaw"][frames], rng, self.cfg.min_rotation,
                                      self.cfg.b2_tolerance)
            if picked is not None:
                a, b1, b2, c = (int(frames[i]) for i in picked)
                src, drv = [a, c][: self.n_src], [b1, b2][: self.n_drv]
                if self._expressive(rng):
                    # B2 keeps its role (A's pose), among the frames that have it
                    near = frames[(np.abs(meta["yaw"][frames] - meta["yaw"][a])
                                   < self.cfg.b2_tolerance) & (frames != a)]
                    drv[-1] = pick_expressive(near, self._features(clip), src, rng)
                return src, drv, True
        elif self.cfg.strategy != "random":
            raise ValueError(f"unknown sampling strategy {self.cfg.strategy}")
        # too little rotation (or FOM sampling): distinct random frames, small-rotation regime
        chosen = [int(i) for i in rng.choice(frames, size=need, replace=False)]
        src, drv = chosen[: self.n_src], chosen[self.n_src:]
        if self._expressive(rng):
            rest = np.setdiff1d(frames, src + drv[:-1])
            drv[-1] = pick_expressive(rest, self._features(clip), src, rng)
        return src, drv, False

    def _expressive(self, rng: np.random.Generator) -> bool:
        """Whether this sample's last driver is chosen for its expression
        (``data.expression_drivers``, the share of such samples). Draws from ``rng`` only
        when the share is set, so runs without it sample exactly as before."""
        share = self.cfg.expression_drivers
        return share > 0 and bool(rng.random() < share)

    def _features(self, clip: Clip) -> np.ndarray:
        if clip.name not in self._expr:
            self._expr[clip.name] = expression_features(self.store.meta(clip))
        return self._expr[clip.name]

    def __getitem__(self, n: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(n)])
        for _ in range(100):
            clip = self._pick_clip(rng)
            picked = self._pick_frames(clip, rng)
            if picked is not None:
                break
        else:
            raise InputError("no clip has enough valid frames for one sample")
        src, drv, rotated = picked
        meta = self.store.meta(clip)
        images = self.store.frames(clip, src + drv)
        sample = {
            "sources": images[: len(src)], "drivers": images[len(src):],
            "src_sup": meta["sup"][src].astype(np.float32),
            "src_iris": meta["iris"][src].astype(np.float32),
            "drv_sup": meta["sup"][drv].astype(np.float32),
            "drv_iris": meta["iris"][drv].astype(np.float32),
            "src_yaw": meta["yaw"][src].astype(np.float32),
            "drv_yaw": meta["yaw"][drv].astype(np.float32),
            "rotated": np.int64(rotated),
            # the clip's place in the split: the projection discriminator's row (nth)
            "video": np.int64(self._index[clip.name]),
        }
        if self.augment:
            if self.cfg.augment.crop > 0:  # (no draws without it: older runs' samples)
                sample = crop_sample(sample, rng, self.cfg.augment.crop)
            if self.flip_perm is not None and rng.random() < 0.5:
                sample = flip_sample(sample, self.flip_perm)
            both = colour_jitter(np.concatenate([sample["sources"], sample["drivers"]]), rng,
                                 self.cfg.augment)
            sample["sources"], sample["drivers"] = both[: len(src)], both[len(src):]
        return sample


class StepSampler(Sampler[list[int]]):
    """Batches of sample numbers for steps ``start_step, start_step + 1, ...``: step s on rank r
    reads numbers ((s * world + r) * B ... + B - 1). Infinite."""

    def __init__(self, batch_size: int, start_step: int = 0, rank: int = 0, world: int = 1):
        self.batch_size, self.start_step = batch_size, start_step
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            first = (step * self.world + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))
            step += 1


def to_tensors(batch: dict) -> dict[str, torch.Tensor]:
    """Collated numpy/uint8 batch -> float tensors; images (B, F, 3, R, R) in [0, 1]."""
    out: dict[str, torch.Tensor] = {}
    for key, value in batch.items():
        t = torch.as_tensor(value)
        if key in ("sources", "drivers"):
            t = t.permute(0, 1, 4, 2, 3).float().div_(255.0).contiguous()
        out[key] = t
    return out


def mean_frontal_layout(store: ClipStore, split: str = "train", max_yaw: float = 0.1,
                        iris: bool = True) -> np.ndarray:
    """Mean (33 [+ 2], 2) landmark layout over valid frames with |yaw| < ``max_yaw``: the
    initial p_r of the supervised part (section 3.3, "the average position in the dataset,
    which is a front-facing layout"). Falls back to all valid frames if none is frontal."""
    sums = np.zeros((35 if iris else 33, 2))
    count = 0
    fallback_sums, fallback_count = np.zeros_like(sums), 0
    for clip in store.split(split):
        meta = store.meta(clip)
        pts = np.concatenate([meta["sup"], meta["iris"]], axis=1) if iris else meta["sup"]
        valid = meta["valid"].astype(bool)
        frontal = valid & (np.abs(meta["yaw"]) < max_yaw)
        sums += pts[frontal].sum(0)
        count += int(frontal.sum())
        fallback_sums += pts[valid].sum(0)
        fallback_count += int(valid.sum())
    if count == 0:
        if fallback_count == 0:
            raise InputError("no valid frame to initialise the reference position")
        warnings.warn("no frontal frame: reference layout from all valid frames", stacklevel=2)
        sums, count = fallback_sums, fallback_count
    return (sums / count).astype(np.float32)
