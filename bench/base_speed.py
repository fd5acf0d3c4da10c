"""Benchmark: the receiver's time a frame with and without a base layer (issue 20's target:
256x256 at >= 25 frames/s on one core).

    python bench/base_speed.py [--clip lia_vox_driving2] [--frames 90] [--repeats 3]
                               [--bases 256:63,128:52]

One val clip's tube (the training cache, as `facecodec eval` loads it) is encoded once
without and once with each base layer (`Encoder(base=...)`, the eval's path); then
`Decoder(...).frames` decodes each stream ``--repeats`` times on one thread, the default
receiver (the shipped model at 256, the touch-up on: fused frames skip it), and the
median milliseconds a frame over the repeats (the first frame, which loads nothing but
waits for the sources, left out) are reported, with the parts of a fused frame timed
apart: libdav1d decode + bicubic enlargement, and the fusion network. Writes
bench/results/base_speed.json (docs/BENCHMARKS.md via bench/report.py). Needs a free
machine to mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecodec.baselayer import BaseDecoder, parse_base  # noqa: E402
from facecodec.bitstream.container import BasePacket, FcsReader  # noqa: E402
from facecodec.codec import Decoder, Encoder  # noqa: E402
from facecodec.eval.clips import manifest_clips  # noqa: E402
from facecodec.eval.neural import write_stream  # noqa: E402
from facecodec.receiver.fusion import Fusion  # noqa: E402
from facecodec.sender.prepare import default_out  # noqa: E402


def per_frame_ms(data: bytes, repeats: int) -> float:
    """Median over repeats of the mean ms a frame of a full decode (frame 0 left out)."""
    runs = []
    for _ in range(repeats):
        dec = Decoder()
        stamps = []
        for _frame in dec.frames(data):
            stamps.append(time.perf_counter())
        runs.append(1000 * (stamps[-1] - stamps[0]) / (len(stamps) - 1))
    return statistics.median(runs)


def parts_ms(data: bytes, side: int, crf: int) -> dict[str, float]:
    """The base layer's own costs a frame: decode + enlarge, and the fusion network."""
    units = [e for e in FcsReader(data) if isinstance(e, BasePacket)]
    layer = BaseDecoder(side, 256)
    pictures = []
    t = time.perf_counter()
    for u in units:  # (as the Decoder does: a unit's picture taken before the next)
        layer.add(u)
        pictures.append(layer.take(u.frame))
    decode = 1000 * (time.perf_counter() - t) / len(units)
    fusion = Fusion(side, crf)
    anim = np.zeros((256, 256, 3), np.uint8)
    times = []
    for p in pictures[:30]:
        t = time.perf_counter()
        fusion(anim, p)
        times.append(1000 * (time.perf_counter() - t))
    return {"base_decode_ms": decode, "fusion_ms": statistics.median(times[3:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", default="lia_vox_driving2")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bases", default="256:63,128:52")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "base_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    refs = manifest_clips(ROOT.parent / "shared" / "data" / "manifest.csv", "val",
                          default_out(), names=[args.clip])
    clip = refs[0].load(args.frames)
    rows = []
    for spec in ["none", *args.bases.split(",")]:
        base = None if spec == "none" else parse_base(spec)
        stream = write_stream(Encoder(base=base), clip)
        row = {"base": spec, "ms_per_frame": round(per_frame_ms(stream.data, args.repeats), 1)}
        if base is not None:
            row.update({k: round(v, 1) for k, v in parts_ms(stream.data, *base).items()})
        row["fps"] = round(1000 / row["ms_per_frame"], 1)
        rows.append(row)
        print(row, flush=True)
    args.out.write_text(json.dumps({
        "benchmark": "base_speed",
        "command": "python bench/base_speed.py " + " ".join(sys.argv[1:]),
        "machine": platform.processor() or "cpu", "date": time.strftime("%Y-%m-%d"),
        "load_average": os.getloadavg()[0], "threads": 1, "clip": args.clip,
        "frames": len(clip.frames),
        "notes": ["Decoder.frames on one thread, the shipped model at 256 with the touch-up "
                  "on (fused frames skip it); median over repeats of the mean time a frame."],
        "results": rows}, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
