"""The plug-in interface of ``facecodec eval``: a method turns a clip's face tube into
decoded frames and says how many bits it sent and how long it took.

A method is one class (subclass :class:`Method`, implement :meth:`Method.run`) plus one
line in ``facecodec/eval/methods.py``'s ``REGISTRY``. Everything else (metrics, tables,
plots) is the same for every method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecodec.defaults import TUBE_SIZE

EVAL_SIZE = TUBE_SIZE  # every method is scored on the face tube, at its side
EVAL_FPS = 15.0


@dataclass
class EvalClip:
    """One clip as every method sees it.

    ``frames`` (T, 256, 256, 3) uint8 RGB is the face tube at 15 fps: the original the
    outputs are scored against. ``meta`` holds the sender's per-frame values for the same
    frames (the ``meta.npz`` keys of the training cache: ``landmarks`` (T, 478, 3) and
    ``sup`` (T, 33, 2) in tube coordinates, ``yaw``/``pitch``/``roll``, ``valid``,
    ``segment``...), so a model method need not run MediaPipe again. ``video`` is the
    source file when known. ``audio`` is the clip's sound (mono int16 PCM at 48 kHz,
    facecodec/audio.py) for a method that sends sound, None when the clip has none.
    """

    name: str
    frames: np.ndarray
    fps: float = EVAL_FPS
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    video: Path | None = None
    origin: str = ""  # "cache" or "video": where the tube came from
    audio: np.ndarray | None = None

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps

    def yaw_range(self) -> float:
        """Spread of head yaw (radians) over valid frames: how rotation-heavy the clip is."""
        yaw = self.meta.get("yaw")
        if yaw is None or len(yaw) == 0:
            return 0.0
        valid = self.meta.get("valid")
        if valid is not None and valid.any():
            yaw = yaw[valid]
        return float(np.max(yaw) - np.min(yaw))


@dataclass
class Encoded:
    """What a method produced for one clip at one operating point.

    Bits: ``frame_bits[t]`` is what is sent for frame ``t`` (frame 0 includes an intra
    frame and stream headers when the method sends them there); ``setup_bits`` is sent
    once before the first frame (e.g. a facecodec's source images). All-in rate counts
    both; steady-state rate counts frames 1..T-1 only.
    Times are wall-clock seconds for the whole clip (None: not meaningful, e.g. a held
    frame), single-threaded as the eval runs.
    """

    frames: np.ndarray  # (T, 256, 256, 3) uint8, same T as the input
    frame_bits: np.ndarray  # (T,) int64
    setup_bits: int = 0
    encode_seconds: float | None = None
    decode_seconds: float | None = None
    setting: dict[str, object] = field(default_factory=dict)  # e.g. {"crf": 41}
    reached: bool = True  # False: the method could not reach the target rate

    def check(self, clip: EvalClip, method: str) -> None:
        t = len(clip.frames)
        if self.frames.shape != clip.frames.shape or self.frames.dtype != np.uint8:
            raise ValueError(f"{method} on {clip.name}: output {self.frames.shape} "
                             f"{self.frames.dtype}, expected {clip.frames.shape} uint8")
        if self.frame_bits.shape != (t,):
            raise ValueError(f"{method} on {clip.name}: frame_bits {self.frame_bits.shape}, "
                             f"expected ({t},)")


class Method(ABC):
    """A way of sending a clip. ``name`` is the registry key and the label in tables.

    Rate-controlled methods (classic codecs) run once per requested target bitrate; a
    method with its own fixed operating point (the held frame, a trained model at its
    quantization) returns ``[None]`` from :meth:`operating_points` and runs once per clip.
    A model method may instead return its own list (e.g. quantization levels as labels it
    understands in :meth:`run`).
    """

    name: str = "method"
    description: str = ""

    def operating_points(self, rates_kbps: Sequence[float]) -> list[float | None]:
        return [None]

    @abstractmethod
    def run(self, clip: EvalClip, target_kbps: float | None) -> Encoded:
        """Encode and decode ``clip`` (at ``target_kbps`` all-in, when given)."""

    def settings(self) -> dict[str, object]:
        """What the report should say about how this method was configured."""
        return {}

    def close(self) -> None:  # noqa: B027 (optional hook: most methods hold nothing)
        """Release models, encoders... (called once, after the last clip)."""
