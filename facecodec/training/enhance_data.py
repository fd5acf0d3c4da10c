"""Training data of the enhancement layer (issue 20, docs/enhancement.md): per clip, what
the receiver draws from the keypoint stream and what an SVT-AV1 base layer of the same
clip decodes to.

For each cached clip (the 15 fps face tubes of ``prepare-data``):

- ``anim.npy`` (T, 256, 256, 3) uint8: the frames the receiver draws from the codec's
  default stream (``Encoder()``, written and decoded as ``facecodec eval`` does; the
  touch-up off: with a base layer the eyes and lips come from the base);
- ``base_<side>_<crf>.npy`` (T, side, side, 3) uint8: the tube shrunk to ``side`` (area),
  coded with SVT-AV1 at ``crf`` (the eval's settings) and decoded, at its own size;
- ``info.json``: the stream's rates (all-in, and steady: frame packets only) and each base
  layer's (all-in, and steady: without its intra frame).

The original is the clip's own tube in the training cache; nothing here is committed.
A clip already built with the same settings is skipped, so a stopped build resumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facecodec.codec import Decoder, Encoder
from facecodec.eval.base import EVAL_FPS
from facecodec.eval.classic import CODECS, decode, encode
from facecodec.eval.clips import ClipRef
from facecodec.eval.neural import decode_stream, write_stream

# (side, crf) of the base layers built by default: from ~3 to ~25 kbps on a 9-s val clip
# (all-in, its intra frame included), the rates the layer has to cover between 8 and 30
# kbps all-in with the keypoint stream's 3-5 kbps beside it.
DEFAULT_LAYERS: tuple[tuple[int, int], ...] = (
    (64, 58), (96, 58), (128, 63), (128, 52), (256, 63), (256, 56), (256, 48))


def default_cache() -> Path:
    return Path.home() / ".cache" / "facecodec" / "enhance"


def layer_name(side: int, crf: int) -> str:
    return f"base_{side}_{crf}"


def shrink(frames: np.ndarray, side: int) -> np.ndarray:
    if frames.shape[1] == side:
        return frames
    return np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA)
                     for f in frames])


@dataclass
class BuildRequest:
    refs: Sequence[ClipRef]
    out: Path
    layers: Sequence[tuple[int, int]] = DEFAULT_LAYERS
    max_frames: int | None = 96
    model: str | None = None


def build(req: BuildRequest, say: Callable[[str], None] = print) -> list[Path]:
    """Build (or complete) the cache for ``req.refs``; returns the clip folders."""
    av1 = CODECS["svtav1"]
    folders = []
    for k, ref in enumerate(req.refs):
        folder = req.out / ref.name
        folders.append(folder)
        info_path = folder / "info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        wanted = [layer_name(s, q) for s, q in req.layers]
        done = info.get("layers", {})
        if info.get("max_frames") == req.max_frames and all(
                "steady_kbps" in done.get(w, {}) for w in wanted):
            continue
        clip = ref.load(req.max_frames)
        folder.mkdir(parents=True, exist_ok=True)
        seconds = len(clip.frames) / EVAL_FPS
        if ("layers" not in info or info.get("max_frames") != req.max_frames
                or not (folder / "anim.npy").is_file()):
            stream = write_stream(Encoder(req.model), clip)
            anim, _ = decode_stream(Decoder(req.model, retouch=False), stream, clip,
                                    "facecodec")
            np.save(folder / "anim.npy", anim)
            info = {"max_frames": req.max_frames, "frames": len(clip.frames),
                    "anim_steady_kbps": float(stream.frame_bits.sum()) / seconds / 1000,
                    "anim_kbps": 8 * len(stream.data) / seconds / 1000, "layers": {}}
        for side, crf in req.layers:
            name = layer_name(side, crf)
            if "steady_kbps" in info["layers"].get(name, {}):
                continue
            trial = encode(av1, shrink(clip.frames, side), crf)
            np.save(folder / f"{name}.npy", decode(av1, trial.payloads)[0])
            info["layers"][name] = {
                "side": side, "crf": crf, "kbps": trial.kbps(EVAL_FPS),
                # without the intra frame: what a long call pays
                "steady_kbps": float(trial.frame_bits[1:].sum()) / seconds / 1000}
        info_path.write_text(json.dumps(info, indent=1))
        say(f"[{k + 1}/{len(req.refs)}] {ref.name}: {info['frames']} frames, "
            f"anim {info['anim_steady_kbps']:.1f} kbps steady, layers "
            + ", ".join(f"{n[5:]} {v['kbps']:.1f}" for n, v in info["layers"].items()))
    return folders
