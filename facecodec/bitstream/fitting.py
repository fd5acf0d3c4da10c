"""Fitting priors to value streams and measuring them on held-out streams.

The context model is judged against the paper's baseline (one static table per stream
class, ``levels=1``) on the same held-out clips, so what the contexts save is measured,
not assumed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import StreamTable
from facecodec.bitstream.values import coded_clip, load_values
from facecodec.defaults import FIT_INTRA_PERIOD
from facecodec.errors import InputError


def cache_clips(cache: str | Path) -> dict[str, list[Path]]:
    """Value files of a training-data cache (``prepare-data``), by split."""
    cache = Path(cache)
    try:
        index = json.loads((cache / "index.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{cache}: not a facecodec data cache ({e})") from None
    out: dict[str, list[Path]] = {}
    for clip in index["clips"]:
        out.setdefault(clip["split"], []).append(cache / clip["name"] / "meta.npz")
    return out


def load_coded(table: StreamTable, paths: Iterable[Path]) -> list[dict[str, np.ndarray]]:
    return [coded_clip(table, load_values(p, table)[1]) for p in paths]


def cross_entropy(prior: Prior, clips: list[dict[str, np.ndarray]], intra_period: int) -> dict:
    """Mean ideal bits per frame, per stream and in total, over all frames of ``clips``."""
    per: dict[str, list[np.ndarray]] = {}
    for clip in clips:
        for name, bits in prior.code_length(clip, intra_period).items():
            per.setdefault(name, []).append(bits)
    out = {name: float(np.concatenate(v).mean()) for name, v in per.items()}
    out["total"] = float(sum(out.values()))
    return out


def fit_and_evaluate(table: StreamTable, train: list[dict[str, np.ndarray]],
                     val: list[dict[str, np.ndarray]], name: str, context: int = 3,
                     intra_period: int = FIT_INTRA_PERIOD) -> tuple[Prior, dict]:
    """Fit the prior (linear prediction + contexts) and its ablations; report all on ``val``.

    Rows: the prior; prediction without contexts (``context=0``); plain deltas with one
    table per coordinate class; one static table per stream (every stream's ``period``
    set to 1; a point set keeps its mean x, mean y and offsets apart), the paper's single
    prior per value type, which the target (>= 20% saving) is measured against."""
    variants = {
        "prior": (table, dict(context=context, predict=True)),
        "prediction_only": (table, dict(context=0, predict=True)),
        "static_per_class": (table, dict(context=0, predict=False)),
        "static_per_stream": (StreamTable(tuple(replace(s, period=1) for s in table)),
                              dict(context=0, predict=False)),
    }
    priors = {k: Prior.fit(t, train, name if k == "prior" else f"{name}-{k}",
                           intra_period=intra_period, **kw) for k, (t, kw) in variants.items()}
    prior = priors["prior"]
    report = {
        "train_clips": len(train),
        "train_frames": int(sum(len(next(iter(c.values()))) for c in train)),
        "val_clips": len(val),
        "val_frames": int(sum(len(next(iter(c.values()))) for c in val)),
        "context": context,
        "intra_period": intra_period,
        "val_bits_per_frame": {k: cross_entropy(p, val, intra_period) for k, p in priors.items()}
        if val else {},
        "train_bits_per_frame": cross_entropy(prior, train, intra_period),
    }
    if val:
        v = report["val_bits_per_frame"]
        ours = v["prior"]["total"]
        report["saving_vs_static_per_class"] = 1 - ours / v["static_per_class"]["total"]
        report["saving_vs_static_per_stream"] = 1 - ours / v["static_per_stream"]["total"]
    prior.info = {**prior.info, **report}  # keeps which streams use prediction
    return prior, report
