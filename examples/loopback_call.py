"""A loopback "call": one thread encodes frames as a camera would deliver them, another
decodes the packets as they arrive, and the script reports the bitrate and the latency.

    python examples/loopback_call.py [--video clip.mp4] [--model NAME] [--realtime]

Without --video it uses the demo's example video (a public-domain photo moved
synthetically, see examples/README.md). The wire is a queue.Queue of byte strings: swap it
for a socket or a WebRTC data channel in an app.
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import facecodec
from facecodec.examples import make_example_video
from facecodec.sender.video import VideoReader

END = b""  # the sentinel that closes the wire


def sender(video: Path, enc: facecodec.Encoder, wire: queue.Queue, sent_at: dict[int, float],
           realtime: bool) -> None:
    fps = float(enc.fps)
    start = time.perf_counter()
    with VideoReader(video, fps=fps) as frames:
        for frame in frames:
            if realtime:  # wait for the camera's next frame
                time.sleep(max(0.0, start + frame.time - time.perf_counter()))
            sent_at[frame.index] = time.perf_counter()
            packet = enc.push(frame.image, frame.time)
            if packet:
                wire.put(packet)
    wire.put(enc.close())
    wire.put(END)


def received(wire: queue.Queue):
    while (packet := wire.get()) != END:
        yield packet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--realtime", action="store_true", help="pace frames at the stream's fps")
    args = ap.parse_args()
    video = args.video
    if video is None:
        video = make_example_video(Path(tempfile.mkdtemp()) / "input.mp4")

    enc = facecodec.Encoder(args.model)
    dec = facecodec.Decoder(args.model)
    wire: queue.Queue = queue.Queue()
    sent_at: dict[int, float] = {}
    nbytes = 0

    def counted():
        nonlocal nbytes
        for packet in received(wire):
            nbytes += len(packet)
            yield packet

    t = threading.Thread(target=sender, args=(video, enc, wire, sent_at, args.realtime))
    t.start()
    latency = []
    n = 0
    for frame in dec.frames(counted()):
        latency.append(time.perf_counter() - sent_at[frame.index])
        n += 1
    t.join()
    seconds = n / float(enc.fps)
    lat = np.array(latency) * 1000
    print(f"{n} frames received ({seconds:.1f} s of video), {nbytes} bytes on the wire: "
          f"{nbytes * 8 / seconds / 1000:.2f} kbps all-in (source frames included)")
    print(f"latency, push to rendered frame: median {np.median(lat):.0f} ms, "
          f"p95 {np.percentile(lat, 95):.0f} ms (the first frames wait for the first source "
          f"frame{'' if args.realtime else '; not paced: use --realtime for a camera-like run'})")


if __name__ == "__main__":
    main()
