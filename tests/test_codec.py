"""facecodec.Encoder / Decoder end to end, on files and live, with a random-weight model
(what is tested is the pipeline, not the picture quality: see docs/EVAL.md for that)."""

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from codec_helpers import make_package

from facecodec.bitstream.values import decode_values
from facecodec.cli.demo_cmds import make_example_video
from facecodec.codec import Decoder, Encoder
from facecodec.errors import FormatError, InputError, ModelMismatchError
from facecodec.sender.video import VideoReader

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec")
    models, priors = make_package(root)
    video = make_example_video(root / "input.mp4", seconds=3.0)
    old = {k: os.environ.get(k) for k in ("FACECODEC_MODELS", "FACECODEC_PRIORS")}
    os.environ["FACECODEC_MODELS"], os.environ["FACECODEC_PRIORS"] = str(models), str(priors)
    yield {"root": root, "video": video, "env": dict(os.environ)}
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_file_round_trip(env, tmp_path):
    fcs = tmp_path / "a.fcs"
    st = Encoder("tiny_codec").encode_file(env["video"], fcs, progress=False)
    assert st.frames == 45 and st.faces == 45 and len(st.sources) == 3
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


def test_loopback_call_example(env):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "loopback_call.py"),
                        "--model", "tiny_codec", "--video", str(env["video"])],
                       env=env["env"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "45 frames received" in r.stdout and "kbps" in r.stdout
