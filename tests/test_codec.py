"""facecodec.Encoder / Decoder end to end, on files and live, with a random-weight model
(what is tested is the pipeline, not the picture quality: see docs/EVAL.md for that)."""

import math
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from codec_helpers import make_package, model_env

import facecodec.codec
import facecodec.receiver.expression
from facecodec.bitstream.chunks import SOURCE_PART
from facecodec.bitstream.container import DecodedFrame, FcsReader, SourceFrame
from facecodec.bitstream.header import header_length, parse_header
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.values import decode_values
from facecodec.codec import Decoder, Encoder
from facecodec.errors import FormatError, InputError, ModelMismatchError
from facecodec.examples import make_example_video
from facecodec.sender.budget import BudgetError
from facecodec.sender.video import VideoReader

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec")
    models, priors = make_package(root)
    video = make_example_video(root / "input.mp4", seconds=3.0)
    with model_env(models, priors):
        yield {"root": root, "video": video, "env": dict(os.environ)}


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_file_round_trip(env, tmp_path):
    fcs = tmp_path / "a.fcs"
    st = Encoder("tiny_codec").encode_file(env["video"], fcs, progress=False)
    assert st.frames == 45 and st.faces == 45 and len(st.sources) == 3
    assert st.warnings == []  # a whole video: nothing to report
    _, values, reader = decode_values(fcs)
    assert reader.header.model_id == "tiny_codec" and reader.header.n_sources == 3
    assert values["unsup"].shape == (45, 20) and values["expr"].shape == (45, 16)
    assert reader.crops and reader.crops[0].frame == 0  # the first tube box is sent
    dec = Decoder()
    r = dec.decode_file(fcs, tmp_path / "a.mp4", progress=False)
    assert r["frames"] == 45 and frame_count(tmp_path / "a.mp4") == 45
    dec.decode_file(fcs, tmp_path / "b.mp4", compare=env["video"], size=128, progress=False)
    with av.open(str(tmp_path / "b.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (256, 128)
    assert not list(tmp_path.glob("*.part*"))


def test_deadband_trades_bits_for_bounded_error(env, tmp_path):
    from facecodec.bitstream.streams import TABLES
    from facecodec.sender.deadband import UNIT_THRESHOLDS

    enc0 = Encoder("tiny_codec", deadband=0)
    assert enc0.deadband == 0 and Encoder("tiny_codec").deadband == 0  # untrained prior: raw
    enc0.encode_file(env["video"], tmp_path / "raw.fcs", progress=False)
    Encoder("tiny_codec", deadband=8).encode_file(env["video"], tmp_path / "db.fcs",
                                                  progress=False)
    raw, db = (decode_values(tmp_path / f"{n}.fcs")[1] for n in ("raw", "db"))
    assert np.array_equal(raw["sup"], db["sup"])
    for k, unit in UNIT_THRESHOLDS.items():
        spec = {t.name: t for t in TABLES["sup_unsup_expr"]}[k]
        step = (spec.hi - spec.lo) / (2**spec.bits - 1)  # the decoded values are quantized
        assert np.abs(raw[k] - db[k]).max() <= 8 * unit + 2 * step
    changes = [sum(np.count_nonzero(np.diff(x[k], axis=0)) for k in UNIT_THRESHOLDS)
               for x in (db, raw)]
    assert changes[0] < changes[1]
    assert (tmp_path / "db.fcs").stat().st_size < (tmp_path / "raw.fcs").stat().st_size


def test_live_push_and_pull_frame_by_frame(env):
    enc = Encoder("tiny_codec", n_sources=2)
    packets = []
    with VideoReader(env["video"], fps=15) as video:
        for frame in video:
            packets.append(enc.push(frame.image))
    packets.append(enc.close())
    assert packets[0].startswith(b"\x89FCS")
    # frames wait for the first source only at the start; afterwards one packet per push
    assert all(len(p) > 0 for p in packets[20:])
    frames = list(Decoder().frames(iter(packets)))
    assert [f.index for f in frames] == list(range(45))
    # drawn at the stream's crop size (the 64-pixel model warps the 256 sources there)
    assert frames[0].image.shape == (256, 256, 3) and frames[0].image.dtype == np.uint8
    # the same stream decodes to the same pictures from bytes
    again = list(Decoder().frames(b"".join(packets)))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again, strict=True))
    small = next(Decoder(output_size=64).frames(b"".join(packets)))
    assert small.image.shape == (64, 64, 3)


def test_bad_inputs(env, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        Encoder("tiny_codec").encode_file(empty, tmp_path / "x.fcs", progress=False)
    assert not (tmp_path / "x.fcs").exists()
    with pytest.raises(InputError, match="no model"):
        Encoder("no_such_model")
    blank = tmp_path / "blank.mp4"
    with av.open(str(blank), "w") as out:
        s = out.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = 128, 128, "yuv420p"
        for _ in range(5):
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((128, 128, 3), 90, np.uint8),
                                                        "rgb24")))
        out.mux(s.encode(None))
    with pytest.raises(InputError, match="no face"):
        Encoder("tiny_codec").encode_file(blank, tmp_path / "y.fcs", progress=False)
    fcs = tmp_path / "a.fcs"
    Encoder("tiny_codec").encode_file(env["video"], fcs, progress=False)
    data = fcs.read_bytes()
    (tmp_path / "cut.fcs").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated"):
        Decoder().decode_file(tmp_path / "cut.fcs", tmp_path / "cut.mp4", progress=False)
    assert not list(tmp_path.glob("cut*.mp4*"))
    # other weights under the same model name
    make_package(tmp_path / "other", seed=1)
    with pytest.raises(ModelMismatchError, match="other weights"):
        Decoder(tmp_path / "other" / "models" / "tiny_codec").decode_file(
            fcs, tmp_path / "z.mp4", progress=False)


def test_cli_video_round_trip_and_one_line_errors(env, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "facecodec", *args], cwd=tmp_path,
                              env=env["env"], capture_output=True, text=True, timeout=300)

    r = run("encode", str(env["video"]), "a.fcs", "--model", "tiny_codec", "--sources", "1",
            "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "sources [" in r.stdout and r.stderr == ""
    r = run("decode", "a.fcs", "a.mp4", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert frame_count(tmp_path / "a.mp4") == 45
    r = run("bitrate", "--report", "a.fcs")
    assert r.returncode == 0 and "source frames | 1 (" in r.stdout
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    r = run("encode", "bad.mp4", "b.fcs", "--model", "tiny_codec")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "bad.mp4" in r.stderr
    assert not (tmp_path / "b.fcs").exists()


def test_live_misuse_is_an_input_error(env):
    """push() after close() would start a second header on the same wire; a NaN or
    backwards time would feed the smoothing nonsense speeds: both refused, and a refused
    push leaves the stream as it was."""
    with VideoReader(env["video"], fps=15) as video:
        images = [f.image for _, f in zip(range(4), video, strict=False)]
    enc = Encoder("tiny_codec", n_sources=1)
    wire = [enc.push(images[0], time_s=10.0)]
    for bad, message in ((math.nan, "finite"), (math.inf, "finite"), ("1", "finite"),
                         (10.0, "increase from frame to frame: 10.0 after 10.0"),
                         (9.5, "increase")):
        with pytest.raises(InputError, match=message):
            enc.push(images[1], time_s=bad)
    wire.append(enc.push(images[1], time_s=10.1))
    wire.append(enc.push(images[2]))  # default time: 1 / fps after the previous frame
    wire.append(enc.close())
    with pytest.raises(InputError, match="the stream is closed"):
        enc.push(images[3])
    with pytest.raises(InputError, match="the stream is closed"):
        enc.close()
    assert [f.index for f in Decoder().frames(wire)] == [0, 1, 2]


def test_file_outputs_are_checked_before_any_work(env, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(env["video"].read_bytes())
    enc = Encoder("tiny_codec")
    cases = [(video, "the output is the input"), (tmp_path / "v.fcs.mp4", r"must end in \.fcs"),
             (tmp_path / "nodir" / "v.fcs", "no such directory")]
    for dst, message in cases:
        start = time.perf_counter()
        with pytest.raises(InputError, match=message):
            enc.encode_file(video, dst, progress=False)
        assert time.perf_counter() - start < 0.5  # refused before the tracking pass
    assert video.read_bytes() == env["video"].read_bytes()
    fcs = tmp_path / "junk.fcs"
    fcs.write_bytes(b"not read: the output is refused first")
    for dst, message in [(tmp_path / "x.webm", r"\.mp4, \.m4v, \.mov or \.mkv, not '\.webm'"),
                         (tmp_path / "x", "it has no extension"),
                         (video, "the output is the input")]:
        with pytest.raises(InputError, match=message):
            Decoder().decode_file(fcs, dst, compare=video, progress=False)
    assert video.read_bytes() == env["video"].read_bytes()


@pytest.fixture(scope="module")
def stream(env) -> Path:
    """A one-source stream of the example video, made once for the tests that read it."""
    fcs = env["root"] / "one_source.fcs"
    Encoder("tiny_codec", n_sources=1).encode_file(env["video"], fcs, progress=False)
    return fcs


# a `facecodec decode` that stops as soon as its .part file exists (PyAV creates it at the
# first packet H.264 gives out), until it is signalled
_SLOW_DECODE = """
import sys, time
from fractions import Fraction
from pathlib import Path
import facecodec.codec
from facecodec.cli import main

ready, resize = Path(sys.argv[1]), facecodec.codec._resize
part = Path(sys.argv[3] + ".part.mp4")  # argv: ready, stream, output, options

def stop_once_written(image, size):
    if part.exists():
        ready.touch()
        time.sleep(120)
    return resize(image, size)

facecodec.codec._resize = stop_once_written
sys.argv = ["facecodec", "decode", *sys.argv[2:]]
main()
"""


def test_cli_sigterm_removes_the_part_file(env, stream, tmp_path):
    # SIGINT takes the same path (tests/test_api_errors.py checks its handler)
    signum = signal.SIGTERM
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", _SLOW_DECODE, str(ready), str(stream),
                          "out.mp4", "--backend", "torch", "--no-progress"], cwd=tmp_path,
                         env=env["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), p.communicate(timeout=10)[1]
        assert (tmp_path / "out.mp4.part.mp4").exists()
        p.send_signal(signum)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signum, err
    assert err.splitlines() == ["facecodec: interrupted"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["ready"]  # no part, no output


def test_truncated_video_is_encoded_up_to_the_cut_and_reported(env, tmp_path):
    """A cut mp4 whose index is at the front decodes up to the cut without an error:
    the frames there are encoded, and one warning line says where the video ends."""
    with VideoReader(env["video"], fps=None) as video:
        images = [f.image for f in video]
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=15, options={"crf": "18", "preset": "veryfast"})
        s.width, s.height, s.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
        for image in images:
            out.mux(s.encode(av.VideoFrame.from_ndarray(image, "rgb24")))
        out.mux(s.encode(None))
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with VideoReader(tmp_path / "cut.mp4", fps=None) as video:
        kept = sum(1 for _ in video)
    assert 5 < kept < 40
    r = subprocess.run([sys.executable, "-m", "facecodec", "encode", "cut.mp4", "cut.fcs",
                        "--model", "tiny_codec", "--sources", "1", "--no-progress"],
                       cwd=tmp_path, env=env["env"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        f"facecodec: warning: cut.mp4 is truncated or damaged after frame {kept} (of ~45 "
        f"expected, {kept / 15:.1f} s of 3.0 s): encoded {kept} frames"]
    assert len(decode_values(tmp_path / "cut.fcs")[1]["sup"]) == kept


def test_loopback_call_example(env):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "loopback_call.py"),
                        "--model", "tiny_codec", "--video", str(env["video"])],
                       env=env["env"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "45 frames received" in r.stdout and "kbps" in r.stdout


def test_decoder_takes_bytes_paths_files_and_packets(env, stream):
    dec = Decoder()
    ref = [f.image for f in dec.frames(stream.read_bytes())]
    with open(stream, "rb") as f:
        data = stream.read_bytes()
        inputs = [stream, str(stream), memoryview(data), f,
                  iter([data[i : i + 7] for i in range(0, len(data), 7)])]
        for src in inputs:
            got = [fr.image for fr in dec.frames(src)]
            assert len(got) == len(ref)
            assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))
    with pytest.raises(InputError, match="no such file"):
        list(dec.frames(env["root"] / "missing.fcs"))
    with pytest.raises(InputError, match="cannot decode a int"):
        list(dec.frames(42))


def test_a_live_receiver_can_skip_drawing_frames(env, stream):
    """frames(draw=...): a frame the receiver is too late for is decoded (its values keep
    the stream's state) but not drawn; the next drawn frame is the one a full decode
    draws."""
    dec = Decoder()
    ref = list(dec.frames(stream))
    asked = []

    def draw(index):
        asked.append(index)
        return index % 3 != 1

    got = list(dec.frames(stream, draw=draw))
    assert [f.index for f in got] == [f.index for f in ref]
    assert asked == [f.index for f in ref][1:]  # the first picture is always drawn
    for prev, f, r in zip(got[:-1], got[1:], ref[1:], strict=True):
        assert f.drawn == (f.index % 3 != 1)
        assert np.array_equal(f.image, r.image if f.drawn else prev.image)
        assert f.values.keys() == r.values.keys()


def test_a_receiver_preloads_its_weights(env, stream, monkeypatch):
    """Decoder.preload(): the stream then draws with the renderer already loaded and the
    touch-up's face mesh already started (it takes ~1.5 s: a call's first face waited)."""
    dec = Decoder("tiny_codec")
    dec.preload()
    assert len(dec._renderers) == 1
    made = []
    monkeypatch.setattr(facecodec.codec, "Renderer",
                        lambda *a, **k: made.append(1) or pytest.fail("loaded again"))
    monkeypatch.setattr(facecodec.receiver.expression, "FaceTracker",
                        lambda *a, **k: made.append(1) or pytest.fail("mesh started again"))
    for _ in range(2):  # every stream of this decoder
        assert len(list(dec.frames(stream))) > 0 and not made


def test_live_call_recovers_through_feedback(env):
    """A lost packet mid-call: the receiver conceals, reports the last frame it holds,
    the sender codes against it, and every frame after that is the loss-free picture."""
    with VideoReader(env["video"], fps=15) as video:
        images = [f.image for f in video]
    clean_enc = Encoder("tiny_codec", n_sources=1, intra_period=1000)
    clean = list(Decoder().frames(iter([clean_enc.push(im) for im in images]
                                       + [clean_enc.close()])))
    enc = Encoder("tiny_codec", n_sources=1, intra_period=1000)
    dec = Decoder(tolerant=True)
    with pytest.raises(InputError, match="live stream"):
        enc.recover_from(3)
    sent = {"n": 0}

    def wire():
        for i, im in enumerate(images):
            data = enc.push(im)
            if i == 25 and data:  # this frame's packet is lost
                data = b""
            sent["n"] = i
            yield data
        yield enc.close()

    out, asked = [], False
    for fr in dec.frames(wire()):
        out.append(fr)
        if fr.held and not asked:
            enc.recover_from(dec.last_good)
            asked = True
    assert [f.index for f in out] == [f.index for f in clean]
    held = [f.index for f in out if f.held]
    assert asked and held and max(held) - min(held) <= 3  # no intra frame for 66 s
    for a, b in zip(out, clean, strict=True):
        if not a.held and a.index > max(held):
            np.testing.assert_array_equal(a.image, b.image)


def test_live_call_repairs_a_lost_packet_from_its_parity(env):
    """Encoder(fec=3): a frame packet lost mid-call is rebuilt from its group's parity;
    every frame comes out as the loss-free picture, none held, the ones after the loss
    at most 2 frames late (the wait for the parity)."""
    from facecodec.bitstream.chunks import FRAME_KINDS, ChunkParser

    with VideoReader(env["video"], fps=15) as video:
        images = [f.image for f in video]
    clean_enc = Encoder("tiny_codec", n_sources=1, fec=3)
    clean = list(Decoder().frames(iter([clean_enc.push(im) for im in images]
                                       + [clean_enc.close()])))
    enc = Encoder("tiny_codec", n_sources=1, fec=3)
    sent = {"n": 0}

    def wire():
        for i, im in enumerate(images):
            data = enc.push(im)
            sent["n"] = i
            if i == 25:  # this frame's packet is lost, not the parity after it
                p = ChunkParser()
                p.feed(data)
                p.close()
                chunks = list(p.chunks())
                lost = next(c for c in chunks if c.kind in FRAME_KINDS)
                data = b"".join(data[c.offset : c.offset + c.nbytes] for c in chunks
                                if c is not lost)
            yield data
        yield enc.close()

    out, lag, dec = [], [], Decoder(tolerant=True)
    for fr in dec.frames(wire()):
        out.append(fr)
        lag.append(sent["n"] - fr.index)
    assert [f.index for f in out] == [f.index for f in clean] and not any(f.held for f in out)
    for a, b in zip(out, clean, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    assert dec._reader.repaired == 1 and not dec.skipped
    steady = lag[-10]  # frames held back until the first source frame, then in step
    assert max(lag[:-1]) - steady <= 2


def _beep_starts(path: Path) -> np.ndarray:
    """Where the beeps of make_example_video's track start in ``path`` (s)."""
    from facecodec.audio import RATE, read_audio

    pcm = read_audio(path).astype(float)
    env = np.convolve(np.abs(pcm), np.ones(240) / 240, "same")
    on = env > 0.5 * env.max()
    return np.where(on[1:] & ~on[:-1])[0] / RATE


def test_the_sound_goes_through_in_sync(env, tmp_path):
    """A video's sound is sent (Opus, format 2.2) and muxed back beside the picture:
    every beep within 40 ms of where it was; --no-audio drops it."""
    beeps = [0.5, 1.5, 2.5]
    video = make_example_video(tmp_path / "beeps.mp4", seconds=3.0, beeps=beeps)
    fcs = tmp_path / "s.fcs"
    st = Encoder("tiny_codec").encode_file(video, fcs, progress=False)
    assert 0 < st.audio_bytes < 3.0 * 12_000 / 8  # under 12 kbps for 8 asked
    Decoder().decode_file(fcs, tmp_path / "s.mp4", progress=False)
    with av.open(str(tmp_path / "s.mp4")) as c:
        audio = c.streams.audio[0]
        assert abs(float(audio.duration * audio.time_base) - 3.0) < 0.05
    got = _beep_starts(tmp_path / "s.mp4")
    for b in beeps:
        assert np.min(np.abs(got - b)) < 0.04, (b, got)
    assert "| sound |" in analyse_markdown(fcs)
    quiet = tmp_path / "q.fcs"
    r = subprocess.run([sys.executable, "-m", "facecodec", "encode", str(video), str(quiet),
                        "--model", "tiny_codec", "--no-audio", "--no-progress"],
                       capture_output=True, text=True, env=env["env"], timeout=600)
    assert r.returncode == 0 and "(no sound)" in r.stdout, r.stderr
    assert quiet.stat().st_size < fcs.stat().st_size
    Decoder().decode_file(quiet, tmp_path / "q.mp4", progress=False)
    with av.open(str(tmp_path / "q.mp4")) as c:
        assert not c.streams.audio
    with pytest.raises(InputError, match="audio_kbps"):
        Encoder("tiny_codec", audio_kbps=3)


def analyse_markdown(path: Path) -> str:
    from facecodec.bitstream.report import analyse, to_markdown

    return to_markdown([analyse(path).summary()])


def test_live_sound_lands_where_it_was_captured(env):
    """push_audio: sound captured beside the frames (on their clock, in pieces of any
    size, with a gap) comes out of the receiver placed from the first frame's time."""
    from facecodec.audio import RATE, decode_audio

    enc = Encoder("tiny_codec", n_sources=1)
    with pytest.raises(InputError, match="before any frame"):
        enc.push_audio(np.zeros(480, np.int16))
    t0, beep_at = 100.0, 1.2  # a camera clock that does not start at 0
    wire = []
    with VideoReader(env["video"], fps=15) as video:
        for i, frame in enumerate(video):
            t = t0 + i / 15
            wire.append(enc.push(frame.image, time_s=t))
            piece = np.zeros(RATE // 15, np.float32)
            if abs(t - t0 - beep_at) < 0.5 / 15:  # this frame's 67 ms carries a beep
                piece[:] = 0.4 * np.sin(2 * np.pi * 1000 * np.arange(len(piece)) / RATE)
            if i != 10:  # one piece never captured: a gap, filled with silence
                wire.append(enc.push_audio(piece, time_s=t))
    with pytest.raises(InputError, match="mono samples"):
        enc.push_audio(np.zeros((2, 10)))
    wire.append(enc.close())
    dec = Decoder()
    frames, packets = [], []
    for f in dec.frames(iter(wire)):
        frames.append(f)
        packets += dec.drain_audio()
    assert len(frames) == 45 and packets
    pcm = decode_audio(packets, 3 * RATE).astype(float)
    loud = np.where(np.abs(pcm) > 4000)[0] / RATE
    assert abs(loud[0] - beep_at) < 0.01 and abs(loud[-1] - beep_at - 1 / 15) < 0.01
    with pytest.raises(InputError, match="audio=False"):
        Encoder("tiny_codec", audio=False).push_audio(np.zeros(10, np.int16))


def test_a_live_call_draws_its_first_face_from_a_small_source(env):
    """The first source goes out small (quality 25) and again at full quality 2 s later:
    the receiver can draw after ~2 KB instead of ~4-5 KB (3 s at 6 kbps: 2.25 KB)."""
    from facecodec.bitstream.chunks import FRAME_KINDS, SOURCE, ChunkParser
    from facecodec.bitstream.header import header_length

    def first_face_bytes(enc) -> tuple[int, list[int]]:
        wire = b""
        with VideoReader(env["video"], fps=15) as video:
            for frame in video:
                wire += enc.push(frame.image)
        wire += enc.close()
        p = ChunkParser(header_length(wire[:8], None))
        p.feed(wire[header_length(wire[:8], None):])
        p.close()
        chunks = list(p.chunks())
        first = next(c for c in chunks if c.kind in FRAME_KINDS)
        return first.offset, [c.payload[0] for c in chunks if c.kind == SOURCE]

    quick, slots = first_face_bytes(Encoder("tiny_codec", n_sources=2))
    plain, plain_slots = first_face_bytes(Encoder("tiny_codec", n_sources=2,
                                                  first_source_quality=None))
    assert quick <= 2250 < plain, (quick, plain)
    assert slots.count(0) == 2 and plain_slots.count(0) == 1  # slot 0 sent again, refined
    with pytest.raises(InputError, match="first_source_quality"):
        Encoder("tiny_codec", first_source_quality=0)


def test_live_frames_keep_real_time_at_any_camera_rate(env):
    """push(frame, time_s): a 30-fps camera gives a 15-fps stream of the same duration
    (every other capture dropped), a 7.5-fps one too (each frame repeated for the slot
    it missed), and a stall is filled with the last frame."""
    with VideoReader(env["video"], fps=None) as video:
        images = [f.image for _, f in zip(range(30), video, strict=False)]

    def stream_frames(times: list[float]) -> list:
        enc = Encoder("tiny_codec", n_sources=1, audio=False)
        wire = [enc.push(images[i % len(images)], time_s=t) for i, t in enumerate(times)]
        wire.append(enc.close())
        return [e for e in FcsReader(b"".join(wire)) if isinstance(e, DecodedFrame)]

    fast = stream_frames([5.0 + i / 30 for i in range(60)])  # 2 s at 30 fps
    assert len(fast) == 30  # 2 s at 15 fps
    slow = stream_frames([5.0 + i / 7.5 for i in range(15)])  # 2 s at 7.5 fps
    assert len(slow) == 29  # slots 0..28: the last capture is at 1.87 s
    for a, b in zip(slow[0::2], slow[1::2], strict=False):  # a repeat has the same values
        assert all(np.array_equal(a.values[k], b.values[k]) for k in a.values)
    stalled = stream_frames([0.0, 1 / 15, 2 / 15, 1.0 + 2 / 15])  # a 1-s stall
    assert len(stalled) == 18


def test_a_budget_plans_the_encoder_and_paces_its_sources(env, tmp_path):
    """``kbps``: the plan sets the dead zone (with its prior) and the sound's bitrate; the
    sources go in parts within what the rest leaves; a budget too small is refused with
    the smallest that works, and the settings it plans cannot also be given."""
    with pytest.raises(InputError, match="no held-out rate"):  # an untrained prior
        Encoder("tiny_codec", kbps=10)
    model = Path(make_package(tmp_path, name="tiny_budget")[0]) / "tiny_budget"
    for path, band, bits in ((model / "prior.json", 16.0, 300.0),
                             (model / "operating_points" / "deadband32.json", 32.0, 200.0)):
        prior = Prior.load(model / "prior.json")
        prior.info.update(deadband=band, val_bits_per_frame={"prior": {"total": bits}})
        prior.save(path)
    enc = Encoder(str(model), kbps=12)
    assert enc.budget.deadband == enc.deadband == 32.0  # the cheaper point
    assert enc.prior.info["val_bits_per_frame"]["prior"]["total"] == 200.0
    assert enc.audio_kbps == enc.budget.audio_kbps >= 6.0
    out = tmp_path / "budget.fcs"
    enc.encode_file(env["video"], out, progress=False)
    assert bytes([SOURCE_PART]) in out.read_bytes()  # paced within the budget
    with pytest.raises(BudgetError, match="needs at least"):
        # (200 x 1.18 + 56) bits x 7.5 fps + Codec 2's 1.9 kbps, over 95 % of 4 less 0.25
        Encoder(str(model), kbps=4)
    assert Encoder(str(model), kbps=8, audio=False).budget.audio_kbps is None
    for given in ({"deadband": 4}, {"audio_kbps": 8}, {"source_kbps": 2}):
        with pytest.raises(InputError, match=f"{next(iter(given))}, not both"):
            Encoder(str(model), kbps=12, **given)
    with pytest.raises(InputError, match="3..30"):
        Encoder(str(model), kbps=40)


def test_a_budget_under_opus_sends_codec2_and_half_the_frames(env, tmp_path):
    """6 kbps with sound: frames at 15 fps and Codec 2 do not fit, so the plan halves the
    frame rate; the stream declares Codec 2 (format 2.4), the decoded video is at 7.5 fps
    with the sound in place."""
    from facecodec.audio import RATE, decode_audio, sound_decoder

    # in the installed models (the decoder finds the stream's prior there)
    model = Path(make_package(env["root"], name="tiny_thin")[0]) / "tiny_thin"
    prior = Prior.load(model / "prior.json")
    prior.info.update(deadband=16.0, val_bits_per_frame={"prior": {"total": 200.0}})
    prior.save(model / "prior.json")
    enc = Encoder(str(model), kbps=6)
    assert enc.fps == Fraction(15, 2) and enc.sound.describe() == "Codec 2 1300"
    video = make_example_video(tmp_path / "beep.mp4", seconds=3.0, beeps=[1.0, 2.0])
    fcs, mp4 = tmp_path / "thin.fcs", tmp_path / "thin.mp4"
    enc.encode_file(video, fcs, progress=False)
    raw = fcs.read_bytes()
    header = parse_header(raw[:header_length(raw[:8], "thin")], "thin")
    assert header.fps == Fraction(15, 2) and header.info["audio"]["codec"] == "codec2"
    dec = Decoder()
    frames, packets = [], []
    for f in dec.frames(raw):
        frames.append(f)
        packets += dec.drain_audio()
    assert len(frames) == 23  # 3 s at 7.5 fps
    pcm = decode_audio(packets, 3 * RATE, header.info).astype(float)
    # each 50-ms beep's energy centred within 45 ms of the original's (a vocoder smears a
    # pure tone over its 40-ms frames: 20-37 ms late here; speech lands within 8 ms,
    # bench/speech.py)
    for beep in (1.0, 2.0):
        span = slice(int((beep - 0.2) * RATE), int((beep + 0.3) * RATE))
        energy = pcm[span] ** 2
        centre = beep - 0.2 + float((energy * np.arange(len(energy))).sum() / energy.sum()
                                    ) / RATE
        assert abs(centre - (beep + 0.025)) < 0.045
    assert type(sound_decoder(header.info)).__name__ == "Codec2Decoder"
    Decoder().decode_file(fcs, mp4, progress=False)
    with av.open(str(mp4)) as c:
        assert c.streams.video[0].average_rate == Fraction(15, 2)
        assert c.streams.video[0].frames == 23 and c.streams.audio


def test_paced_sources_come_between_the_frames_and_are_drawn_as_they_arrive(env, tmp_path):
    """``source_kbps``: a small first source before the first frame, then the full-size
    sources in parts between the frames within that rate (format 2.3); the decoder draws
    from the first and uses each source as it arrives."""
    from facecodec.bitstream.chunks import SOURCE, SOURCE_PART

    paced, whole = tmp_path / "paced.fcs", tmp_path / "whole.fcs"
    Encoder("tiny_codec", source_kbps=60).encode_file(env["video"], paced, progress=False)
    Encoder("tiny_codec").encode_file(env["video"], whole, progress=False)
    events = list(FcsReader(paced.read_bytes()))
    kinds = []
    for e in events:
        if isinstance(e, SourceFrame):
            kinds.append(("s", e.index, e.width))
        elif isinstance(e, DecodedFrame):
            kinds.append(("f", e.index, 0))
    assert kinds[0] == ("s", 0, 160)  # the first face, small
    assert kinds[1] == ("f", 0, 0)  # drawn at once
    later = [(i, k) for i, k in enumerate(kinds) if k[0] == "s"][1:]
    assert [k[1:] for _, k in later] == [(0, 256), (1, 256), (2, 256)]
    # 60 kbps at 15 fps: 500 bytes a frame for sources of ~5 KB each: one every ~10 frames
    after = [kinds[i - 1][1] for i, _ in later]
    assert all(kinds[i - 1][0] == "f" for i, _ in later)
    assert 5 <= after[0] < after[1] < after[2] < 44, after
    data = paced.read_bytes()
    assert bytes([SOURCE_PART]) in data and data.count(bytes([SOURCE])) >= 1
    dec = Decoder()
    r = dec.decode_file(paced, tmp_path / "paced.mp4", progress=False)
    assert r["frames"] == 45 and frame_count(tmp_path / "paced.mp4") == 45
    # the last frame, drawn with every full source, is the unpaced stream's (to a grey
    # level: the pose mix smooths its weights over the frames, which saw other sources)
    a = [d.image.astype(int) for d in Decoder().frames(paced)]
    b = [d.image.astype(int) for d in Decoder().frames(whole)]
    assert np.abs(a[-1] - b[-1]).max() <= 2
    assert np.abs(a[0] - b[0]).mean() > 1  # the first, from the small source alone
    with pytest.raises(InputError, match="source_kbps"):
        Encoder("tiny_codec", source_kbps=0)


def test_a_live_call_paces_its_sources(env):
    """Live, ``source_kbps``: the first source small and at once, the full ones in parts
    between the frames; every frame decodes, the last ones from full-size sources."""
    from facecodec.bitstream.chunks import SOURCE_PART

    enc = Encoder("tiny_codec", n_sources=2, source_kbps=60)
    wire = b""
    with VideoReader(env["video"], fps=15) as video:
        for frame in video:
            wire += enc.push(frame.image, frame.time)
    wire += enc.close()
    assert bytes([SOURCE_PART]) in wire
    events = list(FcsReader(wire))
    sources = [(e.index, e.width) for e in events if isinstance(e, SourceFrame)]
    assert sources[0] == (0, 160) and (0, 256) in sources[1:]
    first_full = next(i for i, e in enumerate(events)
                      if isinstance(e, SourceFrame) and e.width == 256)
    assert any(isinstance(e, DecodedFrame) for e in events[:first_full])  # drawn before
    frames = list(Decoder().frames(wire))
    assert len(frames) == len([e for e in events if isinstance(e, DecodedFrame)]) > 30


def test_a_live_call_closes_the_loop_on_its_sources(env, monkeypatch):
    """Live, ``source_choice="render"``: the pose policy sends only the frontal source; the
    others are frames the sender drew (one a second) and found worse than usual, in free
    slots, then in place of the oldest after the frontal one. Here the loop's bars are
    set to send at every check, so the slots fill and then turn over."""
    import functools

    import facecodec.codec as codec
    from facecodec.sender.coverage import LiveCoverage

    monkeypatch.setattr(codec, "LiveCoverage", functools.partial(
        LiveCoverage, window=1, min_checks=1, fill=0.0, replace=0.0))
    enc = Encoder("tiny_codec", n_sources=2, source_choice="render", fps=5,
                  first_source_quality=None)
    wire = b""
    with VideoReader(env["video"], fps=5) as video:
        for frame in video:
            wire += enc.push(frame.image, frame.time)
    wire += enc.close()
    events = list(FcsReader(wire))
    slots = [e.index for e in events if isinstance(e, SourceFrame)]
    # the frontal source (frame 0), then one per check (one a second at 5 fps: frames 2,
    # 7 and 12): slot 1, then slot 1 again in place of the oldest after the frontal one
    assert slots == [0, 1, 1, 1]
    frames = list(Decoder().frames(wire))
    assert len(frames) == len([e for e in events if isinstance(e, DecodedFrame)]) >= 14
