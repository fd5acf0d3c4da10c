"""The sections only training reads: ``data``, ``losses``, ``optim``, ``training`` and
``validation`` (facecodec/training/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from facecodec.config.typed import Section


@dataclass(frozen=True)
class AugmentConfig(Section):
    """Random changes of a training sample, the same for all its frames."""

    flip: bool = True
    """Mirror half of the samples left-right (landmarks re-indexed, training/mirror.py)."""
    brightness: float = 0.1
    """Brightness factor drawn in [1 - b, 1 + b]."""
    contrast: float = 0.1
    """Contrast factor drawn in [1 - c, 1 + c]."""
    saturation: float = 0.1
    """Saturation factor drawn in [1 - s, 1 + s]."""
    hue: float = 0.02
    """Hue rotation drawn in [-h, h] turns."""
    crop: float = 0.0
    """Each frame on its own (unlike the changes above): a square of side drawn in
    [1 - crop, 1] of the tube at a random place in it, enlarged back to the tube's size,
    its landmarks with it (``data.crop_frame``). The head then moves and scales between a
    sample's frames as it does in a call's fixed tube when the person leans or sits up
    (the call clip: over ~37 % of the tube's height, docs/sender.md); 0: off, and the
    samples are those of a config without it."""


@dataclass(frozen=True)
class DataConfig(Section):
    """What a training sample is (facecodec/training/data.py)."""

    root: str | None = None
    """The face-tube cache; null: $FACECODEC_DATA or ~/.cache/facecodec/data."""
    resolution: int = 128
    """Side of the frames the networks take (128 and 256 read the tubes directly, other
    sizes resize them)."""
    output_resolution: int | None = None
    """Side the receiver's pixel blend renders at and the losses compare at (larger than
    ``resolution`` only with the pixel blend, docs/training.md); null: ``resolution``."""
    strategy: Literal["rotation4", "random"] = "rotation4"
    """How frames are picked: "rotation4" (section 3.3: sources A, C and drivers B1, B2
    by head rotation) or "random" (FOM's random pairs of one clip)."""
    num_sources: int = 2
    """Source frames per sample."""
    num_drivers: int = 2
    """Driving frames per sample."""
    min_rotation: float = 0.3
    """rotation4: least yaw between the sources A and C, in radians."""
    b2_tolerance: float = 0.1
    """rotation4: most yaw between A and the driver B2, in radians."""
    by_person: bool = True
    """Draw a person uniformly, then one of their clips (else a clip uniformly)."""
    expression_drivers: float = 0.0
    """Share of samples whose last driver shows an expression the sources lack (blink,
    open mouth, smile: data.pick_expressive); 0 samples as if the option did not exist."""
    augment: AugmentConfig = AugmentConfig()
    """Random changes of the training samples (not of the validation samples)."""
    num_workers: int = 1
    """Data-loader worker processes (0: load in the training process)."""


@dataclass(frozen=True)
class PerceptualConfig(Section):
    """The multi-scale perceptual loss (FOM eq. 10)."""

    network: str = "vgg16"
    """Feature network: "vgg16" (ImageNet weights) or "random_tiny" (tests)."""
    scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    """Image pyramid scales the loss compares at."""
    weights: tuple[float, ...] = (10.0, 10.0, 10.0, 10.0, 10.0)
    """Weight of each feature layer (relu1_2 ... relu5_3); layers after the last non-zero
    weight are not computed."""


@dataclass(frozen=True)
class RegionsConfig(Section):
    """The perceptual and L1 terms again on crops of the eyes and the mouth, boxes from the
    driver's landmarks (losses.region_boxes): a blink is too few pixels for the
    whole-image terms to notice (issue 19)."""

    perceptual: float = 0.0
    """Weight of the perceptual term on the crops (times the layer weights)."""
    l1: float = 0.0
    """Weight of the L1 term on the crops."""
    rgb_l1: float = 0.0
    """Weight of an L1 term on the same crops of the decoder's own drawing, before the
    pixel blend. The blend mask gives ~96 % of each eye pixel to the warped sources, so
    the terms above reach the decoder's RGB at ~4 % strength; it never learns to draw a
    lid the sources do not show (its eye crops: L1 0.10 against the warp's 0.04,
    docs/training.md), and the mask never has a better drawing to hand the eye to."""
    new_mask: float = 0.0
    """Weight of a term on the blend mask (the warp's share of each pixel) over the
    region of each eye or mouth that the driver shows as no source does: eyes less than
    half as open as in every source, a mouth more than twice as open as in every source
    (plus 0.05 of its width) or less than half: there the warp can only show the
    sources' lids and lips, so the decoder's drawing must be shown instead. The term is
    the mask's mean over those regions (``models.part_maps`` regions), so it pulls the
    mask to 0 there and nowhere else (``objective.new_parts_mask``)."""
    eye_box: float = 1.6
    """Side of an eye's box, in eye widths."""
    mouth_box: float = 1.5
    """Side of the mouth's box, in mouth widths."""
    size: int = 64
    """Side the crops are resampled to."""


@dataclass(frozen=True)
class TransformConfig(Section):
    """The random warp of the equivariance loss (FOM section 3.3)."""

    sigma_affine: float = 0.05
    """Standard deviation of the affine part's deviation from the identity."""
    sigma_tps: float = 0.005
    """Standard deviation of the thin-plate-spline weights."""
    points_tps: int = 5
    """Control points per side of the thin-plate-spline grid."""


@dataclass(frozen=True)
class LossesConfig(Section):
    """The generator's objective (facecodec/training/objective.py) and the adversarial
    terms (facecodec/training/trainer.py)."""

    perceptual: PerceptualConfig = PerceptualConfig()
    """The multi-scale perceptual loss."""
    l1: float = 1.0
    """Weight of the mean absolute pixel error."""
    regions: RegionsConfig = RegionsConfig()
    """The eye and mouth crop terms."""
    gan: float = 0.0
    """Weight of the hinge adversarial loss; 0 builds no discriminator."""
    feature_matching: tuple[float, ...] = (10.0, 10.0, 10.0, 10.0)
    """Weight of each discriminator layer in the feature-matching loss (with ``gan``)."""
    match: float = 0.0
    """Weight of the embedding-matching loss (Zakharov et al. eq. 5: the mean |W_i - e^_i|
    between the projection discriminator's row of the video and the embedder's vector;
    family ``nth`` with ``gan``)."""
    equivariance_value: float = 10.0
    """Weight of the keypoints' equivariance under a random warp."""
    equivariance_jacobian: float = 10.0
    """Weight of the Jacobians' equivariance under that warp."""
    transform: TransformConfig = TransformConfig()
    """The random warp of the equivariance terms."""


@dataclass(frozen=True)
class OptimConfig(Section):
    """Adam and its step schedule (facecodec/training/trainer.py)."""

    batch_size: int = 8
    """Samples per step and process."""
    max_steps: int = 100000
    """Step the run stops at (``train --max-steps`` overrides it)."""
    lr_generator: float = 2.0e-4
    """Learning rate of the sender and receiver networks."""
    lr_new: float = 1.0
    """Factor on ``lr_generator`` for the decoder's part-map convolutions
    (``model.decoder.part_maps``): layers a fine-tune adds at zero, with everything to
    learn, next to trained ones that should move little."""
    lr_discriminator: float = 2.0e-4
    """Learning rate of the discriminator."""
    betas: tuple[float, float] = (0.5, 0.99)
    """Adam's moment decay rates."""
    milestones: tuple[int, ...] = (60000, 90000)
    """Steps after which the learning rates are multiplied by ``gamma``; a resumed run
    follows the config's, wherever the checkpoint had them."""
    gamma: float = 0.1
    """Factor of the learning rates at each milestone."""


@dataclass(frozen=True)
class TrainingConfig(Section):
    """How the run is carried out; none of it changes what is learned."""

    out_dir: str | None = None
    """Run directory; null: out/train/<name> (``train --out`` overrides it)."""
    threads: int = 1
    """Torch threads per process."""
    channels_last: bool = False
    """Keep the networks' weights in NHWC memory layout."""
    checkpoint_minutes: float = 5.0
    """Minutes between periodic checkpoints."""
    log_every: int = 10
    """Steps per ``train`` record of log.jsonl (means over those steps)."""
    progress: bool = True
    """Show a progress bar."""
    find_unused_parameters: bool = False
    """DDP's option of the same name (a parameter no loss reaches fails the run without it)."""


@dataclass(frozen=True)
class ValidationConfig(Section):
    """The periodic validation on fixed val samples (facecodec/training/validation.py)."""

    every: int = 1000
    """Steps between validations (and the last step)."""
    num_samples: int = 16
    """Fixed val samples per set."""
    batch_size: int = 8
    """Samples per validation batch."""
    lpips: bool = True
    """Score LPIPS-alex (downloads the AlexNet weights once)."""
    save_images: bool = True
    """Write a grid of sources, drivers and reconstructions per validation."""
