"""The model methods of ``facecodec eval`` (facecodec/eval/neural.py) with tiny random-weight
models, the temporal-consistency figures and the contact sheet's columns. What is tested
is the bit accounting and the plumbing (stream -> receiver), not the picture quality."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from codec_helpers import make_package, save_package
from eval_helpers import eval_clip, moving_clip, sender_meta, textured_image
from training_helpers import tiny_config

from facecodec.audio import RATE, encode_audio
from facecodec.bitstream.container import Crop, DecodedFrame, FcsReader, SourceFrame
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES
from facecodec.codec import Encoder
from facecodec.errors import InputError
from facecodec.eval.base import EvalClip
from facecodec.eval.methods import default_methods, make_method
from facecodec.eval.metrics import flicker, motion_ratio
from facecodec.eval.neural import nearest_source, write_stream
from facecodec.eval.report import contact_sheet, markdown, sheet_columns
from facecodec.eval.runner import EvalRun, SheetFrames
from facecodec.sender.sources import eyes_open_mask

END_CHUNK_BITS = 8 * 8  # kind, length, 4-byte frame count, CRC16


def make_fom_package(root: Path, name: str = "tiny_fom") -> None:
    """A FOM model (10 keypoints + Jacobians: the ``fom`` stream table) with random weights
    and an untrained prior, next to make_package's."""
    torch.manual_seed(1)
    cfg = tiny_config("family=fom", "model.landmarks.sup=false", "model.landmarks.iris=false",
                      "model.num_unsup=10", "model.expr_dim=0", "data.num_sources=1")
    dest = save_package(replace(cfg, name=name), root / "models" / name)
    Prior.untrained(TABLES["fom"], name=name).save(dest / "prior.json")


@pytest.fixture(scope="module", autouse=True)
def models(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models")
    models, priors = make_package(root)  # tiny_codec: Sup+Unsup+Expr at 64x64
    make_fom_package(root)
    keys = ("FACECODEC_MODELS", "FACECODEC_PRIORS")
    old = {k: os.environ.get(k) for k in keys}
    os.environ["FACECODEC_MODELS"], os.environ["FACECODEC_PRIORS"] = str(models), str(priors)
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def clip() -> EvalClip:
    return eval_clip(8)


def chunks(data: bytes) -> tuple[int, list]:
    """(bytes before the first frame chunk, the stream's events) read back independently."""
    reader = FcsReader(data)
    events = list(reader)
    sources = [e for e in events if isinstance(e, SourceFrame)]
    setup = max((s.offset + s.nbytes for s in sources), default=reader.header_bytes)
    return setup, events


# --- facecodec ----------------------------------------------------------------------------

def test_facecodec_bits_are_the_fcs_bytes(clip: EvalClip) -> None:
    method = make_method("facecodec:model=tiny_codec")
    stream = write_stream(method.encoder, clip)
    enc = method.run(clip, None)
    enc.check(clip, method.name)
    t = len(clip.frames)
    assert enc.frames.shape == clip.frames.shape == (t, 256, 256, 3)
    assert enc.frames.dtype == np.uint8
    # all-in = steady + setup = the file, to the bit
    assert int(enc.frame_bits.sum()) + enc.setup_bits == 8 * len(stream.data)
    np.testing.assert_array_equal(enc.frame_bits, stream.frame_bits)
    # setup = header + the three source chunks; each frame = its packet (+ crop, + end)
    setup, events = chunks(stream.data)
    assert enc.setup_bits == 8 * setup
    assert sum(isinstance(e, SourceFrame) for e in events) == 3
    packets = np.array([e.packet_bits for e in events if isinstance(e, DecodedFrame)])
    assert len(packets) == t
    np.testing.assert_array_equal(enc.frame_bits[1:-1], packets[1:-1])
    assert enc.frame_bits[-1] == packets[-1] + END_CHUNK_BITS
    assert enc.frame_bits[0] > packets[0]  # the first crop chunk rides with frame 0
    assert enc.setting == {"sources": 3}


def test_facecodec_output_is_what_the_decoder_makes_of_the_bytes(clip: EvalClip) -> None:
    """The receiver side sees nothing but the stream: a fresh Decoder on the same bytes
    renders the same frames."""
    from facecodec.codec import Decoder

    method = make_method("facecodec:model=tiny_codec")
    enc = method.run(clip, None)
    data = write_stream(method.encoder, clip).data
    images = np.stack([f.image for f in Decoder().frames(data)])
    # the 64-pixel model draws at the stream's crop size, the eval's 256: no resize
    assert images.shape[1] == 256
    np.testing.assert_array_equal(enc.frames, images)
    assert len({f.tobytes() for f in enc.frames}) > 1  # it animates


def test_one_source_sends_one_image_and_the_same_frames(clip: EvalClip) -> None:
    three = make_method("facecodec:model=tiny_codec").run(clip, None)
    one = make_method("facecodec:model=tiny_codec;sources=1").run(clip, None)
    np.testing.assert_array_equal(one.frame_bits, three.frame_bits)
    assert 0 < one.setup_bits < three.setup_bits
    assert one.setting == {"sources": 1}


def test_source_quality_changes_only_the_source_images(clip: EvalClip) -> None:
    low = make_method("facecodec:model=tiny_codec")
    high = make_method("facecodec:model=tiny_codec;source_quality=95")
    assert high.settings()["source_codec"] == "webp q95" != low.settings()["source_codec"]
    a, b = low.run(clip, None), high.run(clip, None)
    np.testing.assert_array_equal(a.frame_bits, b.frame_bits)
    assert b.setup_bits > a.setup_bits
    with pytest.raises(InputError, match=r"source_quality must be an integer in 1\.\.100"):
        make_method("facecodec:model=tiny_codec;source_quality=101")


def test_a_new_tube_box_is_a_crop_chunk_and_an_intra_frame(clip: EvalClip) -> None:
    method = make_method("facecodec:model=tiny_codec")
    meta = {k: v.copy() for k, v in clip.meta.items()}
    meta["segment"][5:] += 1
    meta["box"][5:] += 7
    moved = EvalClip(clip.name, clip.frames, clip.fps, meta, clip.video, clip.origin)
    same, new = write_stream(method.encoder, clip), write_stream(method.encoder, moved)
    _, events = chunks(new.data)
    crops = [e for e in events if isinstance(e, Crop)]
    assert [c.frame for c in crops] == [0, 5]
    assert [e.index for e in events if isinstance(e, DecodedFrame) and e.intra] == [0, 5]
    assert new.frame_bits[5] > same.frame_bits[5] + 8 * 16  # crop chunk + intra packet
    assert int(new.frame_bits.sum()) + new.setup_bits == 8 * len(new.data)


def test_the_sound_goes_in_the_stream_and_in_neither_bit_count(clip: EvalClip) -> None:
    method = make_method("facecodec:model=tiny_codec")
    t = np.arange(round(len(clip.frames) * RATE / clip.fps))
    pcm = (8000 * np.sin(2 * np.pi * 220 * t / RATE)).astype(np.int16)
    silent = write_stream(method.encoder, clip)
    sound = write_stream(method.encoder, clip, encode_audio(pcm))
    reader = FcsReader(sound.data)
    list(reader)
    assert reader.chunk_bytes["audio"] > 0
    assert int(sound.frame_bits.sum()) + sound.setup_bits == \
        8 * (len(sound.data) - reader.chunk_bytes["audio"])
    np.testing.assert_array_equal(sound.frame_bits, silent.frame_bits)
    assert sound.setup_bits > silent.setup_bits  # the header declares the sound


def test_missing_models_and_bad_options_are_one_line_input_errors() -> None:
    with pytest.raises(InputError, match="no model 'no_such_sup'"):
        make_method("facecodec-sup:model=no_such_sup")
    with pytest.raises(InputError, match="no model 'no_such_sup_unsup'"):
        make_method("facecodec-sup-unsup:model=no_such_sup_unsup")
    with pytest.raises(InputError, match="no model 'no_such_fom'"):
        make_method("fom:model=no_such_fom")
    with pytest.raises(InputError, match="tiny_codec.* frontalizer model, not fom"):
        make_method("fom-mult:model=tiny_codec")
    with pytest.raises(InputError, match="tiny_fom.* fom model, not frontalizer"):
        make_method("facecodec:model=tiny_fom")
    with pytest.raises(InputError, match="sources must be at least 1"):
        make_method("facecodec:model=tiny_codec;sources=0")
    with pytest.raises(InputError, match="unexpected keyword"):
        make_method("fom:model=tiny_fom;sources=3")  # FOM has one source by definition
    defaults = default_methods()
    assert {"facecodec", "facecodec-sup", "facecodec-sup-unsup", "fom",
            "fom-mult"} <= set(defaults)  # every shipped model is scored by default


def test_an_operating_point_may_bring_its_own_installed_prior(models, tmp_path, clip) -> None:
    """facecodec:prior=P codes with P (and its dead zone) and the Decoder finds P by id;
    a prior the Decoder could not find is refused up front."""
    other = Prior.untrained(TABLES["sup_unsup_expr"], name="tiny_codec-deadband8")
    other.info["deadband"] = 8.0
    installed = models / "priors" / "points" / "tiny_codec-deadband8.json"
    other.save(installed)
    method = make_method(f"facecodec:model=tiny_codec;prior={installed}")
    assert method.settings()["prior"] == Prior.load(installed).id
    assert method.settings()["deadband"] == 8.0
    assert method.run(clip, None).frames.shape == clip.frames.shape
    Prior.untrained(TABLES["sup_unsup_expr"], name="elsewhere").save(tmp_path / "elsewhere.json")
    with pytest.raises(InputError, match="elsewhere.json is not installed"):
        make_method(f"facecodec:model=tiny_codec;prior={tmp_path / 'elsewhere.json'}")


# --- FOM, FOM-mult ------------------------------------------------------------------------

def test_fom_sends_one_frontal_source(clip: EvalClip) -> None:
    # the Encoder's default for a model whose receiver draws from one source
    assert Encoder("tiny_fom").n_sources == 1 and Encoder("tiny_codec").n_sources == 3
    assert Encoder("tiny_fom", n_sources=3).n_sources == 3  # asked for: FOM-mult's
    method = make_method("fom:model=tiny_fom")
    stream = write_stream(method.encoder, clip)
    enc = method.run(clip, None)
    enc.check(clip, method.name)
    setup, events = chunks(stream.data)
    (source,) = [e for e in events if isinstance(e, SourceFrame)]
    assert set(source.values) == {"unsup", "jac"}  # no landmarks: the fom stream table
    m = clip.meta
    opened = eyes_open_mask(m["eyes_open"], m["valid"])
    assert stream.sources == [int(np.argmin(np.where(opened, np.abs(m["yaw"]), np.inf)))]
    assert enc.setup_bits == 8 * setup
    assert int(enc.frame_bits.sum()) + enc.setup_bits == 8 * len(stream.data)


def test_nearest_source_on_a_constructed_case() -> None:
    base = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 5), [-0.2, 0.2]), -1).reshape(10, 2)
    sources = np.stack([base, base + [0.3, 0.0], base - [0.3, 0.0]])  # frontal, right, left
    rng = np.random.default_rng(0)
    shifts = np.array([0.0, 0.29, -0.31, 0.1, 0.2, -0.14, -0.16])
    driving = base[None] + shifts[:, None, None] * [1, 0] + rng.normal(0, 0.01, (7, 10, 2))
    assert nearest_source(driving, sources).tolist() == [0, 1, 2, 0, 1, 0, 2]
    # one keypoint far off does not outweigh the nine others that match source 1
    odd = sources[1].copy()
    odd[0] = sources[2][0]
    assert nearest_source(odd[None], sources).tolist() == [1]


def test_fom_mult_switches_to_the_source_a_frame_matches() -> None:
    """Three distinct pictures, each shown a few frames in turn: the sender picks one of
    each as a source (yaw 0, max, min), so every driving frame's decoded keypoints equal
    one source's, and FOM-mult must switch to that one, each time it changes."""
    images = [textured_image(s) for s in (11, 12, 13)]
    order = [0, 0, 1, 1, 2, 2, 0, 1, 2]
    yaw = np.array([0.0, 0.5, -0.5])[order]
    frames = np.stack([images[k] for k in order])
    clip = EvalClip("three_views", frames, meta=sender_meta(len(order), yaw))
    method = make_method("fom-mult:model=tiny_fom")
    enc = method.run(clip, None)
    enc.check(clip, method.name)
    slot_of_picture = {0: 0, 1: 1, 2: 2}  # select_sources: frontal, yaw max, yaw min
    assert method.last_choice.tolist() == [slot_of_picture[k] for k in order]
    assert enc.setting == {"sources": 3, "switches": 5}  # 0 1 2 0 1 2
    # bits: the FOM stream with three sources + 2 bits of source index per frame
    stream = write_stream(method.encoder, clip)
    np.testing.assert_array_equal(enc.frame_bits, stream.frame_bits + 2)
    assert enc.setup_bits == stream.setup_bits
    setup, events = chunks(stream.data)
    assert enc.setup_bits == 8 * setup and sum(isinstance(e, SourceFrame) for e in events) == 3
    # each frame is rendered from the source chosen for it, from decoded bytes only
    from facecodec.imagecodec import decode_image
    from facecodec.receiver.renderer import Renderer

    sources = {e.index: e for e in events if isinstance(e, SourceFrame)}
    values = [e.values for e in events if isinstance(e, DecodedFrame)]
    renderer = Renderer(method.package, max_sources=1, output_size=256)
    for t, k in enumerate(order):
        src = sources[slot_of_picture[k]]
        renderer.set_source(0, decode_image(src.image), src.values)
        expected = renderer.render([values[t]])[0]
        np.testing.assert_array_equal(enc.frames[t], expected, err_msg=f"frame {t}")


# --- temporal consistency -----------------------------------------------------------------

def test_temporal_consistency_figures_on_known_sequences() -> None:
    orig = moving_clip(10)
    held = np.broadcast_to(orig[:1], orig.shape)
    assert motion_ratio(orig, orig) == 1.0 and flicker(orig, orig) == 0.0
    assert motion_ratio(held, orig) == 0.0 and flicker(held, orig) == 0.0
    assert math.isnan(motion_ratio(held, held))  # nothing moves: no ratio
    # exact values: the original brightens 2 levels a frame, the output flickers +-10 on it
    ramp = np.stack([np.full((16, 16, 3), 100 + 2 * t, np.uint8) for t in range(9)])
    flick = ramp + (10 * (np.arange(9) % 2)).astype(np.uint8)[:, None, None, None]
    assert motion_ratio(flick, ramp) == pytest.approx(5.0)  # changes 12, 8, 12... / 2
    assert flicker(flick, ramp) == pytest.approx(4.0)  # excess 10, 6, 10... / 2
    # a blurry output changes less everywhere: no flicker
    blur = np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in orig])
    assert motion_ratio(blur, orig) < 0.9 and flicker(blur, orig) < 0.01
    # ... and a blurry output with one jump (a source switch) can keep a motion ratio
    # below 1, so the mean change alone would not show it; flicker does
    jump = blur.copy()
    jump[6:] = np.roll(jump[6:], 8, axis=2)  # the view jumps 8 px once, as at a switch
    assert motion_ratio(jump, orig) < 0.9 and flicker(jump, orig) > 0.1


# --- report -------------------------------------------------------------------------------

def sheet(labels: dict[str, float]) -> SheetFrames:
    image = np.zeros((2, 8, 8, 3), np.uint8)
    s = SheetFrames("clip", 0.5, [0, 3], {"original": image})
    for label, kbps in labels.items():
        s.frames[label], s.kbps[label] = image, kbps
    return s


def test_sheet_shows_the_models_against_av1_at_their_rate(tmp_path: Path) -> None:
    rated = {"zero-bit": 0.0, "x264@5": 6.0, "x264@10": 10.1, "svtav1@5": 8.0,
             "svtav1@10": 10.4, "svtav1@20": 19.9}
    s = sheet({**rated, "facecodec": 18.2, "fom": 7.0, "fom-mult": 7.1})
    assert sheet_columns(s, 10.0) == (["original", "facecodec", "fom", "fom-mult",
                                       "svtav1@20"], 18.2)
    points = sheet({**rated, "facecodec": 18.2, "facecodec:deadband=0;prior=p.json": 25.0,
                    "facecodec:sources=1": 9.0})
    assert sheet_columns(points, 10.0)[0] == ["original", "facecodec", "facecodec:sources=1",
                                              "svtav1@20"]  # one column per curve
    no_av1 = sheet({k: v for k, v in rated.items() if "svtav1" not in k} | {"facecodec": 9.0})
    assert sheet_columns(no_av1, 20.0)[0] == ["original", "facecodec", "x264@10"]
    classic_only = sheet(rated)  # as before the model methods: everything at --sheet-kbps
    assert sheet_columns(classic_only, 10.0) == (["original", "zero-bit", "x264@10",
                                                  "svtav1@10"], 10.0)
    run = EvalRun(sheet=s)
    path = contact_sheet(run, tmp_path / "contact_clip.png", 10.0)
    assert path is not None and path.stat().st_size > 1000
    info = {"command": "facecodec eval", "commit": "x", "date": "d", "threads": 1,
            "elapsed_min": 0.0, "clips_from": "test", "json": str(tmp_path / "r.json"),
            "methods": {}}
    text = markdown(run, info, [], tmp_path / "EVAL.md", path)
    assert f"`{path}`" in text and "original | facecodec | fom | fom-mult | svtav1@20" in text
    assert "not committed" in text and "third-party" in text and "flicker" in text


def test_cli_runs_the_model_methods(tmp_path: Path) -> None:
    """``facecodec eval`` end to end with the codec and FOM-mult on a cached clip (a
    synthetic one made here: the CLI takes a cache folder)."""
    from facecodec.cli import cli

    name, t = "pan", 8
    frames = moving_clip(t)
    d = tmp_path / "cache" / name
    d.mkdir(parents=True)
    np.save(d / "tube256.npy", frames)
    np.save(d / "tube128.npy", np.stack([cv2.resize(f, (128, 128)) for f in frames]))
    np.savez(d / "meta.npz", **sender_meta(t))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"file,split,notes\ndata/clips/{name}.mp4,val,person=p\n")
    report = tmp_path / "docs" / "EVAL.md"
    result = CliRunner().invoke(cli, [
        "eval", "--manifest", str(manifest), "--cache", str(tmp_path / "cache"),
        "-m", "zero-bit,facecodec:model=tiny_codec,fom-mult:model=tiny_fom", "--report",
        str(report), "--sheet-dir", str(tmp_path / "sheet"), "--no-progress"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "docs" / "eval" / "results.json").read_text())
    rows = {s["method"]: s for s in doc["scores"]}
    assert set(rows) == {"zero-bit", "facecodec:model=tiny_codec", "fom-mult:model=tiny_fom"}
    codec = rows["facecodec:model=tiny_codec"]
    assert codec["kbps_all"] > codec["kbps_steady"] > 0 and codec["flicker"] is not None
    assert rows["zero-bit"]["flicker"] == 0.0
    assert "flicker ↓" in report.read_text()
    assert (tmp_path / "sheet" / f"contact_{name}.png").is_file()


def test_closed_loop_sources_are_drawn_samples_after_the_pose_rules_first(clip: EvalClip
                                                                          ) -> None:
    from facecodec.codec import Decoder
    from facecodec.sender.coverage import sample_frames

    # at 1 fps the closed loop draws every frame (one a second), and a new source is more
    # than a second from the others
    pose = Encoder("tiny_codec", fps=1, n_sources=3)
    render = Encoder("tiny_codec", fps=1, n_sources=3, source_choice="render")
    by_pose, by_render = write_stream(pose, clip), write_stream(render, clip)
    samples = sample_frames(len(clip.frames), render.coverage_stride(len(clip.frames)))
    assert samples.tolist() == list(range(8))
    assert by_render.sources[0] == by_pose.sources[0]  # the frontal source stays
    assert len(by_render.sources) == 3
    s = np.array(by_render.sources)
    assert (np.abs(s[:, None] - s[None]) + 2 * np.eye(3) > 1).all()
    # the receiver draws every frame from them
    assert len(list(Decoder().frames(by_render.data))) == len(clip.frames)


def test_unknown_source_choice_is_refused() -> None:
    with pytest.raises(InputError, match="source_choice"):
        Encoder("tiny_codec", source_choice="random")
