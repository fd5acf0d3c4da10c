"""The error types users see. Every expected failure (bad input, corrupt stream, wrong
model) raises a subclass of :class:`FacecodecError`; the CLI prints its message on one
line and exits non-zero, without a traceback."""

from __future__ import annotations


class FacecodecError(Exception):
    """Base class of every error facecodec raises on purpose."""


class InputError(FacecodecError):
    """An input file or value the user gave cannot be used (unreadable video, no face...)."""


class FormatError(FacecodecError):
    """A ``.fcs`` stream or a prior file is malformed.

    ``offset`` is the byte offset in the stream where the problem was found, so a
    user (or a second decoder's author) can look at the exact place.
    """

    def __init__(self, message: str, offset: int | None = None, source: str | None = None):
        self.problem = message
        self.offset = offset
        self.source = source
        where = []
        if source:
            where.append(str(source))
        if offset is not None:
            where.append(f"byte {offset}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ModelMismatchError(FormatError):
    """The stream was made with another model or prior than the one given to decode it."""
