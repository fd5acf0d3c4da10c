"""The zero-bit baseline and THE REGISTRY: every method ``facecodec eval`` can run.

To add a method: write one :class:`facecodec.eval.base.Method` subclass (its ``run`` gets
the clip's 256x256 15 fps face tube and the sender's per-frame values in ``clip.meta``, and
returns the decoded frames with the bits it sent, ``setup_bits`` for source images, and its
times), then add one line to ``REGISTRY`` below. The neural methods (the facecodec
variants, FOM, FOM-mult) live in facecodec/eval/neural.py. Options come from the
command line as ``--methods name:key=value;key=value`` (commas separate methods) and reach
the factory as keyword strings, e.g. ``facecodec:model=runs/x/model;sources=1``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facecodec.errors import InputError
from facecodec.eval.base import Encoded, EvalClip, Method
from facecodec.eval.classic import ClassicCodec
from facecodec.models.package import DEFAULT_MODEL


class HeldFrame(Method):
    """The zero-bit baseline: the first frame of the clip shown for the whole clip. Nothing
    is sent after it, and the first frame itself is not counted (as in the anchor table of
    docs/environment.md): it stands for what the receiver already has. A method that does
    not beat it on landmark error has not transmitted motion, whatever its LPIPS."""

    name = "zero-bit"
    description = "first frame held for the whole clip (0 bits; the first frame not counted)"

    def run(self, clip: EvalClip, target_kbps: float | None) -> Encoded:
        frames = np.broadcast_to(clip.frames[:1], clip.frames.shape).copy()
        return Encoded(frames, np.zeros(len(frames), dtype=np.int64))


def _classic(codec: str) -> Callable[..., Method]:
    def make(preset: str | None = None, rtol: str | float = 0.03) -> Method:
        return ClassicCodec(codec, preset=preset, rtol=float(rtol))

    return make


def _ladder(**options: str) -> Method:
    from facecodec.eval.ladder import LadderCodec  # noqa: PLC0415 - only when asked

    return LadderCodec(**options)


def _budgeted(**options: str) -> Method:
    from facecodec.eval.budgeted import BudgetedCodec  # noqa: PLC0415 - heavy (torch)

    return BudgetedCodec(**options)


def _neural(factory: str, *args: str) -> Callable[..., Method]:
    """A factory of facecodec/eval/neural.py, imported only when the method is made (torch
    and the models load then): the registry itself stays light (``--list-methods``)."""
    def make(**options: str) -> Method:
        from facecodec.eval import neural  # noqa: PLC0415 - heavy (torch): see above

        target = getattr(neural, factory)
        return (target(*args) if args else target)(**options)

    return make


@dataclass(frozen=True)
class Entry:
    factory: Callable[..., Method]
    help: str
    default: bool = True  # run when --methods is not given


REGISTRY: dict[str, Entry] = {
    "zero-bit": Entry(HeldFrame, "the first frame held for the whole clip"),
    "x264": Entry(_classic("x264"), "H.264 (libx264), CRF searched for each target rate; "
                  "option preset=..."),
    "x265": Entry(_classic("x265"), "HEVC (libx265), CRF searched for each target rate; "
                  "option preset=..."),
    "svtav1": Entry(_classic("svtav1"), "AV1 (SVT-AV1), CRF searched for each target rate; "
                    "option preset=..."),
    "svtav1-ladder": Entry(_ladder, "SVT-AV1 on a rung of the call ladder: options size=256|"
                           "192|128, fps=15|7.5 (scaled back to 256, frames repeated to 15 "
                           "fps), preset=; its coarsest CRF is an operating point too "
                           "(facecodec eval --calls)", default=False),
    "facecodec-budget": Entry(_budgeted, "the codec at budgets (Encoder(kbps=R), the target "
                              "rates or option kbps=3/5/8); options sound=yes|no (default "
                              "no), base=yes|no (a base layer in what the budget leaves, "
                              "issue 20; default no), model=; refused budgets are reported",
                              default=False),
    # model methods: facecodec/eval/neural.py
    "facecodec": Entry(_neural("facecodec_variant", DEFAULT_MODEL, "facecodec"),
                       "the codec end to end (real .fcs bytes, Decoder output); options "
                       f"model= (default {DEFAULT_MODEL}), sources=1|3 (default 3), deadband= "
                       "(the rate knob; default: the prior's), prior= (an installed prior "
                       "fitted at that dead zone; default: the model's), source_quality= "
                       "(WebP quality of the source frames; default: the Encoder's), "
                       "base=SIDE:CRF (a base layer fused at the receiver, issue 20; e.g. "
                       "256:63)"),
    "facecodec-sup": Entry(_neural("facecodec_variant", "frontalizer_sup", "facecodec-sup"),
                           "the codec with a Sup model (default model frontalizer_sup); "
                           "options model=, sources="),
    "facecodec-sup-unsup": Entry(_neural("facecodec_variant", "frontalizer_sup_unsup",
                                         "facecodec-sup-unsup"),
                                 "the codec with a Sup+Unsup model (default model "
                                 "frontalizer_sup_unsup); options model=, sources="),
    "facecodec-nth": Entry(_neural("nth_variant", "facecodec-nth"),
                           "the codec with the few-shot talking-heads model (Zakharov et "
                           "al. 2019; default model nth): landmarks only, every pixel "
                           "drawn; options model=, sources=", default=False),
    "fom": Entry(_neural("FOMMethod"), "First Order Motion, one frontal source, through the "
                 "fom stream table; option model= (default models/fom)"),
    "fom-mult": Entry(_neural("FOMMultMethod"), "FOM switching per frame to the source with "
                      "the nearest keypoints (Oquab et al. 2022 Table 5); options model= "
                      "(default models/fom), sources= (default 3)"),
}


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"name:key=value;key=value"`` -> (name, {key: value})."""
    name, _, rest = spec.strip().partition(":")
    options: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(";"))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InputError(f"method {spec!r}: options are key=value, got {item!r}")
        options[key.strip().replace("-", "_")] = value.strip()
    return name, options


def make_method(spec: str) -> Method:
    """A method from its command-line spec (see :func:`parse_spec`)."""
    name, options = parse_spec(spec)
    entry = REGISTRY.get(name)
    if entry is None:
        raise InputError(f"unknown method {name!r} (known: {', '.join(REGISTRY)})")
    try:
        method = entry.factory(**options)
    except TypeError as e:
        raise InputError(f"method {spec!r}: {e}") from None
    if options:
        method.name = spec.strip()  # two presets of one codec stay apart in the tables
    return method


def default_methods() -> list[str]:
    return [name for name, entry in REGISTRY.items() if entry.default]
