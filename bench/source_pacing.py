"""Benchmark: paced sources (format 2.3, ``Encoder(source_kbps=R)``) on the call clip, issue 17.

    python bench/source_pacing.py [--rates none,1,2,4] [--seconds 20]

The `call` split's clip (97 s with sound, the 15 fps face tube from the training cache) is
written with the Encoder's defaults (three sources, sound at 8 kbps) once with every source
whole before the frames (``none``) and once per paced rate. For each stream:

- the bytes before the first drawable frame (header, the first source, the first frame
  packet) and what that takes on a 6 kbps link;
- when each full-size source has arrived (stream seconds: the frames decoded before it);
- the all-in rate per 10 s window (``facecodec bitrate --report``'s windows): the first and
  the highest;
- LPIPS-alex of the decoded frames against the original over the first ``--seconds``
  (without the receiver's touch-up, which pacing does not change), in 5-s spans: what
  drawing from the small first source costs until the full ones arrive.

Writes bench/results/source_pacing.json (docs/BENCHMARKS.md via bench/report.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecodec.audio import encode_audio, read_audio  # noqa: E402
from facecodec.bitstream.container import DecodedFrame, FcsReader, SourceFrame  # noqa: E402
from facecodec.bitstream.report import analyse, first_face_bytes  # noqa: E402
from facecodec.codec import Decoder, Encoder  # noqa: E402
from facecodec.eval.clips import manifest_clips  # noqa: E402
from facecodec.eval.metrics import LPIPS  # noqa: E402
from facecodec.eval.neural import write_stream  # noqa: E402
from facecodec.sender.landmarks import quiet_mediapipe_logs  # noqa: E402

LINK_KBPS = 6.0  # issue 17's thin link: the first face within 3 s needs <= 2.25 KB


def arrivals(data: bytes, fps: float) -> list[dict]:
    """Each source as it arrives: slot, width, bytes, and the stream second it completes
    (frames decoded before it / fps)."""
    out, frames = [], 0
    for e in FcsReader(data):
        if isinstance(e, DecodedFrame):
            frames += 1
        elif isinstance(e, SourceFrame):
            out.append({"slot": e.index, "width": e.width, "bytes": e.nbytes,
                        "at_s": frames / fps})
    return out


def spans_lpips(data: bytes, original: np.ndarray, seconds: float, fps: float,
                lpips: LPIPS) -> list[float]:
    """Mean LPIPS-alex per 5-s span over the first ``seconds`` of the decoded stream."""
    n = min(len(original), round(seconds * fps))
    frames = []
    for d in Decoder(retouch=False).frames(data):
        frames.append(d.image)
        if len(frames) == n:
            break
    scores = lpips(np.stack(frames), original[:n])
    per = round(5 * fps)
    return [float(np.mean(scores[i:i + per])) for i in range(0, n, per)]


def call_clip_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """The options of the call-clip benchmarks (where the clip is, threads, the JSON),
    parsed; sets torch's threads."""
    ap.add_argument("--manifest", type=Path,
                    default=ROOT.parent / "shared" / "data" / "manifest.csv")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "facecodec" / "data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None,
                    help="default: bench/results/<name>.json")
    args = ap.parse_args()
    name = getattr(args, "name", Path(sys.argv[0]).stem)  # the script's, or its --name
    args.out = args.out or ROOT / "bench" / "results" / f"{name}.json"
    torch.set_num_threads(args.threads)
    return args


def load_call_clip(args: argparse.Namespace):
    """The `call` split's clip from the training cache (its 15 fps face tube and values)."""
    ref = manifest_clips(args.manifest, "call", args.cache)[0]
    if ref.cache_dir is None:
        sys.exit(f"{ref.name} is not in the cache {args.cache} (run facecodec prepare-data)")
    return ref.load()


def envelope(name: str, args: argparse.Namespace, start: float, clip) -> dict:
    """What every call-clip result file says first: the benchmark, its command, the machine,
    the date, how long it took and the clip."""
    return {"benchmark": name,
            "command": f"python bench/{Path(sys.argv[0]).name}"
                       + "".join(f" {a}" for a in sys.argv[1:]),
            "machine": f"{platform.machine()}, {args.threads} thread(s)",
            "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - start,
            "clip": clip.name, "frames": len(clip.frames)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="none,1,2,4",
                    help="comma-separated source_kbps values; 'none': every source whole")
    ap.add_argument("--seconds", type=float, default=20.0, help="LPIPS over this much")
    args = call_clip_args(ap)
    clip = load_call_clip(args)
    fps = float(clip.fps)
    lpips = LPIPS()
    start = time.perf_counter()
    rows, detail = [], []
    with quiet_mediapipe_logs():
        pcm = read_audio(clip.video)
        for rate in args.rates.split(","):
            kbps = None if rate == "none" else float(rate)
            enc = Encoder(source_kbps=kbps)
            audio = encode_audio(pcm[:round(len(clip.frames) / fps * 48000)], enc.sound)
            data = write_stream(enc, clip, audio).data
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "call.fcs"
                path.write_bytes(data)
                windows = analyse(path).windows()
            first = first_face_bytes(data)
            src = arrivals(data, fps)
            full = [s["at_s"] for s in src if s["width"] == max(x["width"] for x in src)]
            lp = spans_lpips(data, clip.frames, args.seconds, fps, lpips)
            rows.append({
                "sources": "whole, before the frames" if kbps is None else f"paced, {kbps:g} kbps",
                "first face (B)": first,
                f"first face at {LINK_KBPS:g} kbps (s)": first * 8 / LINK_KBPS / 1000,
                "full sources in by (s)": ", ".join(f"{t:.1f}" for t in full),
                "first 10 s (kbps)": windows[0]["all_in_kbps"],
                "highest 10 s (kbps)": max(w["all_in_kbps"] for w in windows),
                "all-in (kbps)": len(data) * 8 / (len(clip.frames) / fps) / 1000,
                **{f"LPIPS {5 * i}-{5 * i + 5} s": f"{v:.3f}" for i, v in enumerate(lp)},
            })
            detail.append({"source_kbps": kbps, "bytes": len(data), "arrivals": src,
                           "windows": windows, "lpips_5s": lp})
            print(json.dumps(rows[-1]), flush=True)
    doc = {**envelope("source_pacing", args, start, clip),
           "notes": [
               f"The call clip ({clip.name}, {len(clip.frames) / fps:.0f} s, sound at 8 kbps) "
               "written with the Encoder's defaults: every source whole before the first "
               "frame, or paced (`--source-kbps`, format 2.3: the first source small and "
               "whole, the full-size ones in parts between the frames). 'first face': bytes "
               "up to the end of the first frame packet, and the time they take on a "
               f"{LINK_KBPS:g} kbps link; 'full sources in by': the stream second each "
               "full-size source completes; the 10-s windows are `facecodec bitrate "
               "--report`'s (all-in, sound included); LPIPS-alex of the decoded frames "
               "(no touch-up) per 5-s span."],
           "results": rows, "detail": detail}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
