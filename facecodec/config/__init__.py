"""Typed experiment configs (issue #21): one frozen dataclass per section, each default
written once, in its section, with a docstring saying what the field means.

:class:`Config` holds ``data``, ``model`` (a sub-section per network), ``losses``,
``optim``, ``training``, ``validation`` and ``inference`` (the receiver's). Files keep the
plain nested form: configs/*.yaml, a checkpoint's ``config`` and a model's
``config.yaml`` are read with ``Config.from_dict`` (strict: unknown keys and wrong types
are errors naming the key) and written with ``to_dict``. facecodec/training/config.py
reads the YAML files and the ``--set`` overrides.
"""

from facecodec.config.experiment import Config
from facecodec.config.inference import InferenceConfig
from facecodec.config.model import (
    DecoderConfig,
    DiscriminatorConfig,
    EncoderConfig,
    KeypointDetectorConfig,
    LandmarksConfig,
    ModelConfig,
    MotionNetConfig,
    NthConfig,
)
from facecodec.config.training import (
    AugmentConfig,
    DataConfig,
    LossesConfig,
    OptimConfig,
    PerceptualConfig,
    RegionsConfig,
    TrainingConfig,
    TransformConfig,
    ValidationConfig,
)
from facecodec.config.typed import ConfigError, Section, UnknownKeyError

__all__ = [
    "AugmentConfig", "Config", "ConfigError", "DataConfig", "DecoderConfig",
    "DiscriminatorConfig", "EncoderConfig", "InferenceConfig", "KeypointDetectorConfig",
    "LandmarksConfig", "LossesConfig", "ModelConfig", "MotionNetConfig", "NthConfig", "OptimConfig",
    "PerceptualConfig", "RegionsConfig", "Section", "TrainingConfig", "TransformConfig",
    "UnknownKeyError", "ValidationConfig",
]
