"""``facecodec eval`` end to end on one short clip: a synthetic one in a cache made here
(always), a real excerpt through the sender (needs shared/data), and the error paths.
Everything is written to tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from eval_helpers import moving_clip

from facecodec.cli import cli
from facecodec.errors import InputError
from facecodec.eval.report import REPO, check_sheet_dir

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"


def fake_cache(root: Path, name: str, frames: np.ndarray) -> Path:
    """A prepare-data cache entry for ``frames`` and a one-row manifest naming it."""
    import cv2

    d = root / "cache" / name
    d.mkdir(parents=True)
    np.save(d / "tube256.npy", frames)
    np.save(d / "tube128.npy", np.stack([cv2.resize(f, (128, 128)) for f in frames]))
    t = len(frames)
    np.savez(d / "meta.npz", sup=np.zeros((t, 33, 2), np.float32),
             iris=np.zeros((t, 2, 2), np.float32), landmarks=np.zeros((t, 478, 3), np.float32),
             yaw=np.linspace(-0.2, 0.3, t, dtype=np.float32), pitch=np.zeros(t, np.float32),
             roll=np.zeros(t, np.float32), valid=np.ones(t, bool),
             box=np.zeros((t, 3), np.float32), segment=np.zeros(t, np.int32),
             eyes_open=np.ones(t, np.float32))
    manifest = root / "data" / "manifest.csv"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(f"file,split,notes\ndata/clips/{name}.mp4,val,person=p\n")
    return manifest


def test_cli_end_to_end_on_a_cached_clip(tmp_path: Path) -> None:
    manifest = fake_cache(tmp_path, "pan", moving_clip(12))
    report = tmp_path / "docs" / "EVAL.md"
    result = CliRunner().invoke(cli, [
        "eval", "--manifest", str(manifest), "--cache", str(tmp_path / "cache"),
        "--methods", "zero-bit,x264", "--rates", "20,60", "--max-frames", "10",
        "--report", str(report), "--sheet-dir", str(tmp_path / "sheet"), "--no-progress"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "docs" / "eval" / "results.json").read_text())
    rows = {(s["method"], s["target_kbps"]): s for s in doc["scores"]}
    assert set(rows) == {("zero-bit", None), ("x264", 20.0), ("x264", 60.0)}
    held = rows["zero-bit", None]
    assert held["frames"] == 10 and held["kbps_all"] == 0 and held["motion_ratio"] == 0
    assert held["nme"] is None and held["face_found"] == 0  # no face in a synthetic pan
    assert held["identity"] is None  # nor for the face descriptor
    assert rows["x264", 20.0]["kbps_all"] < rows["x264", 60.0]["kbps_all"]
    assert rows["x264", 60.0]["psnr"] > rows["x264", 20.0]["psnr"]
    text = report.read_text()
    assert "| zero-bit |" in text and "eval/rate_lpips.png" in text
    for png in ("rate_lpips.png", "rate_psnr.png", "rate_nme.png"):
        assert (tmp_path / "docs" / "eval" / png).stat().st_size > 1000
    assert (tmp_path / "sheet" / "contact_pan.png").is_file()
    assert "contact_pan.png" not in {p.name for p in (tmp_path / "docs").rglob("*")}


@pytest.mark.slow
@pytest.mark.skipif(not CLIPS.is_dir(), reason="needs the shared clips next to the repo")
def test_cli_on_a_real_excerpt_through_the_sender(tmp_path: Path) -> None:
    """A folder of one video: tubes made by the sender front end, landmarks found."""
    folder = tmp_path / "clips"
    folder.mkdir()
    with av.open(str(CLIPS / "lp_d7.mp4")) as src, \
            av.open(str(folder / "excerpt.mp4"), "w") as dst:
        out = dst.add_stream("libx264", rate=15, options={"crf": "18"})
        for i, frame in enumerate(src.decode(video=0)):
            if i == 0:
                out.width, out.height, out.pix_fmt = frame.width, frame.height, "yuv420p"
            if i >= 16:
                break
            image = frame.to_ndarray(format="rgb24")
            for packet in out.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                dst.mux(packet)
        for packet in out.encode(None):
            dst.mux(packet)
    json_path = tmp_path / "r.json"
    result = CliRunner().invoke(cli, [
        "eval", "--clips", str(folder), "-m", "zero-bit", "--json", str(json_path),
        "--no-sheet", "--no-progress"])
    assert result.exit_code == 0, result.output
    (score,) = json.loads(json_path.read_text())["scores"]
    assert score["clip"] == "excerpt" and score["frames"] >= 8
    assert score["face_found"] == 1.0 and 0 <= score["nme"] < 0.2
    if doc_identity := json.loads(json_path.read_text())["identity"]:  # the extra installed
        assert "dlib" in doc_identity and 0 < score["identity"] < 0.5  # the same person


def test_errors_are_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "facecodec", "eval", "-m", "nope",
                           "--clips", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("facecodec: error:")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_contact_sheet_never_goes_into_the_repository(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="third-party"):
        check_sheet_dir(REPO / "docs" / "eval")
    check_sheet_dir(REPO / "out" / "eval")  # git-ignored
    check_sheet_dir(tmp_path)


def test_a_video_without_a_face_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    with av.open(str(folder / "pan.mp4"), "w") as dst:
        out = dst.add_stream("libx264", rate=15)
        out.width = out.height = 256
        out.pix_fmt = "yuv420p"
        for image in moving_clip(6):
            for packet in out.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                dst.mux(packet)
        for packet in out.encode(None):
            dst.mux(packet)
    json_path = tmp_path / "r.json"
    result = CliRunner().invoke(cli, [
        "eval", "--clips", str(folder), "-m", "zero-bit", "--json", str(json_path),
        "--no-sheet", "--no-progress"])
    assert result.exit_code == 0, result.output
    doc = json.loads(json_path.read_text())
    assert doc["scores"] == [] and doc["skipped"][0][0] == "pan"
    assert "no face" in doc["skipped"][0][1]


def test_reuse_takes_the_earlier_scores_and_only_those_that_match(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """--reuse: a method with the same settings on the same clips is not run again and
    keeps its scores (nor is the original tracked for them); a different --max-frames
    makes it run."""
    from facecodec.eval import runner
    from facecodec.eval.classic import ClassicCodec

    manifest = fake_cache(tmp_path, "pan", moving_clip(12))
    base = ["eval", "--manifest", str(manifest), "--cache", str(tmp_path / "cache"),
            "--methods", "zero-bit,x264", "--rates", "20", "--no-sheet", "--no-progress"]
    first = tmp_path / "first.json"
    result = CliRunner().invoke(cli, [*base, "--max-frames", "10", "--json", str(first)])
    assert result.exit_code == 0, result.output

    def refuse(*args, **kwargs):
        raise AssertionError("x264 ran although its scores were reused")

    monkeypatch.setattr(ClassicCodec, "run", refuse)
    track = runner.track_landmarks

    def untracked(*args, **kwargs):
        raise AssertionError("the original was tracked although every score was reused")

    monkeypatch.setattr(runner, "track_landmarks", untracked)
    second = tmp_path / "second.json"
    report = tmp_path / "EVAL.md"
    result = CliRunner().invoke(cli, [*base, "--max-frames", "10", "--json", str(second),
                                      "--reuse", str(first), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "Reused from first.json" in report.read_text()
    before, after = (json.loads(p.read_text()) for p in (first, second))
    assert sorted(after["reused"]["scored_at"]) == ["x264", "zero-bit"]
    assert after["scores"] == before["scores"]

    monkeypatch.setattr(runner, "track_landmarks", track)
    result = CliRunner().invoke(cli, [*base, "--max-frames", "8", "--json", str(second),
                                      "--reuse", str(first)])
    assert result.exit_code != 0 and "x264 ran" in repr(result.exception)


def test_reuse_of_a_file_that_is_not_results_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("[1, 2]")
    proc = subprocess.run([sys.executable, "-m", "facecodec", "eval", "-m", "zero-bit",
                           "--clips", str(tmp_path), "--reuse", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"facecodec: error: {bad}: not a results.json of facecodec eval"


def test_a_stopped_run_resumes_from_its_journal(tmp_path: Path, monkeypatch) -> None:
    """Each score is journaled as it is made: a run stopped half-way, run again on the
    same commit, takes the scores it had and runs only the rest; the journal is deleted
    with the results written. A journal of another commit is not used."""
    from facecodec.eval import report as report_mod
    from facecodec.eval.classic import ClassicCodec
    from facecodec.eval.methods import HeldFrame

    monkeypatch.setattr(report_mod, "git_commit", lambda: "abc1234")
    manifest = fake_cache(tmp_path, "pan", moving_clip(12))
    results = tmp_path / "results.json"
    base = ["eval", "--manifest", str(manifest), "--cache", str(tmp_path / "cache"),
            "--methods", "zero-bit,x264", "--rates", "20", "--max-frames", "10",
            "--no-sheet", "--no-progress", "--json", str(results)]
    run_x264 = ClassicCodec.run

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ClassicCodec, "run", stop)
    result = CliRunner().invoke(cli, base)
    assert result.exit_code != 0 and not results.exists()
    journal = tmp_path / "results.partial.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["method"] == "zero-bit"

    def refuse(*args, **kwargs):
        raise AssertionError("zero-bit ran although its score was journaled")

    monkeypatch.setattr(ClassicCodec, "run", run_x264)
    monkeypatch.setattr(HeldFrame, "run", refuse)
    report = tmp_path / "EVAL.md"
    result = CliRunner().invoke(cli, [*base, "--report", str(report)])
    assert result.exit_code == 0, result.output
    doc = json.loads(results.read_text())
    assert sorted(s["method"] for s in doc["scores"]) == ["x264", "zero-bit"]
    assert doc["resumed_scores"] == 1 and "after resuming 1 scores" in report.read_text()
    assert not journal.exists()

    # stopped again, then run at another commit: it starts over
    results.unlink()
    monkeypatch.undo()
    monkeypatch.setattr(report_mod, "git_commit", lambda: "abc1234")
    monkeypatch.setattr(ClassicCodec, "run", stop)
    assert CliRunner().invoke(cli, base).exit_code != 0 and journal.exists()
    monkeypatch.setattr(report_mod, "git_commit", lambda: "def5678")
    monkeypatch.setattr(ClassicCodec, "run", run_x264)
    monkeypatch.setattr(HeldFrame, "run", refuse)
    result = CliRunner().invoke(cli, base)
    assert result.exit_code != 0 and "zero-bit ran" in repr(result.exception)


def test_a_run_without_the_cli(tmp_path: Path) -> None:
    """The CLI is a thin layer: the same run, driven by a typed request, from Python."""
    from facecodec.eval.session import EvalRequest, run_eval

    manifest = fake_cache(tmp_path, "pan", moving_clip(8))
    said: list[str] = []
    request = EvalRequest(methods=["zero-bit"], rates=[20.0], manifest=manifest,
                          cache=tmp_path / "cache", max_frames=6, sheet=False,
                          progress=False, report=tmp_path / "R.md", command="a test")
    assert request.results_path == tmp_path / "r" / "results.json"
    run_eval(request, say=said.append, warn=said.append)
    doc = json.loads(request.results_path.read_text())
    assert doc["command"] == "a test" and [s["method"] for s in doc["scores"]] == ["zero-bit"]
    assert any(line.startswith("report: ") for line in said)
    with pytest.raises(InputError, match="the report is Markdown"):
        run_eval(EvalRequest(methods=["zero-bit"], rates=[20.0], report=tmp_path / "R.txt"),
                 say=said.append, warn=said.append)
