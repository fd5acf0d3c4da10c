"""``facecodec eval``: methods compared on face tubes at matched rates (docs/EVAL.md)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

DEFAULT_RATES = "3,5,10,20,30"


def _rates(value: str) -> list[float]:
    try:
        rates = sorted({float(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter(f"{value!r}: comma-separated kbps, e.g. 3,10,30") from None
    if not rates or rates[0] <= 0:
        raise click.BadParameter(f"{value!r}: rates must be positive kbps")
    return rates


@click.command("eval")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Clip manifest CSV (default: shared/data/manifest.csv next to the repo).")
@click.option("--split", default="val", show_default=True,
              help="Manifest split to run on ('all': every clip).")
@click.option("--clips", "folder", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="A folder of videos instead of a manifest.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Face-tube cache of prepare-data (default for a manifest: $FACECODEC_DATA "
                   "or ~/.cache/facecodec/data; a folder uses it only when given).")
@click.option("--clip", "names", multiple=True, help="Only this clip (repeatable).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N clips.")
@click.option("--max-frames", type=click.IntRange(2), default=None,
              help="Only the first N frames of each clip (quick runs).")
@click.option("-m", "--methods", default=None,
              help="Comma-separated methods, each NAME or NAME:key=value;key=value "
                   "(default: every registered one; see --list-methods).")
@click.option("--rates", default=DEFAULT_RATES, show_default=True,
              help="Target all-in kbps of the rate-controlled methods.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a Markdown report here; plots and results.json go to a folder "
                   "named after it (docs/EVAL.md -> docs/eval/).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the results as JSON here (default with --report: "
                                 "<report folder>/results.json). Scores are journaled "
                                 "beside it as they are made: a stopped run of a "
                                 "committed tree, run again, resumes.")
@click.option("--reuse", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None,
              help="An earlier results.json: methods it scored with the same settings on "
                   "the same clips are not run again (the report says which).")
@click.option("--sheet-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/eval"), show_default=True,
              help="Where the contact sheet (frames of the clips) goes: outside the repo or "
                   "git-ignored.")
@click.option("--sheet-clip", default=None,
              help="Clip of the contact sheet (default: the largest yaw range).")
@click.option("--sheet-kbps", type=float, default=10.0, show_default=True,
              help="Rate whose nearest operating point each method shows on the sheet "
                   "(with a model method run: AV1 is shown at the model's rate instead).")
@click.option("--no-sheet", is_flag=True, help="No contact sheet.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Torch / OpenCV threads.")
@click.option("--card", is_flag=True,
              help="Also write the results of each model into its MODEL_CARD.md "
                   "(an 'Evaluation on the val clips' section, replaced on each run).")
@click.option("--calls", is_flag=True,
              help="One-minute calls instead of the val clips (issue 17): the call clip's "
                   "first --call-seconds and the --loops longest val clips ping-ponged to "
                   "that length; default methods SVT-AV1 on its ladder and the codec at "
                   "budgets, default rates 3,5,6,8,12 (docs/EVAL_CALLS.md).")
@click.option("--call-seconds", type=click.FloatRange(1.0), default=60.0, show_default=True,
              help="With --calls: the length of a call.")
@click.option("--loops", type=click.IntRange(0), default=3, show_default=True,
              help="With --calls: how many of the longest val clips to loop (--clip: "
                   "these instead).")
@click.option("--which", type=click.Choice(["both", "call", "loops"]), default="both",
              show_default=True, help="With --calls: the call clip, the looped val clips "
                                      "or both (a run in parts).")
@click.option("--from-results", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              multiple=True, help="With --calls and --report: write the report of this "
                                  "results.json (e.g. of a stopped run; repeatable: runs "
                                  "merged into the report's folder) and exit.")
@click.option("--list-methods", is_flag=True, help="List the methods and exit.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", is_flag=True, help="One line per clip and operating point.")
def eval_cmd(manifest: Path | None, split: str, folder: Path | None, cache: Path | None,
             names: tuple[str, ...], limit: int | None, max_frames: int | None,
             methods: str | None, rates: str, report: Path | None, json_path: Path | None,
             reuse: Path | None, sheet_dir: Path, sheet_clip: str | None, sheet_kbps: float,
             no_sheet: bool, threads: int, card: bool, calls: bool, call_seconds: float,
             loops: int, which: str, from_results: tuple[Path, ...], list_methods: bool,
             no_progress: bool,
             verbose: bool) -> None:
    """Score methods (held frame, classic codecs, models) on face tubes at 256x256 15 fps:
    rates, LPIPS-alex, PSNR, MS-SSIM, landmark NME, identity distance (with the
    'identity' extra), temporal consistency, expression (eyes, mouth, blinks), speed."""
    from facecodec.eval.methods import REGISTRY, default_methods

    if list_methods:
        for name, entry in REGISTRY.items():
            note = "" if entry.default else " [not run by default]"
            click.echo(f"{name:20s} {entry.help}{note}")
        return
    argv = ["facecodec", "eval", *sys.argv[2:]] if len(sys.argv) > 1 else ["facecodec", "eval"]
    if calls and from_results:
        if report is None:
            raise click.UsageError("--from-results needs --report")
        from facecodec.eval.calls_session import report_from

        used = report_from(list(from_results), report)
        click.echo(f"report: {report} (results: {used})")
        return
    if calls:
        _calls(methods, rates, manifest, cache, names, max_frames, report, json_path,
               threads, call_seconds, loops, which, no_progress, verbose, argv)
        return
    from facecodec.eval.session import EvalRequest, run_eval  # torch: not for --list-methods

    request = EvalRequest(
        methods=_split_methods(methods) if methods else default_methods(),
        rates=_rates(rates), manifest=manifest, split=split, folder=folder, cache=cache,
        names=names, limit=limit, max_frames=max_frames, report=report, json_path=json_path,
        reuse=reuse, sheet_dir=sheet_dir, sheet_clip=sheet_clip, sheet_kbps=sheet_kbps,
        sheet=not no_sheet, threads=threads, card=card, progress=not no_progress,
        verbose=verbose, command=shlex.join(argv))
    run_eval(request, say=click.echo, warn=lambda line: click.echo(line, err=True))


def _calls(methods: str | None, rates: str, manifest: Path | None, cache: Path | None,
           names: tuple[str, ...], max_frames: int | None, report: Path | None,
           json_path: Path | None, threads: int, seconds: float, loops: int,
           which: str, no_progress: bool, verbose: bool, argv: list[str]) -> None:
    """``--calls``: one-minute calls (facecodec/eval/calls_session.py)."""
    from facecodec.eval.calls_session import CALL_METHODS, CALL_RATES, CallsRequest, run_calls

    request = CallsRequest(
        methods=_split_methods(methods) if methods else list(CALL_METHODS),
        rates=list(CALL_RATES) if rates == DEFAULT_RATES else _rates(rates), report=report,
        json_path=json_path, manifest=manifest, cache=cache, seconds=seconds, loops=loops,
        names=names, which=which, max_frames=max_frames, threads=threads,
        progress=not no_progress, verbose=verbose, command=shlex.join(argv))
    run_calls(request, say=click.echo, warn=lambda line: click.echo(line, err=True))


def _split_methods(value: str) -> list[str]:
    """"zero-bit,x264:preset=slow;rtol=0.05,svtav1" -> one spec per method (a method's
    own options are separated by ';')."""
    return [s.strip() for s in value.split(",") if s.strip()]


COMMANDS = [eval_cmd]
