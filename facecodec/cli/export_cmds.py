"""``facecodec export coreml`` and ``facecodec export onnx``: the sender's keypoint +
expression network, the receiver's source network (run once per set of sources) and its
per-frame generator, as Core ML ML Programs for iOS or as ONNX (docs/export.md)."""

from __future__ import annotations

from pathlib import Path

import click

MODEL_HELP = ("Model directory or name in models/ (default: the shipped "
              "models/frontalizer_sup_unsup_expr).")


@click.group()
def export() -> None:
    """Export a model's networks for on-device inference (needs the 'export' extra)."""


def _common(fn):  # noqa: ANN001, ANN202 (click decorator stack)
    fn = click.option("--no-progress", is_flag=True, help="No progress bar.")(fn)
    fn = click.option("--sources", "num_sources", type=click.IntRange(1, 8), default=None,
                      help="Number of source frames the receiver fuses, fixed in the "
                           "exported graphs (default: 3, as the encoder sends; FOM: 1).")(fn)
    fn = click.option("--output-size", type=click.IntRange(16, 1024), default=256,
                      show_default=True,
                      help="Side of the frames the generator draws and of the source images "
                           "it takes (the codec sends sources at 256; a model with the pixel "
                           "blend warps them at this size).")(fn)
    fn = click.option("--model", default=None, help=MODEL_HELP)(fn)
    fn = click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                      required=True, help="Output directory.")(fn)
    return fn


def _run(fmt: str, out: Path, model: str | None, num_sources: int | None, output_size: int,
         no_progress: bool, **kw: object) -> None:
    import torch

    from facecodec.export.bundle import export_bundle
    from facecodec.models.package import find_model

    torch.set_num_threads(1)  # exporting is tracing, not compute; leave the cores alone
    package = find_model(model)
    done = export_bundle(fmt, package, out, num_sources=num_sources, output_size=output_size,
                         progress=not no_progress, **kw)
    click.echo(f"model {package.name} ({package.path}) -> {out}")
    for d in done:
        check = ""
        if "max_abs_diff_random_inputs" in d.checks:
            check = f", max |onnxruntime - torch| {d.checks['max_abs_diff_random_inputs']:.1e}"
        click.echo(f"  {d.file:32s} {d.bytes / 1e6:6.2f} MB  {d.macs_dense / 1e6:6.1f} MMAC "
                   f"({d.runs}), {d.seconds:.1f} s{check}")
    click.echo(f"  {'manifest.json':32s} inputs, outputs, shapes and docs of each network")


@export.command()
@_common
@click.option("--ios", type=click.Choice(["15", "16"]), default="16", show_default=True,
              help="Minimum iOS (the iPhone 8 runs up to iOS 16; ML Programs need 15).")
@click.option("--fp32", is_flag=True,
              help="Compute everything in FP32 (default: FP16 except the resampling path).")
def coreml(out: Path, model: str | None, num_sources: int | None, output_size: int,
           no_progress: bool, ios: str, fp32: bool) -> None:
    """Core ML ML Program packages (.mlpackage) for iOS."""
    _run("coreml", out, model, num_sources, output_size, no_progress, ios=int(ios),
         fp16=not fp32)


@export.command()
@_common
@click.option("--opset", type=click.IntRange(18, None), default=18, show_default=True,
              help="ONNX opset.")
def onnx(out: Path, model: str | None, num_sources: int | None, output_size: int,
         no_progress: bool, opset: int) -> None:
    """ONNX files, each checked with onnxruntime against PyTorch after export."""
    _run("onnx", out, model, num_sources, output_size, no_progress, opset=opset)


COMMANDS = [export]
