"""Few-shot talking heads (issue 22): quality against the number of frames of the person
(T) and the receiver's fine-tuning seconds, on people the model never saw.

    python bench/nth_fewshot.py [--model nth] [--clips 6] [--shots 1,8,32]
                                [--seconds 0,10,30] [--drivers 16] [--no-vgg]

For each of the first ``--clips`` val clips (cached 15 fps tubes): the few-shot set is T
frames spread over the first half of the clip's valid frames, the held-out drivers are
``--drivers`` frames spread over its second half. The model (an ``nth`` package) embeds
the T frames (the paper's feed-forward "FF" at 0 s), then fine-tunes on them for each
budget of seconds on one thread (facecodec/receiver/finetune.py; budgets are cumulative
restarts from the same model, not one run sampled), and draws the drivers from their
landmarks (the cache's: no stream, so this is the model, not the codec). Scores: LPIPS-alex
and PSNR at 256 (the drawing resized, as the Decoder does, against the 256 tube), and the
fine-tuning's own loss. The paper's protocol has T = 1, 8, 32 (Zakharov et al. section 4);
the codec's receiver holds 3 sources.

Writes bench/results/nth_fewshot.json (docs/BENCHMARKS.md via bench/report.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecodec.eval.clips import manifest_clips  # noqa: E402
from facecodec.eval.metrics import psnr  # noqa: E402
from facecodec.models.blocks import resize_image  # noqa: E402
from facecodec.models.package import find_model  # noqa: E402
from facecodec.models.registry import load_model  # noqa: E402
from facecodec.receiver.finetune import finetune  # noqa: E402
from facecodec.sender.prepare import default_out  # noqa: E402
from facecodec.training.lpips import LPIPSAlex  # noqa: E402

NOTE = ("The nth model on val clips: T frames of the first half of each clip embedded "
        "(0 s: feed-forward) and fine-tuned on for a budget of seconds on one thread, "
        "held-out drivers of the second half drawn from their cached landmarks; LPIPS-alex "
        "and PSNR at 256.")


def tensors(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255


def spread(frames: np.ndarray, count: int) -> list[int]:
    """``count`` indices of ``frames`` evenly spread (all of them if fewer)."""
    if len(frames) <= count:
        return [int(i) for i in frames]
    return [int(frames[i]) for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="nth", help="an nth model directory or name")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--shots", default="1,8,32")
    ap.add_argument("--seconds", default="0,10,30")
    ap.add_argument("--drivers", type=int, default=16)
    ap.add_argument("--no-vgg", action="store_true", help="fine-tune on L1 alone")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "nth_fewshot.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    package = find_model(args.model)
    if package.profile.family != "nth":
        sys.exit(f"nth_fewshot: {package.path} is a {package.profile.family} model, not nth")
    model = load_model(package.path, parts=("receiver",)).eval()
    rx, res = model.receiver, package.resolution
    lpips = LPIPSAlex.pretrained()
    manifest = ROOT.parent / "shared" / "data" / "manifest.csv"
    refs = manifest_clips(manifest, "val", default_out(), limit=args.clips)
    shots = [int(s) for s in args.shots.split(",")]
    budgets = [float(s) for s in args.seconds.split(",")]
    rows = []
    started = time.time()
    for ref in refs:
        clip = ref.load()
        meta, tube = clip.meta, np.asarray(clip.frames)
        valid = np.flatnonzero(meta["valid"])
        half = len(valid) // 2
        drv = spread(valid[half:], args.drivers)
        target = tensors(tube[drv])
        if target.shape[-1] != 256:
            target = resize_image(target, 256)
        dv = {k: torch.from_numpy(meta[k][drv]).float() for k in ("sup", "iris")}
        for t in shots:
            few = spread(valid[:half], t)
            images = resize_image(tensors(tube[few]), res)
            values = {k: torch.from_numpy(meta[k][few]).float() for k in ("sup", "iris")}
            for seconds in budgets:
                tuned = finetune(rx, images, values, seconds, perceptual=not args.no_vgg)
                with torch.no_grad():
                    cache = tuned.cache.repeat(len(drv))
                    drawn = resize_image(tuned.receiver.render(cache, dv).image.clamp(0, 1), 256)
                    lp = float(lpips(drawn, target).mean())
                ours = (drawn.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
                theirs = (target.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
                row = {"clip": ref.name, "shots_asked": t, "shots": len(few),
                       "seconds": seconds,
                       "steps": tuned.steps, "tuned_s": round(tuned.seconds, 2),
                       "loss": tuned.loss,
                       "last_loss": round(tuned.losses[-1], 4) if tuned.losses else None,
                       "lpips": round(lp, 4), "psnr": round(psnr(ours, theirs), 2)}
                rows.append(row)
                print(row, flush=True)
    summary = []
    for t in shots:
        for seconds in budgets:
            sel = [r for r in rows if r["seconds"] == seconds and r["shots_asked"] == t]
            if sel:
                summary.append({"shots": t, "seconds": seconds, "clips": len(sel),
                                "lpips": round(float(np.mean([r["lpips"] for r in sel])), 4),
                                "psnr": round(float(np.mean([r["psnr"] for r in sel])), 2),
                                "steps": round(float(np.median([r["steps"] for r in sel])))})
    args.out.write_text(json.dumps({
        "benchmark": "nth_fewshot",
        "command": "python bench/nth_fewshot.py " + " ".join(sys.argv[1:]),
        "machine": platform.processor() or "cpu", "date": time.strftime("%Y-%m-%d"),
        "model": str(package.path), "weights": package.fingerprint(),
        "training_step": _step(package.path),
        "seconds": round(time.time() - started, 1), "notes": [NOTE], "summary": summary,
        "results": rows}, indent=1))
    for s in summary:
        print(s)
    print(f"results: {args.out}")


def _step(path: Path) -> int | None:
    """The training step an exported model was taken at (its weights' metadata)."""
    from safetensors import safe_open

    with safe_open(str(path / "receiver.safetensors"), "pt") as f:
        step = (f.metadata() or {}).get("step")
    return None if step is None else int(step)


if __name__ == "__main__":
    main()
