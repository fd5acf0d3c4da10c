"""Sender commands: build the training cache, dump a clip's landmark track."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from facecodec.defaults import FPS, SOURCES
from facecodec.files import check_output


@click.command("prepare-data")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Clip manifest CSV (default: shared/data/manifest.csv next to the repo).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache directory (default: $FACECODEC_DATA or ~/.cache/facecodec/data).")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Only the first N clips of the manifest.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def prepare_data(manifest: Path | None, out: Path | None, limit: int | None,
                 no_progress: bool) -> None:
    """Turn the manifest's clips into 15 fps face tubes and landmark tracks (resumable)."""
    from facecodec.sender.landmarks import quiet_mediapipe_logs
    from facecodec.sender.prepare import DEFAULT_MANIFEST, default_out
    from facecodec.sender.prepare import prepare_data as run

    out = out or default_out()
    start = time.monotonic()
    with quiet_mediapipe_logs():
        report = run(manifest or DEFAULT_MANIFEST, out, limit=limit, progress=not no_progress)
    minutes = (time.monotonic() - start) / 60
    click.echo(f"{out}: {len(report.done)} clips processed, {len(report.kept)} already "
               f"there, {report.frames} frames in the cache ({minutes:.1f} min)")
    if report.failed:
        click.echo(f"{len(report.failed)} clips skipped:", err=True)
        for name, reason in report.failed:
            click.echo(f"  {name}: {reason}", err=True)


@click.command("track")
@click.argument("video", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output value file (.npz).")
@click.option("--fps", type=float, default=FPS, show_default=True,
              help="Output frame rate; 0 keeps the source frames.")
@click.option("--faces", "max_faces", type=click.IntRange(1, 4), default=1, show_default=True,
              help="Faces MediaPipe looks for; above 1 the first person is followed.")
@click.option("--sources", "n_sources", type=click.IntRange(1, 16), default=SOURCES,
              show_default=True, help="Source frames to select.")
def track(video: Path, out: Path, fps: float, max_faces: int, n_sources: int) -> None:
    """Track VIDEO and write its per-frame values to OUT (.npz): sup (T,33,2) and iris
    (T,2,2) in tube coordinates, fps, valid, yaw/pitch/roll, segment, new_box, sources."""
    from facecodec.sender.frontend import FrontEnd, stack
    from facecodec.sender.landmarks import quiet_mediapipe_logs
    from facecodec.sender.sources import select_sources

    check_output(out, inputs=[video])  # before the tracking pass, not after it
    with quiet_mediapipe_logs(), FrontEnd(max_num_faces=max_faces) as fe:
        values = stack(fe.video(video, fps=fps or None, crop_tube=False))
    t = len(values["valid"])
    rate = fps
    if not rate:  # source frames kept: their mean rate
        rate = (t - 1) / values["time"][-1] if t > 1 and values["time"][-1] > 0 else 15.0
    sources = select_sources(values["yaw"], values["valid"], values["eyes_open"], n_sources)
    keep = ("sup", "iris", "valid", "yaw", "pitch", "roll", "eyes_open", "segment",
            "new_box", "time")
    with out.open("wb") as f:  # a file object: numpy would append ".npz" to a path
        np.savez_compressed(f, fps=np.float64(rate), sources=np.array(sources, np.int64),
                            **{k: values[k] for k in keep})
    click.echo(f"{out}: {t} frames at {rate:g} fps, face in {values['valid'].mean():.1%}, "
               f"{values['segment'].max() + 1} tube box(es), sources {sources}")


COMMANDS = [prepare_data, track]
