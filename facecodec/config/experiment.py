"""The whole config of an experiment: what a model is, how it is trained and how the
receiver draws with it. One YAML file (configs/), stored as a dict in every checkpoint and
as ``config.yaml`` in every exported model."""

from __future__ import annotations

from dataclasses import dataclass

from facecodec.config.inference import InferenceConfig
from facecodec.config.model import ModelConfig
from facecodec.config.training import (
    DataConfig,
    LossesConfig,
    OptimConfig,
    TrainingConfig,
    ValidationConfig,
)
from facecodec.config.typed import Section


@dataclass(frozen=True)
class Config(Section):
    """An experiment; :meth:`from_dict` reads the stored form, :meth:`to_dict` writes it."""

    name: str = "unnamed"
    """The run's and the exported model's name (a stream header carries it as the model
    id)."""
    family: str = "frontalizer"
    """Model family, a key of facecodec.models.registry.FAMILIES."""
    seed: int = 0
    """Seed of the initial weights and of every training sample."""
    data: DataConfig = DataConfig()
    """What a training sample is."""
    model: ModelConfig = ModelConfig()
    """The networks and the values a frame carries."""
    losses: LossesConfig = LossesConfig()
    """The training objective."""
    optim: OptimConfig = OptimConfig()
    """The optimiser and its schedule."""
    training: TrainingConfig = TrainingConfig()
    """How the run is carried out."""
    validation: ValidationConfig = ValidationConfig()
    """The periodic validation."""
    inference: InferenceConfig = InferenceConfig()
    """The receiver's settings, exported with the model (training does not read them)."""
