"""Per-frame values to the receiver's keypoint tensors (the torch half of
:mod:`facecodec.models.layout`)."""

from __future__ import annotations

import torch
from torch import Tensor

from facecodec.models.layout import KeypointLayout, Values


def assemble(layout: KeypointLayout, values: Values) -> tuple[Tensor, Tensor]:
    """values with leading shape L -> keypoints (*L, n_kp, 2) and Jacobians
    (*L, n_kp, 2, 2): landmarks get identity Jacobians, so that the sparse motions of
    FOM eq. 4 reduce to translations for them."""
    parts = []
    if layout.sup:
        parts.append(values["sup"])
    if layout.iris:
        parts.append(values["iris"])
    if layout.unsup:
        parts.append(values["unsup"])
    if not parts:
        raise ValueError("empty keypoint layout")
    kp = torch.cat(parts, dim=-2)
    lead = kp.shape[:-2]
    eye = torch.eye(2, dtype=kp.dtype, device=kp.device)
    n_ident = layout.num_landmarks + (0 if layout.jacobians else layout.unsup)
    jac = eye.expand(*lead, n_ident, 2, 2)
    if layout.jacobians:
        # no empty identity block when only learned keypoints carry Jacobians (FOM):
        # Core ML's converter mistakes a zero-size expand for size 1
        jac = torch.cat([jac, values["jac"]], dim=-3) if n_ident else values["jac"]
    return kp, jac
