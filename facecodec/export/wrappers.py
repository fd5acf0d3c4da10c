"""The exported networks as traceable modules with flat, named tensor inputs and outputs.

A model is split along what each device runs and how often (docs/export.md):

    sender     face crop -> unsup, jac, expr                  per frame, on the sender
    source     N source images + their values -> the cache     once per set of sources
    generator  the cache + one frame's values -> image         per frame, on the receiver

The wrappers only call the networks' own methods (``SenderModel.forward``,
``embed_sources``, ``render``): the exported graphs compute what the codec computes in
PyTorch, nothing re-implemented. The batch is 1 (one stream, one frame) and the number of
sources N is fixed at export.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from facecodec.defaults import SOURCES as DEFAULT_SOURCES
from facecodec.models.animation import KeypointAnimationModel
from facecodec.models.fom import FomCache, FomReceiver
from facecodec.models.generator import SourceCache
from facecodec.models.layout import KeypointLayout

SENDER_STREAMS = ("unsup", "jac", "expr")
"""The values the sender's network computes; ``sup`` and ``iris`` come from the landmark
tracker (MediaPipe), which is not part of the export."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    doc: str
    fp32: bool = False
    """An output computed in FP32 back to the last convolution in an FP16 Core ML model:
    values that are transmitted or that become sampling coordinates."""


@dataclass
class ExportNetwork:
    """One network to export: a module taking ``inputs`` in order and returning a tuple of
    ``outputs`` in order."""

    name: str
    doc: str
    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def example_inputs(self, seed: int = 0) -> tuple[Tensor, ...]:
        """Plausible random inputs (images in [0, 1], points in [-0.8, 0.8], Jacobians near
        I): enough to trace, and to compare runtimes on."""
        gen = torch.Generator().manual_seed(seed)
        out = []
        for spec in self.inputs:
            t = torch.rand(spec.shape, generator=gen)
            if spec.name.endswith("jac"):
                t = torch.eye(2).expand(spec.shape) + 0.1 * (t - 0.5)
            elif spec.name == "source_mix":
                t = torch.softmax(4 * t, dim=-1)
            elif not spec.name.endswith(("images", "image", "weights", "embedding")):
                t = (t * 2 - 1) * 0.8
            out.append(t.contiguous())
        return tuple(out)


def value_specs(layout: KeypointLayout, names: tuple[str, ...], lead: tuple[int, ...],
                prefix: str = "", whose: str = "the driving frame", fp32: bool = False
                ) -> tuple[TensorSpec, ...]:
    """Specs of per-frame values ``names`` with leading dims ``lead``."""
    tail = layout.shapes
    doc = {
        "sup": "the 33 supervised landmarks (x, y) of {w}, tube coordinates in [-1, 1]",
        "iris": "the 2 iris centres (x, y) of {w}, tube coordinates in [-1, 1]",
        "unsup": "the unsupervised keypoints (x, y) of {w}, in [-1, 1]",
        "jac": "the 2x2 Jacobians of the unsupervised keypoints of {w}",
        "expr": "the expression code of {w}, in [-1, 1]",
    }
    return tuple(TensorSpec(prefix + n, (*lead, *tail[n]), doc[n].format(w=whose), fp32)
                 for n in names)


class _Sender(nn.Module):
    def __init__(self, sender: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.sender, self.names = sender, names

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.sender(image)
        return tuple(out[n] for n in self.names)


class _Source(nn.Module):
    """source images + values -> the cache tensors, as ``split`` names them."""

    def __init__(self, receiver: nn.Module, names: tuple[str, ...],
                 split: Callable[[object], tuple[Tensor, ...]]):
        super().__init__()
        self.receiver, self.names, self.split = receiver, names, split

    def forward(self, images: Tensor, *values: Tensor) -> tuple[Tensor, ...]:
        cache = self.receiver.embed_sources(images, dict(zip(self.names, values, strict=True)))
        return self.split(cache)


class _Generator(nn.Module):
    """cache tensors + source images (+ source mix) + one frame's values -> image."""

    def __init__(self, receiver: nn.Module, names: tuple[str, ...], n_cache: int,
                 join: Callable[[tuple[Tensor, ...], Tensor | None], object],
                 takes_images: bool, takes_mix: bool = False):
        super().__init__()
        self.receiver, self.names, self.n_cache = receiver, names, n_cache
        self.join, self.takes_images, self.takes_mix = join, takes_images, takes_mix

    def forward(self, *inputs: Tensor) -> Tensor:
        cached = inputs[: self.n_cache]
        rest = list(inputs[self.n_cache:])
        images = rest.pop(0) if self.takes_images else None
        mix = rest.pop(0) if self.takes_mix else None
        values = dict(zip(self.names, rest, strict=True))
        return self.receiver.render(self.join(cached, images), values, mix).image


def _frontalizer_cache(pixel_blend: bool, n: int, c: int, h: int
                       ) -> tuple[tuple[TensorSpec, ...], Callable, Callable]:
    """Cache outputs of the Frontalizer's source network (``SourceCache`` minus the source
    images, which the app already holds and feeds to the generator)."""
    specs = [TensorSpec("embedding", (1, c, h, h),
                        "fused source embedding at the Frontalizer's reference position "
                        "(e~^{p_r}, Oquab et al. figure 3)")]
    if pixel_blend:
        specs += [
            TensorSpec("source_flows", (1, n, 2, h, h),
                       "per source: where each reference-position pixel reads that source "
                       "(x, y in [-1, 1], channels first)", fp32=True),
            TensorSpec("source_weights", (1, n, h, h),
                       "per source: its fusion weight at each reference-position pixel "
                       "(softmax over the sources)"),
        ]

    def split(cache: SourceCache) -> tuple[Tensor, ...]:
        if not pixel_blend:
            return (cache.embedding,)
        return cache.embedding, cache.flows, cache.weights

    def join(cached: tuple[Tensor, ...], images: Tensor | None) -> SourceCache:
        if not pixel_blend:
            return SourceCache(cached[0])
        return SourceCache(cached[0], images, cached[1], cached[2])

    return tuple(specs), split, join


def _fom_cache(n_kp: int, c: int, h: int) -> tuple[tuple[TensorSpec, ...], Callable, Callable]:
    """Cache outputs of FOM's source network (``FomCache`` minus the source image)."""
    specs = (
        TensorSpec("embedding", (1, c, h, h), "encoder features of the source frame"),
        TensorSpec("cache_kp", (1, n_kp, 2), "all keypoints of the source frame (landmarks "
                   "then unsupervised), in [-1, 1]", fp32=True),
        TensorSpec("cache_jac", (1, n_kp, 2, 2), "their Jacobians (identity for landmarks)",
                   fp32=True),
    )

    def split(cache: FomCache) -> tuple[Tensor, ...]:
        return cache.features, cache.kp, cache.jac

    def join(cached: tuple[Tensor, ...], images: Tensor | None) -> FomCache:
        feats, kp, jac = cached
        image = images[:, 0] if images is not None else feats.new_zeros(1, 3, 1, 1)
        return FomCache(feats, kp, jac, image)

    return specs, split, join


def _receiver_io(model: KeypointAnimationModel, num_sources: int | None
                 ) -> tuple[int, tuple[TensorSpec, ...], Callable, Callable, TensorSpec]:
    """(N, cache specs, split, join, source-images spec at the model's resolution) of
    ``model``'s receiver."""
    res, fres = model.resolution, model.config.feature_res
    receiver = model.receiver
    c = receiver.encoder.out_channels
    n = int(num_sources or DEFAULT_SOURCES)
    if n < 1:
        raise ValueError(f"need at least one source, got {n}")
    if model.max_sources is not None:  # FOM animates one source, whatever is asked
        n = min(n, model.max_sources)
    if isinstance(receiver, FomReceiver):  # its cache keeps the source's keypoints
        cache_specs, split, join = _fom_cache(model.layout.num_kp, c, fres)
    else:
        cache_specs, split, join = _frontalizer_cache(_pixel_blend(model), n, c, fres)
    images = TensorSpec("source_images", (1, n, 3, res, res),
                        f"the {n} source frame(s): face-tube crops, RGB in [0, 1]")
    return n, cache_specs, split, join, images


def _pixel_blend(model: KeypointAnimationModel) -> bool:
    return model.receiver.pixel_blend


def generator_network(model: KeypointAnimationModel, num_sources: int | None = None,
                      output_size: int | None = None) -> tuple[ExportNetwork, Callable]:
    """The per-frame generator alone (what an app runs per frame), and the
    ``split`` that turns the receiver's cache into the generator's first inputs.
    ``output_size``: the side of its source images and of the frame it draws (default:
    the model's resolution; larger only with the pixel blend, see
    :func:`facecodec.models.generator.blend_output`)."""
    _, cache_specs, split, join, images = _receiver_io(model.eval(), num_sources)
    pixel_blend = _pixel_blend(model)
    if output_size and pixel_blend:
        images = dataclasses.replace(images, shape=(*images.shape[:3], output_size, output_size))
    streams = model.layout.streams
    n = images.shape[1]
    takes_mix = model.receiver.mixes_sources
    mix = TensorSpec("source_mix", (1, n),
                     "per source: the factor on its pixel weights this frame, the pose "
                     "weighting of facecodec/receiver/mixing.py (all ones: the learned "
                     "confidences alone)")
    gen_inputs = (*cache_specs, *((images,) if pixel_blend else ()),
                  *((mix,) if takes_mix else ()), *value_specs(model.layout, streams, (1,)))
    res = images.shape[-1]
    return ExportNetwork(
        "generator", "per frame on the receiver: the cache + one frame's values -> image",
        _Generator(model.receiver, streams, len(cache_specs), join, pixel_blend,
                   takes_mix).eval(),
        gen_inputs,
        (TensorSpec("image", (1, 3, res, res), "the rendered frame, RGB in [0, 1]"),)), split


def export_networks(model: KeypointAnimationModel, num_sources: int | None = None,
                    output_size: int | None = None) -> list[ExportNetwork]:
    """The sender's network (if the variant has one), the source network and the per-frame
    generator of ``model`` (eval mode), for ``num_sources`` sources (default
    :data:`DEFAULT_SOURCES`; FOM always uses 1)."""
    model = model.eval()
    layout = model.layout
    res = model.resolution
    n, cache_specs, split, _, images = _receiver_io(model, num_sources)
    streams = layout.streams
    nets = []
    sent = tuple(s for s in streams if s in SENDER_STREAMS)
    if sent:
        nets.append(ExportNetwork(
            "sender", "per frame on the sender: face crop -> the learned values it sends",
            _Sender(model.sender, sent).eval(),
            (TensorSpec("image", (1, 3, res, res), "the face-tube crop, RGB in [0, 1]"),),
            value_specs(layout, sent, (1,), whose="the frame", fp32=True)))
    # the sources' expression codes do not enter the cache (only the decoder reads a code)
    src_streams = tuple(s for s in streams if s != "expr")
    nets.append(ExportNetwork(
        "source", "once per set of sources on the receiver: the cache the generator reads",
        _Source(model.receiver, src_streams, split).eval(),
        (images, *value_specs(layout, src_streams, (1, n), "source_", "each source frame")),
        cache_specs))
    nets.append(generator_network(model, n, output_size)[0])
    return nets
