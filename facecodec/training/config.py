"""Experiment configuration: one YAML per experiment holding every hyper-parameter
(first-order-model style). ``DEFAULTS`` documents each key; a YAML may only set keys that
exist here, so a typo fails loudly instead of silently training something else.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from facecodec.models.package import POSE_SMOOTHING, POSE_TEMPERATURE

DEFAULTS: dict[str, Any] = {
    "name": "unnamed",
    "family": "frontalizer",  # key of facecodec.models.registry.FAMILIES
    "seed": 0,
    "data": {
        "root": None,  # None -> $FACECODEC_DATA or ~/.cache/facecodec/data
        "resolution": 128,  # 128 and 256 read the tubes directly, others resize tube256/128
        # None: the networks' resolution. Larger (Frontalizer with the pixel blend): train as
        # the receiver renders, the networks at `resolution` and the blend with the source
        # pixels at this size, scored against the drivers at this size (docs/training.md)
        "output_resolution": None,
        "strategy": "rotation4",  # "rotation4" (section 3.3) or "random" (FOM pairs)
        "num_sources": 2,  # A, C
        "num_drivers": 2,  # B1, B2
        "min_rotation": 0.3,  # yaw_A - yaw_C > 0.3 rad
        "b2_tolerance": 0.1,  # |yaw_A - yaw_B2| < 0.1 rad
        "by_person": True,  # draw a person uniformly, then one of their clips
        # share of samples whose last driver is a frame whose expression the sources lack
        # (blink, open mouth, smile: data.pick_expressive); 0 samples as before it existed
        "expression_drivers": 0.0,
        "augment": {"flip": True, "brightness": 0.1, "contrast": 0.1, "saturation": 0.1,
                    "hue": 0.02},
        "num_workers": 1,
    },
    "model": {
        "feature_res": 32,
        "kp_variance": 0.01,
        "landmarks": {"sup": True, "iris": True},
        "num_unsup": 10,
        "jacobians": True,
        "expr_dim": 16,
        "unsup_init_std": 0.1,  # p_r of unsupervised keypoints: N(0, std^2), "near the centre"
        "keypoint_detector": {"input_res": 64, "base": 16, "max_channels": 128, "num_blocks": 5,
                              "expansion": 4, "temperature": 0.1, "head_kernel": 3,
                              "expr_hidden": 32},
        "encoder": {"base": 16, "max_channels": 64, "out_channels": 32, "res_blocks": 2,
                    "expansion": 4},
        "frontalizer": {"base": 32, "max_channels": 128, "num_blocks": 3, "expansion": 4,
                        "motion_feature_channels": 0},
        "dense_motion": {"base": 32, "max_channels": 128, "num_blocks": 3, "expansion": 4,
                         "motion_feature_channels": 0},
        "decoder": {"max_channels": 64, "min_channels": 16, "res_blocks": 2, "expansion": 2,
                    "pixel_blend": True, "blend_bias": 2.0,
                    "pixel_warp": "bilinear"},  # or "bicubic": how the blend samples sources
        "discriminator": {"scales": [1], "base": 32, "max_channels": 256, "num_blocks": 4},
    },
    "losses": {
        "perceptual": {"network": "vgg16", "scales": [1, 0.5, 0.25, 0.125],
                       "weights": [10, 10, 10, 10, 10]},
        "l1": 1.0,
        # the same perceptual (x its layer weights) and L1 terms again on crops of the eyes
        # and the mouth, boxes from the driver's landmarks (losses.region_boxes): a blink
        # is a few hundred pixels, too few for the whole-image terms to notice (issue 19)
        "regions": {"perceptual": 0.0, "l1": 0.0, "eye_box": 1.6, "mouth_box": 1.5,
                    "size": 64},
        "gan": 0.0,  # hinge; 0 builds no discriminator
        "feature_matching": [10, 10, 10, 10],
        "equivariance_value": 10.0,
        "equivariance_jacobian": 10.0,
        "transform": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
    },
    "optim": {
        "batch_size": 8,
        "max_steps": 100000,
        "lr_generator": 2.0e-4,
        "lr_discriminator": 2.0e-4,
        "betas": [0.5, 0.99],
        "milestones": [60000, 90000],
        "gamma": 0.1,
    },
    "training": {
        "out_dir": None,  # None -> out/train/<name>
        "threads": 1,
        "channels_last": False,
        "checkpoint_minutes": 5.0,
        "log_every": 10,
        "progress": True,
        "find_unused_parameters": False,
    },
    "validation": {"every": 1000, "num_samples": 16, "batch_size": 8, "lpips": True,
                   "save_images": True},
    # the receiver's, not training's: exported with the model (models/package.py,
    # ReceiverSettings, read by facecodec/receiver/mixing.py)
    "inference": {"pose_temperature": POSE_TEMPERATURE, "pose_smoothing": POSE_SMOOTHING},
}


def deep_merge(base: dict, override: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in base:
            raise KeyError(f"unknown config key '{where}'")
        if isinstance(base[key], dict) and base[key] and isinstance(value, dict):
            out[key] = deep_merge(base[key], value, where + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> dict:
    """"a.b.c=VALUE" (VALUE parsed as YAML) -> {"a": {"b": {"c": VALUE}}}."""
    if "=" not in item:
        raise ValueError(f"override '{item}' is not key=value")
    key, raw = item.split("=", 1)
    node: Any = yaml.safe_load(raw)
    for part in reversed(key.strip().split(".")):
        node = {part: node}
    return node


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        with open(path) as f:
            cfg = deep_merge(cfg, yaml.safe_load(f) or {})
    for item in overrides or []:
        cfg = deep_merge(cfg, parse_override(item))
    return cfg


def data_root(cfg: dict) -> Path:
    root = cfg["data"]["root"] or os.environ.get("FACECODEC_DATA") or "~/.cache/facecodec/data"
    return Path(root).expanduser()


def out_dir(cfg: dict) -> Path:
    return Path(cfg["training"]["out_dir"] or f"out/train/{cfg['name']}")
