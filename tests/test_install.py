"""The package installs like any other (issue 21): an sdist and a wheel built from the
repository hold the code, the shipped models, priors and the demo's photo, and nothing of
the development tree; installed into a fresh environment (not editable), the codec encodes
and decodes from outside the repository with the default model and prior found in the
installed copy, and writes the same stream as the repository's copy."""

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from facecodec.codec import Encoder
from facecodec.examples import make_example_video
from facecodec.models.package import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["facecodec/_examples/astronaut.jpg", "facecodec/_priors/landmarks.json",
           f"facecodec/_models/{DEFAULT_MODEL}/operating_points/deadband8.json",
           *(f"facecodec/_models/{m}/{f}"
             for m in ("fom", "frontalizer_sup", "frontalizer_sup_unsup", DEFAULT_MODEL)
             for f in ("config.yaml", "sender.safetensors", "receiver.safetensors",
                       "MODEL_CARD.md", "prior.json"))]
MAX_WHEEL_MB = 40  # the four models are ~20 MB; more means something else got in
# What only the repository holds: never in an sdist or a wheel.
DEV_TREE = ("runs/", "out/", "tests/", "docs/", "bench/", "configs/", ".ci/", "build/",
            "dist/", "dev.py")

# what the installed copy resolves, printed as JSON by a script run in the fresh venv
WHERE = """
import json, facecodec
from facecodec.bitstream.prior import find_prior, prior_dirs
from facecodec.models.package import find_model, model_dirs
from facecodec.resources import shipped, source_checkout
from facecodec.sender.prepare import DEFAULT_MANIFEST
import facecodec.eval.report  # dev tools import cleanly from an installed copy
m = find_model()
p = m.prior()
print(json.dumps({"package": facecodec.__file__, "model": str(m.path), "prior": p.id,
                  "found": find_prior(p.id) is not None, "examples": str(shipped("examples")),
                  "model_dirs": [str(d) for d in model_dirs()],
                  "prior_dirs": [str(d) for d in prior_dirs()],
                  "checkout": source_checkout(), "manifest": str(DEFAULT_MANIFEST)}))
"""


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600,
                       **kw)
    assert r.returncode == 0, f"{cmd}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """An sdist of the repository and the wheel pip builds from it (offline: setuptools
    from this environment, no build isolation). Building from the sdist, as `python -m
    build` does, keeps the build out of the work tree and checks the sdist is complete."""
    out = tmp_path_factory.mktemp("dist")
    start = time.monotonic()
    r = run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
             "print(build_meta.build_sdist(sys.argv[1]))", out], cwd=ROOT)
    sdist = out / r.stdout.strip().splitlines()[-1]
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-q", "-w", out, sdist])
    (wheel,) = out.glob("facecodec-*.whl")
    return {"sdist": sdist, "wheel": wheel, "seconds": time.monotonic() - start}


def test_sdist_and_wheel_hold_the_package_and_its_data_only(built):
    with tarfile.open(built["sdist"]) as t:
        top = f"{built['sdist'].name.removesuffix('.tar.gz')}/"
        in_sdist = [n.removeprefix(top) for n in t.getnames()]
    with zipfile.ZipFile(built["wheel"]) as z:
        in_wheel = z.namelist()
    for names in (in_sdist, in_wheel):
        bad = [n for n in names if n.startswith(DEV_TREE) or "__pycache__" in n
               or n.endswith((".pyc", ".pt", ".mp4"))]
        assert not bad, bad
    assert {"pyproject.toml", "README.md", "models/__init__.py", "priors/__init__.py",
            "examples/astronaut.jpg"} <= set(in_sdist)
    # every module of the code (pyproject.toml lists the packages by hand) and the data
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "facecodec").rglob("*.py")}
    assert modules <= set(in_wheel), sorted(modules - set(in_wheel))
    assert set(SHIPPED) <= set(in_wheel), sorted(set(SHIPPED) - set(in_wheel))
    assert built["wheel"].stat().st_size < MAX_WHEEL_MB * 2**20


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (not editable). Its dependencies (torch,
    mediapipe...) come from this environment through a .pth line, after its own
    site-packages: a venv made from this interpreter with --system-site-packages would see
    the base Python's packages, not this venv's, and installing them would download GBs.
    A path in a .pth is only put on sys.path (its own .pth files, such as this
    environment's editable-install hook, are not run), so `facecodec` can only be the
    installed copy."""
    root = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", root])
    py = root / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip())
    (site / "zz_facecodec_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", "-q", built["wheel"]])
    return root


def test_installed_copy_encodes_and_decodes_outside_the_repository(venv, tmp_path):
    py = venv / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip()).resolve()
    env = {k: v for k, v in os.environ.items()
           if k not in ("FACECODEC_MODELS", "FACECODEC_PRIORS", "PYTHONPATH")}
    work = tmp_path / "work"  # outside the repository
    work.mkdir()

    where = json.loads(run([py, "-c", WHERE], cwd=work, env=env).stdout)
    for key in ("package", "model", "examples"):
        assert Path(where[key]).resolve().is_relative_to(site), where
    assert [Path(d).resolve() for d in where["model_dirs"]] == [site / "facecodec/_models"]
    assert [Path(d).resolve() for d in where["prior_dirs"]] == [site / "facecodec/_models",
                                                                site / "facecodec/_priors"]
    assert where["found"] and where["checkout"] is None
    assert not Path(where["manifest"]).resolve().is_relative_to(site)

    # the demo's input, made by the installed copy from its own photo: 2 s at 15 fps
    run([py, "-c", "import sys; from pathlib import Path; from facecodec.examples "
         "import make_example_video as m; m(Path(sys.argv[1]), seconds=2.0)", "in.mp4"],
        cwd=work, env=env)
    run([py, "-m", "facecodec", "encode", "in.mp4", "in.fcs"], cwd=work, env=env)
    run([py, "-m", "facecodec", "decode", "in.fcs", "out.mp4"], cwd=work, env=env)
    report = run([py, "-m", "facecodec", "bitrate", "--report", "--json", "in.fcs"],
                 cwd=work, env=env)
    (summary,) = json.loads(report.stdout)
    assert summary["frames"] == 30
    assert (work / "out.mp4").stat().st_size > 0

    # the repository's copy writes the same bytes from the same video
    video = make_example_video(tmp_path / "in.mp4", seconds=2.0)
    assert video.read_bytes() == (work / "in.mp4").read_bytes()
    Encoder().encode_file(video, tmp_path / "repo.fcs", progress=False)
    assert (tmp_path / "repo.fcs").read_bytes() == (work / "in.fcs").read_bytes()
