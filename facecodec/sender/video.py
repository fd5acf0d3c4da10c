"""Video input: files through PyAV (FFmpeg) and live frame iterators, as upright RGB frames
on a regular time grid.

- Any container and codec the bundled FFmpeg decodes (mp4, mov, mkv, webm; h264, hevc,
  vp9, av1) is read frame by frame, never whole: memory does not grow with the video.
- The display matrix (phone videos store portrait frames sideways plus a rotation) is
  applied, so frames come out the way a player shows them.
- Frame times come from the timestamps, not from a nominal rate, so variable frame rate
  clips keep their timing. With ``fps`` set, the output is resampled to that rate by
  taking, for each output instant, the source frame shown nearest to it (frames are
  dropped or repeated, never blended).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from facecodec.defaults import FPS as DEFAULT_FPS
from facecodec.errors import InputError


@dataclass(frozen=True, slots=True)
class Frame:
    """One upright RGB frame: ``image`` is (H, W, 3) uint8, ``time`` seconds since the first
    frame, ``index`` its position in the (resampled) output sequence."""

    image: np.ndarray
    time: float
    index: int


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What is known of a video file before decoding it all. ``width``/``height`` are the
    displayed size (after rotation); ``frames`` is the container's count or an estimate."""

    path: Path
    width: int
    height: int
    src_fps: float
    duration: float | None
    frames: int | None
    rotation: int
    codec: str


# --- Orientation -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Orientation:
    """How to turn a decoded frame upright: transpose first, then flip rows / columns."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def degrees(self) -> int:
        """Counter-clockwise display rotation, as FFmpeg reports it (flips not included)."""
        rows, cols = self.flip_rows, self.flip_cols
        if not self.transpose:
            return 180 if (rows and cols) else 0
        return 90 if rows and not cols else -90 if cols and not rows else 0

    def apply(self, image: np.ndarray) -> np.ndarray:
        out = image.transpose(1, 0, 2) if self.transpose else image
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return out if out is image else np.ascontiguousarray(out)


def orientation_from_matrix(matrix: np.ndarray) -> Orientation:
    """Orientation from FFmpeg's 3x3 display matrix (AV_FRAME_DATA_DISPLAYMATRIX, int32).

    FFmpeg maps a decoded pixel (p, q) to the displayed (a*p + c*q, b*p + d*q) with
    ``a, b, c, d = m[0], m[1], m[3], m[4]`` (y down). Angles that are not quarter turns are
    snapped to the nearest quarter turn (FFmpeg itself would rotate with interpolation).
    """
    a, b, c, d = (float(matrix.flat[i]) for i in (0, 1, 3, 4))
    if abs(a) + abs(d) >= abs(b) + abs(c):  # axes kept: x' = a*p, y' = d*q
        return Orientation(False, flip_rows=d < 0, flip_cols=a < 0)
    # axes swapped: x' = c*q, y' = b*p, i.e. the transposed image, flipped where negative
    return Orientation(True, flip_rows=b < 0, flip_cols=c < 0)


def _frame_orientation(frame) -> Orientation:
    for sd in frame.side_data:
        if sd.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            m = np.frombuffer(bytes(sd), dtype="<i4")
            if m.size == 9:
                return orientation_from_matrix(m)
    return Orientation()


# --- Time resampling ---------------------------------------------------------------------

def resample(items: Iterable[tuple[float, object]], fps: float | None
             ) -> Iterator[tuple[int, float, object]]:
    """Put timestamped items on a regular grid of ``fps`` starting at the first timestamp.

    Yields ``(k, t_k, item)`` where ``item`` is the one whose timestamp is nearest to
    ``t_k = t_0 + k / fps`` (the later one on a tie). The last item covers the grid up to
    half a source frame interval after it, so N frames at rate r give round(N * fps / r)
    outputs. With ``fps=None`` every item is passed through with its own time.
    Needs one item of look-ahead, never more.
    """
    it = iter(items)
    if fps is None:
        t0 = None
        for k, (t, item) in enumerate(it):
            t0 = t if t0 is None else t0
            yield k, t - t0, item
        return
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    step = 1.0 / fps
    prev = next(it, None)
    if prev is None:
        return
    t0 = prev[0]
    k = 0
    last_dt = None
    eps = 1e-9
    for cur in it:
        if cur[0] <= prev[0]:  # non-increasing timestamp: keep the first of equals
            continue
        mid = 0.5 * (prev[0] + cur[0])
        while t0 + k * step < mid - eps:
            yield k, k * step, prev[1]
            k += 1
        last_dt = cur[0] - prev[0]
        prev = cur
    end = prev[0] + 0.5 * (last_dt if last_dt is not None else step)
    while k == 0 or t0 + k * step < end - eps:
        yield k, k * step, prev[1]
        k += 1


# --- Files -------------------------------------------------------------------------------

class VideoReader:
    """Upright RGB frames of a video file, streamed, optionally resampled to ``fps``.

    >>> with VideoReader("talk.mp4", fps=15) as video:
    ...     for frame in video: ...

    Raises :class:`InputError` naming the file for a missing, empty or undecodable file.
    """

    def __init__(self, path: str | Path, fps: float | None = DEFAULT_FPS, threads: bool = True):
        self.path = Path(path)
        self.fps = fps
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory, not a video")
        if self.path.stat().st_size == 0:
            raise InputError(f"{self.path}: cannot read video: the file is empty (0 bytes)")
        try:
            self._container = av.open(str(self.path), mode="r")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise InputError(f"{self.path}: cannot read video: {_one_line(e)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"{self.path}: cannot read video: the file has no video stream")
        self._stream = self._container.streams.video[0]
        if threads:
            self._stream.thread_type = "AUTO"  # frame + slice threads: ~2x on 2 cores
        self.decoded = 0  # source frames decoded so far
        self._ended = False  # the decoder ran out of frames (not a break by the caller)
        self.info = self._probe()

    def _probe(self) -> VideoInfo:
        s = self._stream
        rate = s.average_rate or s.guessed_rate or s.base_rate
        src_fps = float(rate) if rate else 0.0
        duration = None
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / 1e6
        frames = s.frames or (round(duration * src_fps) if duration and src_fps else None)
        # The display matrix is attached to decoded frames: decode the first one now and
        # keep it for __iter__ (no seeking back, which some inputs do not support).
        self._decoder = self._container.decode(s)
        try:
            self._first = next(self._decoder, None)
        except av_errors() as e:
            raise InputError(f"{self.path}: cannot decode video: {_one_line(e)}") from None
        if self._first is None:
            raise InputError(f"{self.path}: cannot read video: no frame could be decoded")
        self._orientation = _frame_orientation(self._first)
        width, height = self._first.width, self._first.height
        if self._orientation.transpose:
            width, height = height, width
        return VideoInfo(self.path, width, height, src_fps, duration, frames,
                         self._orientation.degrees, s.codec_context.name)

    def _timed_frames(self) -> Iterator[tuple[float, object]]:
        if self._first is None:
            raise RuntimeError("a VideoReader can be iterated only once")
        tb = float(self._stream.time_base) if self._stream.time_base else None
        fallback_step = 1.0 / self.info.src_fps if self.info.src_fps > 0 else 1.0 / 25
        frame, self._first = self._first, None
        n = 0
        try:
            while frame is not None:
                pts = frame.pts
                t = pts * tb if (pts is not None and tb) else n * fallback_step
                n += 1
                self.decoded = n
                yield t, frame
                frame = next(self._decoder, None)
        except av_errors() as e:
            raise InputError(f"{self.path}: cannot decode video after {n} frames: "
                             f"{_one_line(e)}") from None
        self._ended = True

    def expected_frames(self) -> int | None:
        """The source frames the file says it holds: its index's count, or its duration
        x rate when smaller (an edit list hides frames the index counts), or None."""
        info = self.info
        counts = [c for c in (self._stream.frames or None,
                              round(info.duration * info.src_fps)
                              if info.duration and info.src_fps else None) if c]
        return min(counts) if counts else None

    def shortfall(self) -> str | None:
        """Once every frame has been read: why the video ended early, when it held
        clearly fewer frames than its header promises (a cut download or copy: an mp4
        whose index is at the front decodes up to the cut without an error), else None."""
        expected = self.expected_frames()
        # a frame or two less is normal (the last B-frame of some encoders, rounding)
        if not self._ended or expected is None or self.decoded >= expected - max(
                2, expected // 50):
            return None
        rate = self.info.src_fps
        seconds = (f", {self.decoded / rate:.1f} s of {expected / rate:.1f} s"
                   if rate > 0 else "")
        return (f"{self.path} is truncated or damaged after frame {self.decoded} "
                f"(of ~{expected} expected{seconds})")

    def __iter__(self) -> Iterator[Frame]:
        orient = self._orientation
        last_frame, last_image = None, None
        for k, t, frame in resample(self._timed_frames(), self.fps):
            if frame is not last_frame:  # a repeated source frame is converted only once
                last_image = orient.apply(frame.to_ndarray(format="rgb24"))
                last_frame = frame
            yield Frame(last_image, t, k)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def av_errors() -> tuple[type[BaseException], ...]:
    return (av.FFmpegError, OSError)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ")
    # PyAV appends the file name and errno ("[Errno 1094995529] Invalid data found when
    # processing input: 'x.mp4'"); keep the FFmpeg message only.
    if text.startswith("[Errno"):
        text = text.split("]", 1)[-1].strip()
    if ": '" in text:
        text = text.split(": '", 1)[0]
    return text or type(e).__name__


# --- Live sources ------------------------------------------------------------------------

def live_frames(images: Iterable[np.ndarray], fps: float | None = None,
                source_fps: float | None = None) -> Iterator[Frame]:
    """Wrap a live source (e.g. a camera loop) of RGB (H, W, 3) uint8 arrays into frames.

    Times are ``i / source_fps`` when the source rate is known, else the wall clock at
    arrival. With ``fps`` set, frames are dropped so that at most one is kept per output
    interval (no look-ahead, hence no added latency); a live source is never repeated.
    """
    step = 1.0 / fps if fps else 0.0
    t0 = None
    next_slot = 0
    k = 0
    for i, image in enumerate(images):
        check_image(image, f"live frame {i}")
        now = i / source_fps if source_fps else time.monotonic()
        t0 = now if t0 is None else t0
        t = now - t0
        if step:  # output slots are [j - 1/4, j + 3/4) * step; keep one frame per slot
            # (a quarter interval of slack for a camera's jittery clock; exact halves would
            # keep 2 of 3 frames of a 30 fps source at 15 fps, on a jagged grid)
            slot = math.floor(t / step + 0.25)
            if slot < next_slot:
                continue
            next_slot = slot + 1
        yield Frame(image, t, k)
        k += 1


def check_image(image: np.ndarray, what: str) -> None:
    """Raise :class:`InputError` unless ``image`` is an (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise InputError(f"{what}: expected an RGB array (H, W, 3), got {shape}")
    if image.dtype != np.uint8:
        raise InputError(f"{what}: expected uint8 pixels, got {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"{what}: image of {image.shape[1]}x{image.shape[0]} is too small")
