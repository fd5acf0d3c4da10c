"""One ``facecodec eval`` run, as steps a caller (the CLI, a test, a script) drives with a
typed request: check the outputs, load the clips and methods, take the scores an earlier
run or a stopped one already made, score the rest, write the results, report and cards.

Everything that can fail on the user's arguments fails before any scoring starts.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import torch

from facecodec.errors import InputError
from facecodec.eval import report as report_mod
from facecodec.eval.clips import folder_clips, manifest_clips
from facecodec.eval.identity import FaceIdentity, unavailable_reason
from facecodec.eval.journal import Journal, journal_path
from facecodec.eval.methods import make_method
from facecodec.eval.reuse import has_expression, load_previous, reusable
from facecodec.eval.runner import evaluate
from facecodec.sender.landmarks import quiet_mediapipe_logs
from facecodec.sender.prepare import DEFAULT_MANIFEST, default_out

Say = Callable[[str], None]


@dataclass(frozen=True)
class EvalRequest:
    """What to score and where the results go (the options of ``facecodec eval``)."""

    methods: list[str]  # specs, NAME or NAME:key=value;key=value
    rates: list[float]  # target all-in kbps of the rate-controlled methods
    manifest: Path | None = None  # default: sender.prepare.DEFAULT_MANIFEST
    split: str = "val"
    folder: Path | None = None  # a folder of videos instead of a manifest
    cache: Path | None = None
    names: tuple[str, ...] = ()
    limit: int | None = None
    max_frames: int | None = None
    report: Path | None = None  # Markdown; plots and results.json beside it
    json_path: Path | None = None
    reuse: Path | None = None  # an earlier results.json
    sheet_dir: Path = Path("out/eval")
    sheet_clip: str | None = None
    sheet_kbps: float = 10.0
    sheet: bool = True
    threads: int = 1
    card: bool = False
    progress: bool = True
    verbose: bool = False
    command: str = "facecodec eval"  # recorded in the results and the report

    @property
    def plot_dir(self) -> Path | None:
        """docs/EVAL.md -> docs/eval/."""
        return None if self.report is None else self.report.parent / self.report.stem.lower()

    @property
    def results_path(self) -> Path | None:
        if self.json_path is not None or self.plot_dir is None:
            return self.json_path
        return self.plot_dir / "results.json"


@dataclass
class _Earlier:
    """What earlier runs give this one: scores reused from a results.json, scores resumed
    from this commit's journal (a stopped run)."""

    previous: dict | None = None
    reused: dict = field(default_factory=dict)
    resumed: dict = field(default_factory=dict)
    journal: object | None = None

    def taken(self) -> dict:
        return {m: {**self.resumed.get(m, {}), **self.reused.get(m, {})}
                for m in {*self.resumed, *self.reused}}


def run_eval(req: EvalRequest, say: Say, warn: Say) -> None:
    """Run ``req``; ``say`` prints results and paths, ``warn`` notes (stderr)."""
    _check(req)
    previous = _load_previous(req)

    torch.set_num_threads(req.threads)
    cv2.setNumThreads(req.threads)

    refs, clips_from = _clips(req)
    chosen = [make_method(s) for s in req.methods]
    if len({m.name for m in chosen}) != len(chosen):
        raise InputError(f"a method is listed twice: {', '.join(req.methods)}")
    identity, measured, missing = _identity(warn)
    settings = {m.name: {"description": m.description, **m.settings()} for m in chosen}
    earlier = _Earlier(previous=previous)
    _reuse(req, earlier, settings, chosen, refs, measured, warn)
    _resume(req, earlier, settings, measured, warn)

    start = time.monotonic()
    journal = earlier.journal
    with quiet_mediapipe_logs():
        run = evaluate(refs, chosen, req.rates, req.max_frames, progress=req.progress,
                       sheet_clip=req.sheet_clip, log=warn if req.verbose else None,
                       reused=earlier.taken(), sheet=req.sheet, identity=identity,
                       on_score=(lambda s: journal.add(s, earlier.resumed)) if journal
                       else None)
    elapsed = (time.monotonic() - start) / 60
    rows = report_mod.summarize(run.scores)
    say(report_mod.summary_table(rows) + "\n\n" + report_mod.expression_table(rows))
    info = _info(req, earlier, settings, clips_from, measured, missing, elapsed)
    _write(req, run, info, journal, say)


def _check(req: EvalRequest) -> None:
    if req.report is not None and req.report.suffix.lower() != ".md":
        raise InputError(f"{req.report}: the report is Markdown (.md)")
    if req.sheet:
        report_mod.check_sheet_dir(req.sheet_dir)


def _load_previous(req: EvalRequest) -> dict | None:
    if req.reuse is None:
        return None

    return load_previous(req.reuse)  # before any work: a wrong file fails fast


def _clips(req: EvalRequest) -> tuple[list, str]:
    names = list(req.names) or None
    if req.folder is not None:
        return folder_clips(req.folder, req.cache, names, req.limit), f"folder {req.folder}"
    manifest = req.manifest or DEFAULT_MANIFEST
    refs = manifest_clips(manifest, req.split, req.cache or default_out(), names, req.limit)
    return refs, f"{req.split} split of {manifest.name}"


def _identity(warn: Say):
    """(the identity scorer or None, how rows are scored, why not measured)."""
    missing = unavailable_reason()
    identity = None if missing else FaceIdentity()
    if missing:
        warn(f"warning: no identity distance: {missing}")
    return identity, (identity.description if identity else None), missing


def _reuse(req: EvalRequest, earlier: _Earlier, settings: dict, chosen: list, refs: list,
           measured: str | None, warn: Say) -> None:
    if earlier.previous is None:
        return

    previous = earlier.previous
    earlier.reused = reusable(previous, settings,
                            {m.name: m.operating_points(req.rates) for m in chosen},
                            [r.name for r in refs], req.max_frames, measured)
    before = sorted({r["method"] for r in previous["scores"] if not has_expression(r)}
                    & settings.keys())
    if before:
        warn(f"running again (scored before the expression metrics): {', '.join(before)}")
    warn(f"reusing the scores of {', '.join(earlier.reused) or 'no method'} from {req.reuse} "
         f"(commit {previous.get('commit', '?')})")


def _resume(req: EvalRequest, earlier: _Earlier, settings: dict, measured: str | None,
            warn: Say) -> None:
    """A stopped run resumes from its journal (eval/journal.py)."""
    if req.results_path is None:
        return

    journal = Journal(journal_path(req.results_path), report_mod.git_commit(), req.max_frames,
                      measured, settings)
    earlier.journal, earlier.resumed = journal, journal.load()
    if earlier.resumed:
        warn(f"resuming {sum(map(len, earlier.resumed.values()))} scores from {journal.path} "
             "(a stopped run of this commit)")
    elif not journal.resumable:
        warn("note: uncommitted changes: if stopped, this run starts over")


def _info(req: EvalRequest, earlier: _Earlier, settings: dict, clips_from: str,
          measured: str | None, missing: str | None, elapsed: float) -> dict:
    """The run's description in results.json and the report."""
    info = {
        "command": req.command, "commit": report_mod.git_commit(),
        "date": datetime.date.today().isoformat(), "threads": req.threads,
        "elapsed_min": elapsed, "clips_from": clips_from, "rates_kbps": req.rates,
        "max_frames": req.max_frames, "json": str(req.results_path or "results.json"),
        "methods": settings,
        "identity": measured, "identity_missing": missing,
        "resumed_scores": sum(map(len, earlier.resumed.values())),
    }
    previous = earlier.previous
    if previous is not None and earlier.reused:
        # a row reused twice keeps the commit that scored it
        scored_at = previous.get("reused", {}).get("scored_at", {})
        info["reused"] = {"from": str(req.reuse), "scored_at": {
            m: scored_at.get(m, f"{previous.get('commit')} ({previous.get('date')})")
            for m in sorted(earlier.reused)}}
    return info


def _write(req: EvalRequest, run, info: dict, journal, say: Say) -> None:
    """Contact sheet, results.json (then the journal goes), model cards, report."""
    sheet = None
    if req.sheet and run.sheet.frames:
        sheet = report_mod.contact_sheet(run, req.sheet_dir / f"contact_{run.sheet.clip}.png",
                                         req.sheet_kbps)
        say(f"contact sheet: {sheet}")
    path = req.results_path
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_mod.results_json(run, info))
        say(f"results: {path}")
        if journal is not None:
            journal.remove()
    if req.card:
        results = json.loads(report_mod.results_json(run, info))
        for model in {s["model"] for s in info["methods"].values() if s.get("model")}:
            section = report_mod.card_section(results, Path(model), req.report)
            if section is not None:
                report_mod.update_card(Path(model) / "MODEL_CARD.md", section)
                say(f"model card: {Path(model) / 'MODEL_CARD.md'}")
    if req.report is not None:
        plot_dir = req.plot_dir
        assert plot_dir is not None
        plots = report_mod.rate_plots(run.scores, plot_dir)
        req.report.parent.mkdir(parents=True, exist_ok=True)
        req.report.write_text(report_mod.markdown(run, info, plots, req.report, sheet) + "\n")
        say(f"report: {req.report} (plots in {plot_dir})")
