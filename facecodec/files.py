"""Checks on the file a command will write, made before any work: a mistyped output path
must fail at once, in one line, not after a minute of tracking and with a traceback, and
it must never replace the input it is made from.

Torch-free and cheap: the CLI calls these before it loads a model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from facecodec.errors import InputError

# Containers PyAV's H.264 writer (libx264) can mux into; .webm, .gif or no extension make
# it raise a ValueError only once the first frame is rendered
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")


def check_output(dst: str | Path, inputs: Iterable[str | Path | None] = (),
                 suffixes: tuple[str, ...] | None = None, writes: str = "") -> Path:
    """Raise :class:`InputError` unless ``dst`` can be written: it is none of ``inputs``
    (same resolved path or same file through a link), its suffix is one of ``suffixes``
    (lower case, with the dot; None: any), and its directory exists and is writable.
    ``writes`` says what the output is, for the suffix message ("encode writes a .fcs
    stream")."""
    dst = Path(dst)
    for src in inputs:
        if src is not None and _same_file(Path(src), dst):
            raise InputError(f"{dst}: the output is the input {src}; writing it would "
                             "destroy the input: choose another output name")
    if dst.is_dir():
        raise InputError(f"{dst}: is a directory, not a file name")
    if suffixes is not None and dst.suffix.lower() not in suffixes:
        choices = ", ".join(suffixes[:-1]) + (" or " if len(suffixes) > 1 else "") + suffixes[-1]
        found = f"not '{dst.suffix}'" if dst.suffix else "it has no extension"
        raise InputError(f"{dst}: {writes + ': ' if writes else ''}the output name must end "
                         f"in {choices}, {found}")
    parent = dst.parent
    if not parent.is_dir():
        state = "is not a directory" if parent.exists() else "no such directory"
        raise InputError(f"{dst}: cannot write there: {parent}: {state}")
    if not _writable(parent):
        raise InputError(f"{dst}: cannot write there: {parent}: permission denied")
    return dst


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:  # a hard link or another name of the same file
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _writable(directory: Path) -> bool:
    # the temporary .part file is created there and renamed: write + search permission
    return os.access(directory, os.W_OK | os.X_OK)
