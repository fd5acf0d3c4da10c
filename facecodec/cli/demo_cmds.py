"""``facecodec demo``: the README's first command, end to end on a shippable example.

The input is the example video of :func:`facecodec.examples.make_example_video` (the
shipped public-domain photo moved synthetically): it exercises the whole pipeline on a
real face without shipping anyone's video; it does not show what the codec does with real
talking.
"""

from __future__ import annotations

from pathlib import Path

import click

from facecodec.bitstream.report import analyse, to_markdown


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/demo"), show_default=True, help="Where to write the results.")
@click.option("--model", default=None, help="Model directory or name (default: shipped).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def demo(out: Path, model: str | None, no_progress: bool) -> None:
    """Encode -> decode -> bitrate report on the built-in example video.

    Writes OUT/input.mp4 (the example), OUT/example.fcs, OUT/decoded.mp4,
    OUT/side_by_side.mp4 (original face tube | decoded) and OUT/bitrate.md.
    """
    from facecodec.codec import Decoder, Encoder
    from facecodec.examples import make_example_video
    from facecodec.sender.landmarks import quiet_mediapipe_logs

    out.mkdir(parents=True, exist_ok=True)
    video = make_example_video(out / "input.mp4")
    fcs = out / "example.fcs"
    enc = Encoder(model)
    with quiet_mediapipe_logs():
        st = enc.encode_file(video, fcs, progress=not no_progress)
    dec = Decoder(model)
    r = dec.decode_file(fcs, out / "decoded.mp4", progress=not no_progress)
    dec.decode_file(fcs, out / "side_by_side.mp4", compare=video, progress=not no_progress)
    report = to_markdown([analyse(fcs).summary()])
    (out / "bitrate.md").write_text(report)
    click.echo(report)
    click.echo(f"model {enc.package.name} ({enc.package.path}); input {video} "
               f"({st.frames} frames, a still public-domain photo moved synthetically: see "
               f"examples/README.md); sources at frames {st.sources}")
    click.echo(f"encoded at {st.frames / st.seconds:.1f} frames/s, decoded at "
               f"{r['frames'] / r['seconds']:.1f} frames/s -> {out / 'decoded.mp4'}, "
               f"{out / 'side_by_side.mp4'}, {out / 'bitrate.md'}")


COMMANDS = [demo]
