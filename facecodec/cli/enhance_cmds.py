"""``facecodec enhance-data`` and ``facecodec train-enhancer``: the enhancement layer's
training data (the animation and SVT-AV1 base layers of the cached clips) and its fusion
network (issue 20, docs/enhancement.md)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("enhance-data")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
              default="../shared/data/manifest.csv", show_default=True)
@click.option("--split", type=click.Choice(["train", "val", "call"]), default="train",
              show_default=True)
@click.option("--limit", type=int, default=None, help="The first N clips only.")
@click.option("--max-frames", type=int, default=96, show_default=True,
              help="Frames per clip (0: all).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Cache (default: ~/.cache/facecodec/enhance).")
@click.option("--model", default=None, help="The animation's model (default: the shipped one).")
def enhance_data(manifest: str, split: str, limit: int | None, max_frames: int,
                 out: str | None, model: str | None) -> None:
    """Draw the split's cached clips with the codec and code their SVT-AV1 base layers.

    Needs the face-tube cache of `facecodec prepare-data`. A clip already built is
    skipped, so a stopped run resumes."""
    import cv2
    import torch

    from facecodec.eval.clips import manifest_clips
    from facecodec.sender.prepare import default_out
    from facecodec.training.enhance_data import BuildRequest, build, default_cache

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    refs = manifest_clips(Path(manifest), split, default_out(), limit=limit)
    uncached = [r.name for r in refs if r.cache_dir is None]
    if uncached:
        raise click.UsageError(f"not in the face-tube cache (run prepare-data): "
                               f"{', '.join(uncached[:3])}{' ...' if len(uncached) > 3 else ''}")
    build(BuildRequest(refs, Path(out) if out else default_cache(),
                       max_frames=max_frames or None, model=model), say=click.echo)


@click.command("train-enhancer")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              required=True, help="configs/enhancer.yaml")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run directory (resumes from its checkpoint).")
def train_enhancer(config: str, out: str) -> None:
    """Train (or resume) the enhancement layer's fusion network."""
    from facecodec.config import ConfigError
    from facecodec.training.enhance import EnhanceTrainer, load_config

    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    EnhanceTrainer(cfg, Path(out)).run(say=click.echo)
    click.echo(f"checkpoint: {Path(out) / 'checkpoint.pt'}")


@click.command("export-enhancer")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--dest", type=click.Path(file_okay=False), required=True)
def export_enhancer(checkpoint: str, dest: str) -> None:
    """A train-enhancer checkpoint -> DEST/enhancer.safetensors + config.yaml."""
    from facecodec.training.enhance import export_enhancer as run

    click.echo(f"exported: {run(checkpoint, dest)}")


COMMANDS = [enhance_data, train_enhancer, export_enhancer]
