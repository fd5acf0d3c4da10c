"""Reading an experiment config: one YAML per experiment holding every hyper-parameter
(first-order-model style), plus ``facecodec train --set key.sub=VALUE`` overrides.

The sections, their types and defaults are facecodec/config (each field documented
there). A YAML or an override may only set keys that exist and with the field's type, so
a typo fails loudly instead of silently training something else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from facecodec.config import Config


def parse_override(item: str) -> dict:
    """"a.b.c=VALUE" (VALUE parsed as YAML) -> {"a": {"b": {"c": VALUE}}}."""
    if "=" not in item:
        raise ValueError(f"override '{item}' is not key=value")
    key, raw = item.split("=", 1)
    node: Any = yaml.safe_load(raw)
    for part in reversed(key.strip().split(".")):
        node = {part: node}
    return node


def with_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """``config`` with "key.sub=VALUE" items applied in order, each type-checked."""
    for item in overrides:
        config = Config.from_dict(_merged(config.to_dict(), parse_override(item)))
    return config


def _merged(base: dict, override: dict) -> dict:
    """``override`` over ``base``; a mapping over a section sets only the keys it names."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None, overrides: Iterable[str] | None = None) -> Config:
    """The YAML at ``path`` (None: the defaults) with ``overrides`` applied."""
    raw: object = {}
    if path is not None:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    return with_overrides(Config.from_dict(raw), overrides or [])


def data_root(cfg: Config) -> Path:
    return resolve_data_root(cfg.data.root)


def resolve_data_root(root: str | None) -> Path:
    """The face-tube cache: ``root``, else $FACECODEC_DATA, else ~/.cache/facecodec/data."""
    root = root or os.environ.get("FACECODEC_DATA") or "~/.cache/facecodec/data"
    return Path(root).expanduser()


def out_dir(cfg: Config) -> Path:
    return Path(cfg.training.out_dir or f"out/train/{cfg.name}")
