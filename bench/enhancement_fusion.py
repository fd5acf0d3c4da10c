"""Issue 20: the learned enhancement layer against SVT-AV1 on its ladder, on the val clips.

    python bench/enhancement_fusion.py --checkpoint runs/enhancer/checkpoint.pt
        [--clips N] [--split val] [--crf 63,56,48,40] [--layers 256_63,...]
        [--receiver-motion] [--out ...]

For each clip of the enhancement cache (``facecodec enhance-data --split val
--max-frames 0``: the codec's default stream drawn without the touch-up, and its SVT-AV1
base layers), the fusion network's frames for every base layer, the animation alone, the
base layer alone (enlarged), and SVT-AV1 alone on the ladder (256 / 192 / 128 px at 15
fps, 256 px at 7.5 fps, at each ``--crf``; facecodec/eval/ladder.py's reduce / restore
and facecodec/eval/classic.py's encoder and bit accounting), all scored at 256x256 15 fps
against the original tube with LPIPS-alex and PSNR.

Rates, per clip, then averaged over clips per operating point:
- ``kbps``: all-in (SVT-AV1: every packet, intra frame included; the fusion: the
  animation's whole ``.fcs`` stream, header and three full source frames included, plus
  the base layer's packets);
- ``steady_kbps``: what a long call pays per second once the start is paid (SVT-AV1: its
  rate without the intra frame; the fusion: the animation's frame packets plus the base
  layer's packets without its intra frame).

The comparison (``vs_av1``): for each fusion point, SVT-AV1's best LPIPS and best PSNR
over all rungs at the same rate (each rung's curve interpolated linearly in log-rate, the
best rung taken at that rate), for both rate definitions; and BD-rate (bits saved at equal
quality, piecewise linear in log-rate, over the overlapping quality range) of the fusion's
lower envelope against SVT-AV1's.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecodec.codec import Decoder, Encoder  # noqa: E402
from facecodec.eval.base import EVAL_FPS  # noqa: E402
from facecodec.eval.classic import CODECS, decode, encode  # noqa: E402
from facecodec.eval.clips import manifest_clips  # noqa: E402
from facecodec.eval.ladder import frame_step, reduce_frames, restore_frames  # noqa: E402
from facecodec.eval.metrics import LPIPS, ms_ssim, psnr  # noqa: E402
from facecodec.sender.deadband import Deadband  # noqa: E402
from facecodec.sender.landmarks import IRIS_CENTRES, SUPERVISED_LANDMARKS, FaceTracker  # noqa: E402,E501
from facecodec.sender.prepare import default_out  # noqa: E402
from facecodec.sender.sources import picture_stats  # noqa: E402
from facecodec.training.config import resolve_data_root  # noqa: E402
from facecodec.training.data import ClipStore  # noqa: E402
from facecodec.training.enhance import (  # noqa: E402
    cached_clips,
    enlarge,
    load_enhancer,
    to_tensor,
)
from facecodec.training.enhance_data import default_cache  # noqa: E402

RUNGS = ((256, 15.0), (192, 15.0), (128, 15.0), (256, 7.5))
NOTE = ("Issue 20 (docs/enhancement.md): means over the clips per operating point. `anim` "
        "the codec's default stream alone; `base` an SVT-AV1 base layer alone (enlarged); "
        "`fused` the fusion network on both; `fused_rx` the same with the animation's motion "
        "taken by the receiver from the base layer (no keypoint stream: only the header and "
        "sources are sent besides the base); `av1_<side>_<fps>` SVT-AV1 alone on its ladder. "
        "`kbps` all-in, `steady_kbps` without the start (intra frames, sources); `av1 best` "
        "columns: SVT-AV1's best rung at the row's rate (interpolated in log-rate; empty where "
        "no rung reaches that rate).")


def table_rows(summary: dict) -> list[dict]:
    """One row per operating point, the fusion's with SVT-AV1's best at their rates."""
    rows = []
    for key, p in sorted(summary["points"].items(),
                         key=lambda kv: (kv[1]["method"], kv[1]["steady_kbps"])):
        row = {"point": key, **{k: v for k, v in p.items() if k != "method"}}
        for rate in ("kbps", "steady_kbps"):
            vs = summary[rate].get(p["method"], {}).get("vs_av1", {}).get(key)
            if vs:
                row[f"av1 best lpips at {rate}"] = vs["av1_best_lpips"]
                row[f"av1 best psnr at {rate}"] = vs["av1_best_psnr"]
        rows.append(row)
    return rows


def fuse(net, anim: np.ndarray, base: np.ndarray, side: int, crf: int,
         batch: int = 16) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(anim), batch):
            a, b = to_tensor(anim[i:i + batch]), to_tensor(enlarge(base[i:i + batch]))
            n = len(a)
            y = net(a, b, torch.full((n,), side), torch.full((n,), crf))
            out.append((y.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).clip(0, 255)
                       .astype(np.uint8))
    return np.concatenate(out)


def receiver_motion(encoder: Encoder, decoder: Decoder, orig: np.ndarray, meta: dict,
                    base: np.ndarray) -> tuple[np.ndarray, int]:
    """The animation when the receiver takes the motion from the base layer instead of a
    keypoint stream: MediaPipe and the sender network run on the enlarged base frames
    (what the receiver has), the source frames are the sender's usual choice from the
    originals. Returns the drawn frames and the bits that must still be sent (header and
    sources; the values' packets are not sent in this design)."""
    sup, iris = meta["sup"].copy(), meta["iris"].copy()
    found = 0
    with FaceTracker(max_num_faces=1) as tracker:
        for t, image in enumerate(base):
            faces = tracker(np.ascontiguousarray(image))
            if faces:
                p = faces[0][:, :2] / 128.0 - 1.0  # tube pixels -> the meta's [-1, 1]
                sup[t], iris[t] = p[list(SUPERVISED_LANDMARKS)], p[list(IRIS_CENTRES)]
                found += 1
            elif t > 0:
                sup[t], iris[t] = sup[t - 1], iris[t - 1]
    band = Deadband(encoder.deadband)
    values = []
    for i in range(0, len(base), 16):
        j = slice(i, i + 16)
        values += encoder.sender_values(sup[j], iris[j], base[j], band)
    stats = np.array([picture_stats(f) for f in orig])
    chosen = encoder.choose_sources(meta["yaw"], meta["valid"].astype(bool),
                                    meta["eyes_open"], stats)
    sink = io.BytesIO()
    written = encoder.write_clip(sink, values, {i: orig[i] for i in chosen},
                                 {0: meta["box"][0]}, (0, 0))
    frames = np.stack([d.image for d in decoder.frames(sink.getvalue(), name="rx.fcs")])
    return frames, int(written.setup_bits)


def interp_best(points: dict[str, list[tuple[float, float]]], rate: float,
                higher_better: bool) -> float | None:
    """The best quality over the curves at ``rate`` (each curve linear in log-rate between
    its points; a curve that does not reach ``rate`` takes no part)."""
    best = None
    for curve in points.values():
        curve = sorted(curve)
        rates = np.log([r for r, _ in curve])
        if not rates[0] <= np.log(rate) <= rates[-1]:
            continue
        q = float(np.interp(np.log(rate), rates, [v for _, v in curve]))
        if best is None or (q > best if higher_better else q < best):
            best = q
    return best


def envelope(points: list[tuple[float, float]], higher_better: bool
             ) -> list[tuple[float, float]]:
    """The points no cheaper point beats: (rate, quality) sorted by rate."""
    out: list[tuple[float, float]] = []
    for r, q in sorted(points):
        if not out or (q > out[-1][1] if higher_better else q < out[-1][1]):
            out.append((r, q))
    return out


def bd_rate(test: list[tuple[float, float]], ref: list[tuple[float, float]],
            higher_better: bool) -> float | None:
    """Mean log-rate difference of two envelopes at equal quality, as a percentage (< 0:
    ``test`` needs fewer bits), over the qualities both reach; piecewise linear."""
    if len(test) < 2 or len(ref) < 2:
        return None
    sign = 1.0 if higher_better else -1.0
    # as functions quality -> log-rate, quality increasing
    t = sorted((sign * q, np.log(r)) for r, q in test)
    f = sorted((sign * q, np.log(r)) for r, q in ref)
    lo, hi = max(t[0][0], f[0][0]), min(t[-1][0], f[-1][0])
    if hi <= lo:
        return None
    qs = np.linspace(lo, hi, 200)
    tq, tr = np.array(t).T
    fq, fr = np.array(f).T
    diff = np.interp(qs, tq, tr) - np.interp(qs, fq, fr)
    return float((np.exp(diff.mean()) - 1) * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True,
                    help="a run's checkpoint.pt or an exported enhancer folder")
    ap.add_argument("--clips", type=int, default=None)
    ap.add_argument("--offset", type=int, default=0, help="skip the first N clips")
    ap.add_argument("--time-only", action="store_true",
                    help="only time the fusion on one 256x256 frame (median of 50, one "
                         "thread) and write bench/results/enhancement_fusion_speed.json")
    ap.add_argument("--merge", nargs="+", type=Path, default=None,
                    help="only merge these result files (runs on parts of a split) into --out")
    ap.add_argument("--split", default="val")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--crf", default="63,56,48,40")
    ap.add_argument("--layers", default=None,
                    help="base layers to fuse, e.g. 256_63,256_56 (default: every one built)")
    ap.add_argument("--receiver-motion", action="store_true",
                    help="also the design whose receiver takes the motion from the base "
                         "layer (no keypoint stream): method fused_rx")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                    "enhancement_fusion.json")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        rows = [r for part in parts for r in part.get("per_clip", part["results"])]
        summary = summarise(rows)
        merged = {**parts[0], "notes": [NOTE], "command": "; ".join(p["command"] for p in parts),
                  "seconds": sum(p["seconds"] for p in parts),
                  "clips": [c for p in parts for c in p["clips"]],
                  "summary": summary, "results": table_rows(summary), "per_clip": rows}
        args.out.write_text(json.dumps(merged, indent=1))
        print(json.dumps(merged["summary"], indent=1))
        return
    torch.set_num_threads(1)
    net, cfg, step = load_enhancer(args.checkpoint)
    if args.time_only:
        time_fusion(net, step)
        return
    store = ClipStore(resolve_data_root(cfg.data.root), 256)
    by_name = {c.name: c for c in store.clips}
    clips = cached_clips(args.cache or default_cache(),
                         [c.name for c in store.split(args.split)])
    clips = clips[args.offset:][: args.clips]
    lpips, av1 = LPIPS(), CODECS["svtav1"]
    crfs = [int(q) for q in args.crf.split(",")]
    rows: list[dict] = []
    started = time.time()
    if args.receiver_motion:
        encoder, decoder = Encoder(), Decoder(retouch=False)
        refs = {r.name: r for r in manifest_clips(
            ROOT.parent / "shared" / "data" / "manifest.csv", "all", default_out())}
    for clip in clips:
        orig = store.frames(by_name[clip.name], list(range(clip.frames)))
        anim = np.asarray(clip.anim())
        seconds = len(orig) / EVAL_FPS
        info = json.loads((clip.folder / "info.json").read_text())

        def score(frames: np.ndarray, orig: np.ndarray = orig) -> dict[str, float]:
            return {"lpips": float(np.mean(lpips(frames, orig))),
                    "psnr": float(np.mean([psnr(a, b) for a, b in zip(frames, orig,
                                                                      strict=True)])),
                    "ms_ssim": float(np.mean(ms_ssim(frames, orig)))}

        rows.append({"clip": clip.name, "method": "anim", "kbps": info["anim_kbps"],
                     "steady_kbps": clip.anim_steady_kbps, **score(anim)})
        wanted = args.layers.split(",") if args.layers else None
        for layer, li in sorted(clip.layers.items()):
            if wanted and layer.removeprefix("base_") not in wanted:
                continue
            base = np.asarray(clip.base(layer))
            steady = li["steady_kbps"]
            common = {"clip": clip.name, "layer": layer, "base_kbps": li["kbps"],
                      "base_steady_kbps": steady}
            rows.append({**common, "method": "base", "kbps": li["kbps"],
                         "steady_kbps": steady, **score(enlarge(base))})
            rows.append({**common, "method": "fused", "kbps": info["anim_kbps"] + li["kbps"],
                         "steady_kbps": clip.anim_steady_kbps + steady,
                         **score(fuse(net, anim, base, li["side"], li["crf"]))})
            print(rows[-1], flush=True)
            if args.receiver_motion:
                meta = refs[clip.name].load(clip.frames).meta
                anim_rx, setup_bits = receiver_motion(encoder, decoder, orig, meta,
                                                      enlarge(base))
                rows.append({**common, "method": "fused_rx",
                             "kbps": setup_bits / seconds / 1000 + li["kbps"],
                             "steady_kbps": steady,
                             **score(fuse(net, anim_rx, base, li["side"], li["crf"]))})
                print(rows[-1], flush=True)
        for size, fps in RUNGS:
            step = frame_step(fps)
            small = reduce_frames(orig, size, step)
            for crf in crfs:
                trial = encode(av1, small, crf)
                frames = restore_frames(decode(av1, trial.payloads)[0], step, len(orig))
                bits = trial.frame_bits
                rows.append({"clip": clip.name, "method": f"av1_{size}_{fps:g}", "crf": crf,
                             "kbps": float(bits.sum()) / seconds / 1000,
                             "steady_kbps": float(bits[1:].sum()) / seconds / 1000,
                             **score(frames)})
        print(f"{clip.name}: {time.time() - started:.0f} s", flush=True)
    summary = summarise(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "enhancement_fusion",
        "command": "python bench/enhancement_fusion.py " + " ".join(sys.argv[1:]),
        "machine": platform.processor() or "cpu", "date": time.strftime("%Y-%m-%d"),
        "threads": 1, "seconds": round(time.time() - started, 1),
        "checkpoint_step": step, "clips": [c.name for c in clips],
        "notes": [NOTE], "summary": summary, "results": table_rows(summary),
        "per_clip": rows}, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"results: {args.out}")


def time_fusion(net, step: int, runs: int = 50) -> None:
    frame = torch.rand(1, 3, 256, 256)
    side, crf = torch.tensor([256]), torch.tensor([56])
    times = []
    with torch.no_grad():
        for _ in range(runs + 5):
            start = time.perf_counter()
            net(frame, frame, side, crf)
            times.append(1000 * (time.perf_counter() - start))
    row = {"what": "fusion network, one 256x256 frame", "params": sum(
        p.numel() for p in net.parameters()), "ms_median": float(np.median(times[5:])),
        "ms_p90": float(np.percentile(times[5:], 90))}
    out = ROOT / "bench" / "results" / "enhancement_fusion_speed.json"
    out.write_text(json.dumps({
        "benchmark": "enhancement_fusion_speed",
        "command": "python bench/enhancement_fusion.py " + " ".join(sys.argv[1:]),
        "machine": platform.processor() or "cpu", "date": time.strftime("%Y-%m-%d"),
        "threads": 1, "checkpoint_step": step,
        "notes": [f"Median of {runs} runs after 5 warm-up runs, PyTorch eager, one thread."],
        "results": [row]}, indent=1))
    print(row)


def summarise(rows: list[dict]) -> dict:
    """Per operating point (method + layer or CRF) the means over clips, then the
    comparison with SVT-AV1's best rung at the same rate and the BD-rates."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["method"], r.get("layer") or r.get("crf"))
        groups.setdefault(key, []).append(r)
    points = {f"{m}@{k}" if k is not None else m:
              {f: float(np.mean([r[f] for r in rs]))
               for f in ("kbps", "steady_kbps", "lpips", "psnr", "ms_ssim")} | {"method": m}
              for (m, k), rs in groups.items()}
    out: dict = {"points": points}
    for rate in ("kbps", "steady_kbps"):
        av1: dict[str, dict[str, list[tuple[float, float]]]] = {
            "lpips": {}, "psnr": {}, "ms_ssim": {}}
        for p in points.values():
            if p["method"].startswith("av1_"):
                for m in av1:
                    av1[m].setdefault(p["method"], []).append((p[rate], p[m]))
        out[rate] = {}
        for method in sorted({p["method"] for p in points.values()
                              if p["method"].startswith("fused")}):
            out[rate][method] = compare(points, av1, method, rate)
    return out


def compare(points: dict, av1: dict, method: str, rate: str) -> dict:
    """``method``'s points against SVT-AV1's best rung at their rate, and the BD-rates."""
    fused = {k: p for k, p in points.items() if p["method"] == method}
    cmp = {}
    for k, p in sorted(fused.items(), key=lambda kv: kv[1][rate]):
        cmp[k] = {"rate": p[rate], "lpips": p["lpips"], "psnr": p["psnr"],
                  "ms_ssim": p["ms_ssim"],
                  "av1_best_lpips": interp_best(av1["lpips"], p[rate], False),
                  "av1_best_psnr": interp_best(av1["psnr"], p[rate], True),
                  "av1_best_ms_ssim": interp_best(av1["ms_ssim"], p[rate], True)}
    all_av1 = {m: [pt for c in av1[m].values() for pt in c] for m in av1}
    return {
        "vs_av1": cmp,
        "bd_rate_lpips_pct": bd_rate(
            envelope([(p[rate], p["lpips"]) for p in fused.values()], False),
            envelope(all_av1["lpips"], False), False),
        "bd_rate_psnr_pct": bd_rate(
            envelope([(p[rate], p["psnr"]) for p in fused.values()], True),
            envelope(all_av1["psnr"], True), True),
        "bd_rate_ms_ssim_pct": bd_rate(
            envelope([(p[rate], p["ms_ssim"]) for p in fused.values()], True),
            envelope(all_av1["ms_ssim"], True), True)}


if __name__ == "__main__":
    main()
