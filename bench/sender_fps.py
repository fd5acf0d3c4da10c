"""Benchmark: sender front-end speed (frames/s) on 720p input.

    python bench/sender_fps.py [--clip lp_s18] [--frames 150] [--repeats 3]

No clip of the data set is 1280x720, so one is upscaled to 1280x720 in memory (the default,
``lp_s18``, is 720x404 with a smallish face, like a webcam call). Two cases:

- ``live``: RGB frames already in memory through ``FrontEnd.process`` (landmarks, smoothing,
  tube crop to 256, pose): what a camera app pays per frame.
- ``file``: the same frames encoded to an H.264 720p file (in a temporary directory, never
  in the repository) and read back with ``FrontEnd.video`` at the source rate: adds PyAV
  decoding and the YUV->RGB conversion.

Each run uses a fresh FrontEnd whose first frame (model start-up) is not timed; the median
over ``--repeats`` runs is reported. Writes bench/results/sender_fps.json and prints a
Markdown row per case. Target: >= 60 frames/s on the project's 2-core CPU.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecodec.sender.frontend import FrontEnd  # noqa: E402
from facecodec.sender.video import Frame, VideoReader  # noqa: E402

CLIPS = ROOT.parent / "shared" / "data" / "clips"
SIZE = (1280, 720)


def load_720p(clip: Path, n: int) -> list[np.ndarray]:
    import cv2

    frames = []
    with VideoReader(clip, fps=None) as video:
        for f in video:
            frames.append(cv2.resize(f.image, SIZE, interpolation=cv2.INTER_CUBIC))
            if len(frames) == n:
                break
    return frames


def write_h264(frames: list[np.ndarray], path: Path, fps: int = 30) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "veryfast"})
        s.width, s.height, s.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def time_live(frames: list[np.ndarray]) -> tuple[float, float]:
    """(frames/s, face found fraction) over frames[1:]."""
    with FrontEnd() as fe:
        fe.process(Frame(frames[0], 0.0, 0))
        found = 0
        t0 = time.perf_counter()
        for i, img in enumerate(frames[1:], 1):
            found += fe.process(Frame(img, i / 30, i)).valid
        dt = time.perf_counter() - t0
    return (len(frames) - 1) / dt, found / (len(frames) - 1)


def time_file(path: Path) -> tuple[float, float]:
    with FrontEnd() as fe:
        records = fe.video(path, fps=None)
        next(records)
        n = found = 0
        t0 = time.perf_counter()
        for rec in records:
            n += 1
            found += rec.valid
        dt = time.perf_counter() - t0
    return n / dt, found / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default="lp_s18")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    clip = CLIPS / f"{args.clip}.mp4"
    if not clip.is_file():
        sys.exit(f"{clip}: not found (the benchmark needs shared/data next to the repo)")
    frames = load_720p(clip, args.frames)
    rows = []
    live = [time_live(frames) for _ in range(args.repeats)]
    rows.append({"case": "live", "input": f"{SIZE[0]}x{SIZE[1]} RGB frames in memory",
                 "frames": len(frames) - 1,
                 "fps_median": float(np.median([r[0] for r in live])),
                 "fps_runs": [round(r[0], 1) for r in live], "face_found": live[0][1]})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "720p.mp4"
        write_h264(frames, path)
        runs = [time_file(path) for _ in range(args.repeats)]
    rows.append({"case": "file", "input": f"{SIZE[0]}x{SIZE[1]} H.264 file, source rate",
                 "frames": len(frames) - 1,
                 "fps_median": float(np.median([r[0] for r in runs])),
                 "fps_runs": [round(r[0], 1) for r in runs], "face_found": runs[0][1]})
    out = {"benchmark": "sender_fps", "repeats": args.repeats,
           "command": f"python bench/sender_fps.py --clip {args.clip} --frames {args.frames} "
                      f"--repeats {args.repeats}",
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "clip": args.clip, "target_fps": 60, "results": rows}
    dest = ROOT / "bench" / "results" / "sender_fps.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print("| case | input | frames | fps (median) | runs | face found |")
    print("|---|---|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['input']} | {r['frames']} | {r['fps_median']:.1f} | "
              f"{r['fps_runs']} | {r['face_found']:.0%} |")


if __name__ == "__main__":
    main()
