"""``facecodec demo``: the README's first command, on the built-in example."""

from __future__ import annotations

from pathlib import Path

import click

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/demo"), show_default=True, help="Where to write the results.")
def demo(out: Path) -> None:
    """Encode -> decode -> bitrate report on the built-in example.

    Until the trained networks ship, the example is a recorded value file
    (examples/landmarks_track.npz: a landmark track, see examples/README.md) coded with
    the fitted landmark prior; the decoded values are checked against the quantized input.
    """
    import numpy as np

    from facecodec.bitstream.prior import prior_dirs
    from facecodec.bitstream.report import analyse, to_markdown
    from facecodec.bitstream.values import decode_values, encode_values, load_values
    from facecodec.cli.bitstream_cmds import _load_prior
    from facecodec.errors import FacecodecError

    src = EXAMPLES / "landmarks_track.npz"
    prior = _load_prior(None, "landmarks")
    fps, values = load_values(src, prior.table)
    out.mkdir(parents=True, exist_ok=True)
    fcs = out / "example.fcs"
    encode_values(values, fps, prior, fcs)
    _, decoded, _ = decode_values(fcs, prior=prior)
    for spec in prior.table:
        want = np.stack([spec.from_coded(spec.to_coded(v)) for v in values[spec.name]])
        if not np.array_equal(want, decoded[spec.name]):
            raise FacecodecError(f"demo: stream {spec.name} did not survive the round trip")
    np.savez_compressed(out / "decoded.npz", fps=float(fps), **decoded)
    report = to_markdown([analyse(fcs).summary()])
    (out / "bitrate.md").write_text(report)
    click.echo(report)
    click.echo(f"input {src.relative_to(EXAMPLES.parent)} -> {fcs} -> {out / 'decoded.npz'} "
               f"(exact round trip of all {len(decoded['sup'])} frames); report in "
               f"{out / 'bitrate.md'}; priors from {prior_dirs()[-1]}")


COMMANDS = [demo]
