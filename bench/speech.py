"""Benchmark: the sound's codecs at a few kilobits per second, on the call clip (issue 17).

    python bench/speech.py [--seconds 60] [--opus 4,5,6,8,12] [--codec2 3200,2400,1600,1300]

At 6 kbps all-in the picture leaves ~3 kbps for the sound, under Opus's useful floor.
This measures what each codec keeps of the speech on the `call` split's clip (its first
``--seconds``), coded and decoded as a stream carries it (facecodec/audio.py: Opus in
60-ms packets, Codec 2 in 40-, 80- and 120-ms packets at 8 kHz, short audio chunks):

- ``kbps``: the sound's rate in the stream, audio chunks' framing included (what the
  budget pays: :func:`facecodec.sender.budget.audio_all_kbps` predicts it);
- ``stoi``: short-time objective intelligibility (Taal et al. 2011, ``pystoi``; 0..1,
  computed on the band under 5 kHz) of the decoded sound, placed as the receiver places
  it, against the original;
- ``lag_ms``: the shift (within +-100 ms) that best matches the decoded envelope to the
  original's: what is left of the codec's own delay (lip sync).

Writes bench/results/speech.json (docs/BENCHMARKS.md via bench/report.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from pystoi import stoi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecodec.audio import (  # noqa: E402
    RATE,
    OpusEncoder,
    Sound,
    decode_audio,
    encode_audio,
    read_audio,
)
from facecodec.bitstream.chunks import AUDIO_ORIGIN  # noqa: E402
from facecodec.bitstream.container import AudioPacket, audio_chunk  # noqa: E402
from facecodec.eval.clips import manifest_clips  # noqa: E402

MAX_LAG_S = 0.1


def envelope_lag(ref: np.ndarray, out: np.ndarray) -> float:
    """The lag (s, -MAX_LAG_S..MAX_LAG_S; positive: ``out`` is late) whose envelope best
    matches ``ref``'s: what is left of a codec's delay once the stream places it."""
    step, most = RATE // 1000, int(MAX_LAG_S * RATE)  # 1 ms steps
    env_r = np.abs(ref[most: len(ref) - most].astype(np.float64))
    env_o = np.abs(out.astype(np.float64))
    best = max(range(-most, most + 1, step),
               key=lambda d: float(np.dot(env_r, env_o[most + d: most + d + len(env_r)])))
    return best / RATE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--opus", default="4,5,6,8,12", help="Opus rates asked (kbps)")
    ap.add_argument("--codec2", default="3200,2400,1600,1300", help="Codec 2 modes (bit/s)")
    ap.add_argument("--codec2-packets", default="40,80,120",
                    help="Codec 2 packet lengths (ms; the budget's two)")
    ap.add_argument("--manifest", type=Path,
                    default=ROOT.parent / "shared" / "data" / "manifest.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speech.json")
    args = ap.parse_args()
    ref = manifest_clips(args.manifest, "call", None)[0]
    pcm = read_audio(ref.video) if ref.video is not None else None
    if pcm is None:
        sys.exit(f"{ref.video} has no sound")
    pcm = pcm[: round(args.seconds * RATE)]
    seconds = len(pcm) / RATE
    runs: list[tuple[str, list[AudioPacket], dict]] = []
    start = time.perf_counter()
    for kbps in (float(k) for k in args.opus.split(",") if k):
        # below the product's 6-kbps floor too: the measurement that put it there
        enc = OpusEncoder(kbps, floor=0.5)
        runs.append((f"Opus {kbps:g}", enc.encode(pcm) + enc.flush(), Sound().info()))
    for mode in (int(m) for m in args.codec2.split(",") if m):
        for ms in (int(m) for m in args.codec2_packets.split(",") if m):
            sound = Sound.codec2(mode, ms)
            runs.append((f"{sound.describe()}, {ms}-ms packets", encode_audio(pcm, sound),
                         sound.info()))
    rows = []
    for name, packets, info in runs:
        # framed as the stream writer frames them (short audio chunks for Codec 2, 2.6)
        framed = sum(len(audio_chunk(p, q.start if q else -AUDIO_ORIGIN - 1))
                     for p, q in zip(packets, [None, *packets[:-1]], strict=True))
        out = decode_audio(packets, len(pcm) + int(MAX_LAG_S * RATE), info)
        # as the receiver places it: a codec's delay the stream does not undo costs here
        score = float(stoi(pcm.astype(np.float64), out[:len(pcm)].astype(np.float64), RATE))
        lag = envelope_lag(pcm, out)
        rows.append({"codec": name, "kbps": 8 * framed / seconds / 1000,
                     "payload_kbps": 8 * sum(len(p.data) for p in packets) / seconds / 1000,
                     "stoi": score, "lag_ms": 1000 * lag})
        print(rows[-1], flush=True)
    rows.sort(key=lambda r: r["kbps"])
    args.out.write_text(json.dumps({
        "benchmark": "speech",
        "command": "python bench/speech.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "machine": platform.machine(), "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - start, 1), "clip": ref.name,
        "notes": [f"The call clip's first {seconds:.0f} s of sound, coded as a stream carries "
                  "it; `kbps` with the audio chunks' framing, `payload_kbps` without; STOI "
                  "(pystoi) against the original, placed as the receiver places it; `lag_ms` the "
                  "envelope's best shift (positive: late)."],
        "results": rows}, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
