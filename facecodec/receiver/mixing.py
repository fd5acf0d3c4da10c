"""Which source frames the receiver takes each frame's pixels from: the pose weighting.

The Frontalizer fuses the sources with confidences c_i computed at the reference position
(Oquab et al. 2022, eq. 2), before any driving frame is known: they cannot prefer the
source whose pose is nearest the frame being drawn, the one whose warp stretches the
picture least. The receiver multiplies them, in the pixel blend only, by

    m_i = softmax_i(-d_i / tau),   d_i = mean_k |(p_k - mean p) - (p_i,k - mean p_i)|^2,

the soft form of FOM-mult's rule (the source with the nearest keypoints, Oquab et al.
Table 5), with p the driving frame's keypoints and p_i source i's, each centred on its
mean (a shift of the whole face moves no weight). An exponential moving average over the
frames keeps the mix from flickering between sources whose colours differ a little.

docs/codec.md measures what it gains on the val clips; the learned confidences alone stay
what training optimises.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facecodec.models.package import POSE_SMOOTHING as SMOOTHING
from facecodec.models.package import POSE_TEMPERATURE, ModelProfile, ReceiverSettings

__all__ = ["POSE_TEMPERATURE", "SMOOTHING", "SourceMixer", "pose_weights"]


def pose_weights(source_kp: Tensor, kp: Tensor, temperature: float) -> Tensor:
    """(B, N) softmax_i(-d_i / tau) (module docstring) of driving keypoints ``kp`` (B, K, 2)
    against the sources' ``source_kp`` (B, N, K, 2)."""
    src = source_kp - source_kp.mean(dim=2, keepdim=True)
    drv = (kp - kp.mean(dim=1, keepdim=True)).unsqueeze(1)
    d = ((src - drv) ** 2).sum(dim=-1).mean(dim=-1)
    return torch.softmax(-d / temperature, dim=1)


class SourceMixer:
    """The per-frame ``source_mix`` of one stream: :func:`pose_weights` smoothed over the
    frames in order. Call :meth:`reset` when the source set changes."""

    def __init__(self, temperature: float = POSE_TEMPERATURE, smoothing: float = SMOOTHING):
        if temperature <= 0 or not 0 <= smoothing < 1:
            raise ValueError(f"pose weighting: temperature {temperature} must be > 0 and "
                             f"smoothing {smoothing} in [0, 1)")
        self.temperature = temperature
        self.smoothing = smoothing
        self._last: Tensor | None = None

    @classmethod
    def from_config(cls, cfg: dict) -> SourceMixer | None:
        """From a model config's optional ``inference`` section (``pose_temperature``,
        ``pose_smoothing``); None when ``pose_temperature`` is 0 or null (the learned
        confidences alone)."""
        return cls.from_settings(ReceiverSettings.from_config(cfg))

    @classmethod
    def from_profile(cls, profile: ModelProfile) -> SourceMixer | None:
        return cls.from_settings(profile.receiver)

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> SourceMixer | None:
        if not settings.pose_temperature:
            return None
        return cls(settings.pose_temperature, settings.pose_smoothing)

    def reset(self) -> None:
        self._last = None

    def __call__(self, source_kp: Tensor, kp: Tensor) -> Tensor:
        """``source_kp`` (1, N, K, 2), ``kp`` (B, K, 2): B consecutive frames -> (B, N)."""
        target = pose_weights(source_kp.expand(kp.shape[0], -1, -1, -1), kp, self.temperature)
        out = []
        for t in target:
            if self._last is not None:
                t = self.smoothing * self._last + (1 - self.smoothing) * t
            self._last = t
            out.append(t)
        return torch.stack(out)

    def describe(self) -> str:
        return f"pose tau {self.temperature:g}, smoothing {self.smoothing:g}"
