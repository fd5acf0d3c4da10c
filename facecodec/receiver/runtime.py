"""The receiver's runtime: the per-frame generator runs on PyTorch, and only on PyTorch.

ONNX (and Core ML) are export formats for apps (``facecodec export``, docs/export.md): the
receiver never traces a graph, writes nothing outside its output and does not import
:mod:`facecodec.export`. Why PyTorch and not onnxruntime, with the measurements:
docs/export.md, "The receiver runs on PyTorch".

The ``backend`` option stays so that scripts naming it keep working: ``auto`` and
``torch`` select PyTorch; ``onnxruntime`` is refused with a one-line :class:`InputError`
pointing to the export.
"""

from __future__ import annotations

import os

from facecodec.errors import InputError

BACKENDS = ("auto", "torch")
"""The receiver's backends; both run the generator on PyTorch."""

_EXPORT_ONLY = ("onnxruntime",)  # names of former backends, refused with a pointer


def choose_backend(backend: str | None) -> str:
    """``backend`` or ``$FACECODEC_BACKEND`` or ``auto``, resolved to what will run
    (``torch``)."""
    given = backend or os.environ.get("FACECODEC_BACKEND") or "auto"
    where = "" if backend else " (from $FACECODEC_BACKEND)"
    if given in _EXPORT_ONLY:
        raise InputError(f"backend {given!r}{where}: the receiver runs on PyTorch only "
                         f"(auto or torch); ONNX is an export format: facecodec export onnx, "
                         f"docs/export.md")
    if given not in BACKENDS:
        raise InputError(f"unknown backend {given!r}{where} (one of {', '.join(BACKENDS)})")
    return "torch"
