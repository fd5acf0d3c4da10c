"""Model families by name, building from a config, and loading exported models.

An exported model directory ``models/<name>/`` holds ``sender.safetensors``,
``receiver.safetensors``, ``config.yaml`` and ``MODEL_CARD.md`` (written by
facecodec/training/export.py). The sender device loads only the sender weights, the
receiver only the receiver's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from safetensors.torch import load_file
from torch import Tensor, nn

from facecodec.config import Config
from facecodec.errors import InputError, ModelMismatchError
from facecodec.models.animation import FomModel, FrontalizerModel
from facecodec.models.base import FaceAnimationModel
from facecodec.models.decoder import PART_CONVS
from facecodec.models.nth import NthModel
from facecodec.models.package import stored_config

FAMILIES: dict[str, type[FaceAnimationModel]] = {}


def register(cls: type[FaceAnimationModel]) -> type[FaceAnimationModel]:
    """Class decorator/function: make a family buildable by name from a config."""
    FAMILIES[cls.family] = cls
    return cls


register(FomModel)
register(FrontalizerModel)
register(NthModel)


def build_model(cfg: Config, reference_init: Tensor | None = None) -> FaceAnimationModel:
    """The family's networks from the ``model`` section, at ``data.resolution``."""
    try:
        cls = FAMILIES[cfg.family]
    except KeyError:
        known = sorted(FAMILIES)
        raise ValueError(f"unknown model family '{cfg.family}'; known: {known}") from None
    return cls(cfg.model, cfg.data.resolution, reference_init)


def read_config(path: str | Path) -> dict:
    """A model directory's ``config.yaml`` as stored (a plain dict)."""
    with open(Path(path) / "config.yaml") as f:
        return yaml.safe_load(f)


def load_model(path: str | Path, parts: tuple[str, ...] = ("sender", "receiver")
               ) -> FaceAnimationModel:
    """An exported model in eval mode. ``parts`` limits which weight files are read (the
    other part keeps its random init: use only the part you loaded)."""
    path = Path(path)
    model = build_model(stored_config(read_config(path), str(path)))
    for part in parts:
        module = getattr(model, part)
        state = load_file(str(path / f"{part}.safetensors"))
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelMismatchError(
                f"{path / part}.safetensors does not fit its config.yaml "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})", source=str(path))
    return model.eval()


def is_part_map_key(name: str) -> bool:
    """Whether a parameter (state) name belongs to the decoder's part-map convolutions
    (``model.decoder.part_maps``), the layers a model trained without them lacks."""
    return f".{PART_CONVS}." in f".{name}"


def load_adding_part_maps(module: nn.Module, state: Mapping[str, Tensor], source: str
                          ) -> list[str]:
    """``state`` into ``module``, strictly except for one thing: weights saved without the
    part maps load into a model with them, whose part-map convolutions keep their zero
    init, so that it renders what the weights rendered (a fine-tune from the shipped
    model). Returns those keys (sorted); any other missing key, or any unexpected one, is
    an :class:`InputError` naming ``source``."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    others = [k for k in missing if not is_part_map_key(k)]
    if others or unexpected:
        raise InputError(f"{source}: its weights do not fit the config (missing "
                         f"{others[:3]}, unexpected {list(unexpected)[:3]}; only the "
                         f"part maps' layers may be missing)")
    return sorted(missing)
