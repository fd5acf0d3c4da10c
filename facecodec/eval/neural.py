"""The neural methods of ``facecodec eval``: the codec itself, end to end, and the
two First Order Motion baselines of Oquab et al. 2022 (FOM-Mobile, section 4.2; "FOM mult",
Table 5).

All three are scored on what a receiver decodes from a real ``.fcs`` stream, and their bits
are that stream's bytes. The sender side is the codec's, fed from the clip instead of a
video file: the eval clip *is* the sender's face tube (``prepare-data`` and
:class:`facecodec.Encoder` run the same front end, 256x256 at 15 fps), and ``clip.meta``
holds the front end's per-frame values for it (landmarks and irises in tube coordinates,
yaw, eye openness, crop boxes). So MediaPipe is not run again: the learned values come from
the model's sender network on the tube, the source frames are the paper's offline choice
(:func:`facecodec.sender.select_sources`, section 3.3, as ``Encoder.encode_file``), and
the stream is written chunk by chunk as ``Encoder.encode_file`` writes it (crop chunks at
box changes included: they force intra frames). The receiver side gets only the bytes.

Bits: ``setup_bits`` = the stream header + the source-frame chunks (images and their
values), sent once before the first frame; ``frame_bits[t]`` = the packet of frame ``t``
(+ a crop chunk before it, + the end chunk on the last frame). Their sum is the ``.fcs``
size in bits, exactly.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from facecodec.baselayer import FILE_PRESET, parse_base
from facecodec.bitstream.container import DecodedFrame, FcsReader, SourceFrame
from facecodec.bitstream.prior import Prior, find_prior
from facecodec.codec import MAX_FINETUNE_S, SENDER_BATCH, Decoder, Encoder
from facecodec.defaults import SOURCES
from facecodec.errors import InputError
from facecodec.eval.base import EVAL_SIZE, Encoded, EvalClip, Method
from facecodec.imagecodec import decode_source, resize_square
from facecodec.receiver.expression import touch_up_id
from facecodec.receiver.finetune import finetune_id
from facecodec.receiver.fusion import FUSION
from facecodec.receiver.mixing import SourceMixer
from facecodec.receiver.renderer import Renderer
from facecodec.sender.deadband import Deadband
from facecodec.sender.sources import picture_stats

NEEDED_META = ("sup", "iris", "yaw", "valid", "eyes_open", "box", "segment")


@dataclass
class Stream:
    """The ``.fcs`` bytes a sender wrote for one clip and where each byte went."""

    data: bytes
    frame_bits: np.ndarray  # (T,) int64
    setup_bits: int  # header + source chunks
    sources: list[int]  # frame index of each source sent, by slot
    seconds: float  # sender network + source image coding + entropy coding
    dropped: int = 0  # sources a budget left unsent by the end of the clip
    audio_bytes: int = 0  # of ``data``, the sound's chunks


def _video_size(video: Path | None) -> tuple[int, int]:
    """(width, height) of the clip's video for its crop chunks; (0, 0) when unknown (a
    crop chunk has a fixed size, so the bit count does not depend on it)."""
    if video is None or not video.is_file():
        return 0, 0

    with av.open(str(video)) as c:
        s = c.streams.video[0]
        return int(s.codec_context.width), int(s.codec_context.height)


def write_stream(encoder, clip: EvalClip, audio: list | None = None) -> Stream:
    """Encode ``clip`` with ``encoder`` (a :class:`facecodec.Encoder`) from its tube and
    sender values, as ``Encoder.encode_file`` does from a video (see the module
    docstring); with ``audio`` (Opus packets, facecodec/audio.py) the sound goes in too
    (its bytes in ``data`` only, not in the frame or setup bits)."""
    missing = [k for k in NEEDED_META if k not in clip.meta]
    if missing:
        raise InputError(f"{clip.name}: no sender values {', '.join(missing)} in the clip "
                         "(a model method needs the tube's per-frame values)")
    meta, tubes = clip.meta, clip.frames
    t = len(tubes)
    start = time.perf_counter()
    # the encoder's own stages: the learned values and the dead zone, then the sources
    band = Deadband(encoder.deadband)
    values = []
    for i in range(0, t, SENDER_BATCH):
        j = slice(i, i + SENDER_BATCH)
        values += encoder.sender_values(meta["sup"][j], meta["iris"][j], tubes[j], band)
    stats = np.array([picture_stats(f) for f in tubes])
    chosen = encoder.choose_sources(meta["yaw"], meta["valid"].astype(bool),
                                    meta["eyes_open"], stats)
    if encoder.source_choice == "render":  # closed loop, as encode_file does
        every = encoder.coverage_stride(t)
        chosen = encoder.cover_clip(chosen, tubes, values, meta["valid"].astype(bool),
                                    meta["eyes_open"], stats, every)
    segment = meta["segment"]
    crops = {i: meta["box"][i] for i in range(t) if i == 0 or segment[i] != segment[i - 1]}
    base = encoder.base_packets(tubes) if encoder.base is not None else None
    sink = io.BytesIO()
    written = encoder.write_clip(sink, values, {i: tubes[i] for i in chosen}, crops,
                                 _video_size(clip.video), audio, base)
    seconds = time.perf_counter() - start
    data = sink.getvalue()
    bits = written.frame_bits
    assert 8 * (len(data) - written.audio_bytes) == written.setup_bits + int(bits.sum())
    return Stream(data, bits, written.setup_bits, list(chosen), seconds,
                  written.sources_dropped, written.audio_bytes)


def decode_stream(decoder, stream: Stream, clip: EvalClip, method: str
                  ) -> tuple[np.ndarray, float]:
    """The receiver's frames of ``stream`` at the eval's size, and the seconds decoding
    took; every frame of ``clip`` must come out (``method`` names the row in the error)."""
    start = time.perf_counter()
    decoded = list(decoder.frames(stream.data, name=f"{clip.name}.fcs"))
    if len(decoded) != len(clip.frames):
        raise InputError(f"{method} on {clip.name}: decoded {len(decoded)} frames "
                         f"of {len(clip.frames)}")
    frames = to_eval_size(np.stack([d.image for d in decoded]))
    return frames, time.perf_counter() - start


def to_eval_size(images: np.ndarray) -> np.ndarray:
    """(T, R, R, 3) renders -> (T, 256, 256, 3), bicubic as ``Decoder.decode_file`` shows
    them (the eval scores every method at 256). A no-op for the models with the pixel
    blend, which the eval's Decoder draws at 256; models without it draw at their own R."""
    if images.shape[1:3] == (EVAL_SIZE, EVAL_SIZE):
        return images
    return np.stack([resize_square(f, EVAL_SIZE) for f in images])


def _installed_prior(path: str, method: str):
    """An operating point's own prior (e.g. one fitted at another dead-zone strength):
    the Decoder finds a stream's prior by id among the installed ones, so it must be
    one of them."""
    prior = Prior.load(Path(path))  # FormatError: one line, naming the file
    if find_prior(prior.id) is None:
        raise InputError(f"{method}: prior {path} is not installed (the Decoder looks in "
                         "the models' folders, priors/ and $FACECODEC_PRIORS)")
    return prior


def _int_option(value: str | int, what: str, low: int = 1) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an integer, got {value!r}") from None
    if n < low:
        raise InputError(f"{what} must be at least {low}, got {n}")
    return n


class FacecodecMethod(Method):
    """The real codec: :class:`facecodec.Encoder`'s sender network, source choice and
    bitstream, :class:`facecodec.Decoder` on the bytes. One operating point (the model's
    quantization)."""

    family: str | None = "frontalizer"  # the model family this method accepts

    def __init__(self, model: str | None = None, sources: str | int = SOURCES,
                 name: str = "facecodec", deadband: str | float | None = None,
                 prior: str | None = None, source_quality: str | int | None = None,
                 base: str | None = None, finetune: str | float | None = None):
        n = _int_option(sources, f"{name}: sources")
        seconds = _seconds_option(finetune, name)
        try:
            band = None if deadband is None else float(deadband)
        except ValueError:
            raise InputError(f"{name}: deadband must be a number, got {deadband!r}") from None
        # InputError: no model X / no prior
        quality = {} if source_quality is None else {
            "source_quality": _int_option(source_quality, f"{name}: source_quality")}
        self.encoder = Encoder(model, n_sources=n, deadband=band,
                               prior=None if prior is None else _installed_prior(prior, name),
                               base=_base_option(base, name), **quality)
        self.package = self.encoder.package
        family = self.package.profile.family
        if self.family is not None and family != self.family:
            raise InputError(f"{name}: model {self.package.name!r} ({self.package.path}) is "
                             f"a {family} model, not {self.family}")
        self.decoder = Decoder(self.package.path, output_size=EVAL_SIZE, finetune_s=seconds)
        mixer = SourceMixer.from_profile(self.package.profile)
        self._mix = (mixer.describe() if mixer and self.package.profile.max_sources > 1
                     and n > 1 else None)
        self._warp = self.package.profile.pixel_warp
        self.name = name
        self.description = (f"{self.package.name}: sender values from the clip's tube, "
                            f"{n} source frame(s), real .fcs bytes, Decoder output at "
                            f"{EVAL_SIZE} (model at {self.package.resolution}, source pixels "
                            f"warped at {EVAL_SIZE}, {self._warp}); encode time "
                            "excludes MediaPipe (values from the cache)"
                            + (f"; source pixels weighted by pose ({self._mix})"
                               if self._mix else "")
                            + (f"; the receiver fine-tuned on the sources for {seconds:g} s "
                               "(one thread)" if seconds else ""))

    def settings(self) -> dict[str, object]:
        e = self.encoder
        return {"model": str(self.package.path), "weights": self.package.fingerprint(),
                "table": self.package.table_name,
                "prior": e.prior.id, "sources": e.n_sources, "deadband": e.deadband,
                "source_codec": f"{e.source_codec} q{e.source_quality}",
                "intra_period": e.intra_period, "resolution": self.package.resolution,
                "output_size": self.decoder.output_size,
                # only where it acts: FOM and one source render as they did before it
                **({"source_mix": self._mix} if self._mix else {}),
                # only when not the bilinear that every row scored before it had
                **({"pixel_warp": self._warp} if self._warp != "bilinear" else {}),
                # the lid and lip touch-up (its code's hash: a row scored with another
                # version is not reused), absent from rows scored before it existed
                **({"retouch": touch_up_id()} if self.decoder.retouch else {}),
                # few-shot fine-tuning at the receiver (issue 22), only when on
                **({"finetune_s": self.decoder.finetune_s, "finetune": finetune_id()}
                   if self.decoder.finetune_s else {}),
                # the base layer (issue 20), absent from rows scored without one
                **({"base": list(e.base), "fusion": FUSION,
                    "base_coding": f"SVT-AV1 random access, preset {FILE_PRESET}",
                    "fused_touched_up": self.decoder.retouch}
                   if e.base else {})}

    def run(self, clip: EvalClip, target_kbps: float | None) -> Encoded:
        stream = write_stream(self.encoder, clip)
        frames, seconds = decode_stream(self.decoder, stream, clip, self.name)
        return Encoded(frames, stream.frame_bits, stream.setup_bits, stream.seconds, seconds,
                       {"sources": len(stream.sources)})


def _seconds_option(value: str | float | None, name: str) -> float:
    """``finetune=S``: seconds of fine-tuning at the receiver, 0..``MAX_FINETUNE_S``."""
    if value is None:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        raise InputError(f"{name}: finetune must be a number of seconds, got {value!r}") from None
    if not 0 <= seconds <= MAX_FINETUNE_S:
        raise InputError(f"{name}: finetune must be in 0..{MAX_FINETUNE_S:g} s, got {value!r}")
    return seconds


def _base_option(value: str | None, name: str) -> tuple[int, int] | None:
    """``base=SIDE:CRF`` (e.g. 256:63) -> (side, crf)."""
    try:
        return None if value is None else parse_base(value)
    except ValueError as e:
        raise InputError(f"{name}: {e}") from None


class FOMMethod(FacecodecMethod):
    """FOM-Mobile (Oquab et al. 2022, section 4.2): one frontal source frame (the most
    frontal with open eyes), unsupervised keypoints + Jacobians, through the codec's
    ``fom`` stream table and receiver."""

    family = "fom"

    def __init__(self, model: str = "fom", name: str = "fom"):
        super().__init__(model, 1, name)


def nearest_source(driving: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """(T,) index of the source whose keypoints are nearest each driving frame's: mean
    squared distance over keypoints, ``driving`` (T, K, 2), ``sources`` (N, K, 2). The
    FOM-mult rule of Oquab et al. 2022, section 4.3 / Table 5: "selecting the reference
    frame in which landmarks are the closest to the driving one"."""
    d = ((driving[:, None] - sources[None]) ** 2).sum(-1).mean(-1)  # (T, N)
    return np.argmin(d, axis=1)


class FOMMultMethod(FOMMethod):
    """FOM with N source frames, switching per driving frame to the source whose
    keypoints are nearest (:func:`nearest_source`; Oquab et al. 2022 Table 5). Its known
    failure is flicker at each switch (their figure 9): see the ``flicker`` metric.

    Bits: the same per-frame FOM stream + the index of the source used, ceil(log2 N) bits
    per frame (the receiver could derive it from the decoded keypoints, since both sides
    have them, so this is an upper bound: 2 bits x 15 fps = 30 bit/s for N = 3), and the N
    source images in ``setup_bits``."""

    def __init__(self, model: str = "fom", sources: str | int = SOURCES,
                 name: str = "fom-mult"):
        FacecodecMethod.__init__(self, model, sources, name)
        self.description = (f"{self.package.name}: FOM switching per frame to the nearest of "
                            f"{self.encoder.n_sources} sources by keypoints (Oquab et al. "
                            "2022 Table 5), real .fcs bytes + ceil(log2 N) bits/frame of "
                            "source index")
        self.last_choice = np.zeros(0, dtype=np.int64)  # per frame, for tests and debugging
        self._r = None

    def run(self, clip: EvalClip, target_kbps: float | None) -> Encoded:
        stream = write_stream(self.encoder, clip)
        start = time.perf_counter()
        reader = FcsReader(stream.data, name=f"{clip.name}.fcs", prior=self.encoder.prior)
        images, src_values, frames = {}, {}, []
        for ev in reader:
            if isinstance(ev, SourceFrame):
                images[ev.index] = decode_source(ev, reader.name)
                src_values[ev.index] = ev.values
            elif isinstance(ev, DecodedFrame):
                frames.append(ev.values)
        slots = sorted(images)
        kp = np.stack([src_values[s]["unsup"].reshape(-1, 2) for s in slots])
        drv = np.stack([f["unsup"].reshape(-1, 2) for f in frames])
        choice = nearest_source(drv, kp)
        renderer = self._renderer()
        out, current = [], -1
        for values, c in zip(frames, choice, strict=True):
            if c != current:  # FOM animates one source: swap it in (re-embedded once)
                renderer.set_source(0, images[slots[c]], src_values[slots[c]])
                current = c
            out.append(renderer.render([values])[0])
        seconds = time.perf_counter() - start
        self.last_choice = choice
        index_bits = math.ceil(math.log2(len(slots))) if len(slots) > 1 else 0
        switches = int((np.diff(choice) != 0).sum())
        return Encoded(to_eval_size(np.stack(out)), stream.frame_bits + index_bits,
                       stream.setup_bits, stream.seconds, seconds,
                       {"sources": len(slots), "switches": switches})

    def _renderer(self):
        if self._r is None:  # the weights are loaded once, for every clip
            self._r = Renderer(self.package, max_sources=1, output_size=EVAL_SIZE)
        self._r.start(1)
        return self._r


class NthMethod(FacecodecMethod):
    """The codec with a few-shot talking-heads model (Zakharov et al. 2019, issue 22): the
    same sender, stream and Decoder; the receiver draws every pixel from the landmark
    sketch and the sources' mean embedding (no source pixel is warped in)."""

    family = "nth"

    def __init__(self, model: str | None = None, sources: str | int = SOURCES,
                 name: str = "facecodec-nth", deadband: str | float | None = None,
                 prior: str | None = None, source_quality: str | int | None = None,
                 finetune: str | float | None = None):
        super().__init__(model or "nth", sources, name, deadband, prior, source_quality,
                         finetune=finetune)
        self._mix = None
        self.description = (f"{self.package.name}: sender values (landmarks) from the "
                            f"clip's tube, {self.encoder.n_sources} source frame(s) "
                            "embedded and averaged, real .fcs bytes, Decoder output drawn "
                            f"at {self.package.resolution} and resized to {EVAL_SIZE}")


def nth_variant(name: str):
    """A registry factory for the few-shot talking-heads model."""

    def make(model: str | None = None, sources: str | int = SOURCES,
             deadband: str | None = None, prior: str | None = None,
             source_quality: str | None = None, finetune: str | None = None) -> Method:
        return NthMethod(model, sources, name, deadband, prior, source_quality, finetune)

    return make


def facecodec_variant(default_model: str, name: str):
    """A registry factory for a Sup / Sup+Unsup / Sup+Unsup+Expr variant: the same method,
    another model (Oquab et al. 2022 Table 1 compares them)."""

    def make(model: str | None = None, sources: str | int = SOURCES,
             deadband: str | None = None, prior: str | None = None,
             source_quality: str | None = None, base: str | None = None,
             finetune: str | None = None) -> Method:
        return FacecodecMethod(model or default_model, sources, name, deadband, prior,
                               source_quality, base, finetune)

    return make
