"""Bitstream commands: encode / decode of value streams, bitrate reports, prior fitting."""

from __future__ import annotations

import json
from pathlib import Path

import click

from facecodec.bitstream.limits import MAX_SOURCES
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.protection import PRESETS
from facecodec.bitstream.protection import resolve as resolve_protection
from facecodec.bitstream.report import analyse, overall, to_markdown
from facecodec.bitstream.streams import TABLES
from facecodec.bitstream.values import decode_values, encode_values, load_values, save_values
from facecodec.defaults import (
    AUDIO_KBPS,
    AUDIO_MAX_KBPS,
    AUDIO_MIN_KBPS,
    BUDGET_MAX_KBPS,
    BUDGET_MIN_KBPS,
    FIT_INTRA_PERIOD,
    FPS,
    INTRA_PERIOD_S,
    MAX_SOURCE_KBPS,
    MIN_SOURCE_KBPS,
    SOURCE_CHOICE,
    SOURCE_CHOICES,
    SOURCE_CODEC,
    SOURCE_CODECS,
    SOURCE_QUALITY,
    SOURCES,
    TUBE_SIZE,
)
from facecodec.errors import InputError
from facecodec.files import VIDEO_SUFFIXES, check_output
from facecodec.resources import search_path


def _base_arg(value: str | None) -> tuple[int, int] | str | None:
    """``--base SIDE:CRF`` -> (side, crf), or ``auto``; the Encoder checks the ranges."""
    from facecodec.baselayer import parse_base

    if value == "auto":
        return value
    try:
        return None if value is None else parse_base(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _prior_option(f):
    return click.option(
        "--prior", "prior_path", default=None,
        help="Prior file (.json) or 'untrained'. Default: <table>.json in $FACECODEC_PRIORS "
             "or the shipped priors/ (a model's priors are in its folder: "
             "models/<name>/prior.json).")(f)


def _load_prior(prior_path: str | None, table_name: str):
    if table_name not in TABLES:
        raise InputError(f"unknown stream table {table_name!r} (have {sorted(TABLES)})")
    if prior_path == "untrained":
        return Prior.untrained(TABLES[table_name])
    if prior_path is None:
        for d in search_path("priors"):
            if (d / f"{table_name}.json").is_file():
                prior_path = str(d / f"{table_name}.json")
                break
        else:
            raise InputError(f"no prior for stream table {table_name!r} in "
                             f"{[str(d) for d in search_path('priors')]}: fit one with "
                             f"'facecodec fit-priors', pass a model's (--prior "
                             f"models/<name>/prior.json) or --prior untrained")
    prior = Prior.load(prior_path)
    if prior.table != TABLES[table_name]:
        raise InputError(f"{prior_path}: fitted for another stream table than {table_name!r}")
    return prior


def _check_fec(ctx, param, value: int | None) -> int | None:
    if value == 1:
        raise click.BadParameter("a parity needs a group of 2..16 packets (0: off)")
    return value


@click.command("encode")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default=None,
              help="Model directory or name in models/ (default: the shipped model).")
@click.option("--fps", type=click.FloatRange(1, 120), default=FPS, show_default=True,
              help="Frame rate of the stream (video input is resampled to it).")
@click.option("--sources", "n_sources", type=click.IntRange(1, MAX_SOURCES), default=None,
              help=f"Source frames sent (most frontal + yaw extremes) [default: {SOURCES}, or "
                   "as many as the model's receiver draws from if fewer: FOM's one].")
@click.option("--source-quality", type=click.IntRange(1, 100), default=SOURCE_QUALITY,
              show_default=True,
              help="Still-image quality of the source frames.")
@click.option("--source-codec", type=click.Choice(list(SOURCE_CODECS)), default=SOURCE_CODEC,
              show_default=True)
@click.option("--intra-period", type=click.IntRange(1, 65535), default=None,
              help=f"Frames between intra frames (default: {INTRA_PERIOD_S:g} s).")
@click.option("--packet-frames", type=click.IntRange(1, 255), default=1, show_default=True,
              help="Frames per packet (1 for calls; more saves overhead in storage).")
@click.option("--table", "table_name", default="landmarks", show_default=True,
              help="Value-file input only: the stream table.")
@_prior_option
@click.option("--deadband", type=click.FloatRange(0, 100), default=None,
              help="Dead zone on the learned values, the rate knob: a value is sent again "
                   "only once it has moved more than strength x a unit threshold (0: off; "
                   "default: the strength the priors were fitted with). See docs/codec.md.")
@click.option("--protect", "preset", type=click.Choice(list(PRESETS)), default="none",
              show_default=True,
              help="Loss protection without a back channel: 'light' (+8 % bits) resumes at "
                   "the next recovery point, 'strong' (+105 % bits, up to 2 frames of delay "
                   "after a loss) keeps 98.5 % of frames intact, none frozen over 0.4 s, "
                   "at 5 % packet loss (docs/BENCHMARKS.md, loss). The options below "
                   "override its fields.")
@click.option("--recovery-period", type=click.IntRange(0, 255), default=None,
              help="Every K frames a recovery point coded against an older frame, so a "
                   "receiver that lost a packet resumes there (0: off).")
@click.option("--recovery-anchor", type=click.Choice(["previous", "intra"]), default=None,
              help="What a recovery point refers to: the previous one, or the last intra "
                   "frame (a lost one then costs only its own period).")
@click.option("--redundancy", type=click.IntRange(0, 1), default=None,
              help="1: send each intra frame and recovery point twice.")
@click.option("--repeat-intra", type=click.IntRange(0, 2), default=None,
              help="Copies of each intra frame sent again (0..2).")
@click.option("--fec", type=click.IntRange(0, 16), default=None,
              callback=_check_fec,
              help="Forward error correction: after every G frame packets (2..16) a parity "
                   "packet from which the receiver rebuilds any one lost packet of the group, "
                   "at up to G - 1 frames of added delay (0: off; see docs/format.md).")
@click.option("--source-kbps", type=click.FloatRange(MIN_SOURCE_KBPS, MAX_SOURCE_KBPS),
              default=None,
              help="Pace the sources at this rate (format 2.3): the first goes out at once, "
                   "small, and the full-size ones follow in parts between the frames; the "
                   "receiver draws from the first and uses each as it arrives (default: "
                   "every source whole, before the frames).")
@click.option("--kbps", type=click.FloatRange(BUDGET_MIN_KBPS, BUDGET_MAX_KBPS), default=None,
              help="A budget for everything the stream carries (frames, sound, sources): "
                   "sets the dead zone and the sound's bitrate and paces the sources within "
                   "what those leave (docs/codec.md, 'budget'). Not with --deadband, "
                   "--prior, --audio-kbps or --source-kbps.")
@click.option("--source-choice", type=click.Choice(SOURCE_CHOICES), default=SOURCE_CHOICE,
              show_default=True,
              help="How the source frames are chosen: 'pose' (the most frontal frame and the "
                   "yaw extremes) or 'render' (closed loop: the sender draws a frame a second "
                   "as the receiver will and adds the frames it draws worst; slower to "
                   "encode). See docs/codec.md.")
@click.option("--base", "base", default=None, callback=lambda c, p, v: _base_arg(v),
              metavar="SIDE:CRF|auto",
              help="Add a base layer (format 2.5): every frame's face tube coded with SVT-AV1 "
                   "at SIDE px and CRF (e.g. 256:63, ~6 kbps more; 128:52 ~8), fused with "
                   "the animation by the receiver: more bits, a better picture "
                   "(docs/enhancement.md). With --kbps: 'auto', the budget gives it what "
                   "the frames, the sound and three sources leave (none below 8 kbps).")
@click.option("--no-audio", is_flag=True, help="Drop the video's sound (kept by default: "
              "Opus, format 2.2).")
@click.option("--audio-kbps", type=click.FloatRange(AUDIO_MIN_KBPS, AUDIO_MAX_KBPS),
              default=None, help=f"Bitrate of the sound (Opus; speech needs 6-12) "
                                 f"[default: {AUDIO_KBPS:g}].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def encode(src: Path, dst: Path, model: str | None, fps: float, n_sources: int | None,
           source_quality: int, source_codec: str, intra_period: int | None,
           packet_frames: int, table_name: str, prior_path: str | None,
           deadband: float | None, preset: str, recovery_period: int | None,
           recovery_anchor: str | None, redundancy: int | None, repeat_intra: int | None,
           fec: int | None, source_kbps: float | None, kbps: float | None,
           source_choice: str, base: tuple[int, int] | str | None, no_audio: bool,
           audio_kbps: float | None, no_progress: bool) -> None:
    """Encode SRC into DST (.fcs). SRC is a video (any format FFmpeg reads) or a value
    file (.npz, see 'facecodec track')."""
    from tqdm import tqdm

    # before the model loads and the video is tracked: a bad DST fails at once
    check_output(dst, inputs=[src], suffixes=(".fcs",), writes="encode writes a .fcs stream")
    protection = resolve_protection(preset, recovery_period=recovery_period,
                                    recovery_anchor=recovery_anchor, redundancy=redundancy,
                                    repeat_intra=repeat_intra, fec=fec)
    if src.suffix.lower() != ".npz":
        from facecodec.codec import Encoder
        from facecodec.sender.landmarks import quiet_mediapipe_logs

        enc = Encoder(model, fps=fps, n_sources=n_sources, source_codec=source_codec,
                      source_quality=source_quality, intra_period=intra_period,
                      packet_frames=packet_frames, deadband=deadband,
                      protection=protection, audio=not no_audio, audio_kbps=audio_kbps,
                      source_kbps=source_kbps, kbps=kbps, source_choice=source_choice,
                      prior=Prior.load(prior_path) if prior_path else None, base=base)
        if enc.budget is not None:
            click.echo(enc.budget.describe(), err=True)
        with quiet_mediapipe_logs():  # MediaPipe's native start-up lines: stderr is for errors
            st = enc.encode_file(src, dst, progress=not no_progress)
        secs = st.frames / float(enc.fps)
        all_in = st.bytes * 8 / max(secs, 1e-9) / 1000
        sound = (f" (sound {st.audio_bytes * 8 / max(secs, 1e-9) / 1000:.2f} kbps)"
                 if st.audio_bytes else " (no sound)")
        click.echo(f"{dst}: {st.frames} frames ({secs:.1f} s), face in {st.faces}, sources "
                   f"{st.sources}, {st.bytes} bytes = {all_in:.2f} kbps all-in{sound}, "
                   f"encoded at {st.frames / st.seconds:.1f} frames/s")
        for w in st.warnings:  # e.g. a cut video: what was there is encoded, and said so
            click.echo(f"facecodec: warning: {w}", err=True)
        return

    if kbps is not None:
        raise click.UsageError("--kbps needs a video: a value file has no sound or sources "
                               "to plan")
    if base is not None:
        raise click.UsageError("--base needs a video: a value file has no pictures")
    prior = _load_prior(prior_path, table_name)
    fps_file, values = load_values(src, prior.table)
    n = len(next(iter(values.values())))
    with tqdm(total=n, unit="frame", desc="encode", disable=no_progress or n < 300) as bar:
        size = encode_values(values, fps_file, prior, dst, intra_period, packet_frames,
                             bar.update, protection=protection)
    click.echo(f"{dst}: {n} frames, {size} bytes, {size * 8 / max(n, 1):.1f} bits/frame "
               f"all-in, prior {prior.id}")


@click.command("decode")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tolerant", is_flag=True,
              help="Conceal lost or damaged packets (the last good frame is held) and resume "
                   "as soon as a packet decodes from what arrived; list what was skipped.")
@click.option("--compare", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The original video: write it side by side (left) for review.")
@click.option("--size", type=click.IntRange(16, 2048), default=TUBE_SIZE, show_default=True,
              help="Output frame size (the face tube, square).")
@click.option("--model", default=None,
              help="Model directory or name (default: the one the stream names).")
@click.option("--backend", default=None,
              help="Runtime of the receiver: auto or torch (the receiver runs on PyTorch; "
                   "ONNX is an export format: 'facecodec export onnx') [default: auto, or "
                   "$FACECODEC_BACKEND].")
@click.option("--no-retouch", is_flag=True,
              help="Show the generator's eyelids and lips as drawn, without moving them to "
                   "where the stream's landmarks put them (blinks, mouth openings).")
@click.option("--finetune", "finetune_s", type=click.FloatRange(0, 600), default=0.0,
              show_default=True, metavar="SECONDS",
              help="Fine-tune the receiver on the stream's source frames for this long "
                   "(one thread) each time they change, before drawing (issue 22; nth and "
                   "Frontalizer models).")
@click.option("--no-base", is_flag=True,
              help="Draw the animation alone, without fusing the stream's base layer (if it "
                   "has one).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def decode(src: Path, dst: Path, tolerant: bool, compare: Path | None, size: int,
           model: str | None, backend: str | None, no_retouch: bool, finetune_s: float,
           no_base: bool, no_progress: bool) -> None:
    """Decode SRC (.fcs) into DST: a video (.mp4, .m4v, .mov or .mkv; rendered) or a
    value file (.npz)."""
    # before the model loads: a container H.264 cannot go in, or a bad directory, fails now
    check_output(dst, inputs=[src, compare], suffixes=(*VIDEO_SUFFIXES, ".npz"),
                 writes="decode writes H.264 video or values (.npz)")
    if dst.suffix.lower() != ".npz":
        from facecodec.codec import Decoder
        from facecodec.sender.landmarks import quiet_mediapipe_logs

        # rendered at the output size: the pixel blend warps the 256 sources there directly
        dec = Decoder(model, tolerant=tolerant, backend=backend, output_size=size,
                      retouch=not no_retouch, base=not no_base, finetune_s=finetune_s)
        # the touch-up reads the rendered faces with MediaPipe, whose native start-up lines
        # would otherwise reach stderr (which is for errors)
        with quiet_mediapipe_logs():
            r = dec.decode_file(src, dst, compare=compare, size=size,
                                progress=not no_progress)
        click.echo(f"{dst}: {r['frames']} frames rendered at {r['frames'] / r['seconds']:.1f} "
                   f"frames/s" + (f", {r['held']} held" if r["held"] else "")
                   + (f", {dec.base_fused} fused with the base layer" if dec.base_fused
                      else ""))
        for s in dec.skipped:
            click.echo(f"skipped: byte {s.offset}: {s.reason}; {s.frames} frames held"
                       + (f", {s.not_shown} not shown" if s.not_shown else ""),
                       err=True)
        return
    fps, values, reader = decode_values(src, tolerant=tolerant)
    save_values(dst, fps, values)
    n = reader.frames
    click.echo(f"{dst}: {n} frames at {float(fps):.3g} fps")
    for s in reader.skipped:
        click.echo(f"skipped: byte {s.offset}: {s.reason}; {s.frames} frames held"
                   + (f", {s.not_shown} not shown" if s.not_shown else ""), err=True)


@click.command("bitrate")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--report", is_flag=True, default=True, help="Per-file and overall tables.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--tolerant", is_flag=True, help="Account for damaged files too.")
def bitrate(files: tuple[Path, ...], report: bool, as_json: bool, tolerant: bool) -> None:
    """Where the bits of .fcs FILES go: per stream, overhead, sources, kbps."""
    stats = [analyse(f, tolerant=tolerant) for f in files]
    summaries = [s.summary() for s in stats]
    if len(stats) > 1:
        summaries.append(overall(stats).summary())
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
    else:
        click.echo(to_markdown(summaries))


@click.command("fit-priors")
@click.option("--table", "table_name", default="landmarks", show_default=True,
              help="Stream table of value files / of the cache's landmark tracks.")
@click.option("--model", default=None,
              help="Fit the streams this model sends (landmarks + its sender network's "
                   "values on the cache's face tubes; needs --cache). Default output: "
                   "the model's own prior.json.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Training-data cache (prepare-data): train split fits, val split reports.")
@click.option("--train", "train_files", multiple=True, type=click.Path(path_type=Path),
              help="Value files to fit on (instead of --cache).")
@click.option("--val", "val_files", multiple=True, type=click.Path(path_type=Path),
              help="Held-out value files to report cross-entropy on.")
@click.option("--context", type=click.IntRange(0, 64), default=3, show_default=True,
              help="Inter contexts: the predicted delta clipped to [-N, N] (0 = one table).")
@click.option("--intra-period", type=click.IntRange(1, 65535), default=FIT_INTRA_PERIOD,
              show_default=True,
              help="Frames between the intra frames the streams will be coded with.")
@click.option("--deadband", type=click.FloatRange(0, 100), default=None,
              help="With --model: the encoder's dead-zone strength the streams are made "
                   "with [default: the encoder's default].")
@click.option("--operating-points", "points", default="",
              help="With --model: other dead-zone strengths, comma-separated, each fitted "
                   "to its own prior in operating_points/deadband<S>.json next to the "
                   "main one (the sender network runs once for all; the encoder uses it "
                   "at --deadband S).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the prior. Default: the model's prior.json with "
                   "--model, else priors/<table>.json (shipped priors).")
def fit_priors(table_name: str, model: str | None, cache: Path | None,
               train_files: tuple[Path, ...], val_files: tuple[Path, ...], context: int,
               intra_period: int, deadband: float | None, points: str,
               out: Path | None) -> None:
    """Fit a prior to value streams and report its cross-entropy on held-out streams."""
    from facecodec.training.priors import PriorFit, parse_strengths
    from facecodec.training.priors import fit_priors as fit

    fit(PriorFit(table_name, model, cache, train_files, val_files, context, intra_period,
                 deadband, parse_strengths(points), out), say=click.echo)


COMMANDS = [encode, decode, bitrate, fit_priors]
