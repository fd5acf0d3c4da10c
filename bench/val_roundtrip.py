"""Benchmark: encode -> decode every val clip with the shipped model, from the video files.

    python bench/val_roundtrip.py [--model NAME] [--manifest ../shared/data/manifest.csv]
                                  [--split val] [--threads 1]

For each clip: ``facecodec.Encoder().encode_file`` on the original video (MediaPipe
tracking, face tube, sender network, bitstream), ``facecodec.bitrate`` accounting of the
``.fcs``, then ``facecodec.Decoder().decode_file`` to H.264. Checks that every encoded
frame is rendered, and records bits per frame (per stream), steady-state and all-in kbps,
and the encode and decode frame rates (wall clock of the whole file, I/O included).
Picture quality is measured by ``facecodec eval`` (docs/EVAL.md), not here.
Writes bench/results/val_roundtrip.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecodec.bitstream.report import analyse, overall  # noqa: E402
from facecodec.codec import Decoder, Encoder  # noqa: E402
from facecodec.sender.prepare import read_manifest  # noqa: E402


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--manifest", type=Path,
                    default=ROOT.parent / "shared" / "data" / "manifest.csv")
    ap.add_argument("--split", default="val")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clips = [c for c in read_manifest(args.manifest) if c.split == args.split]
    enc, dec = Encoder(args.model), Decoder()
    tmp = Path(tempfile.mkdtemp())
    rows, stats = [], []
    for clip in tqdm(clips, desc="encode -> decode", unit="clip"):
        fcs, mp4 = tmp / f"{clip.name}.fcs", tmp / f"{clip.name}.mp4"
        t0 = time.perf_counter()
        es = enc.encode_file(clip.path, fcs, progress=False)
        t_enc = time.perf_counter() - t0
        st = analyse(fcs)
        stats.append(st)
        s = st.summary()
        ds = dec.decode_file(fcs, mp4, progress=False)
        rendered = frame_count(mp4)
        rows.append({
            "clip": clip.name, "frames": es.frames, "rendered": rendered,
            "ok": rendered == es.frames == s["frames"],
            "bits_per_frame": s["bits_per_frame"],
            **{f"{k}_bits": v["mean"] for k, v in s["streams"].items()},
            "steady_kbps": s["steady_kbps_15fps"], "all_in_kbps": s["all_in_kbps"],
            "source_kB": s["source_bytes"] / 1000,
            "encode_fps": es.frames / t_enc, "decode_fps": ds["frames"] / ds["seconds"],
        })
        tqdm.write(json.dumps({k: round(v, 1) if isinstance(v, float) else v
                               for k, v in rows[-1].items()}))
    pooled = overall(stats).summary()
    total = {
        "clip": f"all {len(rows)} ({args.split})", "frames": sum(r["frames"] for r in rows),
        "rendered": sum(r["rendered"] for r in rows), "ok": all(r["ok"] for r in rows),
        "bits_per_frame": pooled["bits_per_frame"],
        **{f"{k}_bits": v["mean"] for k, v in pooled["streams"].items()},
        "steady_kbps": pooled["steady_kbps_15fps"], "all_in_kbps": pooled["all_in_kbps"],
        "source_kB": pooled["source_bytes"] / 1000 / max(len(rows), 1),
        "encode_fps": statistics.median(r["encode_fps"] for r in rows),
        "decode_fps": statistics.median(r["decode_fps"] for r in rows),
    }
    out = {"benchmark": "val_roundtrip",
           "command": f"python bench/val_roundtrip.py --split {args.split} "
                      f"--threads {args.threads}"
                      + (f" --model {args.model}" if args.model else ""),
           "machine": platform.machine(), "model": enc.package.name,
           "note": "last row: all frames pooled (bits, kbps; source_kB per clip), "
                   "median encode/decode fps over clips",
           "results": [*rows, total]}
    dest = ROOT / "bench" / "results" / "val_roundtrip.json"
    dest.write_text(json.dumps(out, indent=2))
    print(json.dumps(total, indent=1))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
