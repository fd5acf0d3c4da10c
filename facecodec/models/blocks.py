"""Building blocks shared by every network of the codec.

Oquab et al. 2022, appendix 6.1: "The base building block of our networks is the inverted
residual block introduced in [14] (MobileNetV2) ... All of them use the hourglass
architecture". The geometric helpers (coordinate grid, Gaussian heatmaps, sparse motions)
follow the First Order Model (Siarohin et al. 2019, sections 3.1-3.2).

Every op here must later convert to Core ML (docs/environment.md): no ``torch.inverse``
(2x2 inverses are written in closed form), no ``view_as``, tensors of rank <= 5, and only
4-D ``grid_sample``. Coordinates are (x, y) in [-1, 1] with -1 and 1 on the
outer edges of the first and last pixel, i.e. ``grid_sample(..., align_corners=False)``: the
tube convention of facecodec/sender/tube.py, so the tracker's landmarks need no conversion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALIGN_CORNERS = False
"""One convention everywhere: landmarks, keypoints, flows and ``grid_sample`` agree on it."""


class ConvBNReLU(nn.Sequential):
    """Conv -> BatchNorm -> ReLU6, the MobileNetV2 unit (ReLU6 converts to Core ML clip)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual (Sandler et al. 2018; Oquab et al. figure 13):
    1x1 expansion by ``expansion``, 3x3 depthwise (carrying the stride), linear 1x1
    projection; identity shortcut when the shape is kept. ``hidden`` overrides the
    expanded width (default ``cin * expansion``)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expansion: int = 4,
                 hidden: int | None = None):
        super().__init__()
        hidden = hidden or cin * expansion
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class UpBlock(nn.Module):
    """Nearest x2 upsampling then an inverted residual block (FOM's UpBlock2d, mobile).
    The expansion is taken on the output width: the input is a wide skip concatenation, and
    expanding it 4x at full resolution cost 5x the MACs of the whole rest of a network."""

    def __init__(self, cin: int, cout: int, expansion: int = 4):
        super().__init__()
        self.block = InvertedResidual(cin, cout, 1, expansion, hidden=cout * expansion)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Hourglass(nn.Module):
    """U-Net-like hourglass of inverted residual blocks (Oquab et al. figure 15; FOM
    ``Hourglass``): ``num_blocks`` stride-2 blocks doubling the width from ``base`` up to
    ``max_channels``, then as many upsampling blocks with skip concatenations.

    ``forward`` returns ``(features, bottleneck)``: full-resolution features with
    ``out_channels = base + in_channels`` (the last skip is the input itself, as in FOM) and
    the central feature, which the expression MLP reads (section 3.2.2).
    """

    def __init__(
        self, in_channels: int, base: int, max_channels: int, num_blocks: int, expansion: int = 4
    ):
        super().__init__()
        widths = [in_channels] + [min(max_channels, base * 2 ** (i + 1)) for i in range(num_blocks)]
        self.down = nn.ModuleList(
            InvertedResidual(widths[i], widths[i + 1], 2, expansion) for i in range(num_blocks)
        )
        up = []
        for i in reversed(range(num_blocks)):
            cin = widths[i + 1] * (1 if i == num_blocks - 1 else 2)
            cout = min(max_channels, base * 2**i)
            up.append(UpBlock(cin, cout, expansion))
        self.up = nn.ModuleList(up)
        self.out_channels = base + in_channels
        self.bottleneck_channels = widths[-1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        bottleneck = skips.pop()
        out = bottleneck
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out, bottleneck


class AntiAliasDownsample(nn.Module):
    """Gaussian blur then resampling by ``scale`` (FOM ``AntiAliasInterpolation2d``):
    band-limits the signal so that the keypoint detector and the loss pyramid do not alias.
    sigma = (1/scale - 1) / 2 as in FOM; a depthwise conv, which Core ML runs natively.
    Bilinear at the output pixel centres (FOM's nearest picks pixel 4i for output i, a
    1.5-pixel shift of the content against the coordinates at scale 1/4)."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.scale = scale
        sigma = (1.0 / scale - 1.0) / 2.0
        size = 2 * round(sigma * 4) + 1
        coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-(coords**2) / (2 * max(sigma, 1e-6) ** 2))
        kernel = g[:, None] * g[None, :]
        kernel = (kernel / kernel.sum()).reshape(1, 1, size, size).repeat(channels, 1, 1, 1)
        self.register_buffer("weight", kernel, persistent=False)
        self.pad = size // 2

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 1.0:
            return x
        h, w = x.shape[2], x.shape[3]
        out = F.conv2d(F.pad(x, (self.pad,) * 4, mode="replicate"), self.weight, groups=x.shape[1])
        return F.interpolate(out, size=(int(h * self.scale), int(w * self.scale)),
                             mode="bilinear", align_corners=ALIGN_CORNERS)


def make_coordinate_grid(h: int, w: int, like: Tensor | None = None) -> Tensor:
    """(h, w, 2) grid of the pixel centres (x, y): (2 i + 1) / w - 1, so -1 and 1 are the
    outer pixel edges (FOM util, in our align_corners=False convention)."""
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else None
    x = (torch.arange(w, dtype=dtype, device=device) * 2 + 1) / w - 1
    y = (torch.arange(h, dtype=dtype, device=device) * 2 + 1) / h - 1
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def keypoint_heatmaps(kp: Tensor, h: int, w: int, variance: float) -> Tensor:
    """Gaussians exp(-|z - p_k|^2 / (2 variance)) around keypoints (B, K, 2) -> (B, K, h, w)
    (FOM eq. 6 builds the difference of two of these). Flattened so ranks stay <= 4."""
    grid = make_coordinate_grid(h, w, kp).reshape(1, 1, h * w, 2)
    d2 = ((grid - kp.unsqueeze(2)) ** 2).sum(-1)
    return torch.exp(-0.5 * d2 / variance).reshape(kp.shape[0], kp.shape[1], h, w)


def spatial_softmax_keypoints(logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Heatmap logits (B, K, h, w) -> (keypoints (B, K, 2), probabilities (B, K, h, w)).

    Appendix 6.1: "We apply a spatial softmax to these heatmaps then compute the center of
    mass of the resulting maps" - so keypoints are convex combinations of grid points and
    stay inside [-1, 1].
    """
    b, k, h, w = logits.shape
    prob = F.softmax(logits.reshape(b, k, h * w) / temperature, dim=2)
    grid = make_coordinate_grid(h, w, logits).reshape(h * w, 2)
    return prob @ grid, prob.reshape(b, k, h, w)


def inverse_2x2(m: Tensor, eps: float = 1e-6) -> Tensor:
    """Closed-form inverse of (..., 2, 2) matrices ([[d, -b], [-c, a]] / det).

    ``torch.inverse`` does not convert to Core ML. The determinant is pushed away from zero
    with its sign kept, so a degenerate Jacobian early in training cannot produce inf."""
    a, b = m[..., 0, 0], m[..., 0, 1]
    c, d = m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    det = torch.where(det >= 0, det.clamp(min=eps), det.clamp(max=-eps))
    row0 = torch.stack([d, -b], dim=-1)
    row1 = torch.stack([-c, a], dim=-1)
    return torch.stack([row0, row1], dim=-2) / det[..., None, None]


def identity_jacobians(kp: Tensor) -> Tensor:
    """(B, K, 2) -> (B, K, 2, 2) identities: landmarks and the reference carry no Jacobian."""
    eye = torch.eye(2, dtype=kp.dtype, device=kp.device)
    return eye.reshape(1, 1, 2, 2).expand(kp.shape[0], kp.shape[1], 2, 2)


def sparse_motions(
    h: int, w: int, kp_src: Tensor, kp_dst: Tensor, jac_src: Tensor, jac_dst: Tensor
) -> Tensor:
    """Per-keypoint backward maps T_k(z) = p_src,k + J_src,k J_dst,k^-1 (z - p_dst,k)
    (FOM eq. 4: for a pixel z of the destination frame, where to read in the source),
    with the identity prepended for the background. Returns (B, K + 1, h * w, 2)."""
    b, k, _ = kp_src.shape
    grid = make_coordinate_grid(h, w, kp_src).reshape(1, 1, h * w, 2)
    rel = grid - kp_dst.unsqueeze(2)  # (B, K, HW, 2)
    m = jac_src @ inverse_2x2(jac_dst)  # (B, K, 2, 2)
    # row-vector form: (z - p) M^T, keeps every tensor at rank 4
    moved = rel @ m.transpose(-1, -2) + kp_src.unsqueeze(2)
    identity = grid.expand(b, 1, h * w, 2)
    return torch.cat([identity, moved], dim=1)


def deform_per_motion(features: Tensor, motions: Tensor) -> Tensor:
    """Warp (B, C, h, w) features by each of the (B, M, h*w, 2) motions -> (B, M * C, h, w)
    (FOM eq. 7, on features instead of the image). One 4-D grid_sample over B*M images."""
    b, c, h, w = features.shape
    m = motions.shape[1]
    rep = features.unsqueeze(1).expand(b, m, c, h, w).reshape(b * m, c, h, w)
    out = F.grid_sample(
        rep, motions.reshape(b * m, h, w, 2), mode="bilinear", padding_mode="zeros",
        align_corners=ALIGN_CORNERS,
    )
    return out.reshape(b, m * c, h, w)


def combine_motions(motions: Tensor, mask_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax the (B, M, h, w) mask logits over the M motions and blend the motions with
    them (FOM eq. 8): returns the dense backward flow (B, h, w, 2) and the masks."""
    b, m, h, w = mask_logits.shape
    mask = F.softmax(mask_logits, dim=1)
    flow = (motions * mask.reshape(b, m, h * w, 1)).sum(dim=1)
    return flow.reshape(b, h, w, 2), mask


PIXEL_WARPS = ("bilinear", "bicubic")
BICUBIC_TAPS = "bicubic_taps"
"""The bicubic warp as bilinear taps: what the Core ML export traces instead of "bicubic"
(facecodec/export/to_coreml.py), the same picture."""
BICUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic convolution coefficient


def warp(x: Tensor, flow: Tensor, padding_mode: str = "zeros", mode: str = "bilinear") -> Tensor:
    """``grid_sample`` x (B, C, H, W) at flow (B, H', W', 2) (normalised coordinates).

    ``mode="bicubic"`` keeps the detail of images that bilinear sampling at fractional
    positions low-passes (a half-pixel shift averages two pixels); it overshoots, so the
    result is clamped to [0, 1] (for images only). ``BICUBIC_TAPS``: the same from 9
    bilinear ``grid_sample`` taps, :func:`bicubic_by_bilinear_taps`, for Core ML, which
    has no bicubic ``resample``."""
    if mode == "bicubic":
        return F.grid_sample(x, flow, mode="bicubic", padding_mode=padding_mode,
                             align_corners=ALIGN_CORNERS).clamp(0.0, 1.0)
    if mode == BICUBIC_TAPS:
        return bicubic_by_bilinear_taps(x, flow, padding_mode).clamp(0.0, 1.0)
    return F.grid_sample(
        x, flow, mode="bilinear", padding_mode=padding_mode, align_corners=ALIGN_CORNERS
    )


def _cubic_taps(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Keys' cubic convolution weights of the pixels at -1, 0, 1, 2 from a fractional
    position ``t`` in [0, 1) (Keys 1981, a = BICUBIC_A; PyTorch's upsample kernel)."""
    a = BICUBIC_A

    def near(d: Tensor) -> Tensor:  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: Tensor) -> Tensor:  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def bicubic_by_bilinear_taps(x: Tensor, grid: Tensor, padding_mode: str = "zeros") -> Tensor:
    """``grid_sample(x, grid, mode="bicubic")`` from bilinear samples only (align_corners
    False). Per axis the 4 cubic weights of pixels i-1..i+2 are w0 <= 0, w1, w2 >= 0,
    w3 <= 0: one bilinear tap at i + w2 / (w1 + w2) carries w1 + w2 exactly, and the
    outer pixels are bilinear taps at whole positions; 3 x 3 taps in 2-D. The padding
    agrees too: a pixel outside reads the border pixel ("border") or 0 ("zeros") in both."""
    _, _, h, w = x.shape
    size = grid.new_tensor([w, h])
    pos = ((grid + 1) * size - 1) / 2  # pixel coordinates
    base = torch.floor(pos)
    t = pos - base
    w0, w1, w2, w3 = _cubic_taps(t)
    mid = w1 + w2
    offsets = (torch.full_like(t, -1.0), w2 / mid, torch.full_like(t, 2.0))
    weights = (w0, mid, w3)
    terms = []
    for j in range(3):  # y
        for i in range(3):  # x
            tap = torch.stack([base[..., 0] + offsets[i][..., 0],
                               base[..., 1] + offsets[j][..., 1]], dim=-1)
            sample = F.grid_sample(x, (2 * tap + 1) / size - 1, mode="bilinear",
                                   padding_mode=padding_mode, align_corners=False)
            terms.append(sample * (weights[i][..., 0] * weights[j][..., 1]).unsqueeze(1))
    return sum(terms[1:], terms[0])


def resize_flow(flow: Tensor, h: int, w: int) -> Tensor:
    """Resize a (B, h0, w0, 2) sampling grid to (B, h, w, 2). The displacement from the
    identity is resized (bilinear) and the identity of the new size added back, so the
    identity maps to the exact identity (resizing the grid itself would clamp its values
    within half a low-res pixel of the border)."""
    b, h0, w0, _ = flow.shape
    if h0 == h and w0 == w:
        return flow
    disp = (flow - make_coordinate_grid(h0, w0, flow).unsqueeze(0)).permute(0, 3, 1, 2)
    disp = F.interpolate(disp, size=(h, w), mode="bilinear", align_corners=ALIGN_CORNERS)
    return disp.permute(0, 2, 3, 1) + make_coordinate_grid(h, w, flow).unsqueeze(0)


def resize_image(x: Tensor, size: int) -> Tensor:
    """(B, C, H, W) -> (B, C, size, size), antialiased when shrinking: how frames of the
    display size reach the networks, in the sender, the receiver and training alike."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)


def log2_int(n: int, what: str) -> int:
    """log2 of a power of two, or a clear error (resolutions must be 2^k multiples)."""
    k = round(math.log2(n)) if n > 0 else -1
    if k < 0 or 2**k != n:
        raise ValueError(f"{what} must be a power of two, got {n}")
    return k
