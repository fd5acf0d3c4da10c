"""What the sender runs per frame besides the landmark tracker: the unsupervised keypoint
detector, its Jacobians and the expression code (section 3.2.2: e = g(f_m(x_d))).
Saved apart from the receiver (``sender.safetensors``): the sender device never needs the
generator, and the receiver never needs the detector."""

from __future__ import annotations

from torch import Tensor, nn

from facecodec.config import KeypointDetectorConfig
from facecodec.models.keypoint_detector import KeypointDetector
from facecodec.models.layout import KeypointLayout


class SenderModel(nn.Module):
    """Image (B, 3, H, W) in [0, 1] -> the learned per-frame values {"unsup", "jac",
    "expr"} of its variant; empty for the Sup variant (landmarks only, nothing learned)."""

    def __init__(self, layout: KeypointLayout, image_res: int, config: KeypointDetectorConfig):
        super().__init__()
        self.layout = layout
        self.detector: KeypointDetector | None = None
        if layout.unsup or layout.expr_dim:
            self.detector = KeypointDetector(config, num_kp=layout.unsup, image_res=image_res,
                                             jacobians=layout.jacobians, expr_dim=layout.expr_dim)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return self.detector(image) if self.detector is not None else {}
