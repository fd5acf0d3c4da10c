"""Which keypoints a model variant uses, and how per-frame values become the receiver's
keypoint tensor (section 3.3 "Landmark sets": Sup = 33 facial landmarks from a tracker,
Unsup = 10 detector keypoints, Sup+Unsup = both; we add the 2 iris centres to Sup).

Per-frame values travel as a dict, the same names as the bitstream's streams
(facecodec/bitstream/streams.py): ``sup`` (..., 33, 2), ``iris`` (..., 2, 2), ``unsup``
(..., K, 2), ``jac`` (..., K, 2, 2), ``expr`` (..., M); all coordinates in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the layout is read where torch is not loaded (the codec's model profile)
    from torch import Tensor

    from facecodec.config import ModelConfig

SUP_POINTS = 33
IRIS_POINTS = 2

Values = dict[str, "Tensor"]


@dataclass(frozen=True)
class KeypointLayout:
    sup: bool
    iris: bool
    unsup: int
    jacobians: bool
    expr_dim: int

    @classmethod
    def from_config(cls, model: ModelConfig) -> KeypointLayout:
        return cls(model.landmarks.sup, model.landmarks.iris, model.num_unsup,
                   model.jacobians and model.num_unsup > 0, model.expr_dim)

    @property
    def num_landmarks(self) -> int:
        return SUP_POINTS * self.sup + IRIS_POINTS * self.iris

    @property
    def num_kp(self) -> int:
        return self.num_landmarks + self.unsup

    @property
    def streams(self) -> tuple[str, ...]:
        """The value names a frame of this variant carries, in bitstream order."""
        names = [n for n, on in (("sup", self.sup), ("iris", self.iris)) if on]
        if self.unsup:
            names.append("unsup")
        if self.jacobians:
            names.append("jac")
        if self.expr_dim:
            names.append("expr")
        return tuple(names)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each stream's shape per frame, in bitstream order: what a frame's flat values
        are reshaped to before they reach the networks (a stream carries the product)."""
        every = {"sup": (SUP_POINTS, 2), "iris": (IRIS_POINTS, 2), "unsup": (self.unsup, 2),
                 "jac": (self.unsup, 2, 2), "expr": (self.expr_dim,)}
        return {name: every[name] for name in self.streams}
