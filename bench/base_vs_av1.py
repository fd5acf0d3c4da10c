"""The codec with a base layer against SVT-AV1, from a `facecodec eval` run (issue 20).

    facecodec eval -m "facecodec,facecodec:base=256:63,facecodec:base=128:52,\\
        facecodec:base=256:56,facecodec:base=256:48,svtav1,\\
        svtav1-ladder:size=256;fps=7.5,svtav1-ladder:size=128;fps=15" \\
        --rates 5,10,20,30 --report /tmp/base/EVAL_BASE.md --no-sheet
    python bench/base_vs_av1.py /tmp/base/eval_base/results.json

Each method's operating point is averaged over the clips (rates, LPIPS-alex, PSNR); every
SVT-AV1 operating point (all rungs, all targets, the coarsest CRFs) is a point of its
curve. For each base-layer point: SVT-AV1's best LPIPS and PSNR at the same steady rate
and at the same all-in rate (each rung linear in log-rate between its points; a rung that
does not reach the rate takes no part), and BD-rates of the base-layer points against
SVT-AV1's lower envelope (< 0: fewer bits at equal quality;
bench/enhancement_fusion.py's functions). Writes bench/results/base_vs_av1.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from enhancement_fusion import bd_rate, envelope, interp_best  # noqa: E402


def points(scores: list[dict]) -> dict[tuple[str, float | None], dict[str, float]]:
    """(method, target) -> means over its clips."""
    groups: dict[tuple[str, float | None], list[dict]] = defaultdict(list)
    for s in scores:
        groups[(s["method"], s["target_kbps"])].append(s)
    out = {}
    for key, rows in groups.items():
        out[key] = {k: float(np.nanmean([r[k] for r in rows]))
                    for k in ("kbps_steady", "kbps_all", "lpips", "psnr")}
        out[key]["clips"] = len(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path, help="an eval run's results.json")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "base_vs_av1.json")
    args = ap.parse_args()
    run = json.loads(args.results.read_text())
    pts = points(run["scores"])
    av1 = {m: [v for (mm, _), v in pts.items() if mm == m]
           for m in {m for m, _ in pts if m.startswith("svtav1")}}
    ours = {m: v for (m, _), v in pts.items() if m.startswith("facecodec")}
    rows = []
    for m, p in sorted(ours.items(), key=lambda kv: kv[1]["kbps_steady"]):
        row = {"method": m, "clips": p["clips"], "steady_kbps": round(p["kbps_steady"], 2),
               "all_in_kbps": round(p["kbps_all"], 2), "lpips": round(p["lpips"], 4),
               "psnr": round(p["psnr"], 2)}
        for rate in ("steady", "all"):
            r = p[f"kbps_{rate}"]
            lp = interp_best({k: [(v[f"kbps_{rate}"], v["lpips"]) for v in c]
                              for k, c in av1.items()}, r, higher_better=False)
            ps = interp_best({k: [(v[f"kbps_{rate}"], v["psnr"]) for v in c]
                              for k, c in av1.items()}, r, higher_better=True)
            name = "steady" if rate == "steady" else "all_in"
            row[f"av1_lpips_at_{name}"] = None if lp is None else round(lp, 4)
            row[f"av1_psnr_at_{name}"] = None if ps is None else round(ps, 2)
        rows.append(row)
    fused = [p for m, p in ours.items() if "base=" in m]
    bd = {}
    for rate in ("steady", "all"):
        for metric, hb in (("lpips", False), ("psnr", True)):
            ref = envelope([(v[f"kbps_{rate}"], v[metric]) for c in av1.values() for v in c], hb)
            test = envelope([(p[f"kbps_{rate}"], p[metric]) for p in fused], hb)
            value = bd_rate(test, ref, hb)
            bd[f"bd_rate_{metric}_{'steady' if rate == 'steady' else 'all_in'}_pct"] = (
                None if value is None else round(value, 1))
    args.out.write_text(json.dumps({
        "benchmark": "base_vs_av1",
        "command": "python bench/base_vs_av1.py " + " ".join(sys.argv[1:]),
        "machine": "cpu", "eval_command": run.get("command"), "eval_date": run.get("date"),
        "notes": ["The codec with a base layer (format 2.5, fused at the receiver) against "
                  "SVT-AV1's best rung at the same steady and the same all-in rate, means "
                  "over the eval's clips; BD-rates of the base-layer points against "
                  f"SVT-AV1's lower envelope: {json.dumps(bd)}."],
        "bd_rates": bd, "results": rows}, indent=1))
    for r in rows:
        print(r)
    print(bd)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
