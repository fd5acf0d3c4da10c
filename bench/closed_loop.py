"""Benchmark: closed-loop sources (``Encoder(source_choice="render")``) against the pose rule
on the call clip, issue 17 item 3.

    python bench/closed_loop.py [--budgets 16] [--quiet-budgets 12] [--live]

The `call` split's clip (97 s; the 15 fps face tube from the training cache) is written
with ``Encoder(kbps=R)`` twice per budget: sources by pose (the most frontal frame and the
yaw extremes, then evenly spaced yaws) and closed loop (the same first source, then each
the frame the receiver draws worst from the ones before, the sender drawing one frame a
second with the receiver's model). Both send the number of sources the budget plans. For
each: LPIPS-alex of the decoded frames (no touch-up) over the call and its first 20 s, the
sources (seconds into the call), the all-in rate and its highest later 10-s window, and how
long choosing took.

``--live`` pushes the clip's video to a live Encoder frame by frame instead (its capture
times; the pose policy against the live closed loop, ``LiveCoverage``), and scores the
decoded frames against the face tubes the live sender cut.

Writes bench/results/closed_loop.json (docs/BENCHMARKS.md via bench/report.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from budget import EARLY_S, lpips_all  # noqa: E402
from source_pacing import call_clip_args, envelope, load_call_clip  # noqa: E402

from facecodec.audio import RATE, encode_audio, read_audio  # noqa: E402
from facecodec.bitstream.report import analyse  # noqa: E402
from facecodec.codec import Encoder  # noqa: E402
from facecodec.eval.metrics import LPIPS  # noqa: E402
from facecodec.eval.neural import write_stream  # noqa: E402
from facecodec.sender.landmarks import quiet_mediapipe_logs  # noqa: E402
from facecodec.sender.video import VideoReader  # noqa: E402


class Live:
    """A live call of a video file: (stream bytes, sources sent, the tubes the sender cut)."""

    def __init__(self, enc: Encoder, video: Path, pcm) -> None:
        wire, tubes = bytearray(), []
        with quiet_mediapipe_logs(), VideoReader(video, fps=float(enc.fps)) as frames:
            for frame in frames:
                wire += enc.push(frame.image, frame.time)
                if enc._live is not None and enc._live.count > len(tubes):
                    tubes.append(enc._live.recent[-1][0].tube)  # (the bench reads the state)
                if pcm is not None and enc.audio:
                    a, b = (round(frame.time * RATE), round((frame.time + 1 / float(enc.fps))
                                                             * RATE))
                    wire += enc.push_audio(pcm[a:b], frame.time)
            self.sources = list(enc._live.sources)
        wire += enc.close()
        self.data, self.tubes = bytes(wire), np.stack(tubes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default="16", help="kbps, with sound")
    ap.add_argument("--quiet-budgets", default="12", help="kbps, without sound")
    ap.add_argument("--name", default="closed_loop")
    ap.add_argument("--live", action="store_true", help="push the video to a live Encoder")
    args = call_clip_args(ap)
    if args.live and args.name == "closed_loop":  # its own result unless told otherwise
        args.name = "closed_loop_live"
        if args.out == ROOT / "bench" / "results" / "closed_loop.json":
            args.out = args.out.with_name("closed_loop_live.json")
    clip = load_call_clip(args)
    fps = float(clip.fps)
    seconds = len(clip.frames) / fps
    pcm = read_audio(clip.video)
    lpips = LPIPS()
    runs = [(float(b), True) for b in args.budgets.split(",") if b]
    runs += [(float(b), False) for b in args.quiet_budgets.split(",") if b]
    start = time.perf_counter()
    rows = []
    for kbps, sound in runs:
        for choice in ("pose", "render"):
            enc = Encoder(kbps=kbps, audio=sound, source_choice=choice)
            audio = (encode_audio(pcm[:round(seconds * 48000)], enc.sound)
                     if sound and pcm is not None else None)
            t = time.perf_counter()
            if args.live:
                stream = Live(enc, clip.video, pcm)
                original = stream.tubes
            else:
                stream = write_stream(enc, clip, audio)
                original = clip.frames
            took = time.perf_counter() - t
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "call.fcs"
                path.write_bytes(stream.data)
                windows = analyse(path).windows()
            later = [w["all_in_kbps"] for w in windows[1:] if w["seconds"] >= 9.99]
            scores = lpips_all(stream.data, original, lpips)
            rows.append({
                "budget (kbps)": f"{kbps:g}",
                "sound": "yes" if sound else "no",
                "sources by": choice,
                "sources at (s)": ", ".join(f"{i / fps:.0f}" for i in stream.sources),
                "all-in (kbps)": len(stream.data) * 8 / (len(original) / fps) / 1000,
                "highest later 10 s (kbps)": max(later),
                "LPIPS": float(scores.mean()),
                f"LPIPS first {EARLY_S:g} s": float(scores[:round(EARLY_S * fps)].mean()),
                ("push (s)" if args.live else "encode (s)"): took,
            })
            print(json.dumps(rows[-1]), flush=True)
    doc = {**envelope(args.name, args, start, clip),
           "notes": [
               f"The call clip ({clip.name}, {seconds:.0f} s) written with `Encoder(kbps=R)` "
               "and sources chosen by pose or closed loop (`source_choice='render'`: the "
               "sender draws one frame a second with the receiver's model and adds the "
               "frame drawn worst, facecodec/sender/coverage.py), the same number of them "
               "(the budget's plan). LPIPS-alex of the decoded frames without the touch-up. "
               "'encode': writing the stream from the cached tube and values, the closed "
               "loop's drawing included (one thread)."],
           "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
