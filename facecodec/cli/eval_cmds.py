"""``facecodec eval``: methods compared on face tubes at matched rates (docs/EVAL.md)."""

from __future__ import annotations

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
@click.option("--list-methods", is_flag=True, help="List the methods and exit.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", is_flag=True, help="One line per clip and operating point.")
def eval_cmd(manifest: Path | None, split: str, folder: Path | None, cache: Path | None,
             names: tuple[str, ...], limit: int | None, max_frames: int | None,
             methods: str | None, rates: str, report: Path | None, json_path: Path | None,
             reuse: Path | None, sheet_dir: Path, sheet_clip: str | None, sheet_kbps: float,
             no_sheet: bool,
             threads: int, card: bool, list_methods: bool, no_progress: bool,
             verbose: bool) -> None:
    """Score methods (held frame, classic codecs, models) on face tubes at 256x256 15 fps:
    rates, LPIPS-alex, PSNR, MS-SSIM, landmark NME, identity distance (with the
    'identity' extra), temporal consistency, expression (eyes, mouth, blinks), speed."""
    import datetime
    import json
    import shlex
    import sys
    import time

    from facecodec.errors import InputError
    from facecodec.eval.methods import REGISTRY, default_methods, make_method

    if list_methods:
        for name, entry in REGISTRY.items():
            note = "" if entry.default else " [not run by default]"
            click.echo(f"{name:20s} {entry.help}{note}")
        return
    target_rates = _rates(rates)
    specs = _split_methods(methods) if methods else default_methods()
    if report is not None and report.suffix.lower() != ".md":
        raise InputError(f"{report}: the report is Markdown (.md)")
    plot_dir = report.parent / report.stem.lower() if report is not None else None
    if json_path is None and plot_dir is not None:
        json_path = plot_dir / "results.json"
    previous = None
    if reuse is not None:  # before any work: a wrong file fails fast
        from facecodec.eval.reuse import load_previous

        previous = load_previous(reuse)
    if not no_sheet:
        from facecodec.eval.report import check_sheet_dir

        check_sheet_dir(sheet_dir)

    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)

    from facecodec.eval.clips import folder_clips, manifest_clips
    from facecodec.eval.report import (
        contact_sheet,
        expression_table,
        git_commit,
        markdown,
        rate_plots,
        results_json,
        summarize,
        summary_table,
    )
    from facecodec.eval.runner import evaluate
    from facecodec.sender.landmarks import quiet_mediapipe_logs
    from facecodec.sender.prepare import DEFAULT_MANIFEST, default_out

    if folder is not None:
        refs = folder_clips(folder, cache, list(names) or None, limit)
        clips_from = f"folder {folder}"
    else:
        manifest = manifest or DEFAULT_MANIFEST
        refs = manifest_clips(manifest, split, cache or default_out(), list(names) or None,
                              limit)
        clips_from = f"{split} split of {manifest.name}"
    chosen = [make_method(s) for s in specs]
    if len({m.name for m in chosen}) != len(chosen):
        raise InputError(f"a method is listed twice: {', '.join(specs)}")

    from facecodec.eval.identity import FaceIdentity, unavailable_reason

    missing = unavailable_reason()
    identity = None if missing else FaceIdentity()
    measured = identity.description if identity else None  # how rows were scored
    if missing:
        click.echo(f"warning: no identity distance: {missing}", err=True)
    settings = {m.name: {"description": m.description, **m.settings()} for m in chosen}
    reused = {}
    if previous is not None:
        from facecodec.eval.reuse import has_expression, reusable

        reused = reusable(previous, settings,
                          {m.name: m.operating_points(target_rates) for m in chosen},
                          [r.name for r in refs], max_frames, measured)
        before = sorted({r["method"] for r in previous["scores"] if not has_expression(r)}
                        & settings.keys())
        if before:
            click.echo(f"running again (scored before the expression metrics): "
                       f"{', '.join(before)}", err=True)
        click.echo(f"reusing the scores of {', '.join(reused) or 'no method'} from {reuse} "
                   f"(commit {previous.get('commit', '?')})", err=True)

    journal, resumed = None, {}
    if json_path is not None:  # a stopped run resumes from its journal (eval/journal.py)
        from facecodec.eval.journal import Journal, journal_path

        journal = Journal(journal_path(json_path), git_commit(), max_frames, measured,
                          settings)
        resumed = journal.load()
        if resumed:
            click.echo(f"resuming {sum(map(len, resumed.values()))} scores from "
                       f"{journal.path} (a stopped run of this commit)", err=True)
        elif not journal.resumable:
            click.echo("note: uncommitted changes: if stopped, this run starts over",
                       err=True)
    taken = {m: {**resumed.get(m, {}), **reused.get(m, {})} for m in {*resumed, *reused}}

    start = time.monotonic()
    log = (lambda line: click.echo(line, err=True)) if verbose else None
    with quiet_mediapipe_logs():
        run = evaluate(refs, chosen, target_rates, max_frames, progress=not no_progress,
                       sheet_clip=sheet_clip, log=log, reused=taken,
                       sheet=not no_sheet, identity=identity,
                       on_score=(lambda s: journal.add(s, resumed)) if journal else None)
    elapsed = (time.monotonic() - start) / 60
    rows = summarize(run.scores)
    click.echo(summary_table(rows) + "\n\n" + expression_table(rows))

    argv = ["facecodec", "eval", *sys.argv[2:]] if len(sys.argv) > 1 else ["facecodec", "eval"]
    info = {
        "command": shlex.join(argv), "commit": git_commit(),
        "date": datetime.date.today().isoformat(), "threads": threads,
        "elapsed_min": elapsed, "clips_from": clips_from, "rates_kbps": target_rates,
        "max_frames": max_frames, "json": str(json_path or "results.json"),
        "methods": settings,
        "identity": measured, "identity_missing": missing,
        "resumed_scores": sum(map(len, resumed.values())),
    }
    if previous is not None and reused:
        # a row reused twice keeps the commit that scored it
        earlier = previous.get("reused", {}).get("scored_at", {})
        info["reused"] = {"from": str(reuse), "scored_at": {
            m: earlier.get(m, f"{previous.get('commit')} ({previous.get('date')})")
            for m in sorted(reused)}}
    sheet = None
    if not no_sheet and run.sheet.frames:
        sheet = contact_sheet(run, sheet_dir / f"contact_{run.sheet.clip}.png", sheet_kbps)
        click.echo(f"contact sheet: {sheet}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(results_json(run, info))
        click.echo(f"results: {json_path}")
        if journal is not None:
            journal.remove()
    if card:
        from facecodec.eval.report import card_section, update_card

        results = json.loads(results_json(run, info))
        for model in {s["model"] for s in info["methods"].values() if s.get("model")}:
            section = card_section(results, Path(model), report)
            if section is not None:
                update_card(Path(model) / "MODEL_CARD.md", section)
                click.echo(f"model card: {Path(model) / 'MODEL_CARD.md'}")
    if report is not None:
        assert plot_dir is not None
        plots = rate_plots(run.scores, plot_dir)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(markdown(run, info, plots, report, sheet) + "\n")
        click.echo(f"report: {report} (plots in {plot_dir})")


def _split_methods(value: str) -> list[str]:
    """"zero-bit,x264:preset=slow;rtol=0.05,svtav1" -> one spec per method (a method's
    own options are separated by ';')."""
    return [s.strip() for s in value.split(",") if s.strip()]


COMMANDS = [eval_cmd]
