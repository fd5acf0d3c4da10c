"""``facecodec prepare-data``: the training cache of face tubes and landmark tracks.

THE CACHE FORMAT IS A CONTRACT with facecodec.training and facecodec.bitstream.fitting;
change it only together with them (and bump ``version``):

    <root>/index.json        {"version": 1, "fps": 15, "clips": [{"name", "split", "person",
                              "frames", "src_fps"}, ...]}   (manifest order)
    <root>/<name>/tube256.npy  uint8 (T, 256, 256, 3) RGB  (np.load(mmap_mode="r") works)
    <root>/<name>/tube128.npy  uint8 (T, 128, 128, 3) RGB, area downscale of tube256
    <root>/<name>/meta.npz     sup (T,33,2) f32, iris (T,2,2) f32, landmarks (T,478,3) f32,
                               yaw pitch roll (T,) f32 rad, valid (T,) bool, box (T,3) f32
                               (x0, y0, size source px), segment (T,) i32, eyes_open (T,) f32

``name`` is the clip file's stem. Frames before the first face are dropped (there is no
box for them yet); later frames without a face are kept with ``valid=False`` and held
values. ``segment`` counts tube boxes from 0 within the clip (a new box = a new segment).

The cache lives outside the repository (the clips are third-party and must not be
committed): ``--out``, else ``$FACECODEC_DATA``, else ``~/.cache/facecodec/data``.
Resumable: each file is written under a temporary name and renamed when complete, meta.npz
last, and index.json is rewritten after every clip; a clip whose three files are complete
and agree on T is skipped.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facecodec.defaults import TUBE_SIZE
from facecodec.errors import InputError
from facecodec.resources import source_checkout
from facecodec.sender.frontend import FrontEnd
from facecodec.sender.video import VideoReader

CACHE_VERSION = 1
CACHE_FPS = 15
SMALL_TUBE = 128  # an area-downscaled copy for the 128-px networks
TUBE_SIZES = (TUBE_SIZE, SMALL_TUBE)
# The project's clips sit beside a checkout, in ../shared (never installed with the
# package): from an installed copy the default is ../shared of the working directory.
_CHECKOUT = source_checkout()
DEFAULT_MANIFEST = (_CHECKOUT.parent if _CHECKOUT else Path("..")) / "shared/data/manifest.csv"
META_KEYS = ("sup", "iris", "landmarks", "yaw", "pitch", "roll", "valid", "box", "segment",
             "eyes_open")


def default_out() -> Path:
    """``$FACECODEC_DATA`` or ``~/.cache/facecodec/data``."""
    env = os.environ.get("FACECODEC_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facecodec" / "data"


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """One manifest row: the video, and what the index says about it."""

    path: Path
    name: str
    split: str
    person: str


def read_manifest(manifest: str | Path) -> list[ClipSpec]:
    """Clips of a manifest CSV (columns ``file``, ``split``, ``notes`` with ``person=<id>``).
    ``file`` is relative to the manifest's parent's parent (``shared/``: the manifest is
    ``shared/data/manifest.csv`` and files are ``data/clips/...``)."""
    manifest = Path(manifest)
    try:
        with manifest.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"{manifest}: cannot read manifest: {e.strerror or e}") from None
    if rows and not {"file", "split"} <= set(rows[0]):
        raise InputError(f"{manifest}: not a clip manifest (needs columns 'file' and 'split', "
                         f"has {sorted(rows[0])})")
    root = manifest.resolve().parent.parent
    clips, names = [], set()
    for row in rows:
        m = re.search(r"person=([^;\s]+)", row.get("notes") or "")
        path = root / row["file"]
        name = path.stem
        if name in names:
            raise InputError(f"{manifest}: two clips are named {name!r} (names are file stems)")
        names.add(name)
        clips.append(ClipSpec(path, name, row["split"], m.group(1) if m else name))
    return clips


def _inside_repo(path: Path) -> bool:
    repo = source_checkout()
    if repo is None:
        return False
    try:
        path.resolve().relative_to(repo)
        return True
    except ValueError:
        return False


# --- writing ----------------------------------------------------------------------------

class _NpyAppender:
    """Append frames to a .npy whose length is known only at the end.

    The header is written for 0 frames and rewritten in place on :meth:`finish`: npy pads
    its header to a multiple of 64 bytes, so the length digits fit in the same space.
    """

    def __init__(self, path: Path, frame_shape: tuple[int, ...], dtype=np.uint8):
        self.path = path
        self.frame_shape = frame_shape
        self.dtype = np.dtype(dtype)
        self.count = 0
        self._f = path.open("wb")
        self._header_len = self._write_header(0)

    def _write_header(self, n: int) -> int:
        self._f.seek(0)
        start = self._f.tell()
        np.lib.format.write_array_header_1_0(self._f, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": (n, *self.frame_shape)})
        return self._f.tell() - start

    def append(self, frame: np.ndarray) -> None:
        if frame.shape != self.frame_shape or frame.dtype != self.dtype:
            raise ValueError(f"frame {frame.shape} {frame.dtype} does not fit {self.path}")
        self._f.write(np.ascontiguousarray(frame).data)
        self.count += 1

    def finish(self) -> int:
        end = self._f.tell()
        if self._write_header(self.count) != self._header_len:  # cannot happen below 1e40
            raise RuntimeError(f"{self.path}: npy header grew")
        self._f.seek(end)
        self._f.close()
        return self.count

    def abort(self) -> None:
        self._f.close()
        self.path.unlink(missing_ok=True)


def _frames_of(path: Path) -> int | None:
    """Frame count of a complete npy file (header only), or None."""
    try:
        return int(np.load(path, mmap_mode="r").shape[0])
    except (OSError, ValueError):
        return None


def clip_complete(clip_dir: Path) -> int | None:
    """T if the clip's three files exist and agree on T, else None."""
    meta = clip_dir / "meta.npz"
    if not meta.is_file():
        return None
    t_tube, t_small = (_frames_of(clip_dir / f"tube{s}.npy") for s in TUBE_SIZES)
    try:
        with np.load(meta) as z:
            if set(META_KEYS) - set(z.files):
                return None
            t_meta = len(z["valid"])
    except (OSError, ValueError):
        return None
    return t_meta if t_tube == t_small == t_meta and t_meta > 0 else None


def prepare_clip(clip: ClipSpec, clip_dir: Path, fps: float = CACHE_FPS) -> dict:
    """Process one clip into ``clip_dir``; returns its index entry. Raises InputError."""
    clip_dir.mkdir(parents=True, exist_ok=True)
    tmp = {s: clip_dir / f"tube{s}.npy.tmp" for s in TUBE_SIZES}
    writers: dict[int, _NpyAppender] = {}
    meta: dict[str, list] = {k: [] for k in META_KEYS}
    try:
        with VideoReader(clip.path, fps=fps) as reader, FrontEnd(tube_size=TUBE_SIZE) as fe:
            src_fps = reader.info.src_fps
            writers = {s: _NpyAppender(tmp[s], (s, s, 3)) for s in TUBE_SIZES}
            first_segment = None
            for rec in fe.run(reader, name=str(clip.path)):
                if first_segment is None:
                    if not rec.valid:  # before the first face: no box for it yet
                        continue
                    first_segment = rec.segment
                writers[TUBE_SIZE].append(rec.tube)
                writers[SMALL_TUBE].append(cv2.resize(rec.tube, (SMALL_TUBE, SMALL_TUBE),
                                                      interpolation=cv2.INTER_AREA))
                for key in ("sup", "iris", "landmarks", "yaw", "pitch", "roll", "valid",
                            "eyes_open"):
                    meta[key].append(getattr(rec, key))
                meta["box"].append(rec.box.as_array())
                meta["segment"].append(rec.segment - first_segment)
        counts = {s: w.finish() for s, w in writers.items()}
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    n = counts[TUBE_SIZE]
    arrays = {
        "sup": np.asarray(meta["sup"], np.float32).reshape(n, 33, 2),
        "iris": np.asarray(meta["iris"], np.float32).reshape(n, 2, 2),
        "landmarks": np.asarray(meta["landmarks"], np.float32).reshape(n, 478, 3),
        "yaw": np.asarray(meta["yaw"], np.float32),
        "pitch": np.asarray(meta["pitch"], np.float32),
        "roll": np.asarray(meta["roll"], np.float32),
        "valid": np.asarray(meta["valid"], bool),
        "box": np.asarray(meta["box"], np.float32).reshape(n, 3),
        "segment": np.asarray(meta["segment"], np.int32),
        "eyes_open": np.asarray(meta["eyes_open"], np.float32),
    }
    for s in TUBE_SIZES:
        os.replace(tmp[s], clip_dir / f"tube{s}.npy")
    meta_tmp = clip_dir / "meta.tmp.npz"
    np.savez(meta_tmp, **arrays)
    os.replace(meta_tmp, clip_dir / "meta.npz")  # last: its presence marks the clip done
    return {"name": clip.name, "split": clip.split, "person": clip.person, "frames": n,
            "src_fps": round(float(src_fps), 6)}


# --- the whole manifest ------------------------------------------------------------------

@dataclass
class PrepareReport:
    done: list[str] = field(default_factory=list)  # processed now
    kept: list[str] = field(default_factory=list)  # complete from an earlier run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    frames: int = 0  # frames in the cache (all clips of the index)


def _write_index(out: Path, entries: list[dict], fps: float) -> None:
    tmp = out / "index.json.tmp"
    tmp.write_text(json.dumps({"version": CACHE_VERSION, "fps": fps, "clips": entries},
                              indent=1) + "\n")
    os.replace(tmp, out / "index.json")


def prepare_data(manifest: str | Path = DEFAULT_MANIFEST, out: str | Path | None = None,
                 fps: int = CACHE_FPS, limit: int | None = None,
                 progress: bool = True) -> PrepareReport:
    """Build (or complete) the cache for the clips of ``manifest`` (the first ``limit``)."""
    out = Path(out).expanduser() if out is not None else default_out()
    if _inside_repo(out):
        raise InputError(f"{out}: refusing to write the data cache inside the repository "
                         "(the clips are third-party); choose a directory outside it")
    clips = read_manifest(manifest)[:limit]
    out.mkdir(parents=True, exist_ok=True)
    old = {}
    try:
        index = json.loads((out / "index.json").read_text())
        if index.get("version") == CACHE_VERSION and index.get("fps") == fps:
            old = {c["name"]: c for c in index["clips"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    entries: dict[str, dict] = {}
    report = PrepareReport()
    bar = tqdm(clips, unit="clip", disable=not progress, dynamic_ncols=True)
    for clip in bar:
        bar.set_postfix_str(clip.name[:32])
        clip_dir = out / clip.name
        n = clip_complete(clip_dir)
        if n is not None:
            entry = old.get(clip.name) or _entry_from_files(clip, n)
            entries[clip.name] = {**entry, "split": clip.split, "person": clip.person,
                                  "frames": n}
            report.kept.append(clip.name)
            continue
        try:
            entries[clip.name] = prepare_clip(clip, clip_dir, fps)
            report.done.append(clip.name)
        except InputError as e:
            report.failed.append((clip.name, str(e)))
            bar.write(f"warning: skipped {clip.name}: {e}")
            continue
        _write_index(out, [entries[c.name] for c in clips if c.name in entries], fps)
    _write_index(out, [entries[c.name] for c in clips if c.name in entries], fps)
    report.frames = sum(e["frames"] for e in entries.values())
    return report


def _entry_from_files(clip: ClipSpec, n: int) -> dict:
    """Index entry of a complete clip that an interrupted run did not index yet."""
    with VideoReader(clip.path, fps=None) as reader:
        src_fps = reader.info.src_fps
    return {"name": clip.name, "split": clip.split, "person": clip.person, "frames": n,
            "src_fps": round(float(src_fps), 6)}
