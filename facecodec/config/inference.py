"""The ``inference`` section: how the receiver draws with a model beyond its weights.

Exported with the model (facecodec/models/package.py reads it as the model's
``ReceiverSettings``, facecodec/receiver/mixing.py uses them); training never reads it.
It lives here, with the other sections, so that neither side imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from facecodec.config.typed import Section


@dataclass(frozen=True)
class InferenceConfig(Section):
    """The receiver's pose weighting of the source pixels (docs/codec.md)."""

    # chosen on the val clips among 0.002-0.01 (docs/codec.md): colder follows the nearest
    # source more closely and switches between sources more abruptly
    pose_temperature: float | None = 0.003
    """tau of the pose weighting, in squared tube units ([-1, 1] across the crop); 0 or
    null: the learned confidences alone."""
    # at 15 frames/s a change of pose moves the mix within about 0.2 s
    pose_smoothing: float = 0.7
    """Weight of the previous frame's mix in the moving average over frames (0: none)."""
