"""Benchmark: the receiver's lid and lip touch-up (facecodec/receiver/expression.py), issue 19.

    python bench/expression_retouch.py [--clips a,b] [--limit N] [--max-frames N]

On each clip of the split (the eval clips, as bench/expression_stages.py loads them), the
clip is written to a stream with the Encoder's defaults and decoded twice by the Decoder:
without the touch-up and with it. Both are scored against the original as eval scores
them: the expression figures (facecodec/eval/expression.py: eye and mouth-opening
correlation, blink recall pooled over clips, false blinks), LPIPS-alex, landmark NME
(468 mesh points, outer-eye-corner distance) and flicker (eval/metrics.py: frame-to-frame
change beyond the original's). Also the touch-up's own time per frame
(the face mesh on the rendered frame and the warp), median over frames.

Writes bench/results/expression_retouch.json and prints a table.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from expression_stages import add_clip_args, clip_refs, dump, make_codec  # noqa: E402

import facecodec.receiver.expression as retouch_module  # noqa: E402
from facecodec.eval.expression import compare_expressions  # noqa: E402
from facecodec.eval.metrics import (  # noqa: E402
    LPIPS,
    flicker,
    hold_missing,
    nme,
    track_landmarks,
)
from facecodec.receiver.expression import Retoucher  # noqa: E402
from facecodec.sender.landmarks import quiet_mediapipe_logs  # noqa: E402

METHODS = ("plain", "retouched")


def run_clip(ref, enc, dec, lpips: LPIPS, max_frames: int | None) -> dict:
    from facecodec.eval.neural import write_stream

    clip = ref.load(max_frames)
    ref_mesh = track_landmarks(clip.frames)
    stream = write_stream(enc, clip)
    decoded = list(dec.frames(stream.data, name=f"{clip.name}.fcs"))
    plain = np.stack([d.image for d in decoded])
    retoucher = Retoucher()
    times, touched = [], []
    for d in decoded:
        t0 = time.perf_counter()
        touched.append(retoucher(d.image, d.values["sup"]))
        times.append(time.perf_counter() - t0)
    retoucher.close()
    outputs = {"plain": plain, "retouched": np.stack(touched)}
    row: dict = {"clip": clip.name, "frames": len(clip.frames),
                 "retouch_ms_median": 1000 * float(np.median(times))}
    for m, frames in outputs.items():
        mesh = hold_missing(track_landmarks(frames))
        ex = compare_expressions(mesh, ref_mesh)
        row[m] = {**ex.__dict__, "lpips": float(lpips(frames, clip.frames).mean()),
                  "nme": float(np.nanmean(nme(mesh, ref_mesh))),
                  "flicker": flicker(frames, clip.frames),
                  "changed_frames": int((frames != plain).any(axis=(1, 2, 3)).sum())}
    return row


def summarize(rows: list[dict]) -> dict:
    out = {}
    for m in METHODS:
        hits = sum(r[m]["blink_hits"] for r in rows)
        frames = sum(r[m]["blink_frames"] for r in rows)
        out[m] = {
            "eye_corr": float(np.nanmean([r[m]["eye_corr"] for r in rows])),
            "mouth_open_corr": float(np.nanmean([r[m]["mouth_open_corr"] for r in rows])),
            "mouth_width_corr": float(np.nanmean([r[m]["mouth_width_corr"] for r in rows])),
            "blink_hits": hits, "blink_frames": frames,
            "blink_recall": hits / frames if frames else math.nan,
            "false_blinks": sum(r[m]["false_blinks"] for r in rows),
            "lpips": float(np.mean([r[m]["lpips"] for r in rows])),
            "nme": float(np.mean([r[m]["nme"] for r in rows])),
            "flicker": float(np.nanmean([r[m]["flicker"] for r in rows])),
            "changed_frames": sum(r[m]["changed_frames"] for r in rows),
        }
    out["retouch_ms_median"] = float(np.median([r["retouch_ms_median"] for r in rows]))
    return out


def result_rows(summary: dict) -> list[dict]:
    """bench/report.py's table rows: one per output, figures already formatted."""
    rows = []
    for m, label in (("plain", "as drawn (--no-retouch)"), ("retouched", "retouched (default)")):
        s = summary[m]
        rows.append({"output": label, "eye r": f"{s['eye_corr']:.2f}",
                     "mouth open r": f"{s['mouth_open_corr']:.2f}",
                     "mouth width r": f"{s['mouth_width_corr']:.2f}",
                     "blink recall": f"{s['blink_recall']:.2f} ({s['blink_hits']}/"
                                     f"{s['blink_frames']})",
                     "false blinks": str(s["false_blinks"]),
                     "LPIPS-alex": f"{s['lpips']:.4f}", "NME": f"{s['nme']:.4f}",
                     "flicker": f"{s['flicker']:.3f}"})
    return rows


NOTES = ["The val clips decoded with the Encoder's defaults, scored as eval scores them "
         "(facecodec/eval/expression.py; blink recall pooled over clips), without and with "
         "the receiver's lid and lip touch-up (facecodec/receiver/expression.py); see "
         "docs/EXPRESSIONS.md."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_args(ap)
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--min-change", type=float, default=None,
                    help="the touch-up's MIN_CHANGE for this run (an experiment: the "
                         "module's value otherwise)")
    ap.add_argument("--out", type=Path,
                    default=ROOT / "bench" / "results" / "expression_retouch.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.min_change is not None:
        retouch_module.MIN_CHANGE = args.min_change
    refs = clip_refs(args)
    enc, dec = make_codec(args.model, retouch=False)
    lpips = LPIPS()
    rows = []
    start = time.perf_counter()
    with quiet_mediapipe_logs():
        for ref in tqdm(refs, desc="clips", unit="clip"):
            row = run_clip(ref, enc, dec, lpips, args.max_frames)
            rows.append(row)
            p, r = row["plain"], row["retouched"]
            tqdm.write(f"{row['clip']}: eye r {p['eye_corr']:.2f} -> {r['eye_corr']:.2f}, "
                       f"mouth r {p['mouth_open_corr']:.2f} -> {r['mouth_open_corr']:.2f}, "
                       f"blinks {p['blink_hits']} -> {r['blink_hits']} of "
                       f"{p['blink_frames']}, false {p['false_blinks']} -> "
                       f"{r['false_blinks']}, LPIPS {p['lpips']:.4f} -> {r['lpips']:.4f}, "
                       f"{row['retouch_ms_median']:.1f} ms/frame")
    summary = summarize(rows)
    doc = {"benchmark": "expression_retouch",
           "command": "python bench/expression_retouch.py" + "".join(
               f" {a}" for a in sys.argv[1:]),
           "machine": f"{platform.machine()}, {args.threads} thread(s)",
           "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - start,
           "model": str(enc.package.name), "min_change": retouch_module.MIN_CHANGE,
           "notes": NOTES,
           "results": result_rows(summary) + [
               {"output": "touch-up time", "ms/frame (median)":
                f"{summary['retouch_ms_median']:.1f}"}],
           "summary": summary, "clips": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(doc))
    print("| | eye r | mouth open r | mouth width r | blink recall | false blinks | LPIPS "
          "| NME | flicker |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in METHODS:
        s = summary[m]
        print(f"| {m} | {s['eye_corr']:.2f} | {s['mouth_open_corr']:.2f} | "
              f"{s['mouth_width_corr']:.2f} | {s['blink_recall']:.2f} ({s['blink_hits']}/"
              f"{s['blink_frames']}) | {s['false_blinks']} | {s['lpips']:.4f} | "
              f"{s['nme']:.4f} | {s['flicker']:.3f} |")
    print(f"touch-up: {summary['retouch_ms_median']:.1f} ms/frame (median)")


if __name__ == "__main__":
    main()
