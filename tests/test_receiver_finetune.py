"""Few-shot fine-tuning of a Frontalizer at the receiver (issue 22): each source drawn from
the others, the loaded model left as it was, one source giving no step."""

from __future__ import annotations

import torch
from training_helpers import random_values, tiny_config

from facecodec.models.registry import build_model
from facecodec.receiver.finetune import finetune_frontalizer


def frontalizer_inputs(n: int, seed: int = 3):
    model = build_model(tiny_config()).eval()
    gen = torch.Generator().manual_seed(seed)
    r = tiny_config().data.resolution
    values = random_values(model.layout, (n,), gen)
    values["unsup"] = (torch.rand(n, 4, 2, generator=gen) * 2 - 1) * 0.5
    values["jac"] = torch.eye(2).expand(n, 4, 2, 2) + 0.1 * torch.randn(n, 4, 2, 2,
                                                                           generator=gen)
    values["expr"] = torch.rand(n, 4, generator=gen) * 2 - 1
    images = torch.rand(n, 3, r, r, generator=gen)
    pixels = torch.nn.functional.interpolate(images, scale_factor=2, mode="bilinear")
    return model.receiver, images, pixels, values


def leave_one_out_error(rx, images, pixels, values) -> float:
    """Mean L1 of each source drawn from the others, at the output size."""
    n, errors = images.shape[0], []
    with torch.no_grad():
        for i in range(n):
            rest = [j for j in range(n) if j != i]
            cache = rx.embed_sources(images[rest][None],
                                     {k: v[rest][None] for k, v in values.items()},
                                     pixels[rest][None])
            out = rx.render(cache, {k: v[i:i + 1] for k, v in values.items()}).image
            errors.append(float((out - pixels[i:i + 1]).abs().mean()))
    return sum(errors) / n


def test_the_frontalizer_learns_its_sources_from_each_other() -> None:
    rx, images, pixels, values = frontalizer_inputs(3)
    before = {k: v.clone() for k, v in rx.state_dict().items()}
    plain = finetune_frontalizer(rx, images, pixels, values, seconds=0.0)
    assert plain.steps == 0 and not plain.losses
    with torch.no_grad():  # 0 s: the cache of the model as loaded, all sources
        expected = rx.embed_sources(images[None], {k: v[None] for k, v in values.items()},
                                    pixels[None])
    torch.testing.assert_close(plain.cache.embedding, expected.embedding)
    assert plain.cache.images.shape[:2] == (1, 3)  # type: ignore[union-attr]

    tuned = finetune_frontalizer(rx, images, pixels, values, seconds=60.0, max_steps=30,
                                 perceptual=False, lr=3e-3)
    assert tuned.steps == 30 and tuned.loss == "l1" and len(tuned.losses) == 30
    assert (leave_one_out_error(tuned.receiver, images, pixels, values)
            < 0.95 * leave_one_out_error(rx, images, pixels, values))
    for k, v in rx.state_dict().items():  # the loaded model is not changed
        assert torch.equal(v, before[k]), k
    assert not any(p.requires_grad for p in tuned.receiver.parameters())


def test_one_source_leaves_nothing_out() -> None:
    rx, images, pixels, values = frontalizer_inputs(1)
    tuned = finetune_frontalizer(rx, images, pixels, values, seconds=5.0, perceptual=False)
    assert tuned.steps == 0 and tuned.seconds < 5.0
