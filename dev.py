#!/usr/bin/env python3
"""Set up a virtual environment and run the demo or the test suite.

    python3 dev.py demo    # encode -> decode -> bitrate report on the built-in example
    python3 dev.py test    # the whole test suite (what CI runs)

Needs only Python 3.11 and pip. The environment lives in .venv/ and is reinstalled
when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".facecodec-installed"


def setup() -> None:
    """Create .venv and install the package with its dev, export, identity and call extras, once
    per pyproject.toml."""
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return
    start = time.monotonic()
    print(f"dev.py: setting up {VENV} (first run, or pyproject.toml changed): about 6 "
          "minutes and 2.3 GB here", flush=True)
    if not PY.exists():
        print("[1/3] creating the virtual environment", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # pip's own lines (one per package collected, a bar per download) are the progress
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check",
           "--progress-bar", "on"]
    # torch first and alone: pinned to the local CPU build, so that nothing resolves
    # a CUDA build of several GB on the way (see docs/environment.md).
    print("[2/3] PyTorch 2.13.0 (CPU build)", flush=True)
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    # the export extra too: the tests convert to Core ML and check ONNX with onnxruntime;
    # and identity: the tests score the eval's identity distance on known pairs; and call:
    # the tests make a loopback call over WebRTC (aiortc)
    print("[3/3] facecodec and its dependencies (MediaPipe, PyAV, constriction, Core ML "
          "and ONNX tools, dlib, aiortc...)", flush=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev,export,identity,call]"], check=True)
    STAMP.write_text(want)
    print(f"dev.py: {VENV} ready in {(time.monotonic() - start) / 60:.1f} min", flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"setup", "demo", "test"}:
        print(__doc__)
        return 2
    setup()
    if argv[0] == "demo":
        return subprocess.call([str(VENV / "bin" / "facecodec"), "demo", *argv[1:]], cwd=ROOT)
    if argv[0] == "test":
        return subprocess.call([str(PY), "-m", "pytest", "-q", *argv[1:]], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
