"""Benchmark: a 10-minute call end to end, and a 2-hour value stream through the bitstream.

    python bench/long_stream.py [--minutes 10] [--hours 2]

1. End to end: the ``call`` clip of ../shared/data (97 s, one person talking) played
   forwards and backwards until it lasts ``--minutes`` (a temporary file, deleted after),
   ``Encoder.encode_file`` to a ``.fcs``, then ``Decoder.frames`` renders every frame
   (PyTorch, the receiver's runtime). Checks every frame comes out, and records the decode time
   per frame over the first and the last minute (constant per frame: no work grows with
   the stream) and the peak resident memory.
2. Bitstream alone: ``--hours`` of synthetic landmark values at 15 fps written and read
   back in one pass (no rendering), with the reader's time per frame over the first and
   the last 10 % and the peak memory of the process.

Writes bench/results/long_stream.json.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def long_video(minutes: float, out: Path) -> int:
    """The call clip at 15 fps, forwards then backwards, until ``minutes`` long."""
    import av

    from facecodec.sender.prepare import read_manifest
    from facecodec.sender.video import VideoReader

    manifest = ROOT.parent / "shared" / "data" / "manifest.csv"
    clip = next(c for c in read_manifest(manifest) if c.split == "call")
    with VideoReader(clip.path, fps=15.0) as v:
        frames = [f.image for f in v]
    loop = frames + frames[::-1]
    n = int(minutes * 60 * 15)
    h, w = frames[0].shape[:2]
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        s.options = {"crf": "20", "preset": "veryfast"}
        for i in range(n):
            img = loop[i % len(loop)][: s.height, : s.width]
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), "rgb24")))
        c.mux(s.encode(None))
    return n


def end_to_end(minutes: float) -> dict:
    import torch

    from facecodec.codec import Decoder, Encoder

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    video, fcs = tmp / "call.mp4", tmp / "call.fcs"
    n = long_video(minutes, video)
    t0 = time.perf_counter()
    st = Encoder().encode_file(video, fcs)
    t_enc = time.perf_counter() - t0
    video.unlink()
    dec = Decoder()
    times, count, t_prev = [], 0, time.perf_counter()
    t0 = t_prev
    for fr in dec.frames(fcs):
        now = time.perf_counter()
        times.append(now - t_prev)
        t_prev = now
        count += 1
        assert fr.index == count - 1
    t_dec = time.perf_counter() - t0
    minute = 15 * 60
    return {
        "test": f"{minutes:g}-min call, encode + render",
        "frames": n, "encoded_frames": st.frames, "rendered_frames": count,
        "fcs_bytes": st.bytes, "all_in_kbps": st.bytes * 8 / (n / 15) / 1000,
        "encode_s": t_enc, "decode_s": t_dec,
        "ms_per_frame_first_min": 1000 * float(np.median(times[1:minute])),
        "ms_per_frame_last_min": 1000 * float(np.median(times[-minute:])),
        "peak_rss_mb": peak_rss_mb(),
    }


def bitstream_only(hours: float) -> dict:
    from bitstream_helpers import random_walk

    from facecodec.bitstream.container import DecodedFrame, FcsReader, FcsWriter, Header
    from facecodec.bitstream.prior import Prior
    from facecodec.bitstream.streams import TABLES

    table = TABLES["landmarks"]
    prior = Prior.untrained(table)
    walk = random_walk(table, 600, seed=2, step=0.003)
    n = int(hours * 3600 * 15)
    out = io.BytesIO()
    w = FcsWriter(out, Header(table, prior.id, Fraction(15), intra_period=30), prior)
    t0 = time.perf_counter()
    for i in range(n):
        w.add_frame(walk[i % 600] if (i // 600) % 2 == 0 else walk[599 - i % 600])
    w.close()
    t_write = time.perf_counter() - t0
    data = out.getvalue()
    reader = FcsReader(io.BufferedReader(io.BytesIO(data)), prior=prior)
    marks, count, t0 = [], 0, time.perf_counter()
    for e in reader:
        if isinstance(e, DecodedFrame):
            count += 1
            if count % 1000 == 0:
                marks.append(time.perf_counter())
    t_read = time.perf_counter() - t0
    per_k = np.diff(marks) * 1000 / 1000  # s per 1000 frames -> ms per frame
    tenth = max(1, len(per_k) // 10)
    return {
        "test": f"{hours:g}-h value stream, bitstream only",
        "frames": n, "rendered_frames": count, "fcs_bytes": len(data),
        "encode_s": t_write, "decode_s": t_read,
        "ms_per_frame_first_10pct": float(np.median(per_k[:tenth])),
        "ms_per_frame_last_10pct": float(np.median(per_k[-tenth:])),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "long_stream.json")
    args = ap.parse_args()
    rows = [bitstream_only(args.hours), end_to_end(args.minutes)]
    result = {"benchmark": "long_stream",
              "command": "python bench/long_stream.py " + " ".join(sys.argv[1:]),
              "machine": platform.machine(),
              "notes": ["ms_per_frame: median wall time per frame (the bitstream row: over "
                        "blocks of 1000 frames), first against last part of the stream.",
                        "peak_rss_mb: the process's peak resident memory so far (the end to "
                        "end row includes the models)."],
              "results": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
