"""The codec at a rate budget (``Encoder(kbps=R)``, issue 17), as an eval method.

Each operating point is a budget R in kbps, all-in: frames, sources and (with
``sound=yes``) the clip's sound share it, as ``facecodec encode --kbps R`` plans them
(facecodec/sender/budget.py). A budget the plan refuses (below what the frames and the
sound need) is not an operating point: :meth:`BudgetedCodec.operating_points` leaves it
out and keeps the refusal, with the minimum it names, in ``refused`` for the report, so a
refused rung is reported as refused and not silently dropped.

Bits: the stream's bytes, all of them. ``setup_bits`` = header + sources (paced parts
too), ``frame_bits`` = the frame packets, and with sound its chunks spread evenly over the
frames (the stream interleaves them every 60 ms; only the total matters for the all-in
rate). ``setting`` records the time to the first face: the bytes up to the end of the
first frame packet over the budget (the link is R), and the sources planned and sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from facecodec.audio import encode_audio
from facecodec.bitstream.report import first_face_bytes
from facecodec.codec import Decoder, Encoder
from facecodec.errors import InputError
from facecodec.eval.base import EVAL_SIZE, Encoded, EvalClip, Method
from facecodec.eval.ladder import frame_step, restore_frames, spread_bits
from facecodec.eval.neural import decode_stream, write_stream
from facecodec.models.package import find_model
from facecodec.sender.budget import BudgetError

AUDIO_RATE = 48000


def spread(total: int, t: int) -> np.ndarray:
    """(t,) int64 summing exactly to ``total``, as even as whole numbers allow."""
    edges = np.round(np.linspace(0, total, t + 1)).astype(np.int64)
    return np.diff(edges)


def thinned(clip: EvalClip, step: int) -> EvalClip:
    """``clip`` with every ``step``-th frame (the first kept) and its values, at
    ``fps / step``; its sound whole."""
    t = len(clip.frames)
    meta = {k: v[::step] if np.ndim(v) and len(v) == t else v for k, v in clip.meta.items()}
    return dataclasses.replace(clip, frames=clip.frames[::step], fps=clip.fps / step,
                               meta=meta)


def _yes(value: str | bool, what: str) -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v not in ("yes", "no", "true", "false", "1", "0"):
        raise InputError(f"{what} must be yes or no, got {value!r}")
    return v in ("yes", "true", "1")


class BudgetedCodec(Method):
    """The codec end to end at budgets (see the module docstring). ``kbps``: its own
    budgets (comma- or '/'-separated) instead of the run's target rates."""

    def __init__(self, model: str | None = None, sound: str | bool = "no",
                 kbps: str | None = None, base: str | bool = "no"):
        self.sound = _yes(sound, "facecodec-budget: sound")
        self.base = _yes(base, "facecodec-budget: base")
        self.model = model
        self.fixed: list[float] | None = None
        if kbps is not None:
            try:
                self.fixed = [float(k) for k in kbps.replace("/", ",").split(",") if k]
            except ValueError:
                raise InputError(f"facecodec-budget: kbps must be numbers, got {kbps!r}") \
                    from None
        opts = [o for o, on in (("sound=yes", self.sound), ("base=yes", self.base)) if on]
        self.name = "facecodec-budget" + (":" + ";".join(opts) if opts else "")
        self.encoders: dict[float, Encoder] = {}
        self.refused: dict[float, str] = {}  # budget -> the plan's refusal (with the minimum)
        self.package = find_model(model)  # InputError: no such model
        self.decoder = Decoder(self.package.path, output_size=EVAL_SIZE)
        self.description = (f"{self.package.name} at a budget (Encoder(kbps=R)), "
                            + ("with the clip's sound" if self.sound else "without sound")
                            + (", a base layer in what is left" if self.base else "")
                            + "; real .fcs bytes, Decoder output at 256")

    def operating_points(self, rates_kbps: Sequence[float]) -> list[float | None]:
        points: list[float | None] = []
        for r in self.fixed or rates_kbps:
            if r in self.encoders or r in self.refused:
                if r in self.encoders:
                    points.append(r)
                continue
            try:
                self.encoders[r] = Encoder(self.model, kbps=float(r), audio=self.sound,
                                           base="auto" if self.base else None)
                points.append(r)
            except BudgetError as e:
                self.refused[r] = str(e)
        return points

    def settings(self) -> dict[str, object]:
        return {"model": str(self.package.path), "weights": self.package.fingerprint(),
                "sound": self.sound, **({"base": True} if self.base else {}),
                "plans": {f"{r:g}": e.budget.describe() for r, e in self.encoders.items()
                          if e.budget is not None},
                "refused": {f"{r:g}": m for r, m in self.refused.items()}}

    def applies(self, clip: EvalClip) -> str | None:
        """Why this method cannot run on ``clip`` (None: it can)."""
        if self.sound and clip.audio is None:
            return "the clip has no sound"
        return None

    def run(self, clip: EvalClip, target_kbps: float | None) -> Encoded:
        if target_kbps is None or target_kbps not in self.encoders:
            raise ValueError(f"{self.name}: {target_kbps} is not one of its budgets")
        enc = self.encoders[target_kbps]
        audio = None
        if self.sound:
            why = self.applies(clip)
            if why:
                raise InputError(f"{self.name} on {clip.name}: {why}")
            pcm = clip.audio[:round(clip.seconds * AUDIO_RATE)]
            audio = encode_audio(pcm, enc.sound)
        # a plan that halved the frame rate sends every other frame, shown held until the
        # next (as the SVT-AV1 ladder's 7.5-fps rungs are scored)
        step = frame_step(float(enc.fps), clip.fps)
        sent = clip if step == 1 else thinned(clip, step)
        stream = write_stream(enc, sent, audio)
        frames, seconds = decode_stream(self.decoder, stream, sent, self.name)
        t = len(clip.frames)
        frames = restore_frames(frames, step, t)
        bits = spread_bits(stream.frame_bits, step, t) + spread(8 * stream.audio_bytes, t)
        first = first_face_bytes(stream.data)
        plan = enc.budget
        return Encoded(frames, bits, stream.setup_bits, stream.seconds, seconds,
                       {"kbps": target_kbps, "first_face_bits": 8 * first,
                        "first_face_s": 8 * first / (target_kbps * 1000),
                        "sources_planned": len(stream.sources),
                        "sources_sent": len(stream.sources) - stream.dropped,
                        "audio_kbps": None if plan is None else plan.audio_kbps,
                        "audio_codec": None if plan is None else plan.sound_name(),
                        "fps": float(enc.fps),
                        "audio_bits": 8 * stream.audio_bytes,
                        "deadband": enc.deadband,
                        **({"base_kbps": plan.base_kbps, "base_crf": enc.base[1]}
                           if plan is not None and plan.base_kbps else {})})
