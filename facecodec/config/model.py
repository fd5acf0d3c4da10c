"""The ``model`` section: which values a frame carries and the size of each network.

Each network's constructor takes its own sub-section (facecodec/models/): the receivers
pass the few values a network needs from elsewhere (the image and feature resolutions,
the keypoint count) as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from facecodec.config.typed import Section


@dataclass(frozen=True)
class LandmarksConfig(Section):
    """Which tracker landmarks (section 3.3, "Sup") every frame carries."""

    sup: bool = True
    """The 33 facial landmarks of the sender's tracker."""
    iris: bool = True
    """The 2 iris centres."""


@dataclass(frozen=True)
class KeypointDetectorConfig(Section):
    """The sender's network: unsupervised keypoints, their Jacobians and the expression
    code (facecodec/models/keypoint_detector.py)."""

    input_res: int = 64
    """Side the frame is band-limited and resampled to before the hourglass."""
    base: int = 16
    """Channels of the hourglass's first level; each level below doubles them."""
    max_channels: int = 128
    """Cap on the channels of any hourglass level."""
    num_blocks: int = 5
    """Stride-2 levels of the hourglass (and as many upsampling ones)."""
    expansion: int = 4
    """Expansion factor of the inverted residual blocks."""
    temperature: float = 0.1
    """Temperature of the spatial softmax over each keypoint's heatmap."""
    head_kernel: int = 3
    """Kernel side of the heatmap and Jacobian heads."""
    expr_hidden: int = 32
    """Hidden width of the expression MLP g (appendix 6.1.2)."""


@dataclass(frozen=True)
class EncoderConfig(Section):
    """Enc: a source frame -> its feature map (facecodec/models/encoder.py)."""

    base: int = 16
    """Channels after the stride-2 stem; each further stride doubles them."""
    max_channels: int = 64
    """Cap on the channels of any block."""
    out_channels: int = 32
    """Channels of the feature map the receiver warps and blends."""
    res_blocks: int = 2
    """Inverted residual blocks at the feature resolution."""
    expansion: int = 4
    """Expansion factor of the inverted residual blocks."""


@dataclass(frozen=True)
class MotionNetConfig(Section):
    """An hourglass that reads keypoint heatmaps and predicts motion: the Frontalizer
    (sources -> reference) and the dense motion network (reference -> driving frame)."""

    base: int = 32
    """Channels of the hourglass's first level; each level below doubles them."""
    max_channels: int = 128
    """Cap on the channels of any hourglass level."""
    num_blocks: int = 3
    """Stride-2 levels of the hourglass (and as many upsampling ones)."""
    expansion: int = 4
    """Expansion factor of the inverted residual blocks."""
    motion_feature_channels: int = 0
    """Feature channels, projected and deformed by each keypoint's motion, added to the
    heatmaps (FOM's input); 0: the heatmaps alone (the paper's mobile input)."""


@dataclass(frozen=True)
class DecoderConfig(Section):
    """Dec: warped features (+ the expression code, + the part maps) -> image, and the
    pixel blend (facecodec/models/decoder.py)."""

    max_channels: int = 64
    """Channels at the feature resolution; each upsampling halves them."""
    min_channels: int = 16
    """Floor of the channels of the upsampling blocks."""
    res_blocks: int = 2
    """Inverted residual blocks at the feature resolution."""
    expansion: int = 2
    """Expansion factor of the inverted residual blocks."""
    pixel_blend: bool = True
    """Also predict a mask that blends the warped source pixels with the decoder's RGB."""
    blend_bias: float = 2.0
    """Initial bias of that mask's logit (positive: the warped pixels are trusted first)."""
    pixel_warp: Literal["bilinear", "bicubic"] = "bilinear"
    """How the blend samples the source pixels."""
    part_maps: bool = False
    """Also draw the driving frame's eye and mouth openings from its supervised landmarks
    (facecodec/models/part_maps.py) and add them to the features after every upsampling
    block through convolutions that start at zero, so that weights trained without them
    render the same with them (issue 19: a warp of open-eyed sources never draws a closed
    lid, and the decoder did not see the lids)."""


@dataclass(frozen=True)
class DiscriminatorConfig(Section):
    """The multi-scale patch discriminator (training only, when ``losses.gan`` > 0)."""

    scales: tuple[float, ...] = (1.0,)
    """Image pyramid scales, one patch discriminator each."""
    base: int = 32
    """Channels of the first block; each block doubles them."""
    max_channels: int = 256
    """Cap on the channels of any block."""
    num_blocks: int = 4
    """Convolution blocks per discriminator."""


@dataclass(frozen=True)
class NthConfig(Section):
    """The few-shot talking-heads networks (Zakharov et al. 2019; family ``nth``,
    facecodec/models/nth_*.py): embedder, AdaIN generator, projection discriminator.
    Sized for this CPU: the paper's are ~10x wider, with self-attention."""

    embed_dim: int = 128
    """Size of the person embedding e^ (512 in the paper)."""
    base: int = 32
    """Channels of each network's first block; each stride-2 block doubles them."""
    max_channels: int = 128
    """Cap on the channels of any block."""
    down_blocks: int = 3
    """The generator's stride-2 blocks (its bottleneck is resolution / 2**down_blocks)."""
    res_blocks: int = 2
    """AdaIN residual blocks at the generator's bottleneck."""
    sketch_sigma: float = 1.0
    """Half-width of the sketch's lines, in pixels at the model's resolution."""


@dataclass(frozen=True)
class ModelConfig(Section):
    """The networks of a model variant and the values a frame carries between them."""

    feature_res: int = 32
    """Side of the feature maps and flows the receiver works at."""
    kp_variance: float = 0.01
    """Variance of the Gaussian drawn around each keypoint in the motion networks' input,
    in squared [-1, 1] units."""
    landmarks: LandmarksConfig = LandmarksConfig()
    """Which tracker landmarks a frame carries."""
    num_unsup: int = 10
    """Unsupervised keypoints the sender detects per frame (0: none)."""
    jacobians: bool = True
    """Whether each unsupervised keypoint carries a 2x2 Jacobian (its local affine motion)."""
    expr_dim: int = 16
    """Size of the expression code the sender sends per frame (0: none)."""
    unsup_init_std: float = 0.1
    """Spread of the reference's unsupervised keypoints at init: N(0, std^2) around the
    centre (section 3.3)."""
    keypoint_detector: KeypointDetectorConfig = KeypointDetectorConfig()
    """The sender's network."""
    encoder: EncoderConfig = EncoderConfig()
    """The receiver's source encoder."""
    frontalizer: MotionNetConfig = MotionNetConfig()
    """The Frontalizer (Frontalizer family only)."""
    dense_motion: MotionNetConfig = MotionNetConfig()
    """The dense motion network."""
    decoder: DecoderConfig = DecoderConfig()
    """The receiver's decoder."""
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    """The adversarial loss's discriminator."""
    nth: NthConfig = NthConfig()
    """The few-shot talking-heads networks (family ``nth`` only)."""
