"""Value files and value-level encode/decode: a clip's per-frame streams without video.

A value file is an ``.npz`` with one ``(T, count)`` float array per stream name (a
``(T, n, 2)`` point array is accepted and flattened) and a scalar ``fps``. The sender
writes them (``facecodec track``), ``fit-priors`` learns from them, and ``encode`` /
``decode`` turn them into ``.fcs`` and back, which is the bitstream alone, testable
without any network.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from facecodec.bitstream.container import DecodedFrame, FcsReader, FcsWriter, Header
from facecodec.bitstream.header import intra_period_frames
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.protection import Protection
from facecodec.bitstream.streams import StreamTable
from facecodec.errors import InputError

Values = dict[str, np.ndarray]


def load_values(path: str | Path, table: StreamTable | None = None) -> tuple[Fraction, Values]:
    """Read a value file; with ``table``, check that it has every stream of the table."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path}: not a value file (.npz): {e}") from None
    fps = Fraction(float(arrays.pop("fps", 15.0))).limit_denominator(1001)
    values = {k: v.reshape(len(v), -1).astype(np.float64) for k, v in arrays.items()
              if v.ndim >= 2}
    if not values:
        raise InputError(f"{path}: no value streams in the file")
    lengths = {len(v) for v in values.values()}
    if len(lengths) != 1:
        raise InputError(f"{path}: streams have different frame counts {sorted(lengths)}")
    if table is not None:
        for spec in table:
            if spec.name not in values:
                raise InputError(f"{path}: lacks stream {spec.name!r} "
                                 f"(has {sorted(values)})")
            if values[spec.name].shape[1] != spec.count:
                raise InputError(f"{path}: stream {spec.name!r} has "
                                 f"{values[spec.name].shape[1]} values per frame, "
                                 f"expected {spec.count}")
            if not np.all(np.isfinite(values[spec.name])):
                raise InputError(f"{path}: stream {spec.name!r} has non-finite values")
    return fps, values


def save_values(path: str | Path, fps: float | Fraction, values: Values) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, fps=np.float64(fps), **values)
    Path(path).write_bytes(buf.getvalue())


def coded_clip(table: StreamTable, values: Values) -> dict[str, np.ndarray]:
    """(T, count) floats -> (T, n_coded) quantization indices per stream (for fitting)."""
    n = len(next(iter(values.values())))
    out = {s.name: np.zeros((n, s.n_coded), dtype=np.int64) for s in table}
    for t in range(n):
        for spec in table:
            out[spec.name][t] = spec.to_coded(values[spec.name][t])
    return out


def encode_values(values: Values, fps: Fraction, prior: Prior, out_path: str | Path,
                  intra_period: int | None = None, packet_frames: int = 1,
                  progress: Callable[[int], None] | None = None, *,
                  protection: Protection | None = None) -> int:
    """Encode value streams to a ``.fcs`` file (no source frames). Returns its size.
    ``intra_period``: frames between intra frames (default: 2 s at ``fps``).
    ``protection``: loss protection (none by default).

    Written to a temporary name and renamed at the end, so a failure never leaves a
    half-written file under the requested name."""
    out_path = Path(out_path)
    header = Header(prior.table, prior.id, fps,
                    intra_period=intra_period or intra_period_frames(fps),
                    packet_frames=packet_frames, info={"input": "values"})
    n = len(next(iter(values.values())))
    tmp = out_path.with_name(out_path.name + ".part")
    try:
        with open(tmp, "wb") as f:
            w = FcsWriter(f, header, prior, **(protection or Protection()).writer_args())
            for t in range(n):
                w.add_frame({s.name: values[s.name][t] for s in prior.table})
                if progress:
                    progress(1)
            w.close()
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path.stat().st_size


def decode_values(path: str | Path, tolerant: bool = False, prior: Prior | None = None
                  ) -> tuple[Fraction, Values, FcsReader]:
    """Decode a ``.fcs`` file's value streams (held frames repeat the last good values)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with open(path, "rb") as f:
        reader = FcsReader(f, name=str(path), prior=prior, tolerant=tolerant)
        frames = [ev for ev in reader if isinstance(ev, DecodedFrame)]
    names = reader.header.table.names
    values = {k: np.stack([fr.values[k] for fr in frames]) if frames else
              np.zeros((0, reader.header.table[k].count), np.float32) for k in names}
    return reader.header.fps, values, reader
