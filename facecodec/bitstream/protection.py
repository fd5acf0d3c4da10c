"""Loss protection of a stream: what the writer adds so a receiver that lost packets
resumes without a back channel, and the named presets a user chooses from.

The knobs are those of :class:`facecodec.bitstream.container.FcsWriter`; docs/format.md
(section 6) says what each puts in the stream. The presets are operating points chosen
from ``bench/loss.py`` runs on the val clips (the figures: docs/format.md, "Presets", and
docs/BENCHMARKS.md, "loss"):

- ``none``: the plain stream, for files and calls with a feedback channel;
- ``light``: chained recovery points every 8 frames, each sent once: a loss freezes the
  picture for at most a few frames, at a small cost in bits;
- ``strong``: recovery points every 6 frames referring to the intra frame, each intra
  frame sent three times and a parity chunk after every 3 frame packets: for lossy links
  without feedback, at about twice the frame bits. It also holds frames back after a
  loss while a parity may still repair it (up to the parity group).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

from facecodec.bitstream.chunks import MAX_FEC
from facecodec.bitstream.limits import MAX_REF

RECOVERY_ANCHORS = ("previous", "intra")
MAX_INTRA_COPIES = 2


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


@dataclass(frozen=True)
class Protection:
    """Writer settings for loss protection (all off by default); the one place they are
    checked (:class:`FcsWriter` checks its arguments by making one).

    Args:
        recovery_period: every this many frames after an intra frame, a *recovery point*
            coded against an older frame than the previous one (0: off).
        recovery_anchor: what a recovery point refers to: ``"previous"`` (the previous
            recovery point: a chain) or ``"intra"`` (the last intra frame).
        redundancy: 1 sends each intra frame and recovery point twice.
        repeat_intra: copies of each intra frame sent again (0..2; ``redundancy`` sends one).
        fec: a parity chunk after every this many frame packets (2..16; 0: off).
    """

    recovery_period: int = 0
    recovery_anchor: str = "previous"
    redundancy: int = 0
    repeat_intra: int = 0
    fec: int = 0

    def __post_init__(self) -> None:
        if not _is_int(self.recovery_period) or not 0 <= self.recovery_period <= MAX_REF:
            raise ValueError(f"recovery_period must be an integer in 0..{MAX_REF} (0: off), "
                             f"got {self.recovery_period!r}")
        if self.recovery_anchor not in RECOVERY_ANCHORS:
            raise ValueError(f"recovery_anchor must be one of {', '.join(RECOVERY_ANCHORS)}, "
                             f"got {self.recovery_anchor!r}")
        if not _is_int(self.redundancy) or self.redundancy not in (0, 1):
            raise ValueError(f"redundancy must be 0 or 1, got {self.redundancy!r}")
        if not _is_int(self.repeat_intra) or not 0 <= self.repeat_intra <= MAX_INTRA_COPIES:
            raise ValueError(f"repeat_intra must be an integer in 0..{MAX_INTRA_COPIES} "
                             f"(copies of each intra frame), got {self.repeat_intra!r}")
        if not _is_int(self.fec) or not (self.fec == 0 or 2 <= self.fec <= MAX_FEC):
            raise ValueError(f"fec must be 0 (off) or an integer in 2..{MAX_FEC} (frame "
                             f"packets per parity chunk), got {self.fec!r}")

    def writer_args(self) -> dict:
        """The keyword arguments of :class:`FcsWriter`."""
        return dataclasses.asdict(self)


PRESETS: dict[str, Protection] = {
    "none": Protection(),
    "light": Protection(recovery_period=8),
    "strong": Protection(recovery_period=6, recovery_anchor="intra", repeat_intra=2, fec=3),
}


def resolve(preset: str | Protection = "none", **overrides) -> Protection:
    """A preset (by name, or a :class:`Protection`) with the ``overrides`` that are not
    None applied; raises ValueError naming a bad preset or field."""
    if isinstance(preset, Protection):
        base = preset
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ValueError(f"protection must be one of {', '.join(PRESETS)} or a Protection, "
                         f"got {preset!r}")
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(Protection)}
    if unknown:
        raise ValueError(f"unknown protection setting(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(base, **given)
