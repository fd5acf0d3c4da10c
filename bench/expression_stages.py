"""Benchmark: where along the codec each expression (blinks, mouth opening, mouth width) is
lost (issue 19, part 2).

    python bench/expression_stages.py [--clips a,b] [--limit N] [--max-frames N]
                                      [--split val] [--cache DIR] [--model NAME]

On each clip of the split (face tubes from the training cache, as ``facecodec eval`` loads
them: facecodec/eval/clips.py), three expression signals (facecodec/eval/expression.py:
eye openness, mouth openness, mouth width, in outer-eye-corner distances) are measured at
every stage and compared with the original's: Pearson r per clip (mean over clips), the
gain (slope of the stage's series regressed on the original's: 1 = full amplitude, 0 =
flat; mean over clips), blink recall (the original's closed-eye frames that are closed at
the stage too, counts pooled over clips), false blinks, and the blink *depth* (the stage's
eye openness on the original's blink frames over the stage's own median: 1 = no dip at
all, < 0.5 = counted closed).

Stages (all on the same frames: the cache's 15 fps tube of the clip):

- ``a``: the reference, MediaPipe (raw, tracking mode) on the original 256 tube frames
  (``eval.metrics.track_landmarks``, what eval scores against).
- ``b`` / ``c``: the sender's 33 supervised landmarks, ``FrontEnd(smoothing=False)`` (raw
  MediaPipe on the original video) and ``FrontEnd(smoothing=True)`` (One-Euro smoothed,
  what is sent), run as ``prepare-data`` runs them.
- ``d``: the landmarks the receiver decodes from a real stream (``Encoder`` with default
  settings, written as eval writes it: ``eval.neural.write_stream``; 8-bit quantisation;
  the dead zone acts on the learned values only).
- ``e``: MediaPipe on the frames ``Decoder`` renders from that stream (shipped model).
- ``f*``: counterfactual renders with the same sources and receiver weights (PyTorch
  backend; ``f0`` re-renders the decoded values as the control): ``f1`` the landmarks raw
  (stage b, unsmoothed, unquantised), other values as decoded; ``f2`` every value raw
  (landmarks of stage b, the sender network's outputs without dead zone or quantisation);
  ``f3`` the expression code held at the first source's for every frame; ``f4`` the decoded
  landmarks with both upper lids moved to 20 % of the lid gap above the lower lids on
  frames t % 15 in {7, 8, 9} (a synthetic 3-frame blink every second, scored against
  those landmarks: can the receiver close an eye at all when told to?); ``f5`` the
  decoder's own RGB without the blend of warped source pixels (upscaled 128 -> 256);
  on clips with a blink, ``f6`` adds the clip's most closed frame (webp-coded, with its
  decoded values) as a 4th source, and ``f7`` also takes the pixels of the original's
  blink frames from that source alone (an oracle choice: can the warp carry a closed
  eye?); both scored on blink frames more than 3 frames from that frame, beside f0 on
  the same frames.

Landmark stages b, c, d have only the 33 supervised points, so they are scored with the
same formulas restricted to those points ("few": lid pairs 159/145 and 386/374, inner lips
13/14, corners 61/291, over outer eye corners 33/263) against stage a computed the same
way. Render stages are scored with the full definitions of eval/expression.py against
stage a (full), as eval does (a face lost in a render holds the last one found); the JSON
also has each render's "few" scores and, for e, f0, f1 and f2, its scores against the
landmarks it was driven with.

Also per clip: the learned blend mask (mean over the frame, the eye boxes and the mouth
box of the original's mesh), the expression code's variation (raw and decoded, and how
often the dead zone lets it change), the pixel change that holding the code makes, and
checks (stage c against the cache's landmarks; f0 against e). At the end a leave-one-
clip-out linear probe: how well the 16-d code (raw / decoded), centred per clip, predicts
the original's signals on a clip it was not fitted on.

Writes bench/results/expression_stages.json and prints a table. One thread
(``--threads``): run nothing else heavy beside it.
"""

from __future__ import annotations

import argparse
import io
import json
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

from facecodec.eval.clips import manifest_clips  # noqa: E402
from facecodec.eval.expression import (  # noqa: E402
    OUTER_EYE_CORNERS,
    closed_eyes,
    correlation,
    expression_signals,
)
from facecodec.eval.metrics import hold_missing, track_landmarks  # noqa: E402
from facecodec.receiver.renderer import Renderer  # noqa: E402
from facecodec.sender.landmarks import (  # noqa: E402
    SUPERVISED_LANDMARKS,
    quiet_mediapipe_logs,
)

SIGNALS = ("eye", "mouth_open", "mouth_width")
# the expression.py formulas restricted to the 33 supervised points
FEW_LIDS = ((159, 145), (386, 374))
FEW_LIPS = ((13, 14),)
MOUTH_CORNERS = (61, 291)
SUP_INDEX = {m: i for i, m in enumerate(SUPERVISED_LANDMARKS)}
BLINK_PERIOD, BLINK_PHASES, LID_LEFT = 15, (7, 8, 9), 0.2  # f4's synthetic blinks
EYE_BOX = (33, 133, 159, 145, 160, 144, 158, 153, 362, 263, 386, 374, 385, 380, 387, 373)
MOUTH_BOX = (61, 291, 0, 17, 13, 14, 39, 269, 181, 405)
RENDER_BATCH = 8

STAGES = [  # key, label, reference ("few": 33-point formulas; "full": expression.py)
    ("a_few", "a. original, MediaPipe on the tube, 33-point formulas vs full", "full"),
    ("b_raw", "b. sender landmarks before smoothing", "few"),
    ("c_smoothed", "c. sender landmarks after One-Euro (sent)", "few"),
    ("d_decoded", "d. landmarks decoded by the receiver", "few"),
    ("e_render", "e. rendered output (Decoder, shipped model)", "full"),
    ("f0_rerender", "f0. control: decoded values re-rendered (PyTorch)", "full"),
    ("f1_raw_landmarks", "f1. render, landmarks raw (b), rest decoded", "full"),
    ("f2_all_raw", "f2. render, every value raw (no smoothing/dead zone/quant.)", "full"),
    ("f3_const_expr", "f3. render, expression code held at source 0's", "full"),
    ("f5_decoder_rgb", "f5. decoder RGB alone, no source pixels (f0's)", "full"),
]
F4 = ("f4_forced_blinks", "f4. render, lids closed in the landmarks on t%15 in 7-9")
F6 = ("f6_blink_source", "f6. render, the clip's most closed frame added as a 4th source "
      "(blink frames > 3 frames from it)")
F7 = ("f7_blink_source_forced", "f7. as f6, pixels of the original's blink frames from "
      "that source alone (oracle)")
NEAR = 3


# --- signals and scores ---------------------------------------------------------------

def few_signals(points: np.ndarray) -> dict[str, np.ndarray]:
    """(T, >=468, 2) mesh points (NaN where missing) -> the three signals from the 33
    supervised points only."""
    p = np.asarray(points, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.linalg.norm(p[:, OUTER_EYE_CORNERS[0]] - p[:, OUTER_EYE_CORNERS[1]], axis=-1)
        scale = np.where(scale > 0, scale, np.nan)

        def gap(pairs):
            return np.mean([np.linalg.norm(p[:, a] - p[:, b], axis=-1) for a, b in pairs], 0)

        return {"eye": gap(FEW_LIDS) / scale, "mouth_open": gap(FEW_LIPS) / scale,
                "mouth_width": np.linalg.norm(p[:, MOUTH_CORNERS[0]] - p[:, MOUTH_CORNERS[1]],
                                              axis=-1) / scale}


def sup_to_mesh(sup: np.ndarray) -> np.ndarray:
    """(T, 33, 2) supervised landmarks -> (T, 468, 2) with the 33 at their mesh indices,
    NaN elsewhere."""
    sup = np.asarray(sup, dtype=np.float64).reshape(len(sup), -1, 2)
    mesh = np.full((len(sup), 468, 2), np.nan)
    mesh[:, list(SUPERVISED_LANDMARKS)] = sup
    return mesh


def score(stage: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict:
    """A stage's signals against the reference's (expression.py's rules: r, blinks)."""
    out: dict = {}
    for s in SIGNALS:
        out[f"{s}_corr"] = correlation(stage[s], ref[s])
        ok = np.isfinite(stage[s]) & np.isfinite(ref[s])
        x, y = ref[s][ok] - ref[s][ok].mean(), stage[s][ok] - stage[s][ok].mean()
        var = float((x * x).sum())
        # gain: slope of the stage's signal on the original's (1: full amplitude, 0: flat)
        out[f"{s}_gain"] = float((x * y).sum() / var) if ok.sum() >= 3 and var > 0 \
            else math.nan
        out[f"{s}_error"] = float(np.abs(stage[s][ok] - ref[s][ok]).mean()) if ok.any() \
            else math.nan
    closed_ref, closed_out = closed_eyes(ref["eye"]), closed_eyes(stage["eye"])
    open_ref = np.isfinite(ref["eye"]) & ~closed_ref
    out["blink_frames"] = int(closed_ref.sum())
    out["blink_hits"] = int((closed_ref & closed_out).sum())
    out["false_blinks"] = int((closed_out & open_ref).sum())
    eye = stage["eye"]
    med = np.nanmedian(eye) if np.isfinite(eye).any() else math.nan
    depth = eye[closed_ref] / med
    depth = depth[np.isfinite(depth)]
    out["depth_sum"], out["depth_n"] = float(depth.sum()), int(len(depth))
    ref_depth = ref["eye"][closed_ref] / np.nanmedian(ref["eye"]) if closed_ref.any() \
        else np.zeros(0)
    out["ref_depth_sum"] = float(np.nansum(ref_depth))
    return out


# --- the sender's landmarks -----------------------------------------------------------

def sender_track(video: Path, frames: int, smoothing: bool) -> dict[str, np.ndarray]:
    """The sender front end on the clip's video as prepare-data runs it (15 fps, frames
    before the first face dropped): the first ``frames`` records' sup, iris, valid."""
    from facecodec.sender.frontend import FrontEnd
    from facecodec.sender.prepare import CACHE_FPS
    from facecodec.sender.video import VideoReader

    sup, iris, valid = [], [], []
    with VideoReader(video, fps=CACHE_FPS) as reader, \
            FrontEnd(tube_size=256, smoothing=smoothing) as fe:
        for rec in fe.run(reader, name=str(video), crop_tube=False):
            if not sup and not rec.valid:
                continue
            sup.append(rec.sup)
            iris.append(rec.iris)
            valid.append(rec.valid)
            if len(sup) == frames:
                break
    if len(sup) != frames:
        raise RuntimeError(f"{video}: front end gave {len(sup)} frames, the cache {frames}")
    return {"sup": np.stack(sup), "iris": np.stack(iris), "valid": np.array(valid)}


# --- rendering with the receiver's parts exposed ---------------------------------------

class PartsRenderer(Renderer):
    """The receiver's Renderer on PyTorch, also returning the decoder's own RGB and the
    learned blend mask of each frame (Renderer.render returns only the blend)."""

    @torch.inference_mode()
    def render_parts(self, frames: list[dict], force: np.ndarray | None = None
                     ) -> tuple[np.ndarray, ...]:
        """``force`` (B, N): where a row is finite, it replaces that frame's pose mix."""
        _, values, mix = self.frame_values(frames)
        if force is not None and mix is not None:
            rows = torch.from_numpy(np.isfinite(force).all(1))
            mix = torch.where(rows[:, None], torch.from_numpy(np.nan_to_num(force)).float(), mix)
        cache = self._cache.repeat(len(frames)) if len(frames) > 1 else self._cache
        out = self.model.render(cache, values, mix)
        mask = out.blend[:, 0].numpy() if out.blend is not None else np.zeros((len(frames),))
        mix = mix.numpy() if mix is not None else np.ones((len(frames), len(self._images)))
        return self._to_uint8(out.image), self._to_uint8(out.rgb), mask, mix


def render_all(renderer: PartsRenderer, sources: list[tuple[np.ndarray, dict]],
               frames: list[dict], force: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """A whole clip from a fresh source set (the pose mix restarts, as in a new stream):
    images, the decoder's RGB, the blend mask, the pose mix (T, N)."""
    renderer.start(len(sources))
    for slot, (image, values) in enumerate(sources):
        renderer.set_source(slot, image, values)
    parts = [renderer.render_parts(frames[i:i + RENDER_BATCH],
                                   None if force is None else force[i:i + RENDER_BATCH])
             for i in range(0, len(frames), RENDER_BATCH)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))


def track_render(images: np.ndarray) -> np.ndarray:
    """MediaPipe on rendered frames, a lost face holding the last one found (as eval)."""
    return hold_missing(track_landmarks(images))


def make_codec(model: str | None, retouch: bool = False) -> tuple:
    """The Encoder with default settings (dead zone of the prior, 3 sources) and the
    Decoder (256 output) of ``model`` (a name or a directory; None: the shipped one);
    without the lid and lip touch-up unless ``retouch``: these stages measure the
    generator."""
    from facecodec.codec import Decoder, Encoder

    enc = Encoder(model)
    return enc, Decoder(enc.package.path, output_size=256, retouch=retouch)


def decoder_render(enc, dec, clip) -> tuple:
    """Stages d and e: ``clip`` written to a real stream as eval writes it and decoded by
    the Decoder; the stream and the decoded frames (values and rendered images)."""
    from facecodec.eval.neural import write_stream

    stream = write_stream(enc, clip)
    decoded = list(dec.frames(stream.data, name=f"{clip.name}.fcs"))
    assert len(decoded) == len(clip.frames), (len(decoded), len(clip.frames))
    return stream, decoded


def upscale(images: np.ndarray, size: int = 256) -> np.ndarray:
    from facecodec.eval.neural import to_eval_size

    return to_eval_size(images) if images.shape[1] != size else images


def box_mean(mask: np.ndarray, mesh: np.ndarray, idx: tuple[int, ...], grow: float = 0.3
             ) -> float:
    """Mean of (T, h, w) ``mask`` inside the box around the mesh points ``idx`` of each
    frame (mesh in 256-pixel units, grown by ``grow`` of its size); NaN without a face."""
    t, h, w = mask.shape
    vals = []
    for i in range(t):
        pts = mesh[i, list(idx)]
        if not np.isfinite(pts).all():
            continue
        lo, hi = pts.min(0), pts.max(0)
        pad = grow * (hi - lo).max()
        x0, y0 = ((lo - pad) * w / 256).astype(int)
        x1, y1 = np.ceil((hi + pad) * w / 256).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 > x0 and y1 > y0:
            vals.append(float(mask[i, y0:y1, x0:x1].mean()))
    return float(np.mean(vals)) if vals else math.nan


# --- one clip ---------------------------------------------------------------------------

def run_clip(ref, ctx: dict, max_frames: int | None) -> tuple[dict, dict]:
    from facecodec.bitstream.container import FcsReader, SourceFrame
    from facecodec.imagecodec import decode_image, decode_source
    from facecodec.sender.streams import clip_values

    enc, dec, renderer = ctx["encoder"], ctx["decoder"], ctx["renderer"]
    t0 = time.perf_counter()
    clip = ref.load(max_frames)
    t = len(clip.frames)
    row: dict = {"clip": clip.name, "frames": t, "stages": {}}
    say = ctx["say"]

    # (a) the reference
    ref_mesh = track_landmarks(clip.frames)
    ref_full, ref_few = expression_signals(ref_mesh), few_signals(ref_mesh)
    row["stages"]["a_few"] = score(ref_few, ref_full)

    # (b), (c) the sender's landmarks before and after the One-Euro filter
    raw = sender_track(clip.video, t, smoothing=False)
    smooth = sender_track(clip.video, t, smoothing=True)
    row["check_c_vs_cache_max_abs"] = float(np.abs(smooth["sup"] - clip.meta["sup"]).max())
    row["stages"]["b_raw"] = score(few_signals(sup_to_mesh(raw["sup"])), ref_few)
    row["stages"]["c_smoothed"] = score(few_signals(sup_to_mesh(smooth["sup"])), ref_few)
    say(f"  {clip.name}: a, b, c done ({time.perf_counter() - t0:.0f} s)")

    # (d), (e) a real stream, decoded and rendered by the Decoder
    stream, decoded = decoder_render(enc, dec, clip)
    dvals = [{k: np.asarray(v, dtype=np.float32) for k, v in d.values.items()} for d in decoded]
    dsup = np.stack([v["sup"].reshape(33, 2) for v in dvals])
    row["stages"]["d_decoded"] = score(few_signals(sup_to_mesh(dsup)), ref_few)
    rendered = np.stack([d.image for d in decoded])
    row["bits_per_frame"] = float(stream.frame_bits[1:].mean()) if t > 1 else math.nan
    row["sources"] = [int(i) for i in stream.sources]

    track = track_render

    def score_render(key: str, images: np.ndarray, driven: np.ndarray | None = None
                     ) -> np.ndarray:
        mesh = track(images)
        s = score(expression_signals(mesh), ref_full)
        s["few"] = score(few_signals(mesh), ref_few)
        if driven is not None:  # against the landmarks the receiver was given
            s["vs_input"] = score(few_signals(mesh), few_signals(sup_to_mesh(driven)))
        row["stages"][key] = s
        return mesh

    score_render("e_render", rendered, dsup)
    say(f"  {clip.name}: d, e done ({time.perf_counter() - t0:.0f} s, "
        f"{row['bits_per_frame']:.0f} bits/frame)")

    # (f) counterfactual renders from the stream's own sources
    reader = FcsReader(stream.data, name=f"{clip.name}.fcs", prior=enc.prior)
    src = {ev.index: (decode_source(ev, reader.name),
                      {k: np.asarray(v, dtype=np.float32) for k, v in ev.values.items()})
           for ev in reader if isinstance(ev, SourceFrame)}
    sources = [src[s] for s in sorted(src)]
    src_frames = [int(i) for i in stream.sources]  # frame index of each slot

    learned = clip_values(enc.network, clip.meta, clip.frames, 16)  # no dead zone, float

    def raw_values(i: int, everything: bool, base: dict) -> dict:
        v = dict(base)
        v["sup"] = raw["sup"][i].reshape(-1).astype(np.float32)
        v["iris"] = raw["iris"][i].reshape(-1).astype(np.float32)
        if everything:
            for k in ("unsup", "jac", "expr"):
                if k in v:
                    v[k] = learned[k][i].astype(np.float32)
        return v

    # f0: control; also the decoder's own RGB (f5) and the blend mask
    f0, f0_rgb, mask, _ = render_all(renderer, sources, dvals)
    row["check_f0_vs_e_mean_abs"] = float(np.abs(f0.astype(np.int16) - rendered).mean())
    row["check_f0_vs_e_max_abs"] = int(np.abs(f0.astype(np.int16) - rendered).max())
    f0_mesh = score_render("f0_rerender", f0, dsup)
    score_render("f5_decoder_rgb", upscale(f0_rgb))
    row["mask"] = {"frame": float(mask.mean()), "eyes": box_mean(mask, ref_mesh, EYE_BOX),
                   "mouth": box_mean(mask, ref_mesh, MOUTH_BOX)}
    say(f"  {clip.name}: f0, f5 done ({time.perf_counter() - t0:.0f} s)")

    # f1: raw landmarks; f2: every value raw
    for key, everything in (("f1_raw_landmarks", False), ("f2_all_raw", True)):
        srcs = [(img, raw_values(i, everything, v))
                for (img, v), i in zip(sources, src_frames, strict=True)]
        frames = [raw_values(i, everything, v) for i, v in enumerate(dvals)]
        images, *_ = render_all(renderer, srcs, frames)
        score_render(key, images, raw["sup"])
    say(f"  {clip.name}: f1, f2 done ({time.perf_counter() - t0:.0f} s)")

    # f3: the expression code held at the first source's
    const = sources[0][1]["expr"]
    images, f3_rgb, *_ = render_all(renderer, sources, [{**v, "expr": const} for v in dvals])
    score_render("f3_const_expr", images)
    row["expr_effect"] = {
        "image_mean_abs": float(np.abs(images.astype(np.int16) - f0).mean()),
        "image_max_abs": int(np.abs(images.astype(np.int16) - f0).max()),
        "decoder_rgb_mean_abs": float(np.abs(f3_rgb.astype(np.int16) - f0_rgb).mean())}

    # f4: lids closed in the landmarks on synthetic blink frames
    forced = dsup.copy()
    shut = np.isin(np.arange(t) % BLINK_PERIOD, BLINK_PHASES)
    for up, low in FEW_LIDS:
        iu, il = SUP_INDEX[up], SUP_INDEX[low]
        forced[shut, iu] = forced[shut, il] + LID_LEFT * (forced[shut, iu] - forced[shut, il])
    frames = [{**v, "sup": forced[i].reshape(-1)} for i, v in enumerate(dvals)]
    images, *_ = render_all(renderer, sources, frames)
    mesh = track(images)
    row["stages"][F4[0]] = {**score(few_signals(mesh), few_signals(sup_to_mesh(forced))),
                            "full": score(expression_signals(mesh),
                                          few_signals(sup_to_mesh(forced))),
                            "forced_frames": int(shut.sum())}

    # f6: the clip's most closed frame added as a 4th source (clips with a blink only):
    # can the receiver show closed eyes when a source shows them? Scored on the blink
    # frames more than NEAR frames away from that source frame (other blinks).
    closed = closed_eyes(ref_full["eye"])
    if closed.any():
        k = int(np.nanargmin(np.where(closed, ref_full["eye"], np.nan)))
        image = decode_image(enc.source_image_bytes(clip.frames[k]), "source",
                             codec=enc.source_codec, width=256, height=256)
        images, _, _, mix = render_all(renderer, sources + [(image, dvals[k])], dvals)
        far = np.abs(np.arange(t) - k) > NEAR
        mesh = track(images)
        sig = {n: np.where(far, v, np.nan) for n, v in expression_signals(mesh).items()}
        ref_far = {n: np.where(far, v, np.nan) for n, v in ref_full.items()}
        row["stages"][F6[0]] = {**score(sig, ref_far), "source_frame": k,
                                "mix_on_blinks": float(mix[closed & far, -1].mean())
                                if (closed & far).any() else math.nan,
                                "mix_elsewhere": float(mix[~closed, -1].mean()),
                                "all_frames": score(expression_signals(mesh), ref_full)}
        # f7: the same, with the pixels of the original's blink frames taken from that
        # source alone (an oracle choice of source: can the warp carry a closed eye?)
        force = np.full((t, len(sources) + 1), np.nan)
        force[closed] = np.eye(len(sources) + 1)[-1]
        images, *_ = render_all(renderer, sources + [(image, dvals[k])], dvals, force)
        sig = {n: np.where(far, v, np.nan)
               for n, v in expression_signals(track(images)).items()}
        row["stages"][F7[0]] = score(sig, ref_far)
        control = {n: np.where(far, v, np.nan)
                   for n, v in expression_signals(f0_mesh).items()}
        row["stages"]["f0_rerender_far"] = score(control, ref_far)

    # the expression code: variation, dead zone, and what a probe reads from it
    expr_raw, expr_dec = learned["expr"], np.stack([v["expr"] for v in dvals])
    changed = np.abs(np.diff(expr_dec, axis=0)) > 0
    row["expr"] = {"raw_std": float(expr_raw.std(0).mean()),
                   "decoded_std": float(expr_dec.std(0).mean()),
                   "frames_changed": float(changed.any(1).mean()) if t > 1 else math.nan,
                   "values_changed": float(changed.mean()) if t > 1 else math.nan}
    row["seconds"] = time.perf_counter() - t0
    probe = {"raw": expr_raw, "decoded": expr_dec, **{s: ref_full[s] for s in SIGNALS}}
    return row, probe


# --- summaries --------------------------------------------------------------------------

def pooled(rows: list[dict], get) -> dict:
    """Mean r over clips, pooled blink counts and depth, of the scores ``get(row)``."""
    scores = [get(r) for r in rows]
    scores = [s for s in scores if s is not None]
    out: dict = {"clips": len(scores)}
    for s in SIGNALS:
        v = np.array([x[f"{s}_corr"] for x in scores], dtype=float)
        v = v[np.isfinite(v)]
        out[f"{s}_corr"] = float(v.mean()) if len(v) else math.nan
        out[f"{s}_corr_clips"] = int(len(v))
        g = np.array([x[f"{s}_gain"] for x in scores], dtype=float)
        g = g[np.isfinite(g)]
        out[f"{s}_gain"] = float(g.mean()) if len(g) else math.nan
        e = np.array([x[f"{s}_error"] for x in scores], dtype=float)
        e = e[np.isfinite(e)]
        out[f"{s}_error"] = float(e.mean()) if len(e) else math.nan
    for k in ("blink_frames", "blink_hits", "false_blinks", "depth_n"):
        out[k] = int(sum(x[k] for x in scores))
    out["blink_recall"] = out["blink_hits"] / out["blink_frames"] if out["blink_frames"] \
        else math.nan
    out["blink_depth"] = (sum(x["depth_sum"] for x in scores) / out["depth_n"]
                          if out["depth_n"] else math.nan)
    out["ref_blink_depth"] = (sum(x["ref_depth_sum"] for x in scores) / out["blink_frames"]
                              if out["blink_frames"] else math.nan)
    return out


def probe(per_clip: list[dict]) -> dict:
    """Leave-one-clip-out least squares from the expression code (centred per clip) to
    each original signal (centred per clip): mean over held-out clips of r(prediction,
    signal)."""
    out: dict = {}
    if len(per_clip) < 3:
        return out
    for code in ("raw", "decoded"):
        for s in SIGNALS:
            rs = []
            for k in range(len(per_clip)):
                xs, ys = [], []
                for j, c in enumerate(per_clip):
                    ok = np.isfinite(c[s])
                    x = c[code][ok] - c[code][ok].mean(0)
                    y = c[s][ok] - c[s][ok].mean()
                    if j != k:
                        xs.append(x)
                        ys.append(y)
                    else:
                        xk, yk = x, y
                w, *_ = np.linalg.lstsq(np.concatenate(xs), np.concatenate(ys), rcond=None)
                rs.append(correlation(xk @ w, yk))
            rs = np.array(rs, dtype=float)
            out[f"{code}_{s}"] = float(np.nanmean(rs)) if np.isfinite(rs).any() else math.nan
    return out


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def jsonable(x):
    """NaN -> None (null), numpy scalars -> Python numbers, floats to 4 decimals,
    recursively."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    return x


def dump(doc: dict) -> str:
    """JSON with one top-level key, summary row or clip per line."""
    doc = jsonable(doc)
    parts = []
    for k, v in doc.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            body = ",\n  ".join(json.dumps(x) for x in v)
            parts.append(f" {json.dumps(k)}: [\n  {body}\n ]")
        else:
            parts.append(f" {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def fmt(x: float, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def table(summary: list[dict]) -> str:
    head = ("| stage | vs | eye r | mouth open r | mouth width r | eye gain | mouth open gain "
            "| mouth width gain | blink recall (hits/frames) | blink depth | false blinks |")
    lines = [head, "|---|---|" + "---:|" * 9]
    for s in summary:
        lines.append(
            f"| {s['label']} | {s['reference']} | {fmt(s['eye_corr'])} | "
            f"{fmt(s['mouth_open_corr'])} | {fmt(s['mouth_width_corr'])} | "
            f"{fmt(s['eye_gain'])} | {fmt(s['mouth_open_gain'])} | {fmt(s['mouth_width_gain'])} | "
            f"{fmt(s['blink_recall'])} ({s['blink_hits']}/{s['blink_frames']}) | "
            f"{fmt(s['blink_depth'])} | {s['false_blinks']} |")
    return "\n".join(lines)


def clip_table(rows: list[dict]) -> str:
    """Per clip: blink frames and the eye / mouth-opening figures at the main stages."""
    keys = ("b_raw", "c_smoothed", "d_decoded", "e_render")
    lines = ["| clip | frames | blink frames | eye r b / c / d / e | eye gain e | "
             "blink hits b / c / d / e | mouth open r c / d / e |",
             "|---|---:|---:|---|---:|---|---|"]
    for r in rows:
        st = r["stages"]
        lines.append(
            f"| {r['clip']} | {r['frames']} | {st['e_render']['blink_frames']} | "
            + " / ".join(fmt(st[k]["eye_corr"]) for k in keys)
            + f" | {fmt(st['e_render']['eye_gain'])} | "
            + " / ".join(str(st[k]["blink_hits"]) for k in keys)
            + " | " + " / ".join(fmt(st[k]["mouth_open_corr"])
                                 for k in ("c_smoothed", "d_decoded", "e_render")) + " |")
    return "\n".join(lines)


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for key, label, reference in STAGES:
        vs = {"full": "a (full)", "few": "a (33-pt)"}[reference]
        if key == "a_few":
            vs = "a (full)"
        out.append({"stage": key, "label": label, "reference": vs,
                    **pooled(rows, lambda r, k=key: r["stages"].get(k))})
        if key in ("e_render", "f0_rerender", "f1_raw_landmarks", "f2_all_raw"):
            out.append({"stage": key + "_few", "label": label + " [33-pt formulas]",
                        "reference": "a (33-pt)",
                        **pooled(rows, lambda r, k=key: r["stages"][k]["few"])})
        if key in ("e_render", "f0_rerender", "f1_raw_landmarks", "f2_all_raw"):
            out.append({"stage": key + "_vs_input", "label": label + " [vs its input]",
                        "reference": "its input landmarks (33-pt)",
                        **pooled(rows, lambda r, k=key: r["stages"][k]["vs_input"])})
    out.append({"stage": F4[0], "label": F4[1], "reference": "its input landmarks (33-pt)",
                **pooled(rows, lambda r: r["stages"][F4[0]])})
    out.append({"stage": F6[0], "label": F6[1], "reference": "a (full)",
                **pooled(rows, lambda r: r["stages"].get(F6[0]))})
    out.append({"stage": F7[0], "label": F7[1], "reference": "a (full)",
                **pooled(rows, lambda r: r["stages"].get(F7[0]))})
    out.append({"stage": F6[0] + "_control", "label": "f0 on the clips of f6, same frames",
                "reference": "a (full)", **pooled(rows, lambda r: r["stages"].get(
                    "f0_rerender_far"))})
    return out


def run_one(ref, ctx: dict, args, rows: list, probes: list) -> None:
    row, pr = run_clip(ref, ctx, args.max_frames)
    rows.append(row)
    probes.append(pr)
    st = row["stages"]
    tqdm.write(f"{row['clip']}: {row['frames']} frames, blink frames "
               f"{st['e_render']['blink_frames']} | eye r b {fmt(st['b_raw']['eye_corr'])} c "
               f"{fmt(st['c_smoothed']['eye_corr'])} d {fmt(st['d_decoded']['eye_corr'])} "
               f"e {fmt(st['e_render']['eye_corr'])} | blink hits (33-pt) b "
               f"{st['b_raw']['blink_hits']} c {st['c_smoothed']['blink_hits']} d "
               f"{st['d_decoded']['blink_hits']} of {st['d_decoded']['blink_frames']}, e "
               f"{st['e_render']['blink_hits']} of {st['e_render']['blink_frames']} | "
               f"{row['seconds']:.0f} s")


def add_clip_args(ap: argparse.ArgumentParser) -> None:
    """The clip selection and thread options (shared with bench/expression_sheet.py)."""
    ap.add_argument("--manifest", type=Path,
                    default=ROOT.parent / "shared" / "data" / "manifest.csv")
    ap.add_argument("--split", default="val")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "facecodec" / "data")
    ap.add_argument("--clips", default=None, help="comma-separated clip names")
    ap.add_argument("--limit", type=int, default=None, help="first N clips of the split")
    ap.add_argument("--max-frames", type=int, default=None, help="first N frames per clip")
    ap.add_argument("--threads", type=int, default=1)


def clip_refs(args) -> list:
    """The clips ``add_clip_args``' options select; exits if one is not in the cache."""
    names = args.clips.split(",") if args.clips else None
    refs = manifest_clips(args.manifest, args.split, args.cache, names, args.limit)
    missing = [r.name for r in refs if r.cache_dir is None]
    if missing:
        sys.exit(f"not in the cache {args.cache}: {', '.join(missing)} "
                 "(run facecodec prepare-data)")
    return refs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_args(ap)
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                    "expression_stages.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    refs = clip_refs(args)
    enc, dec = make_codec(args.model)
    ctx = {"encoder": enc, "decoder": dec,
           "renderer": PartsRenderer(enc.package, max_sources=enc.n_sources,
                                     backend="torch", output_size=256),
           "say": tqdm.write}
    rows, probes = [], []
    start = time.perf_counter()
    with quiet_mediapipe_logs():
        for ref in tqdm(refs, desc="clips", unit="clip"):
            run_one(ref, ctx, args, rows, probes)
    summary = summarize(rows)

    mask = {k: float(np.nanmean([r["mask"][k] for r in rows])) for k in rows[0]["mask"]}
    expr = {k: float(np.nanmean([r["expr"][k] for r in rows])) for k in rows[0]["expr"]}
    effect = {k: float(np.mean([r["expr_effect"][k] for r in rows]))
              for k in rows[0]["expr_effect"]}
    cmd = "python bench/expression_stages.py" + "".join(
        f" {a}" for a in sys.argv[1:])
    doc = {
        "benchmark": "expression_stages", "command": cmd,
        "machine": f"{platform.machine()}, {args.threads} thread(s)",
        "date": time.strftime("%Y-%m-%d"), "model": _rel(enc.package.path),
        "deadband": enc.deadband, "max_frames": args.max_frames,
        "seconds": time.perf_counter() - start,
        "notes": ["Expression signals (facecodec/eval/expression.py) at each stage of the "
                  "codec against the original's; see docs/EXPRESSIONS.md."],
        "results": [{k: v for k, v in s.items() if not k.endswith("_clips")
                     and k not in ("depth_n", "label")} for s in summary],
        "summary": summary, "mask": mask, "expr": expr, "expr_effect": effect,
        "probe": probe(probes),
        "clips": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(doc))
    buf = io.StringIO()
    print(table(summary), file=buf)
    print("\nblink frames per clip (original, full formulas): "
          + ", ".join(f"{r['clip']} {r['stages']['e_render']['blink_frames']}" for r in rows),
          file=buf)
    print(f"blend mask mean: frame {mask['frame']:.3f}, eyes {mask['eyes']:.3f}, "
          f"mouth {mask['mouth']:.3f}", file=buf)
    print(f"expression code: std raw {expr['raw_std']:.4f}, decoded {expr['decoded_std']:.4f};"
          f" decoded code changes on {expr['frames_changed']:.1%} of frames "
          f"({expr['values_changed']:.1%} of values)", file=buf)
    print(f"holding the code (f3 vs f0): image {effect['image_mean_abs']:.3f} grey levels "
          f"(max {max(r['expr_effect']['image_max_abs'] for r in rows)}), decoder RGB "
          f"{effect['decoder_rgb_mean_abs']:.3f}", file=buf)
    f6 = [r["stages"][F6[0]] for r in rows if F6[0] in r["stages"]]
    if f6:
        on = np.nanmean([x["mix_on_blinks"] for x in f6])
        off = np.nanmean([x["mix_elsewhere"] for x in f6])
        print(f"f6: pose mix of the added closed-eye source {fmt(on, 3)} on blink frames, "
              f"{fmt(off, 3)} elsewhere", file=buf)
    print("probe r (leave one clip out): " + ", ".join(
        f"{k} {fmt(v)}" for k, v in doc["probe"].items()), file=buf)
    print(f"checks: c vs cache max |diff| "
          f"{max(r['check_c_vs_cache_max_abs'] for r in rows):.2g}; f0 vs e mean |diff| "
          f"{max(r['check_f0_vs_e_mean_abs'] for r in rows):.3f} (max "
          f"{max(r['check_f0_vs_e_max_abs'] for r in rows)})", file=buf)
    print("\n" + clip_table(rows), file=buf)
    print(buf.getvalue())
    print(f"wrote {args.out} ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
