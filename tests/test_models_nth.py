"""The few-shot talking-heads family (issue 22): the landmark sketch, the receiver's
cache, training with the projection discriminator, export and load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from training_helpers import TINY, random_batch, random_values, tiny_config

from facecodec.models.registry import build_model, load_model
from facecodec.models.sketch import CHAINS, CHANNEL_OF_CHAIN, NUM_CHANNELS, landmark_sketch
from facecodec.sender.landmarks import SUPERVISED_GROUPS, SUPERVISED_LANDMARKS
from facecodec.training.data import ClipStore
from facecodec.training.export import export_model
from facecodec.training.objective import GeneratorObjective
from facecodec.training.synthetic import write_synthetic_cache
from facecodec.training.trainer import train

NTH = ["family=nth", "model.num_unsup=0", "model.expr_dim=0", "model.jacobians=false",
       "model.nth.base=8", "model.nth.max_channels=16", "model.nth.embed_dim=8",
       "model.nth.down_blocks=2", "model.nth.res_blocks=1", "losses.match=1",
       "data.strategy=random", "losses.equivariance_value=0",
       "losses.equivariance_jacobian=0"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return write_synthetic_cache(tmp_path_factory.mktemp("cache"), clips=4, frames=24)


def test_the_sketch_draws_each_part_in_its_channel() -> None:
    # the chains name the parts by their mesh indices
    mesh = [[SUPERVISED_LANDMARKS[i] for i in chain] for chain in CHAINS]
    assert mesh[0] == list(SUPERVISED_GROUPS["jaw"])
    assert mesh[3] == [33, 159, 133, 145, 33] and mesh[4] == [362, 386, 263, 374, 362]
    assert mesh[7] == [61, 13, 291, 14, 61]  # the inner lips: the mouth's opening
    assert CHANNEL_OF_CHAIN[7] == 5 and NUM_CHANNELS == 7
    gen = torch.Generator().manual_seed(0)
    sup = (torch.rand(1, 33, 2, generator=gen) * 2 - 1) * 0.8
    iris = (torch.rand(1, 2, 2, generator=gen) * 2 - 1) * 0.8
    size = 64
    sk = landmark_sketch(sup, iris, size)
    assert sk.shape == (1, NUM_CHANNELS, size, size) and 0 <= sk.min() and sk.max() <= 1

    def at(p: torch.Tensor, ch: int) -> float:  # the pixel holding point p, [-1, 1] coords
        x, y = ((p + 1) * size / 2 - 0.5).round().long().tolist()
        return float(sk[0, ch, y, x])

    nose = sup[0, 21] * 0.5 + sup[0, 22] * 0.5  # the middle of the nose's segment
    assert at(nose, 3) > 0.5
    assert at(iris[0, 0], 6) > 0.9
    # opening the inner lips moves channel 5 only
    moved = sup.clone()
    moved[0, 32, 1] += 0.2
    diff = (landmark_sketch(moved, iris, size) - sk).abs().flatten(2).amax(-1)[0]
    assert diff[5] > 0.5 and diff[[0, 1, 2, 3, 4, 6]].max() == 0


def test_the_receiver_embeds_once_and_draws_each_frame_alike() -> None:
    cfg = tiny_config(*NTH)
    model = build_model(cfg).eval()
    rx = model.receiver
    gen = torch.Generator().manual_seed(1)
    r = cfg.data.resolution
    images = torch.rand(1, 3, 3, r, r, generator=gen)
    sv = random_values(model.layout, (1, 3), gen)
    dv = random_values(model.layout, (4,), gen)
    with torch.no_grad():
        cache = rx.embed_sources(images, sv)
        batched = rx.render(cache.repeat(4), dv).image
        one = torch.cat([rx.render(cache, {k: v[i:i + 1] for k, v in dv.items()}).image
                         for i in range(4)])
        # the embedding is the sources' mean: the same source twice is that source
        single = rx.embed_sources(images[:, :1], {k: v[:, :1] for k, v in sv.items()})
        twice = rx.embed_sources(images[:, [0, 0]], {k: v[:, [0, 0]] for k, v in sv.items()})
    assert batched.shape == (4, 3, r, r)
    torch.testing.assert_close(batched, one, atol=1e-5, rtol=0)
    torch.testing.assert_close(single.psi, twice.psi, atol=1e-5, rtol=0)
    assert rx.pixel_blend is False and model.layout.streams == ("sup", "iris")


def test_every_generator_parameter_gets_a_gradient() -> None:
    cfg = tiny_config(*NTH)
    model = build_model(cfg)
    total, terms, out = GeneratorObjective(model, cfg.losses)(random_batch(cfg, batch=2))
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert set(terms) == {"perceptual", "l1"}
    assert out.details.embedding.shape == (2, 8)


def test_training_with_the_projection_discriminator_resumes_bit_for_bit(
        cache, tmp_path) -> None:  # noqa: ANN001
    over = [f"data.root={cache}", *NTH]
    straight = train(TINY, over, tmp_path / "a", max_steps=4, resume=False)
    train(TINY, over, tmp_path / "b", max_steps=2, resume=False)
    resumed = train(TINY, over, tmp_path / "b", max_steps=4, resume=True)
    a = torch.load(straight, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    for part in ("model", "disc"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    trains = len(ClipStore(cache, 64).split("train"))
    assert a["disc"]["W"].shape == (trains, 8)  # a row per training clip
    records = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    train_logs = [r for r in records if r["kind"] == "train"]
    assert {"gen_gan", "feature_matching", "match", "disc_gan", "disc_match"} <= set(
        train_logs[0])
    # export, load: the receiver renders what the checkpoint's does
    dest = tmp_path / "models" / "nth_tiny"
    export_model(straight, dest)
    loaded = load_model(dest, parts=("receiver",))
    fresh = build_model(tiny_config(*NTH))
    fresh.load_state_dict(a["model"])
    batch = random_batch(tiny_config(*NTH), batch=1, seed=3)
    with torch.no_grad():
        want = fresh.eval().training_forward(batch).prediction
        got = loaded.training_forward(batch).prediction
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_the_codec_carries_an_nth_model_end_to_end(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Encoder -> .fcs -> Decoder with a (random-weight) nth package: the landmarks-only
    stream table, the sources embedded, every frame drawn."""
    from dataclasses import replace

    from codec_helpers import save_package

    from facecodec.bitstream.prior import Prior
    from facecodec.bitstream.streams import TABLES
    from facecodec.bitstream.values import decode_values
    from facecodec.codec import Decoder, Encoder
    from facecodec.examples import make_example_video

    torch.manual_seed(0)
    cfg = replace(tiny_config(*NTH), name="tiny_nth")
    dest = save_package(cfg, tmp_path / "models" / "tiny_nth")
    Prior.untrained(TABLES["sup"], name="tiny_nth").save(dest / "prior.json")
    (tmp_path / "priors").mkdir()
    monkeypatch.setenv("FACECODEC_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("FACECODEC_PRIORS", str(tmp_path / "priors"))
    video = make_example_video(tmp_path / "in.mp4", seconds=1.0)
    st = Encoder("tiny_nth").encode_file(video, tmp_path / "a.fcs", progress=False)
    assert st.frames == st.faces == 15
    _, values, reader = decode_values(tmp_path / "a.fcs")
    assert set(values) == {"sup", "iris"} and reader.header.model_id == "tiny_nth"
    r = Decoder().decode_file(tmp_path / "a.fcs", tmp_path / "a.mp4", progress=False)
    assert r["frames"] == 15
    # few-shot fine-tuning at the receiver, on the sources it received
    data = (tmp_path / "a.fcs").read_bytes()
    plain = np.stack([f.image for f in Decoder(retouch=False).frames(data)])
    tuned = np.stack([f.image for f in Decoder(retouch=False, finetune_s=1.0).frames(data)])
    assert tuned.shape == plain.shape and np.abs(tuned.astype(int) - plain).mean() > 0.1


def test_fine_tuning_at_the_receiver_fits_the_sources_and_leaves_the_model() -> None:
    from facecodec.receiver.finetune import finetune

    cfg = tiny_config(*NTH)
    model = build_model(cfg).eval()
    rx = model.receiver
    before = {k: v.clone() for k, v in rx.state_dict().items()}
    gen = torch.Generator().manual_seed(4)
    r = cfg.data.resolution
    images = torch.rand(3, 3, r, r, generator=gen)
    values = random_values(model.layout, (3,), gen)
    ff = finetune(rx, images, values, seconds=0.0)  # the feed-forward model: no step
    assert ff.steps == 0 and not ff.losses
    with torch.no_grad():
        torch.testing.assert_close(ff.cache.psi, rx.embed_sources(
            images[None], {k: v[None] for k, v in values.items()}).psi)
    tuned = finetune(rx, images, values, seconds=60.0, max_steps=40, perceptual=False,
                     lr=2e-3)
    assert tuned.steps == 40 and tuned.loss == "l1"
    assert tuned.losses[-1] < 0.95 * tuned.losses[0]  # it fits the person's frames
    with torch.no_grad():
        drawn = tuned.receiver.render(tuned.cache.repeat(3), values).image
        plain = rx.render(ff.cache.repeat(3), values).image
    assert (drawn - images).abs().mean() < (plain - images).abs().mean()
    for k, v in rx.state_dict().items():  # the loaded model is not changed
        assert torch.equal(v, before[k]), k
