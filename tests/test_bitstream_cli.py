"""The bitstream commands end to end, as a user runs them."""

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
from bitstream_helpers import as_clip, random_walk
from codec_helpers import make_package
from eval_helpers import moving_clip

from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES
from facecodec.bitstream.values import save_values
from facecodec.models.package import find_model


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facecodec", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_fit_encode_decode_report(tmp_path):
    table = TABLES["landmarks"]
    for i, name in enumerate(["a", "b", "c"]):
        save_values(tmp_path / f"{name}.npz", 15, as_clip(table, random_walk(table, 120, i, 0.002)))
    r = run("fit-priors", "--table", "landmarks", "--train", "a.npz", "--train", "b.npz",
            "--val", "c.npz", "--out", "p.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "the prior saves" in r.stdout
    r = run("encode", "c.npz", "c.fcs", "--prior", "p.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # the decoder finds the prior by id through FACECODEC_PRIORS
    env = {"FACECODEC_PRIORS": str(tmp_path), "PATH": "/usr/bin"}
    r = run("decode", "c.fcs", "d.npz", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "c.npz") as a, np.load(tmp_path / "d.npz") as b:
        for k in ("sup", "iris"):
            step = 2 / 255
            assert np.abs(a[k] - b[k]).max() <= 2 * step
    r = run("bitrate", "--report", "--json", "c.fcs", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    (s,) = json.loads(r.stdout)
    assert s["frames"] == 120 and s["steady_kbps_15fps"] > 0
    assert set(s["streams"]) == {"sup", "iris"}


def test_bad_input_is_one_line_and_nonzero(tmp_path):
    (tmp_path / "empty.fcs").write_bytes(b"")
    (tmp_path / "junk.fcs").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "clip.mp4").write_bytes(b"a video the user cares about")
    cases = [
        (("bitrate", "empty.fcs"), "truncated"),
        (("bitrate", "junk.fcs"), "not a .fcs stream"),
        (("decode", "junk.fcs", "x.npz"), "not a .fcs stream"),
        (("decode", "missing.fcs", "x.npz"), "no such file"),
        (("encode", "junk.npz", "x.fcs", "--prior", "untrained"), "not a value file"),
        (("encode", "in.mp4", "x.fcs"), "in.mp4: no such file"),
        (("decode", "junk.fcs", "x.mp4"), "not a .fcs stream"),
        # outputs are checked before any work (issue #16, part 5)
        (("encode", "clip.mp4", "clip.mp4"), "clip.mp4: the output is the input"),
        (("encode", "clip.mp4", "x.mp4"), "encode writes a .fcs stream: the output name must "
                                          "end in .fcs, not '.mp4'"),
        (("encode", "clip.mp4", "nodir/x.fcs"), "nodir/x.fcs: cannot write there: nodir: no "
                                                "such directory"),
        (("encode", "junk.npz", "x.npz"), "must end in .fcs"),
        (("decode", "junk.fcs", "x.webm"), "must end in .mp4, .m4v, .mov, .mkv or .npz, not "
                                           "'.webm'"),
        (("decode", "junk.fcs", "x"), "it has no extension"),
        (("decode", "junk.fcs", "nodir/x.mp4"), "nodir: no such directory"),
        (("decode", "junk.fcs", "clip.mp4", "--compare", "clip.mp4"), "the output is the input"),
        (("track", "clip.mp4", "--out", "nodir/t.npz"), "nodir: no such directory"),
    ]
    for args, msg in cases:
        r = run(*args, cwd=tmp_path)
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and msg in lines[0], (args, r.stderr)
    assert not list(tmp_path.glob("x.*")) and not (tmp_path / "x").exists()
    assert (tmp_path / "clip.mp4").read_bytes() == b"a video the user cares about"


def test_fit_priors_for_a_model_at_several_dead_zones(tmp_path, monkeypatch):
    """--operating-points fits one prior per strength from one sender pass: each the prior
    a fit at that strength alone makes, and a wider dead zone codes fewer bits. By default
    they go into the model's folder, where the encoder takes the one of its strength."""
    models, _ = make_package(tmp_path)
    cache = tmp_path / "cache"
    clips = []
    for i, split in enumerate(["train", "train", "val"]):
        d = cache / f"c{i}"
        d.mkdir(parents=True)
        t = 24
        np.save(d / "tube128.npy", moving_clip(t, 128, step=1 + i, seed=i))
        rng = np.random.default_rng(i)
        np.savez(d / "meta.npz", sup=rng.uniform(-0.5, 0.5, (t, 33, 2)).astype(np.float32),
                 iris=rng.uniform(-0.1, 0.1, (t, 2, 2)).astype(np.float32))
        clips.append({"name": f"c{i}", "split": split})
    (cache / "index.json").write_text(json.dumps({"version": 1, "fps": 15, "clips": clips}))
    env = {**os.environ, "FACECODEC_MODELS": str(models)}
    fit = ("fit-priors", "--model", "tiny_codec", "--cache", str(cache))
    r = run(*fit, "--deadband", "4", "--operating-points", "0,16", "--out", "p/main.json",
            cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    main = Prior.load(tmp_path / "p" / "main.json")
    points = {s: Prior.load(tmp_path / "p" / "operating_points" / f"deadband{s}.json")
              for s in (0, 16)}
    assert main.info["deadband"] == 4 and points[16].info["deadband"] == 16
    bits = {s: p.info["val_bits_per_frame"]["prior"]["total"] for s, p in points.items()}
    assert bits[16] < main.info["val_bits_per_frame"]["prior"]["total"] < bits[0]
    r = run(*fit, "--deadband", "16", "--out", "alone.json", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert Prior.load(tmp_path / "alone.json").id == points[16].id

    r = run(*fit, "--deadband", "4", "--operating-points", "16", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    monkeypatch.setenv("FACECODEC_MODELS", str(models))
    package = find_model("tiny_codec")
    assert package.prior().id == main.id == package.prior(4).id  # prior.json, fitted at 4
    assert package.prior(16).id == points[16].id  # operating_points/deadband16.json
    assert package.prior(8).id == main.id  # no operating point there: the default
    assert set(package.operating_points()) == {16.0}


def test_the_report_says_where_the_rate_went_over_time(tmp_path, monkeypatch):
    """bitrate --report: the all-in rate per 10-s window, split into sources, frame
    packets, sound and the rest, accounts for every byte of the file (but the end chunk)."""
    from facecodec.bitstream.report import analyse, to_markdown
    from facecodec.bitstream.values import encode_values

    table = TABLES["sup_unsup_expr"]
    frames = random_walk(table, 330, seed=3, step=0.004)  # 22 s at 15 fps
    values = {s.name: np.stack([f[s.name] for f in frames]) for s in table}
    path = tmp_path / "v.fcs"
    prior = Prior.untrained(table)
    prior.save(tmp_path / "untrained.json")
    monkeypatch.setenv("FACECODEC_PRIORS", str(tmp_path))  # where a reader finds it
    size = encode_values(values, Fraction(15), prior, path)
    summary = analyse(path).summary()
    windows = summary["windows"]
    assert [w["start_s"] for w in windows] == [0.0, 10.0, 20.0]
    assert [round(w["seconds"], 6) for w in windows] == [10.0, 10.0, 2.0]
    counted = sum(w["all_in_kbps"] * w["seconds"] * 1000 / 8 for w in windows)
    assert size - 16 <= round(counted) <= size  # all but the end chunk
    assert all(w["sources_kbps"] == w["audio_kbps"] == 0 for w in windows)
    assert "Rate over time" in to_markdown([summary])
