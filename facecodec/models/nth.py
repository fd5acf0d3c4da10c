"""The few-shot talking-heads family (Zakharov et al. 2019, "NTH"; issue 22) behind the
codec's model interface.

The sender sends only the supervised landmarks and irises (nothing learned on its side);
the receiver turns its source frames into the person's AdaIN parameters once
(``embed_sources``: the embedder's mean vector e^ over the sources and psi^ = P e^) and
draws each frame from its landmark sketch (``render``: the generator). Unlike the
Frontalizer, no source pixel is warped into the picture: everything shown is drawn.

Training follows the paper's meta-learning: each sample is an episode of one video, its K
sources give e^, its drivers are drawn from their sketches with psi^ and judged by the
projection discriminator against the video's row of W (facecodec/training/adversary.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from facecodec.config import ModelConfig
from facecodec.models.base import FaceAnimationModel, TrainOutput
from facecodec.models.generator import repeat_batch
from facecodec.models.layout import KeypointLayout, Values
from facecodec.models.nth_embedder import NthEmbedder
from facecodec.models.nth_generator import NthGenerator
from facecodec.models.sender_model import SenderModel
from facecodec.models.sketch import landmark_sketch


@dataclass
class NthCache:
    """What ``render`` needs from the sources: the person's vector and AdaIN parameters."""

    embedding: Tensor  # (B, embed_dim) e^
    psi: Tensor  # (B, num_params) P e^

    def repeat(self, times: int) -> NthCache:
        """Each batch entry ``times`` times in a row (one cache, several driving frames)."""
        return repeat_batch(self, times)


@dataclass
class NthOutput:
    image: Tensor  # (B, 3, H, W) the drawn frame
    sketch: Tensor  # (B, C, H, W) the sketch it was drawn from
    blend: None = None  # no pixel blend (what the Frontalizer's RenderOutput has)


class NthReceiver(nn.Module):
    pixel_blend = False
    mixes_sources = False

    def __init__(self, layout: KeypointLayout, config: ModelConfig, resolution: int):
        super().__init__()
        if not (layout.sup and layout.iris) or layout.unsup or layout.expr_dim:
            raise ValueError("the nth family draws from the 33 landmarks and the irises "
                             "alone: model.landmarks sup and iris on, num_unsup and "
                             "expr_dim 0")
        self.layout = layout
        self.resolution = resolution
        self.sigma = config.nth.sketch_sigma
        self.embedder = NthEmbedder(config.nth, resolution)
        self.generator = NthGenerator(config.nth)
        # P of eq. 2; meta-learning trains it, few-shot fine-tuning replaces P e^ by psi'
        self.project = nn.Linear(config.nth.embed_dim, self.generator.num_params)

    def sketch(self, values: Values) -> Tensor:
        """Values with leading (B,) -> (B, C, R, R) sketches at the model's resolution."""
        return landmark_sketch(values["sup"], values["iris"], self.resolution, self.sigma)

    def embed_sources(self, images: Tensor, values: Values, pixels: Tensor | None = None
                      ) -> NthCache:
        """(B, N, 3, R, R) sources and their values with leading (B, N) -> the cache.
        ``pixels`` (the display-size sources of a pixel blend) is not used."""
        b, n = images.shape[:2]
        flat = {k: v.flatten(0, 1) for k, v in values.items()}
        sketches = self.sketch(flat).unflatten(0, (b, n))
        e = self.embedder(images, sketches)
        return NthCache(e, self.project(e))

    def render(self, cache: NthCache, values: Values, mix: Tensor | None = None) -> NthOutput:
        """The cache and one frame's values (leading (B,)) -> the drawn frame. ``mix``
        (the Frontalizer's pose weights of the sources) is not used: one embedding."""
        sketch = self.sketch(values)
        return NthOutput(self.generator(sketch, cache.psi), sketch)


@dataclass
class NthDetails:
    embedding: Tensor  # (B, embed_dim) each episode's e^
    sketch: Tensor  # (B * D, C, H, W) the drivers' sketches (the discriminator's condition)


class NthModel(FaceAnimationModel):
    family = "nth"
    discriminator: ClassVar[str] = "projection"

    def __init__(self, config: ModelConfig, resolution: int,
                 reference_init: Tensor | None = None):
        super().__init__(config, resolution, reference_init)
        self.layout = KeypointLayout.from_config(config)
        self.sender = SenderModel(self.layout, resolution, config.keypoint_detector)
        self.receiver = NthReceiver(self.layout, config, resolution)

    def training_forward(self, batch: dict[str, Tensor]) -> TrainOutput:
        sources, drivers = batch["sources"], batch["drivers"]
        if sources.shape[-1] != self.resolution:
            raise ValueError(f"frames of {sources.shape[-1]} px for a {self.resolution} nth "
                             "model: it draws at its own resolution (no data.output_resolution)")
        sv = {k: batch[f"src_{k}"] for k in ("sup", "iris")}
        dv = {k: batch[f"drv_{k}"].flatten(0, 1) for k in ("sup", "iris")}
        cache = self.receiver.embed_sources(sources, sv)
        out = self.receiver.render(cache.repeat(drivers.shape[1]), dv)
        details = NthDetails(cache.embedding, out.sketch)
        return TrainOutput(out.image, drivers.flatten(0, 1), {}, {}, details)
