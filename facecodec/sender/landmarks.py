"""Face landmarks: MediaPipe Face Mesh in tracking mode, the supervised subset, smoothing.

MediaPipe (``mediapipe==0.10.21``, the last release that bundles its models) gives 478
points with ``refine_landmarks=True``: the 468-point mesh plus 5 points per iris. In
tracking mode the face detector runs only when the tracked face is lost; otherwise the
landmark model follows the previous frame's region, which is both faster and steadier.

Coordinates here are source pixels: x right, y down, z (depth, larger = farther from the
camera) on the same scale as x, as MediaPipe gives it (relative to the image width).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

import cv2
import numpy as np

from facecodec.sender.smoothing import OneEuroFilter
from facecodec.sender.video import check_image

N_LANDMARKS = 478

# The 33 supervised landmarks (Oquab et al. 2022, section 3.3 "Landmark sets": "a set of 33
# facial landmarks using a facial landmark tracker"). The paper does not list them; this
# choice covers the parts that move in a talking face, left-right symmetric (subject's
# right side first, i.e. image left on an unmirrored camera), MediaPipe mesh indices:
SUPERVISED_GROUPS: dict[str, tuple[int, ...]] = {
    # cheek at ear level, below the ear, lower jaw, chin, and mirrored (evenly spaced on
    # the outline): the face shape and the jaw opening (152 moves with the mouth).
    "jaw": (234, 58, 150, 152, 379, 288, 454),
    # outer end, arch, inner end of each brow: raising, frowning.
    "brows": (70, 105, 107, 336, 334, 300),
    # outer corner, upper lid, inner corner, lower lid of each eye: blinks and gaze frame.
    "eyes": (33, 159, 133, 145, 362, 386, 263, 374),
    # bridge between the eyes and tip: the rigid part, anchors head pose.
    "nose": (168, 1),
    # outer lip contour (corners, middles and half-way points of the upper and lower lip)
    # and the inner lip middles (mouth opening): speech is mostly here, so it gets most.
    "mouth": (61, 39, 0, 269, 291, 181, 17, 405, 13, 14),
}
SUPERVISED_LANDMARKS: tuple[int, ...] = tuple(i for g in SUPERVISED_GROUPS.values() for i in g)
assert len(SUPERVISED_LANDMARKS) == 33 and len(set(SUPERVISED_LANDMARKS)) == 33

# Iris centres (refine_landmarks=True): 468 is the subject's right iris (image left, next
# to eye corners 33/133), 473 the left one (next to 362/263).
IRIS_CENTRES: tuple[int, int] = (468, 473)


# What MediaPipe's C++ side prints on every graph start (TFLite and absl write straight to
# file descriptor 2, from worker threads, so Python's logging cannot mute it).
_NATIVE_NOISE = (b"Created TensorFlow Lite XNNPACK delegate", b"absl::InitializeLog()",
                 b"inference_feedback_manager.cc", b"Feedback manager requires",
                 # harmless here: measured 0.06 px against a square-padded input
                 b"Using NORM_RECT without IMAGE_DIMENSIONS")


@contextlib.contextmanager
def quiet_mediapipe_logs() -> Iterator[None]:
    """Drop MediaPipe's start-up chatter from stderr while the block runs (for the CLI,
    whose errors must stay one line); every other stderr line passes through.

    File descriptor 2 is pointed at a pipe that a thread copies to the real stderr, line
    by line, minus the known noise. Process-wide while it lasts: use it around a whole
    command, not inside a library call.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)

    def pump() -> None:
        # Forward each piece as soon as it ends with "\n" or "\r" (a progress bar redraws
        # its line with "\r" and must not wait for a newline).
        pending = b""
        while chunk := os.read(read_end, 65536):
            pieces = re.split(rb"(?<=[\r\n])", pending + chunk)
            pending = pieces.pop()  # "" or an unfinished line
            for piece in pieces:
                if not any(noise in piece for noise in _NATIVE_NOISE):
                    os.write(saved, piece)
        if pending:
            os.write(saved, pending)
        os.close(read_end)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)  # closes the pipe's last write end: the pump sees EOF
        thread.join(timeout=2.0)
        os.close(saved)


def _landmark_array(face) -> np.ndarray:
    """MediaPipe NormalizedLandmarkList -> (478, 3) float64 in [0, 1] units of the image."""
    return np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)


class FaceTracker:
    """MediaPipe Face Mesh on one stream of frames (tracking mode: frames must come in
    order, one stream per tracker).

    ``detect_size`` is about the long side of the image given to MediaPipe (frames are
    shrunk by the whole factor nearest to long side / detect_size): MediaPipe runs its own
    models on small crops (128 px detector, 192-256 px landmark model), so a 720p or 1080p
    frame only costs conversion time; landmarks are scaled back to source pixels. Measured
    on a 720p clip: 640 px moves landmarks by 0.7 px (of 1280) against the full frame.
    With ``max_num_faces`` > 1 every face found is returned; the caller decides which
    one it follows (``FrontEnd``: the one nearest to the previous face).
    """

    def __init__(self, max_num_faces: int = 1, detect_size: int = 640,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 static_image_mode: bool = False):
        # heavy (~0.6 s, and it loads matplotlib): this module's landmark tables are used
        # without it (receiver, training); MediaPipe loads with the first tracker
        import mediapipe as mp  # noqa: PLC0415

        if max_num_faces < 1:
            raise ValueError("max_num_faces must be >= 1")
        self.max_num_faces = max_num_faces
        self.detect_size = detect_size
        with _quiet_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static_image_mode, max_num_faces=max_num_faces,
                refine_landmarks=True, min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence)
        self._started = False
        self._tracking = not static_image_mode
        self._had_face = False  # the previous frame had one: a miss now is a lost track

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """Landmarks (478, 3) in source pixels of each face found in ``image`` (RGB uint8),
        the tracked face first; an empty list when there is none."""
        check_image(image, "frame")
        h, w = image.shape[:2]
        # Shrink by a whole factor (OpenCV's area filter is fast only for integer ratios);
        # the right/bottom remainder (< k pixels) is dropped, which moves no coordinate.
        k = round(max(h, w) / self.detect_size)
        small = image
        if k >= 2:
            small = cv2.resize(image[:h - h % k, :w - w % k], (w // k, h // k),
                               interpolation=cv2.INTER_AREA)
        elif not small.flags.c_contiguous:
            small = np.ascontiguousarray(small)
        faces = self._process(small)
        if not faces and self._had_face and self._tracking:
            # MediaPipe lost the tracked face (a fast move: the landmark model looks where
            # the face was) and runs its detector only on the next frame; run it on this
            # one, so that a lost track costs no frame (measured on a face sliding 40 px a
            # frame: every second frame was lost, none is now). Only at the loss, so
            # frames without a face cost one run, not two.
            faces = self._process(small)
        self._had_face = bool(faces)
        # normalised -> source pixels; MediaPipe's z is relative to the image width like x
        scale = np.array([small.shape[1], small.shape[0], small.shape[1]]) * max(k, 1)
        return [_landmark_array(face) * scale for face in faces]

    def _process(self, small: np.ndarray) -> list:
        if not self._started:
            # The graph logs its setup (TFLite delegates, absl warnings) from its own threads
            # when each model first runs; the landmark model first runs on the first frame
            # with a face, so stay quiet until one has been seen.
            with _quiet_native_stderr():
                faces = self._mesh.process(small).multi_face_landmarks or []
            self._started = bool(faces)
            return faces
        return self._mesh.process(small).multi_face_landmarks or []

    def close(self) -> None:
        self._mesh.close()


    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence file descriptor 2 while MediaPipe's graph starts: its C++ logging prints
    INFO/WARNING lines (TFLite delegate, absl) before any setting can turn them off, and a
    codec's stderr is for its own one-line errors. Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def expressive_landmarks() -> tuple[int, ...]:
    """Landmarks that move fast and on their own when a person talks: lips, eyelids,
    irises, chin and lower jaw. They are smoothed less than the rest (LandmarkSmoother)."""
    import mediapipe as mp  # noqa: PLC0415 - heavy, see FaceTracker

    fm = mp.solutions.face_mesh
    sets = (fm.FACEMESH_LIPS, fm.FACEMESH_LEFT_EYE, fm.FACEMESH_RIGHT_EYE)
    points = {i for conns in sets for edge in conns for i in edge}
    points |= set(range(468, N_LANDMARKS))  # irises
    points |= {152, 148, 176, 149, 150, 377, 400, 378, 379, 175, 199, 200,  # chin, jaw
               18, 83, 313, 421, 201, 208, 428}  # below the lower lip
    return tuple(sorted(points))


class LandmarkSmoother:
    """One-Euro smoothing of (478, 3) landmarks, with speeds in face sizes per second.

    Expressive points (:func:`expressive_landmarks`) get ``beta_expressive``: the filter
    opens as soon as they move, so a mouth opening is not flattened. The other points move
    mostly with the head and get ``beta``: still, they are smoothed more. Measured on 8
    clips at 15 fps (docs/sender.md): jitter of rigid distances -21 %, mouth motion kept at
    96 %, lag of the nose, forehead and eye corners 0.27 px mean (1.0 px 99th percentile)
    in the 256 tube.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 30.0,
                 beta_expressive: float = 300.0, d_cutoff: float = 4.0):
        betas = np.full((N_LANDMARKS, 1), beta)
        betas[list(expressive_landmarks())] = beta_expressive
        self._filter = OneEuroFilter(min_cutoff=min_cutoff, beta=betas, d_cutoff=d_cutoff)

    def reset(self) -> None:
        self._filter.reset()

    def __call__(self, landmarks: np.ndarray, t: float, face_size: float) -> np.ndarray:
        return self._filter(landmarks, t, scale=face_size)


def face_size(landmarks: np.ndarray) -> float:
    """A size of the face that does not change as the head turns: the larger of the 3-D
    forehead-chin (10-152) and cheek-cheek (234-454) distances, in landmark units."""
    height = float(np.linalg.norm(landmarks[152] - landmarks[10]))
    width = float(np.linalg.norm(landmarks[454] - landmarks[234]))
    return max(height, width, 1e-6)
