"""Bitstream commands: encode / decode of value streams, bitrate reports, prior fitting."""

from __future__ import annotations

import json
from pathlib import Path

import click

from facecodec.errors import InputError


def _prior_option(f):
    return click.option(
        "--prior", "prior_path", default=None,
        help="Prior file (.json) or 'untrained'. Default: priors/<table>.json.")(f)


def _load_prior(prior_path: str | None, table_name: str):
    from facecodec.bitstream.prior import Prior, prior_dirs
    from facecodec.bitstream.streams import TABLES

    if table_name not in TABLES:
        raise InputError(f"unknown stream table {table_name!r} (have {sorted(TABLES)})")
    if prior_path == "untrained":
        return Prior.untrained(TABLES[table_name])
    if prior_path is None:
        for d in prior_dirs():
            if (d / f"{table_name}.json").is_file():
                prior_path = str(d / f"{table_name}.json")
                break
        else:
            raise InputError(f"no prior for stream table {table_name!r} in "
                             f"{[str(d) for d in prior_dirs()]}: fit one with "
                             f"'facecodec fit-priors' or pass --prior untrained")
    prior = Prior.load(prior_path)
    if prior.table != TABLES[table_name]:
        raise InputError(f"{prior_path}: fitted for another stream table than {table_name!r}")
    return prior


@click.command("encode")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--table", "table_name", default="landmarks", show_default=True,
              help="Stream table (which values are sent).")
@_prior_option
@click.option("--intra-period", type=click.IntRange(1, 65535), default=30, show_default=True,
              help="Frames between intra frames (30 = 2 s at 15 fps).")
@click.option("--packet-frames", type=click.IntRange(1, 255), default=1, show_default=True,
              help="Frames per packet (1 for calls; more saves overhead in storage).")
def encode(src: Path, dst: Path, table_name: str, prior_path: str | None, intra_period: int,
           packet_frames: int) -> None:
    """Encode SRC (a value file .npz) into DST (.fcs)."""
    from tqdm import tqdm

    from facecodec.bitstream.values import encode_values, load_values

    if src.suffix.lower() != ".npz":
        raise InputError(f"{src}: video input needs the trained sender model, which is not "
                         f"shipped yet; encode a value file (.npz) instead")
    prior = _load_prior(prior_path, table_name)
    fps, values = load_values(src, prior.table)
    n = len(next(iter(values.values())))
    with tqdm(total=n, unit="frame", desc="encode", disable=n < 300) as bar:
        size = encode_values(values, fps, prior, dst, intra_period, packet_frames, bar.update)
    click.echo(f"{dst}: {n} frames, {size} bytes, {size * 8 / max(n, 1):.1f} bits/frame "
               f"all-in, prior {prior.id}")


@click.command("decode")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tolerant", is_flag=True,
              help="Skip corrupt packets, hold the last good frame, resume at the next intra.")
def decode(src: Path, dst: Path, tolerant: bool) -> None:
    """Decode SRC (.fcs) into DST (a value file .npz)."""
    from facecodec.bitstream.values import decode_values, save_values

    if dst.suffix.lower() != ".npz":
        raise InputError(f"{dst}: rendering video needs the trained receiver model, which "
                         f"is not shipped yet; decode to a value file (.npz) instead")
    fps, values, reader = decode_values(src, tolerant=tolerant)
    save_values(dst, fps, values)
    n = reader.frames
    click.echo(f"{dst}: {n} frames at {float(fps):.3g} fps")
    for s in reader.skipped:
        click.echo(f"skipped: byte {s.offset}: {s.reason}; {s.frames} frames held", err=True)


@click.command("bitrate")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--report", is_flag=True, default=True, help="Per-file and overall tables.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--tolerant", is_flag=True, help="Account for damaged files too.")
def bitrate(files: tuple[Path, ...], report: bool, as_json: bool, tolerant: bool) -> None:
    """Where the bits of .fcs FILES go: per stream, overhead, sources, kbps."""
    from facecodec.bitstream.report import analyse, overall, to_markdown

    stats = [analyse(f, tolerant=tolerant) for f in files]
    summaries = [s.summary() for s in stats]
    if len(stats) > 1:
        summaries.append(overall(stats).summary())
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
    else:
        click.echo(to_markdown(summaries))


@click.command("fit-priors")
@click.option("--table", "table_name", default="landmarks", show_default=True)
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Training-data cache (prepare-data): train split fits, val split reports.")
@click.option("--train", "train_files", multiple=True, type=click.Path(path_type=Path),
              help="Value files to fit on (instead of --cache).")
@click.option("--val", "val_files", multiple=True, type=click.Path(path_type=Path),
              help="Held-out value files to report cross-entropy on.")
@click.option("--levels", type=click.IntRange(1, 6), default=3, show_default=True,
              help="Context levels per context variable (1 = static tables).")
@click.option("--intra-period", type=click.IntRange(1, 65535), default=30, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the prior. Default: priors/<table>.json.")
def fit_priors(table_name: str, cache: Path | None, train_files: tuple[Path, ...],
               val_files: tuple[Path, ...], levels: int, intra_period: int,
               out: Path | None) -> None:
    """Fit a prior to value streams and report its cross-entropy on held-out streams."""
    from tqdm import tqdm

    from facecodec.bitstream.fitting import cache_clips, fit_and_evaluate, load_coded
    from facecodec.bitstream.prior import prior_dirs
    from facecodec.bitstream.streams import TABLES

    if table_name not in TABLES:
        raise InputError(f"unknown stream table {table_name!r} (have {sorted(TABLES)})")
    table = TABLES[table_name]
    train, val = list(train_files), list(val_files)
    if cache is not None:
        splits = cache_clips(cache)
        train += splits.get("train", [])
        val += splits.get("val", [])
    if not train:
        raise InputError("nothing to fit on: give --cache or --train files")
    train_c = load_coded(table, tqdm(train, desc="read train", unit="clip"))
    val_c = load_coded(table, tqdm(val, desc="read val", unit="clip"))
    prior, rep = fit_and_evaluate(table, train_c, val_c, table_name, levels, intra_period)
    out = out or prior_dirs()[-1] / f"{table_name}.json"
    prior.save(out)
    click.echo(f"{out}: prior {prior.id}, fitted on {rep['train_clips']} clips "
               f"({rep['train_frames']} frames)")
    if val_c:
        ctx, st = rep["val_bits_per_frame"], rep["val_bits_per_frame_static"]
        fl = rep["val_bits_per_frame_static_per_stream"]
        click.echo(f"held-out cross-entropy on {rep['val_clips']} clips ({rep['val_frames']} "
                   "frames), bits/frame:")
        click.echo("| stream | context prior | static, per class | static, per stream |\n"
                   "|---|---:|---:|---:|")
        for k in ctx:
            click.echo(f"| {k} | {ctx[k]:.1f} | {st[k]:.1f} | {fl[k]:.1f} |")
        click.echo(f"context saves {100 * rep['saving_vs_static_per_stream']:.1f}% against "
                   f"one static table per stream, {100 * rep['saving_vs_static']:.1f}% "
                   "against static tables per class")


COMMANDS = [encode, decode, bitrate, fit_priors]
