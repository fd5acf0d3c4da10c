"""The clips ``facecodec eval`` runs on: a split of a clip manifest (default: the val split
of shared/data/manifest.csv), or every video in a folder; always as 256x256 face tubes at
15 fps, the frames every method gets and is scored against.

Tubes come from the training cache (``facecodec prepare-data``: ``<cache>/<name>/
tube256.npy`` + ``meta.npz``) when the clip is complete there, which is fast; otherwise
from the video through the sender front end (MediaPipe tracking + tube crop), exactly as
``prepare-data`` makes them (frames before the first face dropped). A folder's videos use
the cache only when a cache directory is given explicitly: a file stem alone does not
prove it is the clip the cache was made from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecodec.errors import InputError
from facecodec.eval.base import EVAL_FPS, EVAL_SIZE, EvalClip
from facecodec.sender.frontend import FrontEnd, stack
from facecodec.sender.prepare import META_KEYS, clip_complete, read_manifest

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".m4v")


@dataclass(frozen=True)
class ClipRef:
    """A clip to evaluate, not loaded yet (a split's tubes do not all fit in memory)."""

    name: str
    video: Path | None
    cache_dir: Path | None  # <cache>/<name> when complete there

    def load(self, max_frames: int | None = None) -> EvalClip:
        if self.cache_dir is not None:
            return _from_cache(self, max_frames)
        if self.video is None:
            raise InputError(f"{self.name}: neither a cached tube nor a video")
        return _from_video(self, max_frames)


def manifest_clips(manifest: Path, split: str | None = "val", cache: Path | None = None,
                   names: list[str] | None = None, limit: int | None = None) -> list[ClipRef]:
    """Clips of ``manifest`` in ``split`` (None or "all": every split), in manifest order."""
    specs = read_manifest(manifest)
    if split not in (None, "all"):
        specs = [s for s in specs if s.split == split]
        if not specs:
            raise InputError(f"{manifest}: no clip in split {split!r}")
    refs = [ClipRef(s.name, s.path, _cached(cache, s.name)) for s in specs]
    return _select(refs, names, limit, str(manifest))


def folder_clips(folder: Path, cache: Path | None = None, names: list[str] | None = None,
                 limit: int | None = None) -> list[ClipRef]:
    """Every video file directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise InputError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    refs = [ClipRef(p.stem, p, _cached(cache, p.stem)) for p in videos]
    return _select(refs, names, limit, str(folder))


def _cached(cache: Path | None, name: str) -> Path | None:
    if cache is None:
        return None
    return cache / name if clip_complete(cache / name) else None


def _select(refs: list[ClipRef], names: list[str] | None, limit: int | None,
            where: str) -> list[ClipRef]:
    if names:
        by_name = {r.name: r for r in refs}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise InputError(f"{where}: no clip named {', '.join(missing)}")
        refs = [by_name[n] for n in names]
    return refs[:limit]


def _from_cache(ref: ClipRef, max_frames: int | None) -> EvalClip:
    assert ref.cache_dir is not None
    tube = np.load(ref.cache_dir / "tube256.npy", mmap_mode="r")
    n = len(tube) if max_frames is None else min(len(tube), max_frames)
    with np.load(ref.cache_dir / "meta.npz") as z:
        meta = {k: np.asarray(z[k][:n]) for k in META_KEYS if k in z.files}
    # a copy in memory: the memory map is read-only, and every method reads it many times
    return EvalClip(ref.name, np.array(tube[:n]), EVAL_FPS, meta, ref.video, "cache")


def _from_video(ref: ClipRef, max_frames: int | None) -> EvalClip:
    assert ref.video is not None
    if not ref.video.is_file():
        raise InputError(f"{ref.video}: no such file")
    records = []
    with FrontEnd(tube_size=EVAL_SIZE) as fe:
        for rec in fe.video(ref.video, fps=EVAL_FPS):
            if not records and not rec.valid:  # before the first face: as prepare-data
                continue
            records.append(rec)
            if max_frames is not None and len(records) >= max_frames:
                break
    if not records:
        raise InputError(f"no face found in {ref.video}")
    values = stack(records, tubes=True)
    frames = values.pop("tube")
    segment = values["segment"]
    values["segment"] = (segment - segment[0]).astype(np.int32)
    meta = {k: values[k] for k in META_KEYS}
    return EvalClip(ref.name, frames, EVAL_FPS, meta, ref.video, "video")
