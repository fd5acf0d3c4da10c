"""Shapes, initial states, cache behaviour, Core ML-friendliness and export of the networks."""

from __future__ import annotations

import torch
from torch import nn
from training_helpers import random_values, tiny_config

from facecodec.config import (
    DecoderConfig,
    DiscriminatorConfig,
    EncoderConfig,
    KeypointDetectorConfig,
    MotionNetConfig,
)
from facecodec.models.decoder import Decoder
from facecodec.models.dense_motion import DenseMotion
from facecodec.models.discriminator import MultiScaleDiscriminator
from facecodec.models.encoder import Encoder
from facecodec.models.frontalizer import Frontalizer
from facecodec.models.generator import SourceCache
from facecodec.models.keypoint_detector import KeypointDetector
from facecodec.models.layout import KeypointLayout
from facecodec.models.profile import count_macs, network_table
from facecodec.models.registry import build_model, load_model
from facecodec.training.config import load_config
from facecodec.training.export import export_model


def test_keypoint_detector_outputs_and_identity_jacobians() -> None:
    det = KeypointDetector(KeypointDetectorConfig(input_res=64, base=8, max_channels=32,
                                                  num_blocks=5, expansion=2, expr_hidden=32),
                           num_kp=10, image_res=128, jacobians=True, expr_dim=16)
    out = det(torch.rand(3, 3, 128, 128))
    assert out["unsup"].shape == (3, 10, 2) and out["unsup"].abs().max() <= 1
    # I at init (up to the rounding of the softmax weights summing to 1)
    assert torch.allclose(out["jac"], torch.eye(2).expand(3, 10, 2, 2), atol=1e-5)
    assert out["expr"].shape == (3, 16) and out["expr"].abs().max() < 1
    # appendix 6.1.2: the MLP reads a 512-d central feature in the mobile models
    det512 = KeypointDetector(KeypointDetectorConfig(), num_kp=10, image_res=256,
                              jacobians=True, expr_dim=16)
    assert det512.expr is not None and det512.expr.net[0].in_features == 512


def test_encoder_stride_follows_resolution() -> None:
    for res in (128, 256):
        enc = Encoder(EncoderConfig(), image_res=res, feature_res=32)
        assert enc(torch.rand(1, 3, res, res)).shape == (1, 32, 32, 32)


def test_frontalizer_fuses_sources_with_softmax_weights() -> None:
    fr = Frontalizer(MotionNetConfig(base=8, max_channels=16, num_blocks=2, expansion=2),
                     num_kp=6, feature_channels=4, kp_variance=0.01,
                     reference_init=torch.zeros(6, 2))
    feats = torch.rand(2, 3, 4, 16, 16)
    kp = torch.rand(2, 3, 6, 2) - 0.5
    out = fr(feats, kp, torch.eye(2).expand(2, 3, 6, 2, 2))
    assert out.embedding.shape == (2, 4, 16, 16) and out.flows.shape == (2, 3, 16, 16, 2)
    assert torch.allclose(out.weights.sum(1), torch.ones(2, 16, 16), atol=1e-5)
    assert isinstance(fr.reference, nn.Parameter)  # p_r is learned (section 3.3)


def test_dense_motion_and_decoder_shapes() -> None:
    dm = DenseMotion(MotionNetConfig(base=8, max_channels=16, num_blocks=2, expansion=2,
                                     motion_feature_channels=2),
                     num_kp=5, feature_channels=4, kp_variance=0.01)
    kp = torch.rand(2, 5, 2) - 0.5
    eye = torch.eye(2).expand(2, 5, 2, 2)
    out = dm(torch.rand(2, 4, 16, 16), kp, kp.flip(1), eye, eye)
    assert out.flow.shape == (2, 16, 16, 2) and out.occlusion.shape == (2, 1, 16, 16)
    occ = out.occlusion.detach()
    assert 0 < float(occ.min()) and float(occ.max()) < 1
    dec = Decoder(DecoderConfig(max_channels=16, min_channels=8, res_blocks=1, expansion=2),
                  in_channels=4, expr_dim=3, feature_res=16, image_res=64)
    rgb, mask = dec(torch.rand(2, 4, 16, 16), torch.rand(2, 3))
    assert rgb.shape == (2, 3, 64, 64) and mask is not None and mask.shape == (2, 1, 64, 64)


def _values(model: nn.Module, images: torch.Tensor, lead: tuple[int, ...], gen: torch.Generator
            ) -> dict[str, torch.Tensor]:
    v = random_values(model.layout, lead, gen)
    learned = model.sender(images.reshape(-1, *images.shape[-3:]))
    v.update({k: t.reshape(*lead, *t.shape[1:]) for k, t in learned.items()})
    return v


def _calls(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_render_reuses_the_source_cache() -> None:
    for family in ("frontalizer", "fom"):
        cfg = tiny_config(f"family={family}")
        model = build_model(cfg).eval()
        gen = torch.Generator().manual_seed(0)
        src = torch.rand(1, 2, 3, 64, 64, generator=gen)
        enc = _calls(model.receiver.encoder)
        fr = _calls(model.receiver.frontalizer) if family == "frontalizer" else [0]
        with torch.no_grad():
            sv = _values(model, src, (1, 2), gen)
            cache = model.receiver.embed_sources(src, sv)
            assert enc[0] == 1
            frames = []
            for _ in range(3):
                drv = torch.rand(1, 3, 64, 64, generator=gen)
                dv = _values(model, drv, (1,), gen)
                frames.append(model.receiver.render(cache, dv).image)
                # the same result as the one-shot forward, which does embed again
                assert torch.allclose(frames[-1], model.receiver(src, sv, dv), atol=1e-6)
        assert enc[0] == 1 + 3 and fr[0] in (0, 1 + 3)  # only the 3 forward() calls re-embed
        assert frames[0].shape == (1, 3, 64, 64) and not torch.equal(frames[0], frames[1])


def test_pixels_at_the_output_size() -> None:
    """Sources given at twice the model's size: the warped pixels and the frame come out
    at that size, the decoder's RGB and mask resized to it; the same sources at the
    model's size give the model's frame."""
    import torch.nn.functional as F

    for family in ("frontalizer", "fom"):
        model = build_model(tiny_config(f"family={family}")).eval()
        gen = torch.Generator().manual_seed(1)
        src = torch.rand(1, 2, 3, 64, 64, generator=gen)
        big = F.interpolate(src.flatten(0, 1), scale_factor=2.0, mode="nearest")
        big = big.reshape(1, 2, 3, 128, 128)
        with torch.no_grad():
            sv = _values(model, src, (1, 2), gen)
            dv = _values(model, torch.rand(1, 3, 64, 64, generator=gen), (1,), gen)
            out = model.receiver.render(model.receiver.embed_sources(src, sv, big), dv)
            same = model.receiver.render(model.receiver.embed_sources(src, sv, src), dv)
        assert out.image.shape == out.warped_pixels.shape == (1, 3, 128, 128)
        up = [F.interpolate(t, size=(128, 128), mode="bilinear") for t in (out.rgb, out.blend)]
        assert torch.allclose(out.image, up[1] * out.warped_pixels + (1 - up[1]) * up[0],
                              atol=1e-6)
        assert torch.allclose(same.image, model.receiver(src, sv, dv), atol=1e-6)


def test_cache_repeat_matches_per_driver_render() -> None:
    cfg = tiny_config()
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    src = torch.rand(2, 2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        cache = model.receiver.embed_sources(src, _values(model, src, (2, 2), gen))
        assert isinstance(cache, SourceCache) and cache.images is not None
        drv = torch.rand(4, 3, 64, 64, generator=gen)
        dv = _values(model, drv, (4,), gen)
        both = model.receiver.render(cache.repeat(2), dv).image
        one = SourceCache(*(t[1:2] for t in (cache.embedding, cache.images, cache.flows,
                                               cache.weights)))
        single = model.receiver.render(one.repeat(2), {k: v[2:] for k, v in dv.items()}).image
    assert torch.allclose(both[2:], single, atol=1e-6)


FORBIDDEN = {"aten::inverse", "aten::linalg_inv", "aten::linalg_inv_ex", "aten::view_as",
             "aten::grid_sampler_3d"}


def _check_coreml_ops(fn: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    """The docs/environment.md Core ML limits, checked on the traced graph: no inverse, no
    view_as, grid_sample only 4-D, no tensor above rank 5."""
    traced = torch.jit.trace(fn, inputs, check_trace=False, strict=False)
    graph = traced.inlined_graph
    for node in graph.nodes():
        assert node.kind() not in FORBIDDEN, node
        if node.kind() == "aten::grid_sampler":
            assert next(node.inputs()).type().dim() == 4
        for out in node.outputs():
            t = out.type()
            if isinstance(t, torch._C.TensorType) and t.dim() is not None:
                assert t.dim() <= 5, (node.kind(), t.dim())


class _Render(nn.Module):
    def __init__(self, receiver: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.receiver, self.names = receiver, names

    def forward(self, embedding, images, flows, weights, *values):  # noqa: ANN001
        cache = SourceCache(embedding, images, flows, weights)
        return self.receiver.render(cache, dict(zip(self.names, values, strict=True))).image


class _Embed(nn.Module):
    def __init__(self, receiver: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.receiver, self.names = receiver, names

    def forward(self, images, *values):  # noqa: ANN001
        c = self.receiver.embed_sources(images, dict(zip(self.names, values, strict=True)))
        return c.embedding, c.flows, c.weights


def test_networks_use_only_coreml_convertible_ops() -> None:
    cfg = tiny_config()
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(2)
    src = torch.rand(1, 2, 3, 64, 64, generator=gen)
    drv = torch.rand(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        sv, dv = _values(model, src, (1, 2), gen), _values(model, drv, (1,), gen)
        cache = model.receiver.embed_sources(src, sv)
        names = tuple(dv)
        _check_coreml_ops(model.sender, (drv,))
        _check_coreml_ops(_Embed(model.receiver, names), (src, *(sv[n] for n in names)))
        _check_coreml_ops(_Render(model.receiver, names),
                          (cache.embedding, cache.images, cache.flows, cache.weights,
                           *(dv[n] for n in names)))


def test_discriminator_multiscale_maps() -> None:
    disc = MultiScaleDiscriminator(DiscriminatorConfig(scales=(1.0, 0.5), base=8,
                                                       max_channels=16, num_blocks=3))
    pyr = {"1_0": torch.rand(2, 3, 64, 64), "0_5": torch.rand(2, 3, 32, 32)}
    out = disc(pyr)
    assert set(out) == {"1_0", "0_5"}
    feats, logits = out["1_0"]
    assert len(feats) == 3 and logits.shape[:2] == (2, 1)


def test_variants_layouts_match_bitstream_streams() -> None:
    from facecodec.bitstream.streams import TABLES

    names = {"fom": "fom", "frontalizer_sup": "sup", "frontalizer_sup_unsup": "sup_unsup",
             "frontalizer_sup_unsup_expr": "sup_unsup_expr"}
    for config, table in names.items():
        cfg = load_config(f"configs/{config}.yaml")
        layout = KeypointLayout.from_config(cfg.model)
        assert layout.streams == tuple(s.name for s in TABLES[table].streams), config
        sizes = {"sup": 66, "iris": 4, "unsup": 2 * layout.unsup, "jac": 4 * layout.unsup,
                 "expr": layout.expr_dim}
        for spec in TABLES[table].streams:
            assert spec.count == sizes[spec.name], (config, spec.name)


def test_export_and_load_roundtrip(tmp_path) -> None:  # noqa: ANN001
    cfg = tiny_config()
    model = build_model(cfg, torch.rand(39, 2)).eval()
    torch.save({"step": 7, "config": cfg.to_dict(), "model": model.state_dict(), "world_size": 1,
                "last_val": {"lpips": 0.2}}, tmp_path / "ckpt.pt")
    dest = export_model(tmp_path / "ckpt.pt", tmp_path / "models" / "tiny")
    assert {p.name for p in dest.iterdir()} == {"sender.safetensors", "receiver.safetensors",
                                                 "config.yaml", "MODEL_CARD.md"}
    loaded = load_model(dest)
    gen = torch.Generator().manual_seed(3)
    src = torch.rand(1, 2, 3, 64, 64, generator=gen)
    drv = torch.rand(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        for m in (model, loaded):
            g = torch.Generator().manual_seed(4)
            sv, dv = _values(m, src, (1, 2), g), _values(m, drv, (1,), g)
            m.out = m.receiver(src, sv, dv)
    assert torch.equal(model.out, loaded.out)
    assert torch.equal(loaded.receiver.frontalizer.reference, model.receiver.frontalizer.reference)
    card = (dest / "MODEL_CARD.md").read_text()
    assert "trained 7 steps" in card and "sender.detector" in card


def test_profile_counts() -> None:
    cfg = tiny_config()
    model = build_model(cfg)
    rows = dict((n, p) for n, p, _ in network_table(model))
    assert set(rows) == {"sender.detector", "receiver.encoder", "receiver.frontalizer",
                         "receiver.dense_motion", "receiver.decoder"}
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, lambda: conv(torch.rand(1, 3, 10, 10))) == 8 * 100 * 27
