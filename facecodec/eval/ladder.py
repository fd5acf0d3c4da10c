"""SVT-AV1 on a resolution / frame-rate ladder: what a classic codec does at a few kbps
(issue 17, "judged like a call").

At 5-10 kbps a real-time classic codec does not send 256x256 at 15 fps: it steps down
its picture size and frame rate. A rung here is one such step: the face tube is shrunk
to ``size`` (area averaging) and every ``step``-th frame is kept (15 -> 7.5 fps), that is
encoded and decoded with SVT-AV1 exactly as facecodec/eval/classic.py does (same bit
accounting, same CRF search for a target rate), then the decoded pictures are enlarged
back to 256 (bicubic: :func:`facecodec.imagecodec.resize_square`, the resize the codec's
own receiver shows with) and each is repeated ``step`` times, so it is scored on the same
256x256 15 fps frames as every other method. A frame's bits are counted on the frame it
was sent for; the repeated frames cost nothing.

Besides the target rates, each rung has its coarsest CRF as an operating point (target
None): the lowest rate the rung can reach, which at these rates is often above the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from facecodec.errors import InputError
from facecodec.eval.base import EVAL_FPS, EVAL_SIZE, Encoded, EvalClip
from facecodec.eval.classic import ClassicCodec, Trial, decode, encode, payload_bits, search_quality
from facecodec.imagecodec import resize_square

SIZES = (256, 192, 128)
FPS = (15.0, 7.5)


def frame_step(fps: float, base: float = EVAL_FPS) -> int:
    """How many eval frames one sent frame stands for (15 fps -> 1, 7.5 -> 2); only whole
    divisions of ``base``: repeating frames cannot make other rates exact."""
    step = round(base / fps) if fps > 0 else 0
    if step < 1 or abs(base / step - fps) > 1e-6:
        raise InputError(f"svtav1-ladder: fps must divide {base:g} (e.g. 15 or 7.5), got {fps:g}")
    return step


def reduce_frames(frames: np.ndarray, size: int, step: int) -> np.ndarray:
    """(T, S, S, 3) -> (ceil(T / step), size, size, 3): every ``step``-th frame (the first
    one kept), shrunk to ``size``."""
    kept = frames[::step]
    if kept.shape[1] == size:
        return np.ascontiguousarray(kept)
    return np.stack([resize_square(f, size) for f in kept])


def restore_frames(decoded: np.ndarray, step: int, t: int,
                   size: int = EVAL_SIZE) -> np.ndarray:
    """Decoded rung pictures -> (t, size, size, 3): enlarged, each shown until the next
    one arrives (repeated ``step`` times; the last one cut at ``t``)."""
    big = decoded if decoded.shape[1] == size else np.stack(
        [resize_square(f, size) for f in decoded])
    out = np.repeat(big, step, axis=0)[:t]
    if len(out) != t:
        raise ValueError(f"{len(decoded)} decoded pictures x {step} cover {len(out)} "
                         f"frames, not {t}")
    return out


def spread_bits(sent_bits: np.ndarray, step: int, t: int) -> np.ndarray:
    """(t,) bits per eval frame: each sent frame's bits on the frame it was taken from,
    0 on the frames that repeat it."""
    out = np.zeros(t, dtype=np.int64)
    out[::step] = sent_bits[:len(out[::step])]
    return out


class LadderCodec(ClassicCodec):
    """SVT-AV1 on one rung of the ladder (see the module docstring)."""

    def __init__(self, size: str | int = 256, fps: str | float = 15, preset: str | None = None,
                 rtol: str | float = 0.03):
        super().__init__("svtav1", preset=preset, rtol=float(rtol))
        try:
            self.size, self.fps = int(size), float(fps)
        except ValueError:
            raise InputError(f"svtav1-ladder: size and fps are numbers, got {size!r}, "
                             f"{fps!r}") from None
        if not 16 <= self.size <= EVAL_SIZE or self.size % 2:
            raise InputError(f"svtav1-ladder: size must be even, in 16..{EVAL_SIZE}, got "
                             f"{self.size}")
        self.step = frame_step(self.fps)
        self.name = f"svtav1-ladder:size={self.size};fps={self.fps:g}"
        self.description = (f"SVT-AV1 at {self.size}x{self.size}, {self.fps:g} fps, shown "
                            f"at {EVAL_SIZE} {EVAL_FPS:g} fps (bicubic, frames repeated); "
                            "CRF searched per clip, and its coarsest CRF")
        self._reduced: np.ndarray | None = None

    def operating_points(self, rates_kbps: Sequence[float]) -> list[float | None]:
        return [*rates_kbps, None]  # None: the coarsest CRF

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "size": self.size, "fps": self.fps}

    def _trial(self, clip: EvalClip) -> Callable[[float], Trial]:
        key = (clip.name, len(clip.frames))
        if self._memo_clip != key:
            self._memo, self._memo_clip = {}, key
            self._reduced = reduce_frames(clip.frames, self.size, self.step)

        def run(q: float) -> Trial:
            if q not in self._memo:
                self._memo[q] = encode(self.spec, self._reduced, q, self.fps, self.preset)
            return self._memo[q]

        return run

    def run(self, clip: EvalClip, target_kbps: float | None) -> Encoded:
        trial = self._trial(clip)
        if target_kbps is None:
            tr, reached = trial(self.spec.q_max), True
        else:
            tr, reached = search_quality(trial, target_kbps, self.fps, self.spec.q_min,
                                         self.spec.q_max, self.spec.integer, self.rtol)
        decoded, seconds = decode(self.spec, tr.payloads)
        t = len(clip.frames)
        frames = restore_frames(decoded, self.step, t)
        bits = spread_bits(tr.frame_bits, self.step, t)
        # the first picture is drawn once the first packet in decode order (the key frame
        # with the sequence header) is in
        first = payload_bits(self.spec.family, tr.payloads[0]) if tr.payloads else 0
        return Encoded(frames, bits, 0, tr.seconds, seconds,
                       {"crf": round(tr.q, 3), "first_face_bits": int(first),
                        **({"coarsest": True} if target_kbps is None else {})}, reached)
