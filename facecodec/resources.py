"""Where the installed product finds what it ships: models, priors and the demo's photo.

They are package data, found through :mod:`importlib.resources` whichever way facecodec
was installed. The repository keeps them at its top level (``models/``, ``priors/``,
``examples/``); ``pyproject.toml`` maps those folders to the packages
``facecodec._models``, ``facecodec._priors`` and ``facecodec._examples`` (setuptools
``package-dir``; each folder has an ``__init__.py`` so that editable installs import it as
a regular package). So:

- ``pip install .`` or a wheel copies them into ``site-packages/facecodec/_models`` etc.;
- ``pip install -e .`` (``python3 dev.py setup``) points the packages at the checkout's
  folders, so a model exported or a prior fitted there is found at once.

On top of the shipped ones, ``$FACECODEC_MODELS`` and ``$FACECODEC_PRIORS``
(colon-separated folders, searched first) add models and priors (:func:`search_path`).

A model's own priors live in its folder (``models/<name>/prior.json`` and
``operating_points/``); ``priors/`` holds the priors that belong to no model (the
landmark-only table of the value-stream tools) and the ones a user installs.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from facecodec.errors import InputError

KINDS = ("models", "priors", "examples")


def shipped(kind: str) -> Path:
    """The folder of the shipped ``models``, ``priors`` or ``examples``, on disk."""
    if kind not in KINDS:
        raise ValueError(f"no shipped data {kind!r} (have {KINDS})")
    package = f"facecodec._{kind}"
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise InputError(f"facecodec's package data {package} is missing: install facecodec "
                         "(pip install ., or python3 dev.py setup in a checkout) instead of "
                         "running it from a source folder") from None
    if not isinstance(root, Path):  # e.g. a zip import: the weights must be real files
        raise InputError(f"facecodec's package data {package} is not a folder on disk "
                         f"({root}): install facecodec unzipped")
    return root


def search_path(kind: str) -> list[Path]:
    """Where ``models`` or ``priors`` are looked up, in order: ``$FACECODEC_MODELS`` /
    ``$FACECODEC_PRIORS`` (colon-separated folders), then the shipped ones."""
    if kind not in ("models", "priors"):
        raise ValueError(f"no search path for {kind!r}")
    env = os.environ.get(f"FACECODEC_{kind.upper()}", "")
    return [*(Path(p) for p in env.split(":") if p), shipped(kind)]


def source_checkout() -> Path | None:
    """The repository facecodec runs from (an editable install), or None when it runs from
    an installed copy. Only developer tools use it (their data sits beside a checkout, in
    ``../shared``); the product never does."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        return root
    return None
