"""Probe: how the shipped model copes with a head that moves and scales in its tube.

    python bench/translation_probe.py [--clips 6] [--crops 0,0.15,0.3] [--drivers 12]

On the call clip every decoded head is cone-shaped, and the cause is the head's travel
in the fixed tube (docs/sender.md); this measures that weakness on the val clips. For each
of the first ``--clips`` val clips (cached 15 fps tubes), three sources (the most frontal
frame and the yaw extremes, uncompressed, the model's training path: no stream, no
touch-up) animate ``--drivers`` frames spread over the clip, each driver first cropped as
``data.augment.crop`` crops a training frame (a random square of side in [1 - crop, 1] at
a random place, enlarged back, its landmarks with it; seed 0). LPIPS-alex of the
reconstructions against the cropped drivers, per crop strength. The crop moves the
background with the head, which a fixed tube does not, so this is an upper bound of the
harm; 0 is the model's usual score on these frames.

Writes bench/results/translation_probe.json (docs/BENCHMARKS.md via bench/report.py).
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
from facecodec.models.package import find_model  # noqa: E402
from facecodec.models.registry import load_model  # noqa: E402
from facecodec.sender.prepare import default_out  # noqa: E402
from facecodec.training.data import crop_frame  # noqa: E402
from facecodec.training.lpips import LPIPSAlex  # noqa: E402

NOTE = ("LPIPS-alex of the shipped model's reconstructions (3 uncompressed sources, the "
        "training path) of drivers cropped as `data.augment.crop` crops a training frame: "
        "the head moved and scaled in the tube (with its background: an upper bound).")


def tensors(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()[None] / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--crops", default="0,0.15,0.3")
    ap.add_argument("--drivers", type=int, default=12)
    ap.add_argument("--model", default=None,
                    help="a model directory or name (default: the shipped one), e.g. a "
                         "training candidate from `facecodec export-model`")
    ap.add_argument("--out", type=Path,
                    default=ROOT / "bench" / "results" / "translation_probe.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(find_model(args.model).path).eval()
    lpips = LPIPSAlex.pretrained()
    manifest = ROOT.parent / "shared" / "data" / "manifest.csv"
    refs = manifest_clips(manifest, "val", default_out(), limit=args.clips)
    crops = [float(c) for c in args.crops.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    started = time.time()
    for ref in refs:
        clip = ref.load()
        meta, tube = clip.meta, clip.frames
        valid = np.flatnonzero(meta["valid"])
        yaw = meta["yaw"][valid]
        src = [int(valid[i]) for i in (np.argmin(np.abs(yaw)), np.argmax(yaw), np.argmin(yaw))]
        drv = [int(i) for i in valid[np.linspace(0, len(valid) - 1, args.drivers).astype(int)]]
        row: dict[str, object] = {"clip": ref.name}
        for crop in crops:
            images, sups, irises = [], [], []
            for i in drv:
                side = 1.0 - crop * rng.random()
                x0, y0 = rng.uniform(0.0, 1.0 - side, 2)
                image, (sup, iris) = crop_frame(
                    np.asarray(tube[i]), [meta["sup"][i].astype(np.float32),
                                          meta["iris"][i].astype(np.float32)], side, x0, y0)
                images.append(image)
                sups.append(sup)
                irises.append(iris)
            batch = {
                "sources": tensors([np.asarray(tube[i]) for i in src]),
                "drivers": tensors(images),
                "src_sup": torch.from_numpy(meta["sup"][src]).float()[None],
                "src_iris": torch.from_numpy(meta["iris"][src]).float()[None],
                "drv_sup": torch.from_numpy(np.stack(sups)).float()[None],
                "drv_iris": torch.from_numpy(np.stack(irises)).float()[None]}
            with torch.no_grad():
                out = model.training_forward(batch)
                row[f"lpips_crop_{crop:g}"] = float(lpips(out.prediction, out.target).mean())
        rows.append(row)
        print(row, flush=True)
    mean = {"clip": "mean"}
    for crop in crops:
        key = f"lpips_crop_{crop:g}"
        mean[key] = float(np.mean([r[key] for r in rows]))
    rows.append(mean)
    args.out.write_text(json.dumps({
        "benchmark": "translation_probe",
        "command": "python bench/translation_probe.py " + " ".join(sys.argv[1:]),
        "machine": platform.processor() or "cpu", "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.time() - started, 1), "notes": [NOTE], "results": rows},
        indent=1))
    print(mean)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
