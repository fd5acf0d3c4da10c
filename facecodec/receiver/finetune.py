"""Few-shot fine-tuning at the receiver (Zakharov et al. 2019, section 3.3): the source
frames it already holds, and their values, are a small training set of the person; a
few seconds of gradient steps on them fit the receiver to that person. No extra bits.

- ``nth`` (:func:`finetune`), as the paper: psi' starts at P e^ (the meta-learned AdaIN
  parameters of the sources' mean embedding) and is optimised with the generator's
  weights, on the sources drawn from their own sketches.
- ``frontalizer`` (:func:`finetune_frontalizer`), the same idea carried over: each step
  draws one source from the *others* (leave one out: a source drawn from itself would
  teach the warp to copy), so the receiver learns this person's motion and texture on
  the pairs it holds; every network of the receiver is tuned.

Unlike the paper, no discriminator (the receiver does not have it): the content loss
alone, L1 plus, when the ImageNet VGG16 weights are installed, the perceptual loss of
training (a receiver without them fine-tunes on L1, and says so).

Bounded: a wall-clock budget and a step cap, on the calling thread (one core).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from facecodec.models.blocks import resize_image
from facecodec.models.generator import FrontalizerReceiver, SourceCache
from facecodec.models.nth import NthCache, NthReceiver

LR = 5e-5
"""The paper's fine-tuning rate (Adam)."""
BATCH = 4
"""Frames a step draws (at random) from the person's T: a step's cost does not grow with T."""


def finetune_id() -> str:
    """A short hash of this module's code: what ``facecodec eval`` records of the
    fine-tuning, so that scores made with another version are not reused."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


@dataclass
class FineTuned:
    receiver: NthReceiver | FrontalizerReceiver  # a copy: the loaded model is left as it was
    cache: NthCache | SourceCache  # nth: psi' (the embedding is the sources' e^, unchanged)
    steps: int
    seconds: float
    loss: str  # "l1" or "l1+vgg16"
    losses: list[float] = field(default_factory=list)  # per step


@functools.cache
def vgg16_installed() -> bool:
    """Whether the ImageNet VGG16 weights are on this machine (never fetched here; their
    58-MB hash is checked once a process)."""
    from facecodec.training.weights import SHA256, sha256_of, weights_dir  # noqa: PLC0415

    path = weights_dir() / "vgg16.ckpt"
    return path.is_file() and sha256_of(path) == SHA256["vgg16"]


def _perceptual() -> nn.Module | None:
    if not vgg16_installed():
        return None
    from facecodec.training.losses import PerceptualLoss  # noqa: PLC0415 - heavy, optional
    from facecodec.training.vgg import vgg16_features  # noqa: PLC0415

    return PerceptualLoss(vgg16_features(3), [1.0, 0.5], [1.0, 1.0, 1.0])


def finetune(receiver: NthReceiver, images: Tensor, values: dict[str, Tensor],
             seconds: float, max_steps: int = 1000, perceptual: bool = True,
             seed: int = 0, lr: float = LR, batch: int = BATCH) -> FineTuned:
    """``images`` (N, 3, R, R) in [0, 1] at the model's resolution and their values
    (leading (N,)) -> a fine-tuned copy of ``receiver`` and its cache; each step on
    ``batch`` of the frames drawn at random (``seed``). Stops after
    ``seconds`` (checked between steps) or ``max_steps``; 0 seconds: no step (the
    feed-forward model, as the paper's "FF")."""
    torch.manual_seed(seed)
    # eval mode throughout: the embedder's spectral norm must not take a power-iteration
    # step (the embedding is the receiver's own), and the generator has no layer whose
    # training mode differs (instance norm without running statistics)
    rx = copy.deepcopy(receiver).eval()
    rx.generator.requires_grad_(True)
    with torch.no_grad():
        cache = rx.embed_sources(images[None], {k: v[None] for k, v in values.items()})
    psi = nn.Parameter(cache.psi.clone())
    params = [psi, *rx.generator.parameters()]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    net = _perceptual() if perceptual else None
    with torch.no_grad():
        sketches = rx.sketch(values)
    n = images.shape[0]

    def step_loss() -> Tensor:
        pick = torch.randperm(n)[:batch]  # a step costs the same whatever T
        out = rx.generator(sketches[pick], psi.expand(len(pick), -1))
        loss = (out - images[pick]).abs().mean()
        return loss + net(out, images[pick]) if net is not None else loss

    losses, elapsed = _optimise(opt, step_loss, seconds, max_steps)
    rx.requires_grad_(False)
    return FineTuned(rx, NthCache(cache.embedding, psi.detach()), len(losses), elapsed,
                     "l1+vgg16" if net is not None else "l1", losses)


def _optimise(opt: torch.optim.Optimizer, step_loss, seconds: float, max_steps: int
              ) -> tuple[list[float], float]:
    """Steps of ``opt`` on ``step_loss()`` until ``seconds`` (checked between steps) or
    ``max_steps`` -> (each step's loss, the seconds taken)."""
    losses: list[float] = []
    start = time.perf_counter()
    while len(losses) < max_steps and time.perf_counter() - start < seconds:
        loss = step_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, time.perf_counter() - start


def finetune_frontalizer(receiver: FrontalizerReceiver, images: Tensor, pixels: Tensor,
                         values: dict[str, Tensor], seconds: float, max_steps: int = 1000,
                         perceptual: bool = True, seed: int = 0, lr: float = LR
                         ) -> FineTuned:
    """``images`` (N, 3, R, R) in [0, 1] at the model's resolution, ``pixels`` the same
    frames at the output size, their values (leading (N,)) -> a fine-tuned copy of
    ``receiver`` and the cache of all N sources embedded by it. Each step draws one source
    (at random, ``seed``) from the other N - 1 at the output size and compares it with the
    source itself; with one source there is nothing to leave out: no step. Stops after
    ``seconds`` (checked between steps) or ``max_steps``."""
    torch.manual_seed(seed)
    rx = copy.deepcopy(receiver).eval()  # eval: batch norm is folded at load (inference.py)
    n = images.shape[0]
    net = _perceptual() if perceptual and n > 1 else None
    size = images.shape[-1]

    def step_loss() -> Tensor:
        i = int(torch.randint(n, ()))
        rest = [j for j in range(n) if j != i]
        cache = rx.embed_sources(images[rest][None],
                                 {k: v[rest][None] for k, v in values.items()},
                                 pixels[rest][None])
        out = rx.render(cache, {k: v[i:i + 1] for k, v in values.items()}).image
        loss = (out - pixels[i:i + 1]).abs().mean()
        if net is None:
            return loss
        # at the model's resolution: the VGG pass at the output size costs 4x
        return loss + net(resize_image(out, size), images[i:i + 1])

    losses, elapsed = [], 0.0
    if n > 1:
        rx.requires_grad_(True)
        opt = torch.optim.Adam(rx.parameters(), lr=lr, betas=(0.5, 0.999))
        losses, elapsed = _optimise(opt, step_loss, seconds, max_steps)
        rx.requires_grad_(False)
    with torch.no_grad():
        cache = rx.embed_sources(images[None], {k: v[None] for k, v in values.items()},
                                 pixels[None])
    return FineTuned(rx, cache, len(losses), elapsed,
                     "l1+vgg16" if net is not None else "l1", losses)
