"""Benchmark: receiver and sender frames per second (issue targets: both >= 30 on 2 cores).

    python bench/codec_speed.py [--frames 60] [--repeats 3] [--threads 2]

Receiver: ``Renderer.render`` one frame at a time as the Decoder calls it (dense motion +
decoder + pixel blend, the fused source embedding computed once beforehand) of the
Frontalizer Sup+Unsup+Expr and the FOM baseline built from their configs at 128 and 256
(random weights: speed does not depend on them), on PyTorch (the receiver's runtime,
facecodec/receiver/runtime.py) and, for comparison, the same frames through the generator
graph ``facecodec export onnx`` writes, run with onnxruntime on one thread (what an app
using the export would run; docs/export.md says why the receiver stays on PyTorch).
Sender: the front end (PyAV decode of a 720p H.264 file, MediaPipe tracking, tube crop)
plus the keypoint + expression network on the crop, frame by frame, as ``Encoder.push``
runs them; the 720p clip is the demo's example photo moved synthetically and upscaled.
Writes bench/results/codec_speed.json; medians of ``repeats`` runs in one process.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecodec.models.layout import KeypointLayout  # noqa: E402
from facecodec.models.registry import build_model  # noqa: E402
from facecodec.training.config import load_config  # noqa: E402


def random_values(layout: KeypointLayout, lead: tuple[int, ...], gen: torch.Generator) -> dict:
    v = {}
    if layout.sup:
        v["sup"] = (torch.rand(*lead, 33, 2, generator=gen) * 2 - 1) * 0.7
    if layout.iris:
        v["iris"] = (torch.rand(*lead, 2, 2, generator=gen) * 2 - 1) * 0.7
    if layout.unsup:
        v["unsup"] = (torch.rand(*lead, layout.unsup, 2, generator=gen) * 2 - 1) * 0.7
    if layout.jacobians:
        v["jac"] = torch.eye(2).expand(*lead, layout.unsup, 2, 2).clone()
    if layout.expr_dim:
        v["expr"] = torch.rand(*lead, layout.expr_dim, generator=gen) * 2 - 1
    return v


def random_package(config: str, res: int, dest: Path) -> Path:
    """A model directory with random weights (speed does not depend on them)."""
    from facecodec.training.export import write_package

    cfg = load_config(ROOT / "configs" / f"{config}.yaml", [f"data.resolution={res}"])
    return write_package(build_model(cfg).eval(), cfg, dest)


class ExportedGenerator:
    """``renderer``'s frames drawn by its exported generator graph on onnxruntime (one
    intra-op thread), fed from the renderer's own source embedding and pose mix."""

    def __init__(self, renderer, tmp: Path):
        from facecodec.export import to_onnx
        from facecodec.export.wrappers import generator_network
        from facecodec.models.registry import load_model

        self.renderer, self.run = renderer, to_onnx.run
        self.n = len(renderer._images)
        model = load_model(renderer.package.path, parts=("receiver",))
        net, self.split = generator_network(model, self.n, renderer.output_size)
        self.path = to_onnx.export(net, tmp / f"generator-n{self.n}.onnx")
        self.sess = to_onnx.session(self.path, threads=1)
        self.names = [s.name for s in net.inputs]
        self._fixed_for, self._fixed = None, {}

    @torch.inference_mode()
    def render(self, frames: list) -> None:
        r = self.renderer
        per, _, mix = r.frame_values(frames)
        if self._fixed_for is not r._cache:  # converted once per source set
            fixed = dict(zip(self.names, self.split(r._cache), strict=False))
            fixed["source_images"] = r._stacked
            self._fixed = {k: v.numpy() for k, v in fixed.items() if k in self.names}
            self._fixed_for = r._cache
        for i, v in enumerate(per):
            feed = {**self._fixed, **{k: t.numpy() for k, t in v.items()},
                    "source_mix": (torch.ones(1, self.n) if mix is None
                                   else mix[i:i + 1]).numpy()}
            self.run(self.sess, {k: feed[k] for k in self.names})


def receiver_fps(config: str, res: int, n_sources: int, frames: int, repeats: int,
                 backend: str, output_size: int | None = None) -> dict:
    """Frames/s of ``Renderer.render``, one frame at a time as the Decoder calls it, the
    frames drawn at ``output_size`` (default: the model's ``res``) from sources that size;
    ``backend`` ``onnxruntime``: the exported generator graph instead
    (:class:`ExportedGenerator`)."""
    from facecodec.models.package import find_model
    from facecodec.receiver.renderer import Renderer

    tmp = Path(tempfile.mkdtemp())
    package = find_model(random_package(config, res, tmp / config))
    renderer = Renderer(package, max_sources=n_sources, backend="torch",
                        output_size=output_size)
    size = renderer.output_size
    layout = renderer.model.layout
    gen = torch.Generator().manual_seed(0)

    def numpy_values(lead: tuple[int, ...]) -> dict:
        return {k: v.numpy() for k, v in random_values(layout, lead, gen).items()}

    n = renderer.max_sources
    rng = np.random.default_rng(0)
    for slot in range(n):
        renderer.set_source(slot, rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                            numpy_values(()))
    drive = [numpy_values(()) for _ in range(frames)]
    draw = renderer
    graph_mb = None
    if backend == "onnxruntime":
        draw = ExportedGenerator(renderer, tmp)
        graph_mb = round(draw.path.stat().st_size / 1e6, 2)
    draw.render(drive[:1])  # warm-up
    t0 = time.perf_counter()
    renderer._cache = None  # time the source embedding alone, once
    draw.render(drive[:1])
    embed_ms = (time.perf_counter() - t0) * 1000
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for v in drive:
            draw.render([v])
        runs.append(frames / (time.perf_counter() - t0))
    row = {"network": f"{config} receiver", "backend": backend, "resolution": res,
           "output_size": size, "sources": n, "fps_median": statistics.median(runs),
           "fps_runs": [round(r, 1) for r in runs],
           "embed_sources_plus_one_frame_ms": round(embed_ms, 1)}
    if graph_mb is not None:
        row["graph_mb"] = graph_mb
    return row


def sender_fps(config: str, frames: int, repeats: int) -> dict:
    import av
    import cv2

    from facecodec.examples import make_example_video
    from facecodec.sender import FrontEnd
    from facecodec.sender.video import VideoReader

    cfg = load_config(ROOT / "configs" / f"{config}.yaml", [])
    sender = build_model(cfg).sender.eval()
    res = cfg.data.resolution
    tmp = Path(tempfile.mkdtemp())
    small = make_example_video(tmp / "small.mp4", seconds=frames / 15)
    big = tmp / "720p.mp4"
    with av.open(str(small)) as src, av.open(str(big), "w") as out:
        s = out.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = 1280, 720, "yuv420p"
        for f in src.decode(video=0):
            img = cv2.resize(f.to_ndarray(format="rgb24"), (720, 720))
            canvas = np.full((720, 1280, 3), 128, np.uint8)
            canvas[:, 280:1000] = img
            out.mux(s.encode(av.VideoFrame.from_ndarray(canvas, "rgb24")))
        out.mux(s.encode(None))
    runs, found = [], 0
    for _ in range(repeats):
        with FrontEnd() as fe, VideoReader(big, fps=None) as video, torch.inference_mode():
            n = 0
            t0 = time.perf_counter()
            for rec in fe.run(video):
                x = torch.from_numpy(rec.tube).permute(2, 0, 1)[None].float() / 255
                x = torch.nn.functional.interpolate(x, size=(res, res), mode="bilinear",
                                                    antialias=True)
                sender(x)
                n += 1
            runs.append(n / (time.perf_counter() - t0))
            found = fe.faces_found / max(n, 1)
    return {"network": f"front end + {config} sender network", "resolution": res,
            "input": "1280x720 H.264 file", "fps_median": statistics.median(runs),
            "fps_runs": [round(r, 1) for r in runs], "face_found": found}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    # the 128 model drawing 256 frames is what the Decoder runs with the shipped model (the
    # pixel blend warps the 256 sources at 256: facecodec/models/generator.py)
    for config, res, size in (("frontalizer_sup_unsup_expr", 128, None),
                              ("frontalizer_sup_unsup_expr", 128, 256),
                              ("frontalizer_sup_unsup_expr", 256, None), ("fom", 256, None)):
        for backend in ("torch", "onnxruntime"):
            rows.append(receiver_fps(config, res, 3, args.frames, args.repeats, backend, size))
            print(rows[-1], flush=True)
    for config in ("frontalizer_sup_unsup_expr",):
        rows.append(sender_fps(config, args.frames * 2, args.repeats))
        print(rows[-1], flush=True)
    out = {"benchmark": "codec_speed",
           "command": f"python bench/codec_speed.py --frames {args.frames} "
                      f"--repeats {args.repeats} --threads {args.threads}",
           "machine": platform.machine(), "torch_threads": args.threads, "results": rows}
    dest = ROOT / "bench" / "results" / "codec_speed.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
