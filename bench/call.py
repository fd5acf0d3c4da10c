"""One-minute loopback calls over WebRTC on the call clip (docs/call.md).

    python bench/call.py [--seconds 60] [--only NAME,...]

Each call plays the first minute of the call clip (../shared/data/clips/call_cameron.mp4)
in real time as the sender's camera, through `facecodec call loopback` in its own process
under `nice`, both peers on this machine, every datagram through the emulated link: 100 ms
of jitter (delay U(0, 100) ms, order kept) and 0 / 1 / 5 % loss each way, at 6 kbps with
sound (the budget's plan: 7.5 frames/s and Codec 2), feedback on; 5 % again without
feedback; and 6 kbps without sound at 1 % loss (15 frames/s: the receiver's load at the
full rate).
Results: bench/results/call.json (one row per call, the full reports beside it) and the
`call` section of docs/BENCHMARKS.md (python bench/report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "clips" / "call_cameron.mp4"


def scenarios() -> list[dict]:
    jitter = ["--jitter-ms", "100"]
    sound = ["--kbps", "6", "--audio"]
    rows = [{"name": f"6 kbps with sound, {p} % loss",
             "args": [*sound, "--loss", str(p / 100), *jitter]} for p in (0, 1, 5)]
    rows.append({"name": "6 kbps with sound, 5 % loss, no feedback",
                 "args": [*sound, "--loss", "0.05", "--no-feedback", *jitter]})
    rows.append({"name": "6 kbps without sound, 1 % loss",
                 "args": ["--kbps", "6", "--no-audio", "--loss", "0.01", *jitter]})
    return rows


def row(name: str, r: dict) -> dict:
    f, d, fz, b = r["frames"], r["delay"]["in_call"], r["freezes"], r["bits_sent"]
    av = r.get("av") or {}
    wire = r.get("bits_wire", {}).get("a_to_b", {})
    return {
        "call": name,
        "fps": r["call"]["options"].get("fps"),
        "frames sent": f["sent"], "drawn": f["drawn"], "concealed": f["concealed"],
        "late (not drawn)": f["late"], "never shown": f["not_shown"] + f["lost_at_end"],
        "accounted": "yes" if f["accounted"] else "NO",
        "camera frames dropped": r["camera_frames"]["dropped_late"],
        "first face (s)": r["first_face_s"],
        "delay p50 (ms)": d["capture_to_display_ms"]["p50"],
        "delay p95 (ms)": d["capture_to_display_ms"]["p95"],
        "link p50 (ms)": d["network_ms"]["p50"],
        "added p50 (ms)": d["added_ms"]["p50"], "added p95 (ms)": d["added_ms"]["p95"],
        "longest freeze (s)": fz["longest_s"], "freezes > 0.5 s": fz["over_0_5_s"],
        "stream kbps": b["kbps"], "budget": b.get("budget_kbps"),
        "highest 10-s window (% of budget)": (
            None if b.get("highest_window_of_budget") is None
            else round(100 * b["highest_window_of_budget"], 1)),
        "wire kbps (UDP)": wire.get("kbps_udp"),
        "feedback sent": sum(r["feedback"]["sent"].values()),
        "encode p50 (ms)": r.get("work_ms", {}).get("encode", {}).get("p50"),
        "draw p50 (ms)": r.get("work_ms", {}).get("draw", {}).get("p50"),
        "load avg": round(r["call"]["load_avg"][0], 2),
        "A/V |offset| p95 (ms)": (av.get("abs_offset_ms") or {}).get("p95"),
        "A/V |offset| p95 as drawn (ms)": (av.get("as_drawn_abs_offset_ms") or {}).get("p95"),
        "frames held for lip sync": av.get("frames_held"),
        "sound delay p95 (ms)": (av.get("audio_delay_ms") or {}).get("p95"),
        "sound packets late / played": (f"{av['audio_packets_late']} / "
                                        f"{av['audio_packets_played']}"
                                        if "audio_packets_played" in av else None),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--video", type=Path, default=CLIP)
    ap.add_argument("--only", default=None, help="comma-separated substrings of call names")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "call.json")
    ap.add_argument("--rows-only", action="store_true",
                    help="no calls: rebuild the table's rows from the saved full reports")
    args = ap.parse_args()
    full = args.out.parent / "call" / "reports.json"  # (report.py reads results/*.json only)
    if args.rows_only:
        envelope = json.loads(args.out.read_text())
        envelope["results"] = [row(k, r) for k, r in json.loads(full.read_text()).items()]
        args.out.write_text(json.dumps(envelope, indent=1) + "\n")
        return
    if not args.video.is_file():
        sys.exit(f"{args.video}: missing (the call clip of ../shared/data)")
    start = time.perf_counter()
    runs = scenarios()
    if args.only:
        keys = args.only.split(",")
        runs = [r for r in runs if any(k in r["name"] for k in keys)]
    rows, reports = [], {}
    for sc in runs:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "report.json"
            cmd = ["nice", "-n", "5", sys.executable, "-m", "facecodec", "call", "loopback",
                   "--video", str(args.video), "--seconds", f"{args.seconds:g}",
                   "--report", str(out), "--seed", "1", *sc["args"]]
            print(f"== {sc['name']}: {' '.join(cmd[3:])}", flush=True)
            load = os.getloadavg()
            subprocess.run(cmd, check=True, cwd=ROOT)
            report = json.loads(out.read_text())
        report["call"]["load_avg_before"] = list(load)
        reports[sc["name"]] = report
        rows.append(row(sc["name"], report))
    notes = [
        "Loopback calls over WebRTC (aiortc: ICE on 127.0.0.1, DTLS, SCTP data channels), "
        f"the first {args.seconds:g} s of the call clip played in real time as the camera, "
        "both peers and the link relay on this 2-core machine (each call its own process, "
        "`nice -n 5`, one PyTorch thread per network). The link: every UDP datagram each "
        "way, delay U(0, 100) ms with order kept, independent loss; seed 1. "
        "At 6 kbps with sound the budget's plan sends 7.5 frames/s and Codec 2 1300 in "
        "40-ms packets (short audio chunks, format 2.6; docs/codec.md); without sound 15 "
        "frames/s.",
        "delay: capture (the frame's time on the clip's real-time clock) to the end of its "
        "drawing at the receiver, frames captured after the first face was shown; link: "
        "the emulated one-way delay of the datagram that completed the frame; added = delay "
        "- link. Freezes: time between two drawn pictures. late: decoded while a newer frame "
        "was already waiting, so not drawn (the receiver catches up). camera frames "
        "dropped: the sender was still busy when the next capture was due (the stream repeats "
        "the last picture for that slot). stream kbps: the stream's bytes on the data "
        "channels over the call (the first 10 s hold the first sources); wire: UDP payload "
        "sender -> receiver, DTLS and SCTP included, over the media's span (the "
        "connection's set-up, ~5 KB, left out since 2026-12-02; the rows of earlier runs "
        "include it, ~0.6 kbps over a minute).",
        "load avg: the 1-minute load average at the end of the call (both peers and the "
        "relay make about 1.5 on their own); other jobs on the machine make the delays and "
        "the late / dropped frames worse (docs/call.md has a run under a load of 4-7).",
    ]
    envelope = {"benchmark": "call",
                "command": "python bench/call.py" + "".join(f" {a}" for a in sys.argv[1:]),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - start,
                "notes": notes, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.only and args.out.is_file():  # a partial run replaces its rows, keeps the rest
        old = json.loads(args.out.read_text())
        done = {r["call"] for r in rows}
        order = [sc["name"] for sc in scenarios()]
        rows = sorted([r for r in old["results"] if r["call"] not in done] + rows,
                      key=lambda r: order.index(r["call"]) if r["call"] in order else 99)
        envelope["results"] = rows
        envelope["command"] = old["command"] + " (rows rerun: " + envelope["command"] + ")"
        if full.is_file():
            reports = {**json.loads(full.read_text()), **reports}
    args.out.write_text(json.dumps(envelope, indent=1) + "\n")
    full.parent.mkdir(exist_ok=True)
    full.write_text(json.dumps(reports, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
