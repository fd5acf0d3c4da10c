"""A model's per-frame value streams over the training cache (``prepare-data``): what the
sender would send for each clip, for fitting and measuring priors on real streams."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from facecodec.models.package import ModelPackage
from facecodec.sender.deadband import Deadband
from facecodec.sender.network import SenderNetwork

Values = dict[str, np.ndarray]


def cache_value_streams(package: ModelPackage, metas: Iterable[Path], batch: int = 64,
                        deadband: float = 0.0) -> list[Values]:
    """For each clip (its ``meta.npz`` in the cache): {stream: (T, count) float64}, the
    landmarks from the cache's tracks and the learned values from the model's sender
    network run on the cached face tubes, through the encoder's dead zone of strength
    ``deadband`` (:mod:`facecodec.sender.deadband`), as the encoder would send them."""
    return cache_value_streams_at(package, metas, [deadband], batch)[deadband]


def cache_value_streams_at(package: ModelPackage, metas: Iterable[Path],
                           strengths: Sequence[float], batch: int = 64
                           ) -> dict[float, list[Values]]:
    """:func:`cache_value_streams` at several dead-zone strengths, the sender network run
    once: {strength: per-clip streams}."""
    net = SenderNetwork(package)
    out: dict[float, list[Values]] = {s: [] for s in strengths}
    for meta in metas:
        z = np.load(meta)
        tubes = _tubes(meta.parent, package.resolution) if net.active else None
        values = clip_values(net, z, tubes, batch)
        for s in out:
            sent = Deadband(s).stream(values)
            out[s].append({k: v.astype(np.float64) for k, v in sent.items()})
    return out


def clip_values(net: SenderNetwork, meta: Mapping[str, np.ndarray],
                tubes: np.ndarray | None, batch: int = 64) -> Values:
    """One clip's per-frame values before the dead zone, {stream: (T, count)}: the
    tracker's landmarks and iris centres from its meta, the sender network's outputs on
    its face tubes (T, S, S, 3), run ``batch`` frames at a time (the network is per frame,
    so batching changes nothing but speed). ``tubes`` may be None when the network sends
    nothing."""
    t = len(meta["sup"])
    values: Values = {"sup": meta["sup"].reshape(t, -1), "iris": meta["iris"].reshape(t, -1)}
    if net.active:
        assert tubes is not None and len(tubes) == t
        parts = [net(np.asarray(tubes[i:i + batch])) for i in range(0, t, batch)]
        for k in parts[0]:
            values[k] = np.concatenate([p[k] for p in parts]).reshape(t, -1)
    return values


def _tubes(clip_dir: Path, res: int) -> np.ndarray:
    for r in (res, 256, 128):
        p = clip_dir / f"tube{r}.npy"
        if p.is_file():
            return np.load(p, mmap_mode="r")
    raise FileNotFoundError(f"{clip_dir}: no face-tube file")
