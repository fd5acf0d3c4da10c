"""The report of ``facecodec eval``: Markdown tables, JSON, rate-quality plots (numbers
only, safe to commit) and a contact sheet of frames (third-party pictures: written outside
the repository, or in a git-ignored folder of it, never next to the report).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no backend to pick

from facecodec.errors import InputError
from facecodec.eval.metrics import ClipScore
from facecodec.eval.runner import EvalRun, SheetFrames
from facecodec.resources import source_checkout

REPO = source_checkout()
"""The facecodec checkout eval runs from (an editable install), or None when it runs from an
installed copy (:func:`facecodec.resources.source_checkout`): the repository whose commit a
report names (:func:`git_commit`) and into which no contact sheet may go unless git ignores
the folder (:func:`check_sheet_dir`). An installed copy has neither: its reports name the
commit ``unknown``."""
METRICS = ("kbps_all", "kbps_steady", "bits_per_frame", "lpips", "psnr", "ms_ssim", "nme",
           "identity", "face_found", "motion_ratio", "motion_error", "flicker", "eye_error",
           "mouth_open_error", "mouth_width_error", "eye_corr", "mouth_open_corr",
           "mouth_width_corr", "encode_fps", "decode_fps")
BLINK_COUNTS = ("blink_frames", "blink_hits", "false_blinks")  # summed over clips


@dataclass
class Row:
    """One method at one operating point: ``means`` of METRICS over clips (NaN-aware);
    ``pooled``: the blink counts summed over clips and ``blink_recall`` from the sums.

    Recall is pooled, not averaged: a clip without a blink has no recall (NaN), and a mean
    of per-clip ratios would weigh a clip with one closed-eye frame like one with thirty."""

    method: str
    target_kbps: float | None
    clips: int
    reached: int
    means: dict[str, float]
    pooled: dict[str, float] = field(default_factory=dict)


def pool_blinks(group: Sequence[ClipScore]) -> dict[str, float]:
    """Blink counts summed over ``group`` and the recall of the sums (NaN: no blink)."""
    out: dict[str, float] = {k: sum(getattr(s, k) for s in group) for k in BLINK_COUNTS}
    frames = out["blink_frames"]
    out["blink_recall"] = out["blink_hits"] / frames if frames else math.nan
    return out

    @property
    def label(self) -> str:
        return self.method if self.target_kbps is None else f"{self.method}@{self.target_kbps:g}"


def summarize(scores: Sequence[ClipScore]) -> list[Row]:
    """Rows in first-seen method order, targets ascending."""
    groups: dict[tuple[str, float | None], list[ClipScore]] = {}
    for s in scores:
        groups.setdefault((s.method, s.target_kbps), []).append(s)
    order = list(dict.fromkeys(s.method for s in scores))
    keys = sorted(groups, key=lambda k: (order.index(k[0]), -1 if k[1] is None else k[1]))
    rows = []
    for key in keys:
        group = groups[key]
        means = {}
        for m in METRICS:
            vals = np.array([np.nan if getattr(s, m) is None else getattr(s, m)
                             for s in group], dtype=float)
            vals = vals[np.isfinite(vals)]
            means[m] = float(vals.mean()) if len(vals) else math.nan
        rows.append(Row(key[0], key[1], len(group), sum(s.reached for s in group), means,
                        pool_blinks(group)))
    return rows


# --- formatting ---------------------------------------------------------------------------

def _f(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-" if value is None or math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.{digits}f}"


def summary_table(rows: Sequence[Row]) -> str:
    head = ("| method | target kbps | clips (target reached) | kbps all-in | kbps steady | "
            "bits/frame steady | LPIPS-alex ↓ | PSNR dB ↑ | MS-SSIM ↑ | NME ↓ | identity ↓ | "
            "face found | motion ratio | motion error | flicker ↓ | encode fps | decode fps |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        m = r.means
        lines.append(
            f"| {r.method} | {_f(r.target_kbps, 0) if r.target_kbps is not None else '-'} | "
            f"{r.clips} ({r.reached}) | {_f(m['kbps_all'], 2)} | {_f(m['kbps_steady'], 2)} | "
            f"{_f(m['bits_per_frame'], 0)} | {_f(m['lpips'], 3)} | {_f(m['psnr'], 2)} | "
            f"{_f(m['ms_ssim'], 3)} | {_f(m['nme'], 3)} | {_f(m['identity'], 3)} | "
            f"{_f(m['face_found'], 2)} | {_f(m['motion_ratio'], 2)} | {_f(m['motion_error'], 2)} | "
            f"{_f(m['flicker'], 2)} | {_f(m['encode_fps'], 0)} | {_f(m['decode_fps'], 0)} |")
    return "\n".join(lines)


def _blinks(hits: float, frames: float) -> str:
    """"0.75 (9/12)": recall with its counts ("- (0/0)" on clips without a blink)."""
    return f"{_f(hits / frames if frames else math.nan, 2)} ({hits:g}/{frames:g})"


def expression_table(rows: Sequence[Row]) -> str:
    """Expression figures per method (eval/expression.py): errors and correlations are
    means over clips, blink recall pools the clips' counts."""
    head = ("| method | target kbps | eye error ↓ | mouth open error ↓ | mouth width error ↓ | "
            "eye r ↑ | mouth open r ↑ | mouth width r ↑ | blink recall ↑ (hits/blink frames) | "
            "false blinks ↓ |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        m, p = r.means, r.pooled
        lines.append(
            f"| {r.method} | {_f(r.target_kbps, 0) if r.target_kbps is not None else '-'} | "
            f"{_f(m['eye_error'], 3)} | {_f(m['mouth_open_error'], 3)} | "
            f"{_f(m['mouth_width_error'], 3)} | {_f(m['eye_corr'], 2)} | "
            f"{_f(m['mouth_open_corr'], 2)} | {_f(m['mouth_width_corr'], 2)} | "
            f"{_blinks(p['blink_hits'], p['blink_frames'])} | {p['false_blinks']:g} |")
    return "\n".join(lines)


def clip_table(scores: Sequence[ClipScore]) -> str:
    head = ("| method | target | setting | kbps all-in | first frame kbit | LPIPS | PSNR | "
            "MS-SSIM | NME | identity | face found | motion ratio | flicker | eye r | "
            "mouth open r | blink recall | false blinks |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for s in scores:
        setting = ", ".join(f"{k} {v}" for k, v in s.setting.items()) or "-"
        target = "-" if s.target_kbps is None else f"{s.target_kbps:g}"
        if not s.reached:
            target += " (not reached)"
        lines.append(
            f"| {s.method} | {target} | {setting} | {_f(s.kbps_all, 2)} | "
            f"{_f(s.bits_first / 1000, 1)} | {_f(s.lpips, 3)} | {_f(s.psnr, 2)} | "
            f"{_f(s.ms_ssim, 3)} | {_f(s.nme, 3)} | {_f(s.identity, 3)} | "
            f"{_f(s.face_found, 2)} | {_f(s.motion_ratio, 2)} | {_f(s.flicker, 2)} | "
            f"{_f(s.eye_corr, 2)} | {_f(s.mouth_open_corr, 2)} | "
            f"{_blinks(s.blink_hits, s.blink_frames)} | {s.false_blinks} |")
    return "\n".join(lines)


def git_commit() -> str:
    """The checkout's short commit, ``+changes`` when tracked files differ from it;
    ``unknown`` outside a checkout (:data:`REPO`) or without git."""
    if REPO is None:
        return "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, text=True, capture_output=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def jsonable(value):
    """``value`` as JSON stores it: NaN and infinities as None, numpy scalars as Python."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return value


def results_json(run: EvalRun, info: dict) -> str:
    rows = summarize(run.scores)
    doc = {**info, "clips": run.clips, "skipped": run.skipped,
           "summary": [{"method": r.method, "target_kbps": r.target_kbps, "clips": r.clips,
                        "reached": r.reached, **r.means, **r.pooled} for r in rows],
           "scores": [s.as_dict() for s in run.scores]}
    return json.dumps(jsonable(doc), indent=1) + "\n"


# --- plots --------------------------------------------------------------------------------

PLOTS = (("lpips", "LPIPS-alex (lower is better)", "rate_lpips.png"),
         ("psnr", "PSNR dB (higher is better)", "rate_psnr.png"),
         ("nme", "landmark NME (lower is better)", "rate_nme.png"))


def series_name(method: str) -> str:
    """The curve a method's row belongs to: its operating-point options (dead zone and
    its prior) dropped, so
    ``facecodec:deadband=0`` and ``facecodec:deadband=8`` are two points of ``facecodec``
    (classic codecs' rates are rows of one method already)."""
    name, _, opts = method.partition(":")
    kept = [o for o in opts.split(";") if o and not o.startswith(("deadband=", "prior="))]
    return name + (":" + ";".join(kept) if kept else "")


def rate_plots(scores: Sequence[ClipScore], out_dir: Path) -> list[Path]:
    """One PNG per metric: the clip-averaged metric against the clip-averaged all-in kbps,
    one line per method; methods at 0 kbps (the held frame) as a dashed horizontal line."""
    rows = summarize(scores)
    methods = list(dict.fromkeys(series_name(r.method) for r in rows))
    n_clips = max((r.clips for r in rows), default=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, ylabel, filename in PLOTS:
        fig = Figure(figsize=(6.4, 4.2), dpi=110)
        ax = fig.subplots()
        for i, method in enumerate(methods):
            mine = sorted((r for r in rows if series_name(r.method) == method
                           and math.isfinite(r.means[metric])), key=lambda r: r.means["kbps_all"])
            if not mine:
                continue
            x = [r.means["kbps_all"] for r in mine]
            y = [r.means[metric] for r in mine]
            color = f"C{i}"
            if len(mine) == 1 and x[0] == 0:
                ax.axhline(y[0], color=color, linestyle="--", linewidth=1.2, label=method)
                ax.plot(x, y, "o", color=color)
            else:
                ax.plot(x, y, "o-", color=color, label=method)
        ax.set_xlabel("all-in kbps (first frame included), mean over clips")
        ax.set_ylabel(ylabel)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:  # e.g. NME when MediaPipe found no face in any clip
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        ax.set_title(f"{metric.upper() if metric != 'psnr' else 'PSNR'} vs rate, "
                     f"{n_clips} clips, 256x256 15 fps", fontsize=10)
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path)
        paths.append(path)
    return paths


# --- contact sheet ------------------------------------------------------------------------

def check_sheet_dir(path: Path) -> None:
    """Refuse a folder inside the repository unless git ignores it: the sheet shows
    frames of third-party clips, which must never be committed. An installed copy
    (:data:`REPO` None) has no repository of its own to guard."""
    if REPO is None:
        return
    try:
        rel = path.resolve().relative_to(REPO)
    except ValueError:
        return
    ignored = subprocess.run(["git", "check-ignore", "-q", str(rel / "sheet.png")], cwd=REPO,
                             capture_output=True).returncode == 0
    if not ignored:
        raise InputError(f"{path}: the contact sheet shows frames of third-party clips and "
                         "must not go into the repository; choose a folder outside it (or "
                         "a git-ignored one such as out/eval)")


MODEL_METHODS = ("facecodec", "fom")  # name prefixes of facecodec/eval/neural.py's methods
SHEET_CLASSIC = "svtav1"  # the classic codec a model method is shown against


def _base(label: str) -> str:
    """"svtav1:preset=8@10" -> "svtav1": the registry name of a sheet label."""
    return label.split("@")[0].split(":")[0]


def sheet_columns(sheet: SheetFrames, kbps: float = 10.0) -> tuple[list[str], float]:
    """The labels the contact sheet shows, in order, and the rate classic codecs are
    picked at (each at its operating point nearest it).

    With a model method run: original | the model methods (facecodec variants, FOM,
    FOM-mult; of the operating points of one curve, the first run) | AV1 (or, without
    it, every classic codec run) at the rate nearest the first model method's all-in
    rate: a comparison at a similar rate. Otherwise:
    original | every method at the operating point nearest ``kbps``."""
    by_method: dict[str, list[str]] = {}
    for label in sheet.frames:
        if label != "original":
            by_method.setdefault(label.split("@")[0], []).append(label)
    models: list[str] = []
    for m in by_method:  # one column per curve: a model's dead-zone points look alike
        if _base(m).startswith(MODEL_METHODS) and series_name(m) not in map(series_name, models):
            models.append(m)
    rate = sheet.kbps.get(by_method[models[0]][0], kbps) if models else kbps

    def distance(label: str) -> tuple[float, float]:
        # nearest produced rate; among equal ones (a codec's floor) the nearest target
        target = label.partition("@")[2]
        return (abs(sheet.kbps.get(label, 0.0) - rate),
                abs(float(target) - rate) if target else 0.0)

    chosen = list(by_method)
    if models:
        rated = [m for m in by_method if any("@" in x for x in by_method[m])]
        classic = [m for m in rated if _base(m) == SHEET_CLASSIC] or rated
        chosen = models + classic
    return ["original"] + [min(by_method[m], key=distance) for m in chosen], rate


def contact_sheet(run: EvalRun, path: Path, kbps: float = 10.0) -> Path | None:
    """The frames of ``sheet_columns`` side by side, one row per selected frame of the
    most rotation-heavy clip. None when no clip was kept."""
    sheet = run.sheet
    if not sheet.frames:
        return None
    columns, rate = sheet_columns(sheet, kbps)
    sheet.columns, sheet.shown_kbps = columns, rate
    rows = len(sheet.indices)
    fig = Figure(figsize=(1.6 * len(columns), 1.6 * rows + 0.4), dpi=100)
    axes = fig.subplots(rows, len(columns), squeeze=False)
    for j, label in enumerate(columns):
        for i in range(rows):
            ax = axes[i][j]
            ax.imshow(sheet.frames[label][i])
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"frame {sheet.indices[i]}", fontsize=7)
        title = label if label == "original" else f"{label}\n{sheet.kbps.get(label, 0):.1f} kbps"
        axes[0][j].set_title(title, fontsize=7)
    fig.suptitle(f"{sheet.clip} (yaw range {sheet.yaw_range:.2f} rad)\nrate-controlled "
                 f"codecs at their point nearest {rate:.1f} kbps", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# --- Markdown -----------------------------------------------------------------------------

def _reused_line(info: dict) -> list[str]:
    reused = info.get("reused")
    if not reused:
        return []
    by_run: dict[str, list[str]] = {}
    for method, run in reused["scored_at"].items():
        by_run.setdefault(run, []).append(f"`{method}`")
    runs = "; ".join(f"{', '.join(m)} at commit {run}" for run, m in by_run.items())
    return ["", f"Reused from {Path(reused['from']).name} (`--reuse`: same settings, clips "
                f"and frames; run again only for the contact sheet), the scores of {runs}."]


def markdown(run: EvalRun, info: dict, plots: Sequence[Path], report: Path,
             sheet: Path | None) -> str:
    rows = summarize(run.scores)
    seconds = sum(c["seconds"] for c in run.clips)
    frames = sum(c["frames"] for c in run.clips)
    lines = [
        "# Evaluation: rate and quality on face tubes",
        "",
        f"Made by `{info['command']}` at commit {info['commit']} on {info['date']} "
        f"({info['threads']} thread(s), {info['elapsed_min']:.1f} min"
        + (f" after resuming {info['resumed_scores']} scores from a stopped run of the "
           "same commit" if info.get("resumed_scores") else "") + ").",
        *_reused_line(info),
        "",
        f"{len(run.clips)} clips ({info['clips_from']}), {frames} frames, {seconds:.1f} s, "
        "256x256 face tubes at 15 fps. Metrics are per clip, then averaged over clips "
        "(NaN-aware); per-clip values are at the end and in "
        f"[{Path(info['json']).name}]({_rel(Path(info['json']), report)}).",
        "",
        "## Summary",
        "",
        summary_table(rows),
        "",
        "- **kbps all-in**: every bit over the clip's duration, the first (intra) frame and "
        "setup bits included; **steady**: frames after the first. Classic codecs: "
        "the elementary stream a packet transport carries (NAL units / OBUs without "
        "start codes, SEI banners and AV1 temporal delimiters), CRF searched per clip for "
        "the target all-in rate; rows are compared at the rate actually produced. "
        "*clips (target reached)*: on how many clips the codec could go as low as the "
        "target at its coarsest CRF (else that coarsest point is scored).",
        "- **zero-bit**: the first frame held; it is not counted (the receiver is assumed to "
        "have it). LPIPS rewards a frozen picture on talking heads: read **NME** (MediaPipe "
        "mesh of the output vs of the original, over the outer-eye-corner distance) beside "
        "it. A method that does not beat the held frame on NME has not sent motion.",
        "- **identity**: " + (
            f"{info['identity']} (eval/identity.py): the mean L2 distance between the "
            "descriptors of output and original frames, the face aligned in the original's "
            "HOG box. dlib's threshold for *same person* is 0.6; on these clips other people "
            "measure 0.46-0.93 (docs/environment.md), the same frame at JPEG quality 10 "
            "0.3. It says whether the person is still recognisable, not whether the motion "
            "is right (the held frame scores well)." if info.get("identity") else
            f"not measured: {info.get('identity_missing') or 'unknown reason'}."),
        "- **PSNR** from each clip's mean squared error (RGB, 8-bit). **MS-SSIM** on RGB "
        "(pytorch-msssim). **face found**: fraction of output frames where MediaPipe finds "
        "the face (frames where it does not keep the last landmarks found for NME). "
        "**motion ratio**: mean frame-to-frame change of the output over that of the "
        "original (0: frozen, above 1: flicker); **motion error**: mean absolute difference "
        "of the two per-frame changes, 8-bit levels. **flicker** (temporal consistency): "
        "the change the output adds beyond the original's, frame by frame, over the "
        "original's mean change (0: none, also for a frozen or merely blurred picture; "
        "1: as much added change as the original has). A blurry output can flicker and "
        "still have a motion ratio below 1; source switches (FOM-mult, Oquab et al. 2022 "
        "figure 9) show here.",
        "- **facecodec / fom / fom-mult**: scored on what the `Decoder` renders from real "
        "`.fcs` bytes (sender values from the clip's cached tube, so encode fps leaves out "
        "MediaPipe), drawn at 256: the models run at their own resolution and the "
        "pixel blend warps the 256 source frames at 256; with several sources, each "
        "frame's pixels come mostly from the sources nearest in pose (the receiver's pose "
        "weighting, docs/codec.md). kbps counts every byte of the stream: the source "
        "images and the header are in the all-in rate (setup), "
        "the packets (and crop chunks) in the steady rate; fom-mult adds ceil(log2 N) bits "
        "per frame for the source index.",
        "- **fps**: single-threaded wall clock on this machine, encode with RGB->YUV.",
        "",
        "## Expression",
        "",
        expression_table(rows),
        "",
        "Does the output blink, open its mouth and smile when the original does? NME hardly "
        "sees it (the lids are a few of 468 points). From the same MediaPipe meshes as NME "
        "(eval/expression.py), three signals per frame, in outer-eye-corner distances: "
        "**eye** openness (lid gap, three pairs per eye), **mouth open** (inner-lip gap, "
        "three pairs), **mouth width** (corner to corner; a smile widens it).",
        "",
        "- **error**: mean absolute difference of the output's signal and the original's "
        "over the clip's frames, then the mean over clips.",
        "- **r**: Pearson correlation of the output's series with the original's on a clip "
        "(does it follow, whatever its offset), then the mean over clips; undefined (-) "
        "for an exactly constant series. MediaPipe's points jitter a little on identical "
        "frames, so a still picture is not exactly constant: the held frame's r is that "
        "jitter's chance correlation (its first frame is the original's), the floor a "
        "method must clear.",
        "- **blink recall**: the original's eyes are *closed* on a frame when their openness "
        "is below half of the clip's median (the output's likewise, against its own "
        "median); recall is the share of the original's closed-eye frames on which the "
        "output's are closed too, pooled over clips (hits and blink frames summed, so a "
        "clip with one closed frame weighs one frame). **false blinks**: output frames "
        "closed while the original's are open, summed over clips.",
        "- Frames where the output's face is lost keep the last face found (as for NME); "
        "frames without a face in the original are left out.",
        "",
        "## Rate-quality curves",
        "",
    ]
    for p in plots:
        lines += [f"![{p.stem}]({_rel(p, report)})", ""]
    lines += ["## Methods", ""]
    for name, settings in info["methods"].items():
        desc = settings.pop("description", "")
        extra = ", ".join(f"{k} {v}" for k, v in settings.items())
        lines.append(f"- `{name}`: {desc}" + (f" ({extra})" if extra else ""))
    lines += ["", "## Clips", "", "| clip | frames | seconds | yaw range rad | tube from |",
              "|---|---|---|---|---|"]
    for c in run.clips:
        lines.append(f"| {c['name']} | {c['frames']} | {c['seconds']:.1f} | "
                     f"{c['yaw_range']:.2f} | {c['origin']} |")
    for name, reason in run.skipped:
        lines.append(f"| {name} | skipped: {reason} | | | |")
    if sheet is not None:
        shown = " | ".join(run.sheet.columns) or "every method"
        rate = run.sheet.shown_kbps
        lines += ["", "## Contact sheet", "",
                  f"`{sheet}`: {len(run.sheet.indices)} frames of the most rotation-heavy "
                  f"clip ({run.sheet.clip}, yaw range {run.sheet.yaw_range:.2f} rad, the most "
                  f"turned frames among them), {shown}"
                  + (f", rate-controlled codecs at their point nearest {rate:.1f} kbps"
                     if rate is not None else "") + ". "
                  "It is not committed and not linked here: it shows frames of third-party "
                  "clips (shared/data, used for evaluation only), which never go into the "
                  "repository; it is written outside it or to its git-ignored `out/` "
                  "folder. Re-run the command above to make it."]
    lines += ["", "## Per clip", ""]
    for c in run.clips:
        mine = [s for s in run.scores if s.clip == c["name"]]
        lines += [f"<details><summary>{c['name']}</summary>", "", clip_table(mine), "",
                  "</details>", ""]
    return "\n".join(lines)


def _rel(path: Path, report: Path) -> str:
    try:
        return str(path.resolve().relative_to(report.resolve().parent))
    except ValueError:
        return str(path)


CARD_BEGIN = "<!-- facecodec eval: begin (written by `facecodec eval --card`) -->"
CARD_END = "<!-- facecodec eval: end -->"


def card_section(results: dict, model_dir: Path, report: Path | None) -> str | None:
    """The model card's evaluation section: the summary rows of the methods that ran
    ``model_dir``, beside the held frame and SVT-AV1 from the same run; None if no method
    ran that model. ``results``: what ``results_json`` writes."""
    model_dir = Path(model_dir).resolve()
    mine = {name for name, s in results["methods"].items()
            if s.get("model") and Path(s["model"]).resolve() == model_dir}
    if not mine:
        return None
    ref = [r for r in results["summary"] if r["method"] == "zero-bit"
           or (r["method"].split(":")[0] == "svtav1" and r.get("target_kbps") in (5, 10))]
    rows = [r for r in results["summary"] if r["method"] in mine] + ref
    cols = [("method", "method", "{}"), ("all-in kbps", "kbps_all", "{:.2f}"),
            ("steady kbps", "kbps_steady", "{:.2f}"), ("bits/frame", "bits_per_frame", "{:.0f}"),
            ("LPIPS-alex", "lpips", "{:.3f}"), ("PSNR dB", "psnr", "{:.2f}"),
            ("NME", "nme", "{:.3f}"), ("identity", "identity", "{:.3f}"),
            ("flicker", "flicker", "{:.2f}"), ("eye r", "eye_corr", "{:.2f}"),
            ("mouth open r", "mouth_open_corr", "{:.2f}"),
            ("mouth width r", "mouth_width_corr", "{:.2f}"),
            ("blink recall (hits/frames)", "blink_recall", "{:.2f}")]
    lines = [CARD_BEGIN, "## Evaluation on the val clips", "",
             f"`{results['command']}` at commit {results['commit']} on {results['date']}: "
             f"{len(results['clips'])} clips ({results['clips_from']}), 256x256 face tubes at "
             f"15 fps" + (f"; full report: {report}" if report else "") + ".", "",
             "| " + " | ".join(c[0] for c in cols) + " |", "|---" * len(cols) + "|"]
    for r in rows:
        method = r["method"] + (f" @{r['target_kbps']}" if r.get("target_kbps") else "")
        cells = [method] + [fmt.format(r[key]) if isinstance(r.get(key), int | float)
                            else "-" for _, key, fmt in cols[1:]]
        if isinstance(r.get("blink_frames"), int | float):
            cells[-1] += f" ({r['blink_hits']:g}/{r['blink_frames']:g})"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "NME: landmark error over the outer-eye-corner distance; a method that does "
              "not beat the held frame (zero-bit) on it has not transmitted motion. "
              "Expression (eval/expression.py, from the same face meshes): r is the "
              "correlation of the output's eye openness, mouth opening and mouth width with "
              "the original's over a clip, averaged over clips (the held frame's is "
              "tracker jitter, the floor); "
              "blink recall is the share of the original's closed-eye frames on which the "
              "output's eyes are closed too, pooled over the clips.", CARD_END]
    return "\n".join(lines)


def update_card(card: Path, section: str) -> None:
    """Put ``section`` in ``card`` (Markdown), replacing an earlier one."""
    text = card.read_text() if card.exists() else ""
    if CARD_BEGIN in text and CARD_END in text:
        head, rest = text.split(CARD_BEGIN, 1)
        tail = rest.split(CARD_END, 1)[1]
        text = head.rstrip("\n") + "\n\n" + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    card.write_text(text)
