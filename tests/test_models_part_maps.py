"""The decoder's part maps (``model.decoder.part_maps``, issue 19): the maps drawn from the
driver's landmarks, a model with them at zero rendering as one without them, the shipped
weights loading into such a model, and a fine-tune starting from a checkpoint without
them."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from training_helpers import TINY, random_batch, tiny_config

from facecodec.errors import InputError
from facecodec.export.wrappers import export_networks
from facecodec.models.package import find_model
from facecodec.models.part_maps import NUM_MAPS, PARTS, part_maps
from facecodec.models.registry import build_model, load_adding_part_maps, load_model
from facecodec.receiver.renderer import Renderer
from facecodec.sender.landmarks import SUPERVISED_LANDMARKS
from facecodec.training.config import load_config
from facecodec.training.export import write_package
from facecodec.training.synthetic import write_synthetic_cache
from facecodec.training.trainer import Trainer, train

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "frontalizer_sup_unsup_expr"
MAPS = "model.decoder.part_maps=true"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return write_synthetic_cache(tmp_path_factory.mktemp("cache"), clips=4, frames=24)


def test_parts_are_the_lids_lips_and_corners() -> None:
    mesh = [tuple(SUPERVISED_LANDMARKS[i] for i in part) for part in PARTS]
    assert mesh == [(33, 133, 159, 145), (362, 263, 386, 374), (61, 291, 13, 14)]


def _face(eye_gap: float, mouth_gap: float) -> torch.Tensor:
    """(1, 33, 2) landmarks: eyes with corners 0.2 apart at y = 0 (centres x = -+0.4),
    lids +-gap / 2; a mouth with corners 0.4 apart at y = 0.5."""
    sup = torch.zeros(1, 33, 2)
    for (c1, c2, up, lo), x in zip(PARTS[:2], (-0.4, 0.4), strict=True):
        sup[0, [c1, c2, up, lo]] = torch.tensor(
            [[x - 0.1, 0.0], [x + 0.1, 0.0], [x, -eye_gap / 2], [x, eye_gap / 2]])
    c1, c2, up, lo = PARTS[2]
    sup[0, [c1, c2, up, lo]] = torch.tensor(
        [[-0.2, 0.5], [0.2, 0.5], [0.0, 0.5 - mouth_gap / 2], [0.0, 0.5 + mouth_gap / 2]])
    return sup


def _centre(m: torch.Tensor) -> tuple[float, float]:
    """Mass-weighted centre (x, y) of an (h, w) map, in [-1, 1] coordinates."""
    h, w = m.shape
    ys = (torch.arange(h) * 2 + 1) / h - 1
    xs = (torch.arange(w) * 2 + 1) / w - 1
    total = m.sum()
    return float((m.sum(0) * xs).sum() / total), float((m.sum(1) * ys).sum() / total)


def test_a_closed_eye_draws_nothing_an_open_one_its_ellipse() -> None:
    res = 128
    pixel_area = (2 / res) ** 2
    opened = part_maps(_face(eye_gap=0.08, mouth_gap=0.1), res, res)[0]
    closed = part_maps(_face(eye_gap=0.0, mouth_gap=0.0), res, res)[0]
    assert opened.shape == closed.shape == (NUM_MAPS, res, res)
    assert 0 <= float(opened.min()) and float(opened.max()) <= 1
    # openings: empty when closed; the ellipse's area where open (pi a b, a = 0.1, b = gap/2)
    assert float(closed[:3].max()) < 1e-6
    for i, (x, y, b) in enumerate(((-0.4, 0.0, 0.04), (0.4, 0.0, 0.04), (0.0, 0.5, 0.05))):
        a = 0.2 if i == 2 else 0.1
        area = float(opened[i].sum()) * pixel_area
        assert area == pytest.approx(math.pi * a * b, rel=0.1), i
        assert _centre(opened[i]) == pytest.approx((x, y), abs=0.01), i
        row, col = (round((c + 1) / 2 * res - 0.5) for c in (y, x))
        assert float(opened[i, row, col]) > 0.9
        # where another part's opening is, this one's is empty
        others = opened[[j for j in range(3) if j != i]].sum(0) > 0.01
        assert float(opened[i][others].sum()) == 0.0
    # regions say where the part is, open or closed
    assert torch.equal(opened[3:], closed[3:])
    for i, (x, y) in enumerate(((-0.4, 0.0), (0.4, 0.0), (0.0, 0.5))):
        assert _centre(closed[3 + i]) == pytest.approx((x, y), abs=0.01)
    # a mouth smiling: both inner lips below the corners -> the crescent lies below them
    sup = _face(0.08, 0.0)
    c1, c2, up, lo = PARTS[2]
    sup[0, up, 1], sup[0, lo, 1] = 0.52, 0.58
    smile = part_maps(sup, res, res)[0, 2]
    assert 0.5 < _centre(smile)[1] < 0.58 and float(smile.max()) > 0.9


@pytest.mark.parametrize("family", ["frontalizer", "fom"])
def test_part_maps_at_zero_render_what_the_model_without_them_renders(family: str) -> None:
    torch.manual_seed(0)
    off = build_model(tiny_config(f"family={family}")).eval()
    torch.manual_seed(0)
    on = build_model(tiny_config(f"family={family}", MAPS)).eval()
    # the new layers do not touch the others' init: the same seed, the same weights
    state = on.state_dict()
    added = sorted(set(state) - set(off.state_dict()))
    assert added and all(".decoder.part_convs." in k for k in added)
    assert all(torch.equal(v, state[k]) for k, v in off.state_dict().items())
    assert all(not state[k].any() for k in added)
    batch = random_batch(tiny_config(f"family={family}"), batch=2, seed=3)
    with torch.no_grad():
        a, b = off.training_forward(batch), on.training_forward(batch)
        assert torch.equal(a.prediction, b.prediction)
        assert torch.equal(a.details.rgb, b.details.rgb)
        assert torch.equal(a.details.blend, b.details.blend)
        # and the maps reach the picture once the layers are not zero
        for conv in on.receiver.decoder.part_convs:
            conv.weight.normal_(0, 0.3)
        moved = (on.training_forward(batch).prediction - a.prediction).abs()
    assert float(moved.max()) > 1e-3


def test_part_maps_need_the_supervised_landmarks() -> None:
    with pytest.raises(ValueError, match="supervised landmarks"):
        build_model(tiny_config("model.landmarks.sup=false", MAPS))


def test_the_shipped_weights_load_into_a_model_with_part_maps() -> None:
    """The shipped model plus zero part-map layers renders the shipped model's pictures;
    any other key missing, or one too many, is still an error."""
    shipped = load_model(SHIPPED, parts=("receiver",))
    cfg = load_config(SHIPPED / "config.yaml", [MAPS])
    model = build_model(cfg).eval()
    state = load_file(str(SHIPPED / "receiver.safetensors"))
    added = load_adding_part_maps(model.receiver, state, "shipped")
    assert added == [f"decoder.part_convs.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")]
    assert load_adding_part_maps(model.sender, load_file(str(SHIPPED / "sender.safetensors")),
                                 "shipped") == []
    gen = torch.Generator().manual_seed(0)
    src = torch.rand(1, 2, 3, 128, 128, generator=gen)
    big = torch.rand(1, 2, 3, 256, 256, generator=gen)
    frame = torch.rand(3, 3, 128, 128, generator=gen)
    sup = 0.3 * (torch.rand(3, 33, 2, generator=gen) - 0.5)
    iris = 0.3 * (torch.rand(3, 2, 2, generator=gen) - 0.5)
    with torch.no_grad():
        learned = shipped.sender(torch.cat([src[0], frame]))  # the sender is not compared
        sv = {"sup": sup[:2][None], "iris": iris[:2][None],
              **{k: v[:2][None] for k, v in learned.items()}}
        dv = {"sup": sup, "iris": iris, **{k: v[2:] for k, v in learned.items()}}
        images = []
        for m in (shipped, model):
            cache = m.receiver.embed_sources(src, sv, big)
            images.append(m.receiver.render(cache.repeat(3), dv).image)
    assert images[0].shape == (3, 3, 256, 256) and torch.equal(images[0], images[1])
    for bad, match in (({k: v for k, v in state.items() if k != "decoder.rgb.bias"},
                        "decoder.rgb.bias"),
                       ({**state, "decoder.extra.weight": torch.zeros(1)}, "decoder.extra")):
        with pytest.raises(InputError, match=match):
            load_adding_part_maps(build_model(cfg).receiver, bad, "shipped")
    # without the option nothing may be missing
    with pytest.raises(InputError, match="decoder.part_convs"):
        load_adding_part_maps(build_model(load_config(SHIPPED / "config.yaml")).receiver,
                              {**state, "decoder.part_convs.0.bias": torch.zeros(32)},
                              "shipped")


def test_a_fine_tune_with_part_maps_starts_from_a_checkpoint_without(cache, tmp_path) -> None:  # noqa: ANN001
    over = [f"data.root={cache}", "losses.gan=0"]
    base = train(TINY, over, tmp_path / "base", max_steps=2, resume=False)
    tuned = [*over, MAPS, "optim.lr_new=10"]
    trainer = Trainer(load_config(TINY, tuned), tmp_path / "probe")
    trainer.load(base, init=True)
    ckpt = torch.load(base, weights_only=False)
    state = trainer.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in ckpt["model"].items())
    assert trainer.step == 2
    # Adam's moments carry over for the old parameters; the new ones are a group at 10x
    lr = tiny_config().optim.lr_generator
    groups = trainer.opt_g.param_groups
    assert [g["lr"] for g in groups] == [lr, 10 * lr] == trainer.sched_g.get_last_lr()
    assert len(groups[1]["params"]) == 4
    adam = trainer.opt_g.state_dict()["state"]
    assert all(torch.equal(adam[i]["exp_avg"], s["exp_avg"])
               for i, s in ckpt["opt_g"]["state"].items())
    last = torch.load(train(TINY, tuned, tmp_path / "ft", max_steps=3, init_from=base),
                      weights_only=False)
    assert last["step"] == 3
    assert all(last["model"][k].abs().max() > 0 for k in last["model"] if "part_convs" in k)
    log = [json.loads(x) for x in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in log][:2] == ["schedule", "init"]
    # a checkpoint lacking anything else does not start a run
    broken = tmp_path / "broken.pt"
    torch.save({**ckpt, "model": {k: v for k, v in ckpt["model"].items()
                                  if not k.startswith("receiver.decoder.rgb.")}}, broken)
    with pytest.raises(InputError, match="receiver.decoder.rgb"):
        Trainer(load_config(TINY, tuned), tmp_path / "probe2").load(broken, init=True)


def test_a_run_with_part_maps_resumes_bit_for_bit(cache, tmp_path) -> None:  # noqa: ANN001
    over = [f"data.root={cache}", "losses.gan=0", MAPS, "optim.lr_new=10"]
    straight = torch.load(train(TINY, over, tmp_path / "a", max_steps=4, resume=False),
                          weights_only=False)
    train(TINY, over, tmp_path / "b", max_steps=2, resume=False)
    resumed = torch.load(train(TINY, over, tmp_path / "b", max_steps=4), weights_only=False)
    assert straight["step"] == resumed["step"] == 4
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert straight["opt_g"]["param_groups"][1]["lr"] == resumed["opt_g"]["param_groups"][1]["lr"]


def test_the_exported_generator_draws_the_part_maps(tmp_path) -> None:  # noqa: ANN001
    """The generator the export traces takes the landmarks already; the maps are in its
    graph, and ONNX computes them as PyTorch does."""
    torch.manual_seed(0)
    model = build_model(tiny_config(MAPS)).eval()
    convs = model.receiver.decoder.part_convs
    for conv in convs:
        torch.nn.init.normal_(conv.weight, 0, 0.3)
    generator = {n.name: n for n in export_networks(model, 2)}["generator"]
    inputs = generator.example_inputs(1)
    with torch.no_grad():
        drawn = generator.module(*inputs)
        saved = [conv.weight.clone() for conv in convs]
        for conv in convs:
            conv.weight.zero_()
        assert not torch.equal(drawn, generator.module(*inputs))
        for conv, weight in zip(convs, saved, strict=True):
            conv.weight.copy_(weight)
    pytest.importorskip("onnxruntime", reason="the 'export' extra is not installed")
    from facecodec.export import to_onnx

    path = to_onnx.export(generator, tmp_path / "generator.onnx")
    feed = {s.name: t.numpy() for s, t in zip(generator.inputs, inputs, strict=True)}
    got = to_onnx.run(to_onnx.session(path), feed)["image"]
    assert float(abs(got - drawn.numpy()).max()) < 1e-3


def test_the_receiver_draws_the_part_maps_from_the_decoded_landmarks(tmp_path) -> None:  # noqa: ANN001
    """A package with part maps renders through the receiver's Renderer as the same weights
    without them while its layers are zero, and differently once they are not."""
    sizes = ("model.num_unsup=10", "model.expr_dim=16")  # the bitstream's stream sizes
    dirs = {}
    for name, over in (("plain", ()), ("zero", (MAPS,)), ("drawn", (MAPS,))):
        cfg = replace(tiny_config(*sizes, *over), name=name)
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        if name == "drawn":
            for conv in model.receiver.decoder.part_convs:
                torch.nn.init.normal_(conv.weight, 0, 0.3)
        dirs[name] = write_package(model, cfg, tmp_path / name)
    rng = np.random.default_rng(0)

    def values() -> dict[str, np.ndarray]:
        return {"sup": rng.uniform(-0.6, 0.6, (33, 2)), "iris": rng.uniform(-0.3, 0.3, (2, 2)),
                "unsup": rng.uniform(-0.6, 0.6, (10, 2)),
                "jac": np.eye(2) + rng.uniform(-0.1, 0.1, (10, 2, 2)),
                "expr": rng.uniform(-1, 1, 16)}

    sources = [(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), values()) for _ in range(2)]
    frames = [values() for _ in range(3)]
    out = {}
    for name, path in dirs.items():
        renderer = Renderer(find_model(path), backend="torch")
        for slot, (image, v) in enumerate(sources):
            renderer.set_source(slot, image, v)
        out[name] = renderer.render(frames)
    assert np.array_equal(out["plain"], out["zero"])
    assert not np.array_equal(out["plain"], out["drawn"])


def test_the_maps_config_trains_every_parameter() -> None:
    """configs/frontalizer_sup_unsup_expr_maps.yaml at its real sizes (tiny perceptual
    net): the part maps' layers, zero at first, get a gradient like every other parameter
    (DDP without find_unused_parameters needs it)."""
    cfg = load_config(ROOT / "configs" / "frontalizer_sup_unsup_expr_maps.yaml",
                      ["losses.perceptual.network=random_tiny", "losses.perceptual.scales=[1]"])
    assert cfg.model.decoder.part_maps and cfg.optim.lr_new > 1
    from facecodec.training.objective import GeneratorObjective

    model = build_model(cfg)
    total, terms, _ = GeneratorObjective(model, cfg.losses)(random_batch(cfg, batch=2))
    total.backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    grads = [p.grad for n, p in model.named_parameters() if "part_convs" in n]
    assert len(grads) == 4 and all(g.abs().sum() > 0 for g in grads)
    assert "region_l1" in terms and "region_perceptual" not in terms


def test_the_paint_config_trains_the_drawing_under_the_blend() -> None:
    """configs/frontalizer_sup_unsup_expr_paint.yaml: losses.regions.rgb_l1 is the L1 of
    the eye and mouth crops of the decoder's own RGB (before the blend), with its weight;
    it trains the drawing, not the blend mask; without the pixel blend it is an error."""
    from facecodec.training.losses import crop_regions, region_boxes
    from facecodec.training.objective import GeneratorObjective

    small = ["losses.perceptual.network=random_tiny", "losses.perceptual.scales=[1]"]
    cfg = load_config(ROOT / "configs" / "frontalizer_sup_unsup_expr_paint.yaml", small)
    rc = cfg.losses.regions
    assert rc.rgb_l1 > 0 and cfg.model.decoder.part_maps
    model = build_model(cfg)
    batch = random_batch(cfg, batch=2)
    _, terms, out = GeneratorObjective(model, cfg.losses)(batch)
    boxes = region_boxes(batch["drv_sup"].flatten(0, 1).float(), rc.eye_box, rc.mouth_box)
    expected = rc.rgb_l1 * (crop_regions(out.details.rgb, boxes, rc.size)
                            - crop_regions(out.target, boxes, rc.size)).abs().mean()
    assert terms["region_rgb_l1"].item() == pytest.approx(expected.item(), rel=1e-5)
    terms["region_rgb_l1"].backward()
    decoder = model.receiver.decoder
    assert decoder.rgb.weight.grad.abs().sum() > 0
    assert decoder.blend.weight.grad is None  # the mask learns from the blended frame only
    plain = load_config(ROOT / "configs" / "frontalizer_sup_unsup_expr_paint.yaml",
                        small + ["model.decoder.pixel_blend=false",
                                 "model.decoder.part_maps=false"])
    with pytest.raises(ValueError, match="pixel_blend"):
        GeneratorObjective(build_model(plain), plain.losses)(random_batch(plain, batch=1))


def _with_parts(sup: torch.Tensor, eye_gap: float, mouth_gap: float) -> torch.Tensor:
    """``sup`` with both eyes' lids ``eye_gap`` apart and the inner lips ``mouth_gap``
    apart, across corners 0.2 apart (openness = gap / 0.2)."""
    from facecodec.models.part_maps import PARTS

    out = sup.clone()
    for p, (c1, c2, up, low) in enumerate(PARTS):
        gap = mouth_gap if p == 2 else eye_gap
        cx, cy = (-0.3 + 0.3 * p, 0.0) if p < 2 else (0.0, 0.5)
        out[..., c1, :] = torch.tensor([cx - 0.1, cy])
        out[..., c2, :] = torch.tensor([cx + 0.1, cy])
        out[..., up, :] = torch.tensor([cx, cy - gap / 2])
        out[..., low, :] = torch.tensor([cx, cy + gap / 2])
    return out


def test_new_parts_are_those_no_source_shows() -> None:
    from facecodec.training.objective import new_parts, openness

    base = torch.zeros(1, 33, 2)
    src = torch.stack([_with_parts(base[0], 0.06, 0.02), _with_parts(base[0], 0.05, 0.04)])
    assert openness(src).flatten().tolist() == pytest.approx([0.3, 0.3, 0.1, 0.25, 0.25, 0.2])
    drivers = torch.stack([_with_parts(base[0], 0.05, 0.03),    # as the sources
                           _with_parts(base[0], 0.02, 0.03),    # eyes closed: 0.1 < 0.125
                           _with_parts(base[0], 0.05, 0.10),    # mouth 0.5 > 2 x 0.2 + 0.05
                           _with_parts(base[0], 0.10, 0.005)])  # wide eyes: left alone;
    flags = new_parts(src[None], drivers[None])                  # mouth 0.025 < 0.05
    assert flags.tolist() == [[False, False, False], [True, True, False],
                              [False, False, True], [False, False, True]]


def test_the_new_mask_term_pulls_the_mask_down_where_the_warp_cannot_draw() -> None:
    from facecodec.training.objective import GeneratorObjective

    small = ["losses.perceptual.network=random_tiny", "losses.perceptual.scales=[1]",
             "losses.regions.new_mask=1.0"]
    cfg = load_config(ROOT / "configs" / "frontalizer_sup_unsup_expr_paint.yaml", small)
    model = build_model(cfg)
    batch = random_batch(cfg, batch=1)
    batch["src_sup"] = _with_parts(batch["src_sup"], 0.06, 0.02)
    batch["drv_sup"] = _with_parts(batch["drv_sup"], 0.01, 0.02)  # every driver blinks
    _, terms, out = GeneratorObjective(model, cfg.losses)(batch)
    term = terms["region_new_mask"]
    assert 0.5 < term.item() < 1.0  # the mask as trained so far: mostly the warp
    term.backward()
    decoder = model.receiver.decoder
    assert decoder.blend.weight.grad.abs().sum() > 0 and decoder.rgb.weight.grad is None
    # drivers as the sources: nothing to pull
    batch["drv_sup"] = _with_parts(batch["drv_sup"], 0.06, 0.02)
    _, terms, _ = GeneratorObjective(model, cfg.losses)(batch)
    assert terms["region_new_mask"].item() == 0.0
