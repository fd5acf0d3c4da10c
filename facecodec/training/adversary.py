"""The adversarial terms of a step, for the family's kind of discriminator
(``FaceAnimationModel.discriminator``).

- ``patch`` (FOM; Oquab et al. appendix 6.1.3): a multi-scale patch discriminator on the
  frames alone; hinge losses and feature matching over its layers.
- ``projection`` (Zakharov et al. 2019, eqs. 3-6): a discriminator on (frame, landmark
  sketch) whose realism is projected on the video's row W_i (+ w_0); hinge losses,
  feature matching, and the embedding-matching loss |W_i - e^_i| that makes e^ a usable
  stand-in for W_i when fine-tuning on a new person. The matching term updates the
  embedder in the generator's step and W in the discriminator's (each side pulled
  towards the other's current value).

Each adversary holds the discriminator module the trainer optimises and checkpoints
(``disc``, which the trainer may wrap in DDP: the generator's terms use the bare module, so
that its step does not all-reduce the discriminator's discarded gradients).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facecodec.config import Config
from facecodec.models.base import TrainOutput
from facecodec.models.discriminator import MultiScaleDiscriminator
from facecodec.models.nth_discriminator import ProjectionDiscriminator
from facecodec.training.losses import (
    ImagePyramid,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from facecodec.training.objective import unwrap


class PatchAdversary:
    def __init__(self, cfg: Config):
        self.disc: nn.Module = MultiScaleDiscriminator(cfg.model.discriminator)
        self.pyramid = ImagePyramid(self.disc.scales)
        self.gan = cfg.losses.gan
        self.fm = list(cfg.losses.feature_matching)

    def _pair(self, disc: nn.Module, real: Tensor, fake: Tensor) -> dict:
        """One pass over [real; fake] (instance norm is per sample, so this equals two
        passes, and DDP sees one forward per backward)."""
        return disc(self.pyramid(torch.cat([real, fake], dim=0)))

    def generator_terms(self, batch: dict[str, Tensor], out: TrainOutput) -> dict[str, Tensor]:
        real, fake = out.target, out.prediction
        n = real.shape[0]
        g_gan = fake.new_zeros(())
        fm = fake.new_zeros(())
        for feats, logits in self._pair(unwrap(self.disc), real, fake).values():
            g_gan = g_gan + self.gan * hinge_generator_loss(logits[n:])
            if any(self.fm):
                fm = fm + feature_matching_loss([f[:n] for f in feats], [f[n:] for f in feats],
                                                self.fm)
        return {"gen_gan": g_gan, "feature_matching": fm}

    def discriminator_loss(self, batch: dict[str, Tensor], out: TrainOutput
                           ) -> dict[str, Tensor]:
        n = out.target.shape[0]
        d_out = self._pair(self.disc, out.target, out.prediction.detach())
        return {"disc_gan": sum(hinge_discriminator_loss(lg[:n], lg[n:])
                                for _, lg in d_out.values())}


class ProjectionAdversary:
    def __init__(self, cfg: Config, num_videos: int):
        self.disc: nn.Module = ProjectionDiscriminator(cfg.model.nth, cfg.data.resolution,
                                                       num_videos)
        self.gan = cfg.losses.gan
        self.fm = list(cfg.losses.feature_matching)
        self.match = cfg.losses.match

    @staticmethod
    def _videos(batch: dict[str, Tensor], out: TrainOutput) -> tuple[Tensor, Tensor]:
        """(each episode's video, each driver's video)."""
        video = batch["video"]
        return video, video.repeat_interleave(out.prediction.shape[0] // video.shape[0])

    def generator_terms(self, batch: dict[str, Tensor], out: TrainOutput) -> dict[str, Tensor]:
        episode, video = self._videos(batch, out)
        sketch = out.details.sketch
        disc = unwrap(self.disc)
        real_feats, _ = disc(out.target, sketch, video)
        fake_feats, realism = disc(out.prediction, sketch, video)
        terms = {"gen_gan": self.gan * hinge_generator_loss(realism)}
        if any(self.fm):
            terms["feature_matching"] = feature_matching_loss(
                [f.detach() for f in real_feats], fake_feats, self.fm)
        if self.match:
            w = unwrap(self.disc).W[episode].detach()
            terms["match"] = self.match * (w - out.details.embedding).abs().mean()
        return terms

    def discriminator_loss(self, batch: dict[str, Tensor], out: TrainOutput
                           ) -> dict[str, Tensor]:
        episode, video = self._videos(batch, out)
        sketch = out.details.sketch
        _, real = self.disc(out.target, sketch, video)
        _, fake = self.disc(out.prediction.detach(), sketch, video)
        terms = {"disc_gan": hinge_discriminator_loss(real, fake)}
        if self.match:
            w = unwrap(self.disc).W[episode]
            terms["disc_match"] = self.match * (w - out.details.embedding.detach()).abs().mean()
        return terms


def build_adversary(cfg: Config, kind: str, num_videos: int
                    ) -> PatchAdversary | ProjectionAdversary:
    if kind == "patch":
        return PatchAdversary(cfg)
    if kind == "projection":
        return ProjectionAdversary(cfg, num_videos)
    raise ValueError(f"unknown discriminator kind '{kind}'")
