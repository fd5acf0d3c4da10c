"""Probes for issue 20 (more bits, better picture): the animation with an SVT-AV1 layer
added, against SVT-AV1 alone.

    python bench/enhancement_probe.py [--clips 2] [--kinds lowband,residual]
        [--sizes 64,96,128] [--crf 63,56,48] [--residual-sizes 128,256]

No training, no new format: the cheapest form of the Gemino / HDAC idea, to see whether
it is worth building. For each of the first ``--clips`` val clips (cached 15 fps tubes):

- ``anim``: the codec's default stream (``Encoder()``), decoded at 256;
- ``base``: the tube shrunk to each ``--sizes`` side (area), coded with SVT-AV1 (the eval's
  settings: preset 5, one intra frame) at each ``--crf``, decoded and enlarged (bicubic);
- ``fused`` (``--kinds lowband``): anim + base - (anim shrunk to the same side and
  enlarged back): the base layer's low band with the animation's high band (the sharp
  detail of the sources);
- ``residual`` (``--kinds residual``): the closed loop. The sender decodes what the
  receiver draws, so it can code what the receiver gets wrong: orig - anim + 128 (clipped
  to a byte), shrunk to each ``--residual-sizes`` side, coded with SVT-AV1 at each
  ``--crf``, and added back: anim + enlarge(decoded) - 128;
- ``av1_256``: SVT-AV1 alone at 256 px, 15 fps, at ``--crf256``: the reference a user
  compares with.

LPIPS-alex and PSNR against the original tube; all-in kbps (``fused`` and ``residual``:
the animation's all-in stream + the layer; ``steady_kbps``: its frame packets only + the
layer, what a long call would pay). Writes bench/results/enhancement_probe.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecodec.codec import Decoder, Encoder  # noqa: E402
from facecodec.eval.base import EVAL_FPS  # noqa: E402
from facecodec.eval.classic import CODECS, decode, encode  # noqa: E402
from facecodec.eval.clips import manifest_clips  # noqa: E402
from facecodec.eval.metrics import LPIPS, psnr  # noqa: E402
from facecodec.eval.neural import decode_stream, write_stream  # noqa: E402
from facecodec.sender.prepare import default_out  # noqa: E402

NOTE = ("Issue 20's probes (docs/enhancement.md): `anim` the codec's default stream; "
        "`base` SVT-AV1 at `size` px and `crf`, enlarged; `fused` anim with base's low band; "
        "`residual` anim + the SVT-AV1-coded (orig - anim) at `size` px and `crf` "
        "(`kbps` all-in with the sources, `steady_kbps` frame packets + the layer); "
        "`av1_256` SVT-AV1 alone at 256 px.")


def resized(frames: np.ndarray, side: int, interpolation: int) -> np.ndarray:
    return np.stack([cv2.resize(f, (side, side), interpolation=interpolation) for f in frames])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--kinds", default="lowband,residual",
                    help="layers to try: lowband, residual (comma-separated)")
    ap.add_argument("--sizes", default="64,96,128", help="sides of the low-band layer")
    ap.add_argument("--residual-sizes", default="128,256", help="sides of the residual")
    ap.add_argument("--crf", default="63,56,48")
    ap.add_argument("--crf256", default="63,58,52,45")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                    "enhancement_probe.json")
    args = ap.parse_args()
    kinds = set(args.kinds.split(","))
    crfs = [int(q) for q in args.crf.split(",")]
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    manifest = ROOT.parent / "shared" / "data" / "manifest.csv"
    refs = manifest_clips(manifest, "val", default_out(), limit=args.clips)
    lpips, av1 = LPIPS(), CODECS["svtav1"]
    rows: list[dict] = []
    started = time.time()
    for ref in refs:
        clip = ref.load()
        orig = clip.frames
        seconds = len(orig) / EVAL_FPS

        def score(frames: np.ndarray, orig: np.ndarray = orig) -> dict[str, float]:
            return {"lpips": float(np.mean(lpips(frames, orig))),
                    "psnr": float(np.mean([psnr(a, b)
                                           for a, b in zip(frames, orig, strict=True)]))}

        stream = write_stream(Encoder(), clip)
        anim, _ = decode_stream(Decoder(), stream, clip, "facecodec")
        anim_kbps = 8 * len(stream.data) / seconds / 1000
        steady_kbps = float(stream.frame_bits.sum()) / seconds / 1000
        rows.append({"clip": ref.name, "kind": "anim", "kbps": anim_kbps,
                     "steady_kbps": steady_kbps, **score(anim)})
        print(rows[-1], flush=True)
        for side in (int(s) for s in args.sizes.split(",")) if "lowband" in kinds else ():
            small = resized(orig, side, cv2.INTER_AREA)
            anim_low = resized(resized(anim, side, cv2.INTER_AREA), 256, cv2.INTER_CUBIC)
            for crf in crfs:
                trial = encode(av1, small, crf)
                base = resized(decode(av1, trial.payloads)[0], 256, cv2.INTER_CUBIC)
                fused = np.clip(anim.astype(np.float32) + base - anim_low, 0, 255
                                ).astype(np.uint8)
                kbps = trial.kbps(EVAL_FPS)
                common = {"clip": ref.name, "size": side, "crf": crf, "base_kbps": kbps}
                rows.append({**common, "kind": "base", "kbps": kbps, **score(base)})
                rows.append({**common, "kind": "fused", "kbps": anim_kbps + kbps,
                             "steady_kbps": steady_kbps + kbps, **score(fused)})
                print(rows[-2], "\n", rows[-1], flush=True)
        error = orig.astype(np.float32) - anim
        sides = [int(s) for s in args.residual_sizes.split(",")] if "residual" in kinds else []
        for side in sides:
            small = np.clip(resized(error, side, cv2.INTER_AREA) + 128, 0, 255).astype(np.uint8)
            for crf in crfs:
                trial = encode(av1, small, crf)
                layer = resized(decode(av1, trial.payloads)[0].astype(np.float32) - 128, 256,
                                cv2.INTER_CUBIC)
                fixed = np.clip(anim + layer, 0, 255).astype(np.uint8)
                kbps = trial.kbps(EVAL_FPS)
                rows.append({"clip": ref.name, "kind": "residual", "size": side, "crf": crf,
                             "layer_kbps": kbps, "kbps": anim_kbps + kbps,
                             "steady_kbps": steady_kbps + kbps, **score(fixed)})
                print(rows[-1], flush=True)
        for crf in (int(q) for q in args.crf256.split(",")):
            trial = encode(av1, orig, crf)
            rows.append({"clip": ref.name, "kind": "av1_256", "crf": crf,
                         "kbps": trial.kbps(EVAL_FPS),
                         **score(decode(av1, trial.payloads)[0])})
            print(rows[-1], flush=True)
        args.out.write_text(json.dumps({
            "benchmark": "enhancement_probe",
            "command": "python bench/enhancement_probe.py " + " ".join(sys.argv[1:]),
            "machine": platform.processor() or "cpu", "date": time.strftime("%Y-%m-%d"),
            "threads": 1, "seconds": round(time.time() - started, 1),
            "notes": [NOTE], "results": rows}, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
