"""The sender front end: frames in, one record per frame out (tube image, landmarks, pose).

    frames (file or live) -> MediaPipe landmarks -> One-Euro smoothing -> face tube box
        -> tube crop 256 + landmarks in tube coordinates + head pose + eye openness

A :class:`FrontEnd` follows one stream (MediaPipe's tracking and the smoothing carry state
from frame to frame): make one per video or per call.

Frames without a face keep the last values (landmarks, pose, box) and have
``valid=False``; before the first face, landmarks are zeros (the tube centre) and the box
is the centred largest square. A video in which no frame has a face raises
:class:`InputError` when its iteration ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecodec.defaults import TUBE_SIZE
from facecodec.errors import InputError
from facecodec.sender.landmarks import (
    IRIS_CENTRES,
    N_LANDMARKS,
    SUPERVISED_LANDMARKS,
    FaceTracker,
    LandmarkSmoother,
    face_size,
)
from facecodec.sender.pose import eye_openness, head_pose
from facecodec.sender.tube import Box, TubeTracker, crop, to_tube
from facecodec.sender.video import DEFAULT_FPS, Frame, VideoReader, live_frames

_SUP = np.array(SUPERVISED_LANDMARKS)
_IRIS = np.array(IRIS_CENTRES)


@dataclass(slots=True)
class FrameRecord:
    """What the sender knows about one frame. Points are in tube coordinates (x, y in
    [-1, 1], clipped; z on the x scale), angles in radians (see ``pose.py``)."""

    index: int
    time: float
    tube: np.ndarray | None  # (S, S, 3) uint8 RGB, None when cropping was turned off
    sup: np.ndarray  # (33, 2) float32, SUPERVISED_LANDMARKS
    iris: np.ndarray  # (2, 2) float32, IRIS_CENTRES
    landmarks: np.ndarray  # (478, 3) float32
    yaw: float
    pitch: float
    roll: float
    eyes_open: float
    valid: bool  # a face was found in this frame (else the values are held)
    box: Box  # tube box in source pixels
    new_box: bool  # first frame, or the box changed here: start a new intra frame
    segment: int  # box id: 0 on the first frame, +1 at each later new box


class FrontEnd:
    """Chains the tracker, smoother, tube and pose. One instance per stream.

    ``max_num_faces`` > 1 keeps following the person nearest to the previous face; 1 (the
    default, fastest) lets MediaPipe track one face, re-detecting when it is lost (then,
    with several people in view, it may come back on another one after a second or so:
    see ``_follow``). Use 2 when other people may be in the picture. After
    ``empty_after`` seconds with no face at all in the picture (the person left it), the
    next face found is followed at once, wherever it appears.
    ``smoothing=False`` gives MediaPipe's raw landmarks (for measuring the filter).
    """

    def __init__(self, tube_size: int = TUBE_SIZE, max_num_faces: int = 1,
                 detect_size: int = 640, smoothing: bool = True, tube_scale: float = 1.8,
                 reset_after: float = 0.5, follow_radius: float = 0.75,
                 empty_after: float = 0.2):
        self.tube_size = tube_size
        self.follow_radius = follow_radius
        self.empty_after = empty_after
        self._empty_since: float | None = None  # first frame of a run with no face at all
        self.tube_scale = tube_scale
        self.reset_after = reset_after  # a face lost this long (s) restarts the smoother
        self.max_num_faces, self.detect_size = max_num_faces, detect_size
        self._tracker: FaceTracker | None = None  # made at the first frame: input errors
        # are reported before MediaPipe takes a second to load
        self._smoother = LandmarkSmoother() if smoothing else None
        self._tube: TubeTracker | None = None
        self._frame_shape: tuple[int, int] | None = None
        self._last_px: np.ndarray | None = None  # last smoothed landmarks, source pixels
        self._last_seen = -np.inf
        self._last_pose = np.zeros(3)
        self._last_open = 0.0
        self._segment = 0
        self._prev_box: Box | None = None
        self.faces_found = 0

    # --- entry points ---

    def video(self, path: str | Path, fps: float | None = DEFAULT_FPS,
              crop_tube: bool = True) -> Iterator[FrameRecord]:
        """Records of a video file resampled to ``fps`` (None: the source's own frames)."""
        with VideoReader(path, fps=fps) as reader:
            yield from self.run(reader, name=str(path), crop_tube=crop_tube)

    def live(self, images: Iterable[np.ndarray], fps: float | None = DEFAULT_FPS,
             source_fps: float | None = None) -> Iterator[FrameRecord]:
        """Records of a live source of RGB arrays (see :func:`video.live_frames`)."""
        yield from self.run(live_frames(images, fps=fps, source_fps=source_fps),
                            name="live input", check_face=False)

    def run(self, frames: Iterable[Frame], name: str = "input", crop_tube: bool = True,
            check_face: bool = True) -> Iterator[FrameRecord]:
        """Records of a sequence of frames. With ``check_face``, raises InputError at the
        end if no frame had a face."""
        for frame in frames:
            yield self.process(frame, crop_tube=crop_tube)
        if check_face and self.faces_found == 0:
            raise InputError(f"no face found in {name}")

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    def __enter__(self) -> FrontEnd:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- one frame ---

    def process(self, frame: Frame, crop_tube: bool = True, recentre: bool = True
                ) -> FrameRecord:
        image = frame.image
        h, w = image.shape[:2]
        if self._frame_shape != (h, w):  # first frame, or the camera changed resolution
            self._frame_shape = (h, w)
            self._tube = TubeTracker(w, h, scale=self.tube_scale)
            self._last_px = None
            if self._smoother:
                self._smoother.reset()
        tube = self._tube
        assert tube is not None

        if self._tracker is None:
            self._tracker = FaceTracker(max_num_faces=self.max_num_faces,
                                        detect_size=self.detect_size)
        raw = self._follow(self._tracker(image), frame.time)
        valid = raw is not None
        if valid:
            self.faces_found += 1
            pts = raw
            if self._smoother is not None:
                if frame.time - self._last_seen > self.reset_after:
                    self._smoother.reset()
                pts = self._smoother(raw, frame.time, face_size(raw))
            self._last_px, self._last_seen = pts, frame.time
            self._last_pose = head_pose(pts)
            self._last_open = float(eye_openness(raw))  # raw: smoothing would soften blinks
        box, _ = tube.update(self._last_px if valid else None, recentre)
        new_box = box != self._prev_box  # also on the first frame, and on a size change
        if new_box and self._prev_box is not None:
            self._segment += 1
        self._prev_box = box

        if self._last_px is None:
            lm = np.zeros((N_LANDMARKS, 3), dtype=np.float32)
        else:
            lm = to_tube(self._last_px, box).astype(np.float32)
            np.clip(lm[:, :2], -1.0, 1.0, out=lm[:, :2])
        yaw, pitch, roll = (float(a) for a in self._last_pose)
        return FrameRecord(
            index=frame.index, time=frame.time,
            tube=crop(image, box, self.tube_size) if crop_tube else None,
            sup=lm[_SUP, :2].copy(), iris=lm[_IRIS, :2].copy(), landmarks=lm,
            yaw=yaw, pitch=pitch, roll=roll, eyes_open=self._last_open, valid=valid,
            box=box, new_box=new_box, segment=self._segment)


    def _follow(self, faces: list[np.ndarray], t: float) -> np.ndarray | None:
        """The face of the person followed so far: the nearest to the last one seen, if it
        is near enough to be the same head. The allowed distance grows with the time the
        face has been lost (``follow_radius`` face sizes + 1 face size per second), so a
        second person is not taken for the first while the first is briefly hidden, but a
        person who moved while hidden is found again. A picture that had no face at all
        for ``empty_after`` seconds has no second person to confuse: the person left the
        picture, and comes back (or another one comes) anywhere in it; waiting for the
        radius to grow there kept a returning face flagged for over a second."""
        if not faces:
            if self._empty_since is None:
                self._empty_since = t
            return None
        empty_for = t - self._empty_since if self._empty_since is not None else 0.0
        self._empty_since = None
        if self._last_px is None:
            return faces[0]
        prev, size = _centre(self._last_px), face_size(self._last_px)
        dist = [float(np.hypot(*(_centre(f) - prev))) for f in faces]
        i = int(np.argmin(dist))
        if empty_for >= self.empty_after:
            return faces[i]
        radius = size * (self.follow_radius + max(t - self._last_seen, 0.0))
        return faces[i] if dist[i] <= radius else None


def _centre(landmarks: np.ndarray) -> np.ndarray:
    """Head centre (x, y) in the landmarks' units (same point as the tube box centre)."""
    return np.array([0.5 * (landmarks[234, 0] + landmarks[454, 0]),
                     0.5 * (landmarks[10, 1] + landmarks[152, 1])])


def stack(records: Iterable[FrameRecord], tubes: bool = False) -> dict[str, np.ndarray]:
    """Per-frame values of ``records`` as arrays (the ``meta.npz`` layout of the training
    cache, plus ``time`` and ``new_box``; with ``tubes``, ``tube`` (T, S, S, 3) too)."""
    recs = list(records)
    out = {
        "sup": np.stack([r.sup for r in recs]).astype(np.float32),
        "iris": np.stack([r.iris for r in recs]).astype(np.float32),
        "landmarks": np.stack([r.landmarks for r in recs]).astype(np.float32),
        "yaw": np.array([r.yaw for r in recs], dtype=np.float32),
        "pitch": np.array([r.pitch for r in recs], dtype=np.float32),
        "roll": np.array([r.roll for r in recs], dtype=np.float32),
        "valid": np.array([r.valid for r in recs], dtype=bool),
        "box": np.stack([r.box.as_array() for r in recs]).astype(np.float32),
        "segment": np.array([r.segment for r in recs], dtype=np.int32),
        "eyes_open": np.array([r.eyes_open for r in recs], dtype=np.float32),
        "new_box": np.array([r.new_box for r in recs], dtype=bool),
        "time": np.array([r.time for r in recs], dtype=np.float64),
    }
    if tubes:
        out["tube"] = np.stack([r.tube for r in recs])
    return out
