"""Misuse of the API and of output paths fails at once, as a FacecodecError with a clear
message (issue #16, part 5). No model is loaded: every check here runs before it."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest

import facecodec.files
from facecodec.cli import Interrupted, _interrupt
from facecodec.codec import Encoder
from facecodec.errors import FacecodecError, InputError
from facecodec.files import VIDEO_SUFFIXES, check_output


@pytest.mark.parametrize("kwargs, message", [
    ({"fps": math.nan}, "fps must be a finite number"),
    ({"fps": math.inf}, "fps must be a finite number"),
    ({"fps": 0}, "fps must be"),
    ({"fps": -15}, "fps must be"),
    ({"fps": 1e-6}, r"fps must be .* in \[1/60, 240\] \(what the stream header carries\)"),
    ({"fps": 241.0}, "fps must be"),
    ({"fps": "15"}, "fps must be"),
    ({"packet_frames": 0}, r"packet_frames must be an integer in 1\.\.255, got 0"),
    ({"packet_frames": 256}, "packet_frames"),
    ({"packet_frames": 2.5}, "packet_frames"),
    ({"intra_period": -1}, r"intra_period must be None \(2 s\) or an integer in 1\.\.65535"),
    ({"intra_period": 0}, "intra_period"),
    ({"intra_period": 65536}, "intra_period"),
    ({"source_codec": "gif"}, "source_codec must be one of webp, jpeg, png, got 'gif'"),
    ({"n_sources": 0}, "n_sources must be None or an integer in 1.."),
    ({"n_sources": 256}, "n_sources"),
    ({"n_sources": True}, "n_sources"),
    ({"source_quality": 0}, r"source_quality must be an integer in 1\.\.100"),
    ({"source_quality": 101}, "source_quality"),
    ({"deadband": math.nan}, "deadband must be None .* or a finite number >= 0"),
    ({"deadband": -1.0}, "deadband"),
    ({"max_num_faces": 0}, "max_num_faces"),
    ({"prior": "priors/x.json"}, "prior must be None or a .*Prior"),
    ({"recovery_period": -1}, r"recovery_period must be an integer in 0\.\.255"),
    ({"recovery_period": 256}, "recovery_period"),
    ({"redundancy": 2}, "redundancy must be 0 or 1"),
    ({"fec": 1}, r"fec must be 0 \(off\) or an integer in 2\.\.16"),
    ({"fec": 17}, "fec"),
    ({"fec": True}, "fec"),
    ({"fec": 4.0}, "fec"),
])
def test_encoder_arguments_are_checked_at_construction(kwargs, message):
    # a model name that does not exist: the argument must fail first, before any loading
    with pytest.raises(InputError, match=message) as e:
        Encoder("no_such_model", **kwargs)
    assert isinstance(e.value, FacecodecError) and "\n" not in str(e.value)


def test_output_that_is_the_input_is_refused(tmp_path):
    video = tmp_path / "x.mp4"
    video.write_bytes(b"precious")
    for dst in (video, tmp_path / "." / "x.mp4", Path(os.path.relpath(video))):
        with pytest.raises(InputError, match="the output is the input"):
            check_output(dst, inputs=[video])
    (tmp_path / "link.fcs").symlink_to(video)
    os.link(video, tmp_path / "hard.fcs")
    for other in ("link.fcs", "hard.fcs"):
        with pytest.raises(InputError, match="would destroy the input"):
            check_output(tmp_path / other, inputs=[None, video], suffixes=(".fcs",))
    assert video.read_bytes() == b"precious"
    assert check_output(tmp_path / "y.fcs", inputs=[video], suffixes=(".fcs",))


def test_output_directory_must_exist_and_be_writable(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"cannot write there: .*nodir: no such directory"):
        check_output(tmp_path / "nodir" / "x.fcs")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InputError, match="file: is not a directory"):
        check_output(tmp_path / "file" / "x.fcs")
    with pytest.raises(InputError, match="is a directory, not a file name"):
        check_output(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: pretend it cannot
            monkeypatch.setattr(facecodec.files, "_writable", lambda d: d != locked)
        with pytest.raises(InputError, match="locked: permission denied"):
            check_output(locked / "x.fcs")
    finally:
        locked.chmod(0o755)


def test_output_suffix_names_the_accepted_ones(tmp_path):
    for name in ("x.webm", "x.gif", "x"):
        with pytest.raises(InputError, match=r"must end in \.mp4, \.m4v, \.mov or \.mkv"):
            check_output(tmp_path / name, suffixes=VIDEO_SUFFIXES, writes="decode writes")
    with pytest.raises(InputError, match=r"x: decode writes: .* it has no extension"):
        check_output(tmp_path / "x", suffixes=VIDEO_SUFFIXES, writes="decode writes")
    with pytest.raises(InputError, match=r"must end in \.fcs, not '\.mp4'"):
        check_output(tmp_path / "out.mp4", suffixes=(".fcs",))
    assert check_output(tmp_path / "X.MKV", suffixes=VIDEO_SUFFIXES)  # any case


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_signal_handler_raises_for_cleanup_then_restores_the_default(signum):
    """The handler turns the signal into an exception (so ``except BaseException`` removes
    the .part file) that ``except Exception`` does not catch; a second signal kills."""
    previous = signal.signal(signum, _interrupt)
    try:
        with pytest.raises(Interrupted) as e:
            try:
                signal.raise_signal(signum)
            except Exception:  # what the library's error handling catches
                pytest.fail("an except Exception swallowed the interruption")
        assert e.value.signum == signum
        assert signal.getsignal(signum) == signal.SIG_DFL
    finally:
        signal.signal(signum, previous)

