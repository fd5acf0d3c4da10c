"""Rendering decoded values with the receiver network (Frontalizer or FOM).

The source set is embedded once (``embed_sources``: encoder + Frontalizer, the fused
embedding of figure 3); each frame then costs only the dense motion and the decoder.
"""

from __future__ import annotations

import numpy as np
import torch

from facecodec.bitstream.limits import MAX_SOURCES
from facecodec.defaults import SOURCES
from facecodec.errors import InputError
from facecodec.models.blocks import resize_image
from facecodec.models.inference import prepare_for_inference
from facecodec.models.keypoints import assemble
from facecodec.models.package import ModelPackage
from facecodec.models.registry import load_model
from facecodec.receiver.mixing import SourceMixer
from facecodec.receiver.runtime import choose_backend

Values = dict[str, np.ndarray]

FINETUNED = ("nth", "frontalizer")
"""Model families the receiver can fine-tune on its sources (:mod:`facecodec.receiver.finetune`)."""


class Renderer:
    """Holds the receiver network and the current source set."""

    def __init__(self, package: ModelPackage, max_sources: int = SOURCES,
                 backend: str | None = None, output_size: int | None = None,
                 finetune_s: float = 0.0):
        """``backend``: ``auto`` (default, or ``$FACECODEC_BACKEND``) or ``torch``: the
        receiver runs on PyTorch (:mod:`facecodec.receiver.runtime`); another name is an
        :class:`InputError`.

        ``output_size``: the side of the rendered frames (default: the model's resolution).
        When larger, a model with the pixel blend warps the source frames at that size
        (:func:`facecodec.models.generator.blend_output`): give the sources at least that
        large to keep their detail."""
        self.package = package
        full = load_model(package.path, parts=("receiver",))
        full.receiver = prepare_for_inference(full.receiver)
        self.model = full.receiver
        # few-shot fine-tuning on the sources (issue 22; nth and frontalizer models): the
        # seconds it may take each time the source set changes; the tuned copy draws until
        # the next change
        self.finetune_s = (float(finetune_s) if package.profile.family in FINETUNED
                           else 0.0)
        self._drawer = self.model
        self.resolution = package.resolution
        # without the pixel blend the decoder alone draws the frame, at the model's size
        self.output_size = (int(output_size or self.resolution) if self.model.pixel_blend
                            else self.resolution)
        self.backend = choose_backend(backend)
        self.streams = self.model.layout.streams
        self.shapes = package.profile.layout.shapes
        # each frame's pixels mostly from the sources nearest in pose (receiver/mixing.py)
        self.mixer = (SourceMixer.from_profile(package.profile) if self.model.mixes_sources
                      else None)
        self.start(max_sources)

    def start(self, max_sources: int) -> None:
        """Forget the sources: a new stream with up to ``max_sources`` of them (at most
        ``MAX_SOURCES``, a bound on what a stream may ask of the receiver)."""
        if not 0 <= max_sources <= MAX_SOURCES:
            raise InputError(f"{max_sources} sources: a receiver takes at most {MAX_SOURCES}")
        # FOM animates one source; the Frontalizer fuses all of them
        self.max_sources = min(max_sources, self.package.profile.max_sources)
        self._images: dict[int, torch.Tensor] = {}  # at the model's resolution
        self._pixels: dict[int, torch.Tensor] = {}  # at the output size
        self._values: dict[int, Values] = {}
        self._cache = None
        self._source_kp: torch.Tensor | None = None  # (1, N, K, 2) for the mixer

    @property
    def ready(self) -> bool:
        return bool(self._images)

    def set_source(self, slot: int, image: np.ndarray, values: Values) -> None:
        """Put a source frame (RGB uint8, any square size) in ``slot`` (a new slot or a
        replacement); the embedding is recomputed at the next render."""
        if slot >= self.max_sources:
            return  # FOM: only the first source
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None] / 255
        self._images[slot] = resize_image(x, self.resolution)[0]
        self._pixels[slot] = resize_image(x, self.output_size)[0]
        self._values[slot] = values
        self._cache = None

    def _tensors(self, values: Values, lead: tuple[int, ...]) -> dict[str, torch.Tensor]:
        out = {}
        for name in self.streams:
            v = torch.as_tensor(np.asarray(values[name], dtype=np.float32))
            out[name] = v.reshape(*lead, *self.shapes[name])
        return out

    @torch.inference_mode()
    def _embed(self):
        slots = sorted(self._images)
        images = torch.stack([self._images[s] for s in slots])[None]
        self._stacked = torch.stack([self._pixels[s] for s in slots])[None]
        per = [self._tensors(self._values[s], (1,)) for s in slots]
        values = {k: torch.cat([p[k] for p in per])[None] for k in per[0]}
        if self.mixer is not None:
            self._source_kp = assemble(self.model.layout, values)[0]
            self.mixer.reset()
        if self.finetune_s > 0:
            from facecodec.receiver import finetune  # noqa: PLC0415 - only when asked

            # training inside the renderer's inference mode: leave it, and copy the
            # sources out of it (inference tensors cannot be saved for backward)
            own = {k: v[0].clone() for k, v in values.items()}
            with torch.inference_mode(False), torch.enable_grad():
                if self.package.profile.family == "nth":
                    tuned = finetune.finetune(self.model, images[0].clone(), own,
                                              self.finetune_s)
                else:
                    tuned = finetune.finetune_frontalizer(
                        self.model, images[0].clone(), self._stacked[0].clone(), own,
                        self.finetune_s)
            self._drawer = tuned.receiver
            return tuned.cache
        self._drawer = self.model
        return self.model.embed_sources(images, values, self._stacked)

    def frame_values(self, frames: list[Values]
                     ) -> tuple[list[Values], Values, torch.Tensor | None]:
        """Embeds the sources if needed; -> (each frame's tensors, the batch of them, the
        pose mix (B, N) or None): what every render of ``frames`` starts from."""
        if self._cache is None:
            self._cache = self._embed()
        per = [self._tensors(f, (1,)) for f in frames]
        values = {k: torch.cat([p[k] for p in per]) for k in per[0]}
        mix = (self.mixer(self._source_kp, assemble(self.model.layout, values)[0])
               if self.mixer is not None else None)
        return per, values, mix

    @torch.inference_mode()
    def render(self, frames: list[Values]) -> np.ndarray:
        """Decoded values of ``len(frames)`` frames -> (B, S, S, 3) uint8 images, S =
        ``output_size``."""
        if not self.ready:
            raise RuntimeError("no source frame yet")
        _, values, mix = self.frame_values(frames)
        cache = self._cache.repeat(len(frames)) if len(frames) > 1 else self._cache
        return self._to_uint8(self._drawer.render(cache, values, mix).image)

    @staticmethod
    def _to_uint8(image: torch.Tensor) -> np.ndarray:
        return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
