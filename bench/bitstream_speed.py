"""Benchmark: value-stream coding speed (frames/s), encode and decode, per stream table.

    python bench/bitstream_speed.py [--frames 600] [--repeats 5]

Writes bench/results/bitstream_speed.json and prints a Markdown table. Uses a fitted
prior from priors/ when one exists for the table, else the untrained prior (says which).
Values are a smooth random walk (the coder's speed does not depend on where they came from).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bitstream_helpers import random_walk  # noqa: E402

from facecodec.bitstream.container import DecodedFrame, FcsReader, FcsWriter, Header  # noqa: E402
from facecodec.bitstream.prior import Prior, prior_dirs  # noqa: E402
from facecodec.bitstream.streams import TABLES  # noqa: E402


def prior_for(name: str) -> tuple[Prior, str]:
    for d in prior_dirs():
        if (d / f"{name}.json").is_file():
            return Prior.load(d / f"{name}.json"), "fitted"
    return Prior.untrained(TABLES[name]), "untrained"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for name in ("landmarks", "fom", "sup_unsup_expr"):
        table = TABLES[name]
        prior, kind = prior_for(name)
        frames = random_walk(table, args.frames, seed=0, step=0.002)
        coded = [table.quantize(f) for f in frames]
        enc_t, dec_t = [], []
        for _ in range(args.repeats):
            buf = io.BytesIO()
            t0 = time.perf_counter()
            w = FcsWriter(buf, Header(table, prior.id, Fraction(15)), prior)
            for c in coded:
                w.add_coded(c)
            w.close()
            enc_t.append(time.perf_counter() - t0)
            data = buf.getvalue()
            t0 = time.perf_counter()
            n = sum(isinstance(e, DecodedFrame) for e in FcsReader(data, prior=prior))
            dec_t.append(time.perf_counter() - t0)
            assert n == len(coded)
        rows.append({
            "table": name, "prior": kind, "frames": len(coded),
            "coded_values_per_frame": sum(s.n_coded for s in table),
            "encode_fps_median": len(coded) / float(np.median(enc_t)),
            "decode_fps_median": len(coded) / float(np.median(dec_t)),
            "bits_per_frame_random_walk": 8 * len(data) / len(coded),
        })
    out = {"benchmark": "bitstream_speed", "repeats": args.repeats,
           "command": f"python bench/bitstream_speed.py --frames {args.frames} "
                      f"--repeats {args.repeats}",
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "results": rows}
    dest = ROOT / "bench" / "results" / "bitstream_speed.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print("| table | prior | values/frame | encode fps (median) | decode fps (median) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['table']} | {r['prior']} | {r['coded_values_per_frame']} | "
              f"{r['encode_fps_median']:.0f} | {r['decode_fps_median']:.0f} |")


if __name__ == "__main__":
    main()
