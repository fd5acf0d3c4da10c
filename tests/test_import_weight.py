"""What importing a part of facecodec loads (issue 21): each module imports its dependencies
at its top, so the light entry points must not reach the heavy ones. The bitstream is numpy +
constriction only; ``import facecodec`` and the command line's start (``facecodec --help``,
the light commands) load none of torch, MediaPipe, OpenCV or PyAV; the sender package loads
MediaPipe with its first tracker, not on import. Each case runs in a fresh interpreter."""

import json
import pkgutil
import subprocess
import sys

import pytest

import facecodec.bitstream

HEAVY = ("torch", "mediapipe", "cv2", "av", "matplotlib", "onnxruntime", "tqdm")


def loaded_after(*modules: str) -> set[str]:
    """The top-level packages of HEAVY that importing ``modules`` loads."""
    code = (f"import importlib, json, sys\nfor m in {list(modules)!r}:\n"
            "    importlib.import_module(m)\n"
            f"print(json.dumps(sorted({{n.split('.')[0] for n in sys.modules}} & {set(HEAVY)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_bitstream_needs_no_torch_nor_video_libraries() -> None:
    modules = [f"facecodec.bitstream.{m.name}"
               for m in pkgutil.iter_modules(facecodec.bitstream.__path__)]
    assert len(modules) > 10
    assert loaded_after(*modules) == set()


@pytest.mark.parametrize("modules", [("facecodec",), ("facecodec.cli", "facecodec.defaults")])
def test_the_light_entry_points_stay_light(modules) -> None:
    # facecodec.cli registers every command: this is what `facecodec --help` imports
    assert loaded_after(*modules) == set()


def test_the_sender_package_loads_mediapipe_on_first_use_only() -> None:
    assert "mediapipe" not in loaded_after("facecodec.sender", "facecodec.receiver.expression")
