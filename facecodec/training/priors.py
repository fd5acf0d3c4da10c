"""Fitting the entropy-coding priors (``facecodec fit-priors``): to value files, to a
training cache's landmark tracks, or to the streams a model sends on the cache's face
tubes at one or more dead-zone strengths (each strength its own prior, the sender network
run once for all). Each prior is saved and scored on the held-out streams against simpler
coders (bitstream/fitting.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from facecodec.bitstream.fitting import cache_clips, fit_and_evaluate, load_coded
from facecodec.bitstream.streams import TABLES
from facecodec.bitstream.values import coded_clip
from facecodec.defaults import FIT_INTRA_PERIOD
from facecodec.errors import InputError
from facecodec.models.package import OPERATING_POINTS, find_model
from facecodec.resources import shipped
from facecodec.sender.deadband import DEFAULT_STRENGTH
from facecodec.sender.streams import cache_value_streams_at

Say = Callable[[str], None]


@dataclass(frozen=True)
class PriorFit:
    """What to fit on and where the priors go (the options of ``facecodec fit-priors``)."""

    table_name: str = "landmarks"
    model: str | None = None  # fit the streams this model sends (needs ``cache``)
    cache: Path | None = None  # train split fits, val split scores
    train_files: tuple[Path, ...] = ()
    val_files: tuple[Path, ...] = ()
    context: int = 3
    intra_period: int = FIT_INTRA_PERIOD
    deadband: float | None = None  # with ``model``: default the encoder's
    strengths: tuple[float, ...] = ()  # with ``model``: more dead zones, one prior each
    out: Path | None = None  # default: the model's prior.json, or priors/<table>.json


def fit_priors(req: PriorFit, say: Say, progress: bool = True) -> list[Path]:
    """Fit and save the priors ``req`` asks for; returns their paths."""

    if req.model is not None and (req.cache is None or req.train_files or req.val_files):
        raise InputError("--model fits on a data cache: give --cache (and no value files)")
    if req.strengths and req.model is None:
        raise InputError("--operating-points needs --model (dead zones apply to its values)")
    package = None
    table_name, name = req.table_name, req.table_name
    if req.model is not None:

        package = find_model(req.model)
        table_name, name = package.table_name, package.name
    if table_name not in TABLES:
        raise InputError(f"unknown stream table {table_name!r} (have {sorted(TABLES)})")
    table = TABLES[table_name]
    train, val = list(req.train_files), list(req.val_files)
    if req.cache is not None:
        splits = cache_clips(req.cache)
        train += splits.get("train", [])
        val += splits.get("val", [])
    if not train:
        raise InputError("nothing to fit on: give --cache or --train files")

    def bar(items, desc):
        return tqdm(items, desc=desc, unit="clip", disable=not progress)

    if package is None:
        train_c = load_coded(table, bar(train, "read train"))
        val_c = load_coded(table, bar(val, "read val"))
        return [_fit_and_save(table, train_c, val_c, name, req, None, req.out, say)]


    main = DEFAULT_STRENGTH if req.deadband is None else req.deadband
    strengths = [main, *(s for s in req.strengths if s != main)]
    streams = {what: cache_value_streams_at(package, bar(paths, f"{what}: run the sender"),
                                            strengths)
               for what, paths in (("train", train), ("val", val))}
    # the model package owns its priors (facecodec/models/package.py)
    main_out = req.out or package.prior_path
    written = []
    for s in strengths:
        train_c = [coded_clip(table, v) for v in streams["train"][s]]
        val_c = [coded_clip(table, v) for v in streams["val"][s]]
        dest = main_out if s == main else (main_out.parent / OPERATING_POINTS
                                           / f"deadband{s:g}.json")
        written.append(_fit_and_save(table, train_c, val_c, name, req, s, dest, say))
    return written


def parse_strengths(value: str) -> tuple[float, ...]:
    """"4,8,32" -> (4.0, 8.0, 32.0), each in [0, 100]."""
    try:
        strengths = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--operating-points {value!r}: comma-separated numbers") from None
    if any(not 0 <= s <= 100 for s in strengths):
        raise InputError(f"--operating-points {value!r}: strengths are in [0, 100]")
    return strengths


def _fit_and_save(table, train_c: Sequence, val_c: Sequence, name: str, req: PriorFit,
                  deadband: float | None, out: Path | None, say: Say) -> Path:
    """Fit one prior, save it (default: the shipped priors/<name>.json) and say its
    cross-entropy on the held-out streams against simpler coders."""
    prior, rep = fit_and_evaluate(table, list(train_c), list(val_c), name, req.context,
                                  req.intra_period)
    if deadband is not None:
        prior.info["deadband"] = deadband  # what the encoder should use with this prior
    out = out or shipped("priors") / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    prior.save(out)
    at = "" if deadband is None else f" at dead zone {deadband:g}"
    say(f"{out}: prior {prior.id}{at}, fitted on {rep['train_clips']} clips "
        f"({rep['train_frames']} frames)")
    if val_c:
        say(report_table(rep))
    return out


def report_table(rep: dict) -> str:
    """The held-out cross-entropy of a fit, per stream, against simpler coders."""
    v = rep["val_bits_per_frame"]
    cols = ["prior", "prediction_only", "static_per_class", "static_per_stream"]
    lines = [f"held-out cross-entropy on {rep['val_clips']} clips ({rep['val_frames']} "
             "frames), bits/frame:",
             "| stream | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    lines += [f"| {k} | " + " | ".join(f"{v[c][k]:.1f}" for c in cols) + " |"
              for k in v["prior"]]
    lines.append(f"the prior saves {100 * rep['saving_vs_static_per_stream']:.1f}% against "
                 f"one static table per stream, {100 * rep['saving_vs_static_per_class']:.1f}% "
                 "against static tables per class")
    return "\n".join(lines)
