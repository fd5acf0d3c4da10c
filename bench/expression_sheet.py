"""Contact sheet of blinks, open mouths and smiles: original | decoded (issue 19, item 3).

    python bench/expression_sheet.py --sheet out/expressions.png [--model A --model B]
                                     [--retouch] [--clips a,b] [--limit N]
                                     [--max-frames N] [--k 6]

Runs stages a and e of bench/expression_stages.py on the clips (MediaPipe on the original
tube frames; a real stream from the ``Encoder`` with default settings, rendered by the
``Decoder`` without the lid and lip touch-up, once per ``--model``; with ``--retouch``
also with it, the Decoder's default) and picks across the clips, from the original's
signals (facecodec/eval/expression.py):

- **blinks**: the K frames of lowest eye openness over the clip's median,
- **open mouths**: the K widest inner-lip gaps (in outer-eye-corner distances; the
  median of a mostly closed mouth is near 0, so it is not divided by it),
- **smiles**: the K widest mouths (corner distance) over the clip's median,

at most ``--per-clip`` of a kind per clip and ``--min-gap`` frames apart within a clip
(one tile per blink or smile, not its neighbours). Each pick is a group of tiles:
original | one per model, labelled with the signal, original / decoded (each relative to
its own clip's median for eye and width: < 0.50 counts as a closed eye, as blink recall
counts it). The picks are printed too.

The sheet shows frames of third-party clips: it is refused inside the repository unless
git ignores the folder (out/ does). Never commit it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from expression_stages import (  # bench/ is sys.path[0] when run as a script
    ROOT,
    add_clip_args,
    clip_refs,
    decoder_render,
    make_codec,
    track_render,
)
from tqdm import tqdm

from facecodec.eval.expression import CLOSED_RATIO, expression_signals
from facecodec.eval.metrics import track_landmarks
from facecodec.sender.landmarks import quiet_mediapipe_logs

# key: (signal, relative to the clip's median, lowest first, tile label, section title)
KINDS = {
    "blink": ("eye", True, True, "eye",
              "Blinks: lowest eye openness over the clip's median"),
    "mouth": ("mouth_open", False, False, "mouth",
              "Open mouths: widest inner-lip gap (over the outer-eye-corner distance)"),
    "smile": ("mouth_width", True, False, "width",
              "Smiles: widest mouth (corner distance) over the clip's median"),
}
K, MIN_GAP, PER_CLIP = 6, 8, 2
TILE = 192
MAX_WIDTH = 1800  # px: groups wrap onto a new line beyond it
MARGIN, GAP, INNER = 12, 14, 4  # sheet margin, between groups, between tiles of a group
FONT = cv2.FONT_HERSHEY_SIMPLEX
LINE = 16  # px per text line (scale 0.42)


# --- which frames ------------------------------------------------------------------------

def kind_values(signals: Mapping[str, np.ndarray], kind: str) -> np.ndarray:
    """The figure a kind is ranked and labelled by, per frame (NaN where no face): the
    signal, over its median over the clip for the relative kinds."""
    signal, relative, *_ = KINDS[kind]
    x = np.asarray(signals[signal], dtype=np.float64)
    if not relative:
        return x
    ok = np.isfinite(x)
    med = float(np.median(x[ok])) if ok.any() else math.nan
    return x / med if med > 0 else np.full_like(x, np.nan)


def pick_frames(signals: Sequence[Mapping[str, np.ndarray]], k: int = K,
                min_gap: int = MIN_GAP, per_clip: int | None = PER_CLIP
                ) -> dict[str, list[tuple[int, int]]]:
    """Per kind of ``KINDS``, up to ``k`` (clip, frame) picks across the clips, most
    extreme first: ``signals[c]`` is clip c's expression_signals (original). Greedy in
    order of the kind's figure (ties: earlier clip, earlier frame); a frame less than
    ``min_gap`` frames from one already picked in its clip is skipped, as is a clip that
    has ``per_clip`` picks (None: no cap); frames without a face never count.

    Within a clip the picks depend on that clip alone, so the picks over all clips are
    among those of each clip on its own (the bench keeps only those frames' pictures)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for kind, (_, _, lowest, *_) in KINDS.items():
        cands = []
        for c, sig in enumerate(signals):
            v = kind_values(sig, kind)
            cands += [(v[t] if lowest else -v[t], c, t) for t in np.flatnonzero(np.isfinite(v))]
        picks: list[tuple[int, int]] = []
        for _, c, t in sorted(cands):
            if len(picks) == k:
                break
            mine = [u for d, u in picks if d == c]
            if (per_clip is not None and len(mine) >= per_clip) \
                    or any(abs(int(t) - u) < min_gap for u in mine):
                continue
            picks.append((c, int(t)))
        out[kind] = picks
    return out


# --- drawing ----------------------------------------------------------------------------

def _text(canvas: np.ndarray, text: str, x: int, y: int, width: int, scale: float = 0.42,
          thickness: int = 1, keep_end: bool = False) -> None:
    """``text`` at baseline y, cut to ``width`` px (from the left when ``keep_end``)."""
    cut = text
    while cut and cv2.getTextSize(cut, FONT, scale, thickness)[0][0] > width:
        cut = cut[1:] if keep_end else cut[:-1]
    if cut != text and len(cut) > 2:
        cut = ".." + cut[2:] if keep_end else cut[:-2] + ".."
    cv2.putText(canvas, cut, (x, y), FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)


def sheet_image(title: Sequence[str], sections: Sequence[tuple[str, Sequence]],
                tile: int = TILE, max_width: int = MAX_WIDTH) -> np.ndarray:
    """An RGB contact sheet. ``sections``: (title, groups); a group is (header, tiles), a
    tile (RGB image, label line 1, label line 2); every group has as many tiles. Groups
    wrap to lines of at most ``max_width`` px, spread evenly over the lines."""
    n_tiles = max((len(g[1]) for _, groups in sections for g in groups), default=1)
    group_w = n_tiles * tile + (n_tiles - 1) * INNER
    most = max(1, (max_width - 2 * MARGIN + GAP) // (group_w + GAP))
    lines = []  # per section: its groups, split into lines
    for _, groups in sections:
        n = max(1, math.ceil(len(groups) / most))
        per = max(1, math.ceil(len(groups) / n))
        lines.append([groups[i:i + per] for i in range(0, len(groups), per)] or [[]])
    per_line = max(len(line) for sec in lines for line in sec)
    width = max(2 * MARGIN + per_line * group_w + (per_line - 1) * GAP, 640)
    row_h = LINE + tile + 2 * LINE + GAP  # group header, tiles, two label lines
    height = (2 * MARGIN + len(title) * (LINE + 2)
              + sum(LINE + 18 + len(sec) * row_h for sec in lines))
    canvas = np.full((height, width, 3), 255, np.uint8)
    y = MARGIN
    for line in title:
        y += LINE + 2
        _text(canvas, line, MARGIN, y - 4, width - 2 * MARGIN, 0.45)
    for (name, groups), sec in zip(sections, lines, strict=True):
        y += LINE + 12
        _text(canvas, name + ("" if groups else ": none"), MARGIN, y - 4,
              width - 2 * MARGIN, 0.55, 2)
        y += 6
        for line in sec:
            for g, (header, tiles) in enumerate(line):
                x = MARGIN + g * (group_w + GAP)
                _text(canvas, header, x, y + LINE - 4, group_w)
                for j, (image, first, second) in enumerate(tiles):
                    tx, ty = x + j * (tile + INNER), y + LINE
                    canvas[ty:ty + tile, tx:tx + tile] = cv2.resize(
                        image, (tile, tile), interpolation=cv2.INTER_AREA)
                    _text(canvas, first, tx, ty + tile + LINE - 3, tile, keep_end=True)
                    _text(canvas, second, tx, ty + tile + 2 * LINE - 3, tile)
            y += row_h
    return canvas


# --- the bench ----------------------------------------------------------------------------

def model_names(packages: Sequence) -> list[str]:
    """Column labels: the model directories' names (numbered when two are alike)."""
    names = [p.path.name for p in packages]
    return [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_args(ap)
    ap.add_argument("--model", action="append", default=None,
                    help="a model name or directory, repeatable: one column each "
                         "(default: the shipped model)")
    ap.add_argument("--sheet", type=Path, required=True,
                    help="the PNG to write (outside the repository or in a git-ignored "
                         "folder such as out/)")
    ap.add_argument("--k", type=int, default=K, help="picks per kind")
    ap.add_argument("--per-clip", type=int, default=PER_CLIP, help="at most, per kind")
    ap.add_argument("--min-gap", type=int, default=MIN_GAP,
                    help="frames between two picks of a kind in one clip")
    ap.add_argument("--tile", type=int, default=TILE, help="tile size in px (160-256)")
    ap.add_argument("--retouch", action="store_true",
                    help="a second column per model: the Decoder's default output, with "
                         "the lid and lip touch-up (facecodec/receiver/expression.py)")
    args = ap.parse_args()
    if args.sheet.suffix.lower() != ".png":
        sys.exit(f"{args.sheet}: the sheet is a .png")
    from facecodec.errors import InputError
    from facecodec.eval.report import check_sheet_dir

    try:
        check_sheet_dir(args.sheet.parent)
    except InputError as e:
        sys.exit(str(e))
    torch.set_num_threads(args.threads)

    refs = clip_refs(args)
    codecs = [make_codec(m) for m in args.model or [None]]
    names = model_names([enc.package for enc, _ in codecs])
    if args.retouch:
        from facecodec.codec import Decoder

        codecs = [c for enc, dec in codecs for c in
                  ((enc, dec), (enc, Decoder(enc.package.path, output_size=256)))]
        names = [f"{n}{tag}" for n in names for tag in (" drawn", " retouched")]
    start = time.perf_counter()
    originals, decoded = [], {n: [] for n in names}  # signals per clip
    pictures: dict[tuple[int, int], list[np.ndarray]] = {}  # candidates' tiles
    with quiet_mediapipe_logs():
        for c, ref in enumerate(tqdm(refs, desc="clips", unit="clip")):
            clip = ref.load(args.max_frames)
            sig = expression_signals(track_landmarks(clip.frames))
            originals.append(sig)
            cands = {t for picks in pick_frames([sig], args.k, args.min_gap,
                                                args.per_clip).values() for _, t in picks}
            renders = []
            for name, (enc, dec) in zip(names, codecs, strict=True):
                _, frames = decoder_render(enc, dec, clip)
                images = np.stack([f.image for f in frames])
                decoded[name].append(expression_signals(track_render(images)))
                renders.append(images)
            for t in cands:
                pictures[(c, t)] = [clip.frames[t]] + [r[t] for r in renders]
            tqdm.write(f"{clip.name}: {len(clip.frames)} frames, {len(cands)} candidates")

    picks = pick_frames(originals, args.k, args.min_gap, args.per_clip)
    sections = []
    for kind, (_, _, _, label, title) in KINDS.items():
        groups = []
        print(f"\n{title} (original / " + " / ".join(names) + ")")
        for c, t in picks[kind]:
            orig = kind_values(originals[c], kind)[t]
            outs = [kind_values(decoded[n][c], kind)[t] for n in names]
            print(f"  {refs[c].name} t={t}: {orig:.2f} / "
                  + " / ".join(f"{v:.2f}" for v in outs))
            tiles = [(pictures[(c, t)][0], "original", f"{label} {orig:.2f}")]
            tiles += [(img, name, f"{label} {orig:.2f} / {v:.2f}") for img, name, v
                      in zip(pictures[(c, t)][1:], names, outs, strict=True)]
            groups.append((f"{refs[c].name} t={t} ({t / 15:.1f} s)", tiles))
        if kind == "blink" and picks[kind]:
            for n in names:
                shut = sum(kind_values(decoded[n][c], kind)[t] < CLOSED_RATIO
                           for c, t in picks[kind])
                print(f"  {n}: closed (< {CLOSED_RATIO:.2f}) on {shut} of "
                      f"{len(picks[kind])}")
        sections.append((f"{title}, {len(groups)} of {args.k}", groups))
    title = [f"Original | decoded ({', '.join(names)}): Encoder defaults, Decoder at 256; "
             f"{len(refs)} {args.split} clips, 15 fps.",
             f"Figures original / decoded, MediaPipe: eye and width over the clip's median "
             f"(closed < {CLOSED_RATIO:.2f}); mouth: inner-lip gap over the eye-corner "
             "distance."]
    image = sheet_image(title, sections, args.tile)
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.sheet), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        sys.exit(f"could not write {args.sheet}")
    try:
        shown = args.sheet.resolve().relative_to(ROOT)
    except ValueError:
        shown = args.sheet
    print(f"\nwrote {shown} ({image.shape[1]}x{image.shape[0]}, "
          f"{time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
