"""Limits on what a ``.fcs`` stream may ask of a receiver (issue #16: nothing in a stream
is trusted).

A stream comes from a network peer. Every number in it that makes the receiver allocate,
decode or build something is bounded here, once, so the sender (which must never write
a stream a receiver refuses), the container reader and the decoder check the same values.
docs/format.md, section 6, "Limits outside the container", lists them.
"""

from __future__ import annotations

MAX_SOURCES = 8
"""Most source frames a stream may declare (header ``n_sources``) or send (slots
``0 .. MAX_SOURCES - 1``). The paper and the Encoder use 3; the receiver fuses all
sources in one generator graph traced per source count (~3 MB and ~8 s each), so an
unbounded count (the u8 allows 255) would make it trace up to 255 graphs for one stream."""

MAX_SOURCE_SIDE = 1024
"""Largest width or height of a source image, checked from the image's header bytes
before it is decoded. The face tube is 256 pixels; 1024 leaves room for sharper sources
while bounding a decoded image at 3 MiB (a 16383x16383 image, a few hundred KB of PNG or
WebP, would decode to 768 MiB, and OpenCV's working buffers take several times that)."""

MODEL_ID_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,63}"
"""What a stream's model id may be: a name looked up among the installed models
(:func:`facecodec.models.package.find_installed_model`), never a path. ``..`` is refused
on top of the pattern."""

MAX_REF = 255
"""The farthest back a frame may refer (frames); a reader keeps that many frames' states
and a writer that many frames' coder states (recovery points, feedback)."""
