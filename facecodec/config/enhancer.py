"""The config of an enhancement-layer run (issue 20; facecodec/training/enhance.py): one
YAML file under configs/, stored in every checkpoint and exported with the weights."""

from __future__ import annotations

from dataclasses import dataclass

from facecodec.config.typed import Section


@dataclass(frozen=True)
class EnhancerNetConfig(Section):
    """The fusion network (facecodec/models/enhancer.py)."""

    width: int = 24
    """Channels at half the output side (the widest level)."""
    depth: int = 2
    """Inverted residual blocks at an eighth of the side."""
    expansion: int = 4
    """Their expansion."""


@dataclass(frozen=True)
class EnhancerDataConfig(Section):
    """What a training sample is."""

    root: str | None = None
    """The face-tube cache (the originals and the train/val split); null: as training."""
    cache: str | None = None
    """The enhancement cache (facecodec/training/enhance_data.py); null: its default."""
    crop: int = 128
    """Side of the random square crops trained on (a multiple of 16; the net is fully
    convolutional and runs on whole frames)."""
    batch: int = 8
    """Crops per step, each from a random clip, frame and base layer."""
    flip: bool = True
    """Mirror half the crops (all three pictures alike)."""


@dataclass(frozen=True)
class EnhancerLossConfig(Section):
    """out vs the original: ``l1 * |out - y| + lpips * LPIPS-alex(out, y)``."""

    l1: float = 1.0
    lpips: float = 1.0


@dataclass(frozen=True)
class EnhancerOptimConfig(Section):
    """Adam, the rate divided by 10 at each milestone."""

    lr: float = 1e-3
    milestones: tuple[int, ...] = (3000,)
    steps: int = 4000


@dataclass(frozen=True)
class EnhancerRunConfig(Section):
    """How the run is carried out."""

    checkpoint_minutes: float = 5.0
    """Most minutes between checkpoints (and one at every validation)."""
    validate_every: int = 250
    log_every: int = 25
    val_clips: int = 6
    """Val clips scored at each validation (whole frames, every layer)."""
    val_stride: int = 8
    """Every how many frames of them."""
    threads: int = 1


@dataclass(frozen=True)
class EnhancerConfig(Section):
    name: str = "enhancer"
    seed: int = 0
    net: EnhancerNetConfig = EnhancerNetConfig()
    data: EnhancerDataConfig = EnhancerDataConfig()
    losses: EnhancerLossConfig = EnhancerLossConfig()
    optim: EnhancerOptimConfig = EnhancerOptimConfig()
    run: EnhancerRunConfig = EnhancerRunConfig()
