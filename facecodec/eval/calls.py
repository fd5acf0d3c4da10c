"""One-minute calls as eval clips (issue 17, "judged like a call").

A call is judged over a minute, not over the val split's 3-12 s clips: the source frames,
the first intra frame and the header are paid once, and what a budget does after the
first seconds shows only over a longer span. Two kinds of call clips:

- **the call clip** (the manifest's ``call`` split: call_cameron, a 97-s talk with
  sound): its first ``seconds`` as they are, with its sound. The only real call-like
  content the project has.
- **looped val clips**: the ``loops`` longest val clips in the face-tube cache, played
  forward-backward ("ping-pong": 0..n-1, n-2..1, 0..) up to ``seconds``. Joining one
  person's clips is not possible (one person has two val clips, every other one), and a
  ping-pong loop has no cut at its seams (a plain loop jumps back to the first pose once
  per pass, which a classic codec pays for as a scene cut and the codec does not).
  Caveat: a loop only repeats poses; after the first pass the codec's sources already
  cover them, so a loop flatters a codec that sends sources once. Their sound: the
  video's own track looped forward (reversed speech is not speech), none when the
  video has no sound track.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from facecodec.audio import RATE as AUDIO_RATE
from facecodec.audio import read_audio
from facecodec.errors import InputError
from facecodec.eval.base import EvalClip
from facecodec.eval.clips import ClipRef, manifest_clips

CALL_SECONDS = 60.0
LOOPS = 3


def pingpong(n: int, t: int) -> np.ndarray:
    """(t,) frame indices into a clip of ``n`` frames playing it forward, then backward
    without repeating the turning frames (0..n-1, n-2..1, 0, 1..), so that consecutive
    indices always differ by one."""
    if n < 1:
        raise ValueError("no frames to loop")
    if n == 1:
        return np.zeros(t, dtype=np.int64)
    period = np.concatenate([np.arange(n), np.arange(n - 2, 0, -1)])
    return period[np.arange(t) % len(period)]


def loop_clip(clip: EvalClip, t: int, name: str) -> EvalClip:
    """``clip`` ping-ponged to ``t`` frames: its tube and every per-frame value taken at
    the same indices, its sound (if any) looped forward to the same length."""
    idx = pingpong(len(clip.frames), t)
    meta = {k: v[idx] for k, v in clip.meta.items() if len(v) == len(clip.frames)}
    audio = None
    if clip.audio is not None and len(clip.audio):
        audio = np.resize(clip.audio, round(t / clip.fps * AUDIO_RATE)).astype(np.int16)
    return replace(clip, name=name, frames=clip.frames[idx], meta=meta, audio=audio,
                   origin=f"{clip.origin}, ping-pong loop of {len(clip.frames)} frames")


def cut_clip(clip: EvalClip, t: int) -> EvalClip:
    """The first ``t`` frames of ``clip`` (and of its sound)."""
    meta = {k: v[:t] for k, v in clip.meta.items()}
    audio = None if clip.audio is None else clip.audio[:round(t / clip.fps * AUDIO_RATE)]
    return replace(clip, frames=clip.frames[:t], meta=meta, audio=audio)


@dataclass(frozen=True)
class CallRef:
    """A call clip, not loaded yet: a manifest clip cut (``loop`` False) or ping-ponged
    (``loop`` True) to ``seconds``. The same interface as :class:`ClipRef`."""

    name: str
    base: ClipRef
    seconds: float
    loop: bool

    def load(self, max_frames: int | None = None) -> EvalClip:
        clip = self.base.load(None if self.loop else self._frames(max_frames))
        if self.base.video is not None and self.base.video.is_file():
            # the track from the video's first frame on; the cached tube starts at the
            # first face (the call clip: 0.9 s later), which moves no bit of the sound
            clip = replace(clip, audio=read_audio(self.base.video))
        t = self._frames(max_frames)
        clip = loop_clip(clip, t, self.name) if self.loop else replace(
            cut_clip(clip, t), name=self.name)
        return clip

    def _frames(self, max_frames: int | None) -> int:
        t = round(self.seconds * 15.0)
        return t if max_frames is None else min(t, max_frames)


def call_clips(manifest: Path, cache: Path, seconds: float = CALL_SECONDS,
               loops: int = LOOPS, names: list[str] | None = None,
               call: bool = True) -> list[CallRef]:
    """The call clip(s) of ``manifest``'s ``call`` split (unless ``call`` is False), cut
    to ``seconds``, then the ``loops`` longest cached val clips ping-ponged to ``seconds``
    (``names``: these val clips instead)."""
    if seconds <= 0:
        raise InputError(f"call seconds must be positive, got {seconds:g}")
    label = f"{seconds:g}s"
    refs: list[CallRef] = []
    try:
        calls = manifest_clips(manifest, "call", cache) if call else []
    except InputError:  # no call split: the looped val clips alone, if any were asked
        if not (loops or names):
            raise
        calls = []
    for r in calls:
        if r.cache_dir is None:
            raise InputError(f"{r.name}: not in the face-tube cache {cache} (run facecodec "
                             "prepare-data)")
        refs.append(CallRef(f"{r.name}[0-{label}]", r, seconds, loop=False))
    if loops or names:
        val = [r for r in manifest_clips(manifest, "val", cache, names)
               if r.cache_dir is not None]
        if names and len(val) < len(names):
            raise InputError(f"{manifest}: not every clip of {', '.join(names)} is cached")
        if not names:
            val.sort(key=lambda r: -len(np.load(r.cache_dir / "tube256.npy", mmap_mode="r")))
            val = val[:loops]
        refs += [CallRef(f"{r.name}[loop {label}]", r, seconds, loop=True) for r in val]
    if not refs:
        raise InputError(f"{manifest}: no call clip and no val clip to loop")
    return refs
