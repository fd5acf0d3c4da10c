"""What the sender transmits per frame: a data-driven table of value streams.

Each stream is a named vector of floats with a range and a bit depth (Oquab et al. 2022,
section 4.3: supervised landmarks on 8 bits, unsupervised keypoints on 12 bits, Jacobians
on 16 bits in [-15, 15], expression codes on 10 bits in [-1, 1]). Model variants add or
drop streams by choosing another table; the coder never names a stream.

A frame's values are turned into *coded coordinates*: integer quantization indices, one
vector per stream. For a point set (``points=True``) the coded vector is the set's mean
position followed by the offsets of every point from that mean, as in the paper ("the
average keypoint position, the position of the keypoints relative to this average").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Frame = Mapping[str, np.ndarray]
"""One frame's values: stream name -> float array with ``spec.count`` elements."""

Coded = dict[str, np.ndarray]
"""One frame's coded coordinates: stream name -> int64 quantization indices."""

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
MAX_BITS = 20  # escapes are sent as raw bits through the range coder (24-bit precision)


@dataclass(frozen=True)
class StreamSpec:
    """One value stream.

    Attributes:
        name: short identifier (``[a-z][a-z0-9_]{0,15}``), also the key in a frame.
        count: number of floats per frame (2 per point for a point set).
        lo, hi: the value range; values outside are clipped to it when quantized.
        bits: quantization bits; ``2**bits`` uniform levels from ``lo`` to ``hi``.
        points: the floats are (x, y) pairs coded as mean + offsets from the mean.
        period: coordinate classes of the prior: offset/value ``i`` is in class
            ``i % period`` (a point set's mean x and mean y get two classes of their own).
    """

    name: str
    count: int
    lo: float
    hi: float
    bits: int
    points: bool = False
    period: int = 1

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"stream name {self.name!r} must match {_NAME.pattern}")
        if not 1 <= self.count <= 4096:
            raise ValueError(f"stream {self.name}: count {self.count} not in 1..4096")
        if self.points and self.count % 2:
            raise ValueError(f"stream {self.name}: a point set needs an even count")
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"stream {self.name}: range [{self.lo}, {self.hi}] is empty")
        if not 1 <= self.bits <= MAX_BITS - 1:
            raise ValueError(f"stream {self.name}: bits {self.bits} not in 1..{MAX_BITS - 1}")
        if not 1 <= self.period <= self.count:
            raise ValueError(f"stream {self.name}: period {self.period} not in 1..{self.count}")

    # -- coded layout -------------------------------------------------------------------
    @property
    def n_coded(self) -> int:
        """Number of coded coordinates per frame (a point set adds its 2 mean coordinates)."""
        return self.count + 2 if self.points else self.count

    @property
    def coded_bits(self) -> np.ndarray:
        """Bit depth of each coded coordinate. Offsets from a mean span twice the range, so
        they get one bit more: the same quantization step as the absolute coordinates."""
        b = np.full(self.n_coded, self.bits, dtype=np.int64)
        if self.points:
            b[2:] += 1
        return b

    @property
    def n_classes(self) -> int:
        return self.period + (2 if self.points else 0)

    @property
    def coded_classes(self) -> np.ndarray:
        """Prior class of each coded coordinate, ``0 .. n_classes-1``."""
        i = np.arange(self.count) % self.period
        if self.points:
            return np.concatenate([[0, 1], i + 2]).astype(np.int64)
        return i.astype(np.int64)

    def _ranges(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.full(self.n_coded, self.lo, dtype=np.float64)
        hi = np.full(self.n_coded, self.hi, dtype=np.float64)
        if self.points:
            span = self.hi - self.lo
            lo[2:], hi[2:] = -span, span
        return lo, hi

    # -- quantization -------------------------------------------------------------------
    def to_coded(self, values: np.ndarray) -> np.ndarray:
        """Float values -> quantization indices of the coded coordinates.

        Uniform quantization, ``q = round((v - lo) / step)`` with
        ``step = (hi - lo) / (2**bits - 1)``, clipped to ``0 .. 2**bits - 1``.
        """
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size != self.count:
            raise ValueError(f"stream {self.name}: expected {self.count} values, got {v.size}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"stream {self.name}: values must be finite")
        if self.points:
            pts = np.clip(v, self.lo, self.hi).reshape(-1, 2)
            mean = pts.mean(axis=0)
            v = np.concatenate([mean, (pts - mean).reshape(-1)])
        lo, hi = self._ranges()
        levels = (1 << self.coded_bits) - 1
        q = np.rint((np.clip(v, lo, hi) - lo) / (hi - lo) * levels)
        return q.astype(np.int64)

    def from_coded(self, q: np.ndarray) -> np.ndarray:
        """Quantization indices -> float32 values (the receiver's reconstruction)."""
        q = np.asarray(q, dtype=np.int64)
        lo, hi = self._ranges()
        levels = (1 << self.coded_bits) - 1
        v = lo + q * (hi - lo) / levels
        if self.points:
            v = np.clip((v[2:].reshape(-1, 2) + v[:2]).reshape(-1), self.lo, self.hi)
        return v.astype(np.float32)


@dataclass(frozen=True)
class StreamTable:
    """The ordered set of streams a model sends. Order is the coding order."""

    streams: tuple[StreamSpec, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.streams]
        if not names:
            raise ValueError("a stream table needs at least one stream")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stream names in {names}")
        if len(names) > 32:
            raise ValueError("at most 32 streams")

    def __iter__(self):
        return iter(self.streams)

    def __len__(self) -> int:
        return len(self.streams)

    def __getitem__(self, name: str) -> StreamSpec:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.streams]

    def quantize(self, frame: Frame) -> Coded:
        """A frame's float values -> coded coordinates, for every stream of the table."""
        missing = [s.name for s in self.streams if s.name not in frame]
        if missing:
            raise ValueError(f"frame lacks streams {missing}")
        return {s.name: s.to_coded(frame[s.name]) for s in self.streams}

    def dequantize(self, coded: Coded) -> dict[str, np.ndarray]:
        return {s.name: s.from_coded(coded[s.name]) for s in self.streams}

    def to_json(self) -> list[dict]:
        return [
            {"name": s.name, "count": s.count, "lo": s.lo, "hi": s.hi, "bits": s.bits,
             "points": s.points, "period": s.period}
            for s in self.streams
        ]

    @classmethod
    def from_json(cls, items: Sequence[dict]) -> StreamTable:
        return cls(tuple(StreamSpec(**item) for item in items))


def _f32(x: float) -> float:
    """Ranges travel as float32 in the header; keep them float32-exact everywhere."""
    return float(np.float32(x))


# The streams of Oquab et al. 2022 (section 4.3) and our additions. ``period`` sets the
# prior's coordinate classes (x/y for points; each Jacobian entry; each expression code).
SUP = StreamSpec("sup", 66, _f32(-1.0), _f32(1.0), 8, points=True, period=2)
IRIS = StreamSpec("iris", 4, _f32(-1.0), _f32(1.0), 8, points=True, period=2)
UNSUP = StreamSpec("unsup", 20, _f32(-1.0), _f32(1.0), 12, points=True, period=2)
JAC = StreamSpec("jac", 40, _f32(-15.0), _f32(15.0), 16, period=4)
EXPR = StreamSpec("expr", 16, _f32(-1.0), _f32(1.0), 10, period=16)

TABLES: dict[str, StreamTable] = {
    "landmarks": StreamTable((SUP, IRIS)),
    "fom": StreamTable((UNSUP, JAC)),
    "sup": StreamTable((SUP, IRIS)),
    "sup_unsup": StreamTable((SUP, IRIS, UNSUP, JAC)),
    "sup_unsup_expr": StreamTable((SUP, IRIS, UNSUP, JAC, EXPR)),
}
"""Stream tables by model variant. ``landmarks`` is what a landmark track alone can fill."""

MODEL_TABLES = ("sup", "sup_unsup", "sup_unsup_expr", "fom")
"""The tables a model's values travel in (``landmarks`` carries the same streams as
``sup`` for value files; a model's prior is fitted for its variant's name)."""


def table_of_streams(names: Sequence[str]) -> str | None:
    """The name of the model table that carries exactly the value streams ``names`` (in
    order), or None."""
    for name in MODEL_TABLES:
        if TABLES[name].names == list(names):
            return name
    return None
