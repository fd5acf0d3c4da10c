"""The interface between the training harness and a model family.

The harness (facecodec/training/trainer.py) only knows this: a family builds itself from its
``model`` config section and the networks' resolution, owns a ``sender`` and a ``receiver``
module (exported to separate weight files), turns a sampled batch into predictions and
targets (``training_forward``), and may expose a keypoint detector for the equivariance
loss and extra, family-specific loss terms. A later family (e.g. the few-shot embedder +
AdaIN generator of Zakharov et al. 2019) implements the same methods and registers itself
in facecodec/models/registry.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from facecodec.config import ModelConfig


@dataclass
class TrainOutput:
    prediction: Tensor  # (B * D, 3, H, W) in [0, 1]
    target: Tensor  # (B * D, 3, H, W)
    driving_values: dict[str, Tensor] = field(default_factory=dict)  # learned values per target
    extra_losses: dict[str, Tensor] = field(default_factory=dict)  # already weighted
    details: Any = None  # family-specific (e.g. the RenderOutput), for logging and tests
    # the driving frames as the sender saw them, when smaller than ``target``
    # (``data.output_resolution``); the equivariance loss re-detects on these
    sender_frames: Tensor | None = None


class FaceAnimationModel(nn.Module):
    family: ClassVar[str]
    uses_reference_init: ClassVar[bool] = False
    """True when the family wants the mean frontal landmark layout of the data at build."""
    discriminator: ClassVar[str] = "patch"
    """The adversarial losses' discriminator (facecodec/training/adversary.py): ``patch``,
    the multi-scale patch discriminator on the frames alone, or ``projection``, a
    conditional one on (frame, landmark sketch, video) with the embedding-matching loss."""

    sender: nn.Module
    receiver: nn.Module

    def __init__(self, config: ModelConfig, resolution: int,
                 reference_init: Tensor | None = None):
        super().__init__()
        self.config = config
        self.resolution = resolution  # the side of the images the networks take

    def training_forward(self, batch: dict[str, Tensor]) -> TrainOutput:
        raise NotImplementedError

    def keypoint_detector(self) -> nn.Module | None:
        """The module whose keypoints/Jacobians the equivariance loss constrains, if any."""
        return None
