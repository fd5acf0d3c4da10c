"""``facecodec.Encoder`` and ``facecodec.Decoder``: the codec for apps, live or on files.

Sender, per frame (Oquab et al. 2022, figure 2):

    RGB frame -> FrontEnd (MediaPipe landmarks, face tube, pose) -> sup, iris
              -> SenderNetwork on the tube crop                  -> unsup, jac, expr
              -> FcsWriter (quantize, predict, range code)       -> one packet

Receiver: FcsReader -> values -> Renderer (sources embedded once, then one render per
frame) -> RGB face tube.

Live use (a frame in, the bytes to send out; a frame of latency)::

    enc = facecodec.Encoder()
    for image in camera:                 # RGB uint8 (H, W, 3)
        send(enc.push(image))
    send(enc.close())

    dec = facecodec.Decoder()
    for frame in dec.frames(received_chunks()):   # any iterable of bytes, or a file
        show(frame.image)

Files: :meth:`Encoder.encode_file` (sources chosen over the whole clip: the most frontal
frame with open eyes and the yaw extremes, section 3.3) and :meth:`Decoder.decode_file`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import numbers
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from tqdm import tqdm

from facecodec.audio import DEFAULT_KBPS as AUDIO_KBPS
from facecodec.audio import MAX_GAP_S as MAX_AUDIO_GAP_S
from facecodec.audio import MAX_KBPS as AUDIO_MAX_KBPS
from facecodec.audio import MIN_KBPS as AUDIO_MIN_KBPS
from facecodec.audio import RATE as AUDIO_RATE
from facecodec.audio import LiveSound, Sound, encode_audio, read_audio, sound_decoder
from facecodec.baselayer import BaseDecoder, BaseEncoder, encode_all
from facecodec.bitstream.container import (
    BASE_SIDES,
    MAX_REF,
    AudioPacket,
    BasePacket,
    Crop,
    DecodedFrame,
    FcsReader,
    FcsWriter,
    Header,
    SourceFrame,
    audio_declared,
    base_info,
)
from facecodec.bitstream.header import MAX_FPS, MIN_FPS, intra_period_frames
from facecodec.bitstream.limits import MAX_SOURCES
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.protection import Protection
from facecodec.bitstream.protection import resolve as resolve_protection
from facecodec.defaults import (
    BUDGET_MAX_KBPS,
    BUDGET_MIN_KBPS,
    MAX_SOURCE_KBPS,
    MIN_SOURCE_KBPS,
    SOURCE_CHOICES,
)
from facecodec.defaults import SOURCE_CHOICE as DEFAULT_SOURCE_CHOICE
from facecodec.defaults import SOURCE_CODEC as DEFAULT_SOURCE_CODEC
from facecodec.defaults import SOURCE_QUALITY as DEFAULT_SOURCE_QUALITY
from facecodec.defaults import SOURCES as DEFAULT_SOURCES
from facecodec.errors import FormatError, InputError, ModelMismatchError
from facecodec.files import VIDEO_SUFFIXES, check_output
from facecodec.imagecodec import CODECS, decode_image, decode_source, encode_image, resize_square
from facecodec.models.package import find_installed_model, find_model
from facecodec.receiver.expression import Retoucher
from facecodec.receiver.fusion import Fusion, find_fusion
from facecodec.receiver.renderer import Renderer
from facecodec.receiver.runtime import choose_backend
from facecodec.sender import FrontEnd, SourcePolicy, select_sources
from facecodec.sender.budget import BASE_SIDE, BudgetPlan, base_crf, plan_budget
from facecodec.sender.coverage import (
    MAX_SAMPLES,
    Coverage,
    LiveCoverage,
    cover,
    picture_error,
    sample_frames,
)
from facecodec.sender.deadband import Deadband
from facecodec.sender.frontend import TUBE_SIZE, FrameRecord
from facecodec.sender.network import SenderNetwork
from facecodec.sender.sources import picture_stats, source_candidates
from facecodec.sender.tube import Box, crop
from facecodec.sender.video import DEFAULT_FPS, Frame, VideoReader

Values = dict[str, np.ndarray]
Progress = Callable[[int], None]
SENDER_BATCH = 16  # frames per sender-network call (batching changes only the speed)
# (the Encoder's defaults that the CLI shows are in facecodec/defaults.py, imported above)

# a live call's first source goes out small (FIRST_SOURCE_SIZE px, quality 30), then again
# at full size and quality REFINE_AFTER_S later: on the example video 2,006 bytes come
# before the first drawable frame instead of 6,108, 2.7 s instead of 8.1 s at 6 kbps
DEFAULT_FIRST_SOURCE_QUALITY = 30
# the live source policy waits at most this long for a better frame (its max_wait, 15
# frames at 15 fps): counted in frames it doubled at the budget's 7.5 fps, and the first
# face of a call at 6 kbps with sound came after 3.1-3.2 s; 2.2 s in seconds (2026-12-02)
SOURCE_WAIT_S = 1.0
FIRST_SOURCE_SIZE = 160
REFINE_AFTER_S = 2.0
MAX_REPEAT_S = 10.0  # a live stream repeats its last frame for a stalled camera this long
MAX_DEFAULT_OUTPUT = 512  # the Decoder's default output size: the crop size, at most this
MAX_RENDERERS = 2  # renderers (loaded weights) a Decoder keeps across streams
RENDER_BATCH = 8  # frames per render when the sender draws what the receiver will
# a base layer's key frames (issue 20): after a lost base packet the receiver shows the
# animation alone until the next one; each costs ~2-3 KB at 256 px CRF 63 (~2 kbps at
# this period, where the keypoint stream's intra period of 2 s would cost ~10)
BASE_KEY_S = 10.0
MAX_FINETUNE_S = 600.0  # a receiver's fine-tuning on the sources, each time they change


class _Collect:
    """A write() sink whose bytes are taken back after each call (what goes on the wire)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


@dataclass(frozen=True, eq=False)
class ClipBits:
    """Where the bytes of a stream :meth:`Encoder.write_clip` wrote went.

    Attributes:
        setup_bits: the header and the source frames (paced ones too, although their
            parts go out between the frames).
        frame_bits: (T,) int64, each frame's packet with its crop chunk (the end chunk
            counted in the last).
        audio_bytes: the sound's chunks, counted in neither.
    """

    setup_bits: int
    frame_bits: np.ndarray
    audio_bytes: int
    sources_dropped: int = 0  # sources a budget left unsent by the end


@dataclass
class EncodeStats:
    frames: int = 0
    faces: int = 0  # frames in which a face was found
    sources: list[int] = field(default_factory=list)  # frame index of each source sent
    bytes: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # e.g. the video ended early (cut)
    audio_bytes: int = 0  # of ``bytes``, the sound's chunks


class Encoder:
    """Video frames -> a ``.fcs`` stream.

    Args:
        model: a model directory or name in ``models/`` (default: the shipped model).
        fps: frame rate of the stream; live frames are taken as they come (pace the
            camera, or use ``facecodec.sender.live_frames``), files are resampled to it.
        n_sources: source frames (the paper's N; default 3, or fewer if the model's
            receiver draws from fewer: FOM's one). More than the receiver draws from are
            sent all the same (eval's FOM-mult chooses among them itself).
        source_codec, source_quality: the still-image codec of the source frames.
        intra_period: frames between intra frames (default: 2 s).
        packet_frames: frames per packet (1: one packet per frame, lowest latency).
        prior: the entropy-coding prior (default: the model's, fitted at ``deadband``
            when the model has that operating point, see :meth:`ModelPackage.prior`).
        max_num_faces: >1 keeps following the same person when several are in view.
        deadband: strength of the dead zone on the learned values, the rate knob
            (:mod:`facecodec.sender.deadband`; 0: off; default: the strength the prior
            was fitted with, ``prior.info["deadband"]``).
        protection: loss protection without a back channel: a preset name (``"none"``,
            ``"light"``, ``"strong"``; measured costs and gains in
            :mod:`facecodec.bitstream.protection`) or a
            :class:`~facecodec.bitstream.protection.Protection`.
        recovery_period, redundancy, fec: override those fields of ``protection`` (None:
            the preset's): a recovery point every K frames, intra frames and recovery
            points sent twice (docs/format.md, section 6); a parity chunk after every G
            frame packets (2..16; 0: off), from which the receiver rebuilds any one lost
            packet of the group (format 2.1), holding frames back up to G - 1 frames while
            a repair is open.
        audio: send the sound (Opus, format 2.2; Codec 2 on a budget too thin for Opus,
            2.4): a video file's, or what ``push_audio`` gives a live stream (whose header
            then declares sound). A video without sound gives a stream without it.
        audio_kbps: the sound's Opus bitrate (6..64; 8 by default, speech).
        first_source_quality: a live call's first source frame is sent at 160 px and this
            quality (30 by default: the first face sooner on a thin link) and again at
            full size and ``source_quality`` 2 s later; None sends it once, in full.
            Files (``encode_file``) send every source at ``source_quality``, unless
            ``source_kbps`` paces them.
        source_kbps: pace the sources (format 2.3): the first goes out at once, small (160
            px, ``first_source_quality``), and the full-size sources follow in parts
            between the frames at this rate, the first one again among them; the receiver
            draws from the first and uses each as it arrives. None (default): every source
            whole, before the frames of a file (a live call sends its first source again in
            full ``REFINE_AFTER_S`` later).
        kbps: a budget for everything the stream carries (3..30 kbps: frames, sound,
            sources, headers), planned by :func:`facecodec.sender.budget.plan_budget`:
            it sets the dead zone (with its prior), the sound's codec and bitrate, the
            frame rate (``fps``, or half of it when the budget cannot carry the frames at
            ``fps``) and how many sources (unless ``n_sources`` is given), and the sources
            are paced as above within what the frames and the sound leave of it, measured
            as they go; a file drops the sources not started by its end
            (``EncodeStats.warnings`` says so). With it, ``deadband``, ``prior``,
            ``audio_kbps`` and ``source_kbps`` are left unset. :attr:`budget` holds the
            plan, :attr:`fps` and :attr:`sound` what it chose. A budget below what the
            model's frames and the sound need raises
            :class:`~facecodec.sender.budget.BudgetError` saying the smallest that works.
        base: ``(side, crf)``, a base layer (format 2.5, issue 20): every frame's face tube
            also coded with SVT-AV1 at ``side`` px (64..256, a multiple of 32) and CRF
            ``crf`` (0..63; 63 is the coarsest), low delay, sent beside its packet; the
            receiver fuses it with its animation (docs/enhancement.md). More bits, a
            better picture: ~6 kbps more at (256, 63). With ``kbps``: ``"auto"``, the
            budget gives the base layer what the frames, the sound and three sources
            leave (at 256 px, constant rate; none below 8 kbps:
            :mod:`facecodec.sender.budget`).
        source_choice: how a file's sources are chosen: ``"pose"`` (default), the most
            frontal frame with open eyes and the yaw extremes (section 3.3); ``"render"``,
            closed loop: the first as by pose, then each the frame the receiver draws worst
            from the ones before (:mod:`facecodec.sender.coverage`; the sender draws a
            frame a second with the receiver's model). A live call uses
            :class:`~facecodec.sender.SourcePolicy` either way.

    An argument no stream can carry raises :class:`InputError` here (docs/codec.md).
    It makes one live stream (:meth:`push` ... :meth:`close`; frames after it are refused)
    and any number of files (:meth:`encode_file`).
    """

    def __init__(self, model: str | Path | None = None, *, fps: float = DEFAULT_FPS,
                 n_sources: int | None = None, source_codec: str = DEFAULT_SOURCE_CODEC,
                 source_quality: int = DEFAULT_SOURCE_QUALITY,
                 intra_period: int | None = None, packet_frames: int = 1,
                 prior: Prior | None = None, max_num_faces: int = 1,
                 deadband: float | None = None, protection: str | Protection = "none",
                 recovery_period: int | None = None, redundancy: int | None = None,
                 fec: int | None = None, audio: bool = True,
                 audio_kbps: float | None = None,
                 first_source_quality: int | None = DEFAULT_FIRST_SOURCE_QUALITY,
                 source_kbps: float | None = None, kbps: float | None = None,
                 source_choice: str = DEFAULT_SOURCE_CHOICE,
                 base: tuple[int, int] | str | None = None):
        # every argument is checked here, before the model loads: a bad one must not
        # surface as a ValueError at the first push, or mid-stream
        _check_encoder_args(fps, n_sources, source_codec, source_quality, intra_period,
                            packet_frames, prior, max_num_faces, deadband)
        try:
            self.protection = resolve_protection(protection, recovery_period=recovery_period,
                                                 redundancy=redundancy, fec=fec)
        except ValueError as e:
            raise InputError(str(e)) from None
        if audio_kbps is not None and not (
                _is_real(audio_kbps) and AUDIO_MIN_KBPS <= audio_kbps <= AUDIO_MAX_KBPS):
            raise InputError(f"audio_kbps must be None or a number in {AUDIO_MIN_KBPS:g}.."
                             f"{AUDIO_MAX_KBPS:g}, got {audio_kbps!r}")
        if kbps is not None:
            given = [k for k, v in (("deadband", deadband), ("prior", prior),
                                    ("audio_kbps", audio_kbps), ("source_kbps", source_kbps))
                     if v is not None]
            if given:
                raise InputError(f"kbps plans {', '.join(given)} itself: give kbps or "
                                 f"{', '.join(given)}, not both")
            if not (_is_real(kbps) and BUDGET_MIN_KBPS <= kbps <= BUDGET_MAX_KBPS):
                raise InputError(f"kbps must be None or a number in {BUDGET_MIN_KBPS:g}.."
                                 f"{BUDGET_MAX_KBPS:g}, got {kbps!r}")
        auto_base = base == "auto"
        if auto_base and kbps is None:
            raise InputError('base="auto" is planned by a budget: give kbps too')
        if base is not None and not auto_base:
            if not (isinstance(base, tuple | list) and len(base) == 2
                    and base[0] in BASE_SIDES and _is_int(base[1]) and 0 <= base[1] <= 63):
                raise InputError(f"base must be None, \"auto\" (with kbps) or (side, crf) "
                                 f"with side one of {', '.join(map(str, BASE_SIDES))} and "
                                 f"crf in 0..63, got {base!r}")
            if kbps is not None:
                raise InputError("a budget plans its own base layer: give kbps with "
                                 "base=\"auto\", or base=(side, crf) without kbps")
        self.base = None if base is None or auto_base else (int(base[0]), int(base[1]))
        self.base_kbps: float | None = None  # a budget's base layer: its constant rate
        if source_choice not in SOURCE_CHOICES:
            raise InputError(f"source_choice must be one of {', '.join(SOURCE_CHOICES)}, "
                             f"got {source_choice!r}")
        self.source_choice = source_choice
        self.audio = bool(audio)
        self.audio_kbps = float(AUDIO_KBPS if audio_kbps is None else audio_kbps)
        if first_source_quality is not None and not (
                _is_int(first_source_quality) and 1 <= first_source_quality <= 100):
            raise InputError(f"first_source_quality must be None or an integer in 1..100, "
                             f"got {first_source_quality!r}")
        # None: the first source like the others
        self.first_source_quality = int(first_source_quality or source_quality)
        if source_kbps is not None and not (
                _is_real(source_kbps) and MIN_SOURCE_KBPS <= source_kbps <= MAX_SOURCE_KBPS):
            raise InputError(f"source_kbps must be None or a number in {MIN_SOURCE_KBPS:g}.."
                             f"{MAX_SOURCE_KBPS:g}, got {source_kbps!r}")
        self.source_kbps = None if source_kbps is None else float(source_kbps)

        self.package = find_model(model)
        self.budget: BudgetPlan | None = None
        if kbps is not None:
            self.budget = _plan(self.package, float(kbps), float(fps), self.audio, auto_base)
            deadband = self.budget.deadband
            if self.budget.base_kbps:
                self.base = (BASE_SIDE, base_crf(self.budget.base_kbps))
                self.base_kbps = self.budget.base_kbps
            self.audio_kbps = self.budget.audio_kbps or self.audio_kbps
            if self.budget.fps != float(fps):  # halved: the frames at fps do not fit
                fps = Fraction(fps if isinstance(fps, numbers.Rational) else float(fps)) / 2
        self.sound = (Sound.codec2(round(self.audio_kbps * 1000), self.budget.audio_packet_ms)
                      if self.budget and self.budget.audio_codec == "codec2"
                      else Sound("opus", self.audio_kbps))
        self._refine_after = max(1, round(REFINE_AFTER_S * float(fps)))
        self.prior = prior or self.package.prior(deadband)
        self.network = SenderNetwork(self.package)
        # (numpy scalars pass the checks; Fraction and the header want Python numbers)
        self.fps = Fraction(fps if isinstance(fps, numbers.Rational) else float(fps)
                            ).limit_denominator(1001)
        self._sources_given = n_sources is not None  # else a file's follow its length
        if n_sources is None:  # the budget's, or the default the receiver can use
            n_sources = (self.budget.n_sources if self.budget else
                         min(DEFAULT_SOURCES, self.package.profile.max_sources))
        self.n_sources = int(n_sources)
        self.source_codec, self.source_quality = source_codec, int(source_quality)
        thin = self.budget.intra_s if self.budget else None  # a halved rate's longer period
        self.intra_period = int(intra_period or (round(thin * float(self.fps)) if thin else
                                                 intra_period_frames(self.fps)))
        self.packet_frames = int(packet_frames)
        self.max_num_faces = int(max_num_faces)
        # by default the strength the prior was fitted with (priors fitted before the dead
        # zone existed saw raw streams: 0)
        self.deadband = float(self.prior.info.get("deadband", 0.0) if deadband is None
                              else deadband)
        if self.deadband < 0:
            raise InputError(f"deadband must be >= 0, got {deadband}")
        self._model_hash = self.package.weights_hash()  # read once: it hashes the file
        try:  # whatever else the header cannot carry fails here, not at the first frame
            self.header(self.n_sources)
        except ValueError as e:
            raise InputError(f"these settings cannot be written in a stream: {e}") from None
        self._live: _LiveState | None = None
        self._closed = False  # close() ended the live stream: an Encoder makes one

    # -- shared ---------------------------------------------------------------------------
    @property
    def paces_sources(self) -> bool:
        """Whether sources go out in parts within a rate (``source_kbps`` or ``kbps``)."""
        return self.source_kbps is not None or self.budget is not None

    def _writer_args(self) -> dict:
        """The FcsWriter's arguments beside the header: loss protection, source pacing."""
        per_frame = 1000 / 8 / float(self.fps)  # kbps -> bytes per frame
        if self.budget is not None:
            return {**self.protection.writer_args(),
                    "all_in_rate": self.budget.kbps * per_frame}
        rate = 0.0 if self.source_kbps is None else self.source_kbps * per_frame
        return {**self.protection.writer_args(), "source_rate": rate}

    def recover_from(self, frame: int, copies: int = 1) -> None:
        """The receiver lost packets and last decoded ``frame`` (``Decoder.last_good``,
        sent back over the call's feedback channel): the next frame is coded against it,
        so the receiver resumes at once and for far fewer bits than an intra frame.
        ``copies``: that many frames in a row coded against it (1..4), so that a loss of
        the first of them does not cost another round trip (the call sends 2)."""
        if self._live is None:
            raise InputError("recover_from() needs a live stream (push() frames first)")
        self._live.writer.recover_from(int(frame), copies)

    def set_chains(self, chains: int) -> None:
        """Live: code each frame against the one ``chains`` back from the next frame on
        (1: the previous; 2 on a lossy link: a lost frame packet then spoils only every
        other frame until a recovery frame, more bits per frame;
        :meth:`facecodec.bitstream.container.FcsWriter.set_chains`)."""
        if self._live is None:
            raise InputError("set_chains() needs a live stream (push() frames first)")
        try:
            self._live.writer.set_chains(chains)
        except ValueError as e:
            raise InputError(str(e)) from None

    def request_intra(self) -> None:
        """The receiver has nothing to decode from (it joined late, or lost everything):
        code the next frame intra."""
        if self._live is None:
            raise InputError("request_intra() needs a live stream (push() frames first)")
        self._live.writer.request_intra()

    def header(self, n_sources: int, audio: bool = False) -> Header:
        """The stream header this encoder writes for `n_sources` source frames (and
        sound, format 2.2, with ``audio``)."""
        return Header(self.prior.table, self.prior.id, self.fps, crop_size=TUBE_SIZE,
                      intra_period=self.intra_period, packet_frames=self.packet_frames,
                      n_sources=n_sources, model_id=self.package.name,
                      model_hash=self._model_hash,
                      info={**(self.sound.info() if audio else {}),
                            **({"base": base_info(*self.base)} if self.base else {}),
                            # what bitrate --report holds the stream's windows against
                            **({"budget_kbps": self.budget.kbps} if self.budget else {})})

    # -- the stages of encoding, shared by files, the live API and eval -----------------
    # 1. tracking (sender.FrontEnd: landmarks, irises, pose, face tube per frame);
    # 2. sender_values: the learned values and the dead zone;
    # 3. choose_sources (files; a live call uses sender.SourcePolicy);
    # 4. write_clip / the live writer: the stream.
    def sender_values(self, sup: np.ndarray, iris: np.ndarray, tubes: np.ndarray,
                      band: Deadband) -> list[Values]:
        """The values a run of frames sends, in order: the tracker's landmarks ``sup``
        (T, 33, 2) and irises ``iris`` (T, 2, 2), in tube coordinates, and the sender
        network's outputs on their face ``tubes`` (T, S, S, 3) RGB, all through the dead
        zone ``band`` (stateful: one per stream, frames given in order). Run on at most
        ``SENDER_BATCH`` frames at a time, as every caller does, so a clip's values do not
        depend on who encodes it."""
        learned = self.network(np.asarray(tubes))
        out = []
        for i in range(len(sup)):
            v = {"sup": np.asarray(sup[i]).reshape(-1), "iris": np.asarray(iris[i]).reshape(-1)}
            v.update({k: a[i].reshape(-1) for k, a in learned.items()})
            out.append(band({s: v[s] for s in self.prior.table.names}))
        return out

    def clip_sources(self, n_frames: int) -> int:
        """How many source frames a whole clip of ``n_frames`` gets: with a budget (and no
        ``n_sources`` given), what it delivers over the clip's length
        (:meth:`~facecodec.sender.budget.BudgetPlan.sources_for`), else ``n_sources``."""
        if self.budget is None or self._sources_given:
            return self.n_sources
        return self.budget.sources_for(n_frames / float(self.fps))

    def choose_sources(self, yaw: np.ndarray, valid: np.ndarray, eyes_open: np.ndarray,
                       stats: np.ndarray | None = None) -> list[int]:
        """The frames of a whole clip sent as source frames (Oquab et al. 2022, section
        3.3: :func:`facecodec.sender.select_sources`), by slot, :meth:`clip_sources` of
        them; with ``stats`` (T, 2), each frame's
        :func:`~facecodec.sender.sources.picture_stats`, none from a fade or a flash."""
        return list(select_sources(yaw, valid, eyes_open, self.clip_sources(len(yaw)),
                                   stats=stats))

    def coverage_stride(self, n_frames: int | None) -> int:
        """Frames between two that the closed-loop choice draws: one a second, fewer on a
        clip so long that it would draw more than ``MAX_SAMPLES`` (``n_frames``: the
        clip's length, or an estimate; None: unknown)."""
        every = max(1, round(float(self.fps)))
        return max(every, math.ceil((n_frames or 0) / MAX_SAMPLES))

    def cover_clip(self, chosen: list[int], pictures: Mapping[int, np.ndarray] | np.ndarray,
                   values: list[Values], valid: np.ndarray, eyes_open: np.ndarray,
                   stats: np.ndarray, every: int) -> list[int]:
        """A whole clip's closed-loop sources (:meth:`cover_sources`) from the pose rule's
        ``chosen`` and the clip's per-frame ``valid``, ``eyes_open`` and ``stats``
        (:func:`~facecodec.sender.sources.picture_stats`); ``pictures`` holds the face
        tube of ``chosen[0]`` and of every ``every``-th frame (from ``every // 2``), by
        frame index (a dict, or the whole clip's tube array). The
        frames without a face are not drawn (nothing to compare)."""
        samples = sample_frames(len(values), every)
        samples = samples[np.asarray(valid, dtype=bool)[samples]]
        if len(samples) == 0:
            return chosen
        usable = source_candidates(valid, eyes_open, stats)[samples]
        return self.cover_sources(chosen[0], pictures, values, samples, usable,
                                  self.clip_sources(len(values))).sources

    def cover_sources(self, first: int, pictures: Mapping[int, np.ndarray] | np.ndarray,
                      values: list[Values],
                      samples: np.ndarray, usable: np.ndarray,
                      n: int | None = None) -> Coverage:
        """Closed-loop sources (``source_choice="render"``,
        :func:`facecodec.sender.coverage.cover`): ``first`` (the pose rule's slot 0),
        then, until ``n`` (default ``n_sources``), the usable sample the receiver draws
        worst from the sources so far. The sender draws as the receiver will: the sources
        as their coded images decode, every value as quantized. ``pictures``: the face
        tube of ``first`` and of every sample; ``values``: every frame's
        (``sender_values``)."""
        table = self.prior.table

        def received(v: Values) -> Values:
            return table.dequantize(table.quantize(v))

        sent: dict[int, np.ndarray] = {}  # a source as the receiver decodes it
        drawn_values = [received(values[i]) for i in samples]
        originals = np.stack([pictures[i] for i in samples])
        # drawn at the tube's size, as a Decoder draws a stream of these tubes
        n = self.n_sources if n is None else n
        renderer = Renderer(self.package, max_sources=n, output_size=originals.shape[1])

        def errors(sources: list[int]) -> np.ndarray:
            renderer.start(len(sources))
            for slot, i in enumerate(sources):
                if i not in sent:
                    sent[i] = decode_image(self.source_image_bytes(pictures[i]),
                                           codec=self.source_codec)
                renderer.set_source(slot, sent[i], received(values[i]))
            return np.concatenate([
                picture_error(renderer.render(drawn_values[b:b + RENDER_BATCH]),
                              originals[b:b + RENDER_BATCH])
                for b in range(0, len(samples), RENDER_BATCH)])

        return cover(first, samples, usable, n, errors, min_gap=round(float(self.fps)))

    def _base_encoder(self, live: bool) -> BaseEncoder:
        """The base layer's encoder: low delay for a live stream or a budget's constant
        rate, random access for a file at a constant quality (baselayer.BaseEncoder)."""
        return BaseEncoder(*self.base, self.fps, round(BASE_KEY_S * float(self.fps)),
                           kbps=self.base_kbps, low_delay=live or self.base_kbps is not None)

    def base_packets(self, tubes: Iterable[np.ndarray]) -> list[bytes]:
        """Every frame's face tube of a file coded as the base layer (``base``): one AV1
        temporal unit per frame, what :meth:`write_clip` sends beside each frame."""
        if self.base is None:
            raise InputError("this Encoder has no base layer (Encoder(base=(side, crf)))")
        return encode_all(self._base_encoder(live=False), tubes)

    def write_clip(self, sink: BinaryIO, values: list[Values], sources: dict[int, np.ndarray],
                   crops: dict[int, tuple[float, ...]], video_size: tuple[int, int],
                   audio: list[AudioPacket] | None = None,
                   base: Sequence[bytes] | None = None) -> ClipBits:
        """Write a whole clip's stream: header, the source frames (``sources[i]`` is frame
        ``i``'s RGB face tube; slots in the dict's order, the order of select_sources),
        then every frame's ``values``, each after its crop chunk when ``crops`` has one
        (the first frame's box too: it places the tube in the ``video_size`` picture).
        With ``audio`` (Opus packets, facecodec/audio.py), each packet goes out before the
        first frame whose interval ends after its start, as a live sender sends it. With
        ``base`` (:meth:`base_packets`, one per frame), each frame's base-layer unit goes
        out just before its packet, counted in its bits.
        Returns where the bytes went (:class:`ClipBits`)."""
        w = FcsWriter(sink, self.header(len(sources), audio is not None), self.prior,
                      **self._writer_args())
        paced = self.paces_sources
        for slot, i in enumerate(sources):
            tube = sources[i]
            if paced and slot == 0:  # the first face soon, small; the full one paced
                side = min(tube.shape[0], FIRST_SOURCE_SIZE)
                w.add_source(slot, self.source_codec, side, side, self.source_image_bytes(
                    _resize(tube, side), self.first_source_quality), values[i])
            w.add_source(slot, self.source_codec, tube.shape[1], tube.shape[0],
                         self.source_image_bytes(tube), values[i], paced=paced)
        setup = w.bytes_written
        bits = np.zeros(len(values), dtype=np.int64)
        sound = iter(audio or ())
        packet = next(sound, None)
        for i, v in enumerate(values):
            end = (i + 1) * AUDIO_RATE / float(self.fps)
            while packet is not None and packet.start < end:
                w.add_audio(packet)
                packet = next(sound, None)
            before, parts = w.bytes_written, w.paced_bytes
            if i in crops:
                w.add_crop(tuple(float(x) for x in crops[i]), video_size)
            if base is not None and base[i]:
                w.add_base(BasePacket(i, base[i]))
            w.add_frame(v)
            setup += w.paced_bytes - parts  # sources, though sent between the frames
            bits[i] = 8 * (w.bytes_written - before - (w.paced_bytes - parts))
        while packet is not None:  # (the track is cut to the video: at most one packet)
            w.add_audio(packet)
            packet = next(sound, None)
        before, parts = w.bytes_written, w.paced_bytes
        w.close()
        setup += w.paced_bytes - parts
        bits[-1] += 8 * (w.bytes_written - before - (w.paced_bytes - parts))
        return ClipBits(8 * setup, bits, w.audio_bytes, w.sources_dropped)

    def source_image_bytes(self, tube: np.ndarray, quality: int | None = None) -> bytes:
        """A source frame (RGB uint8 face tube) coded with the source-image codec, at
        ``quality`` (default: ``source_quality``)."""
        return encode_image(tube, self.source_codec, quality or self.source_quality)

    # -- live -----------------------------------------------------------------------------
    def push(self, image: np.ndarray, time_s: float | None = None) -> bytes:
        """Encode one RGB frame; returns the bytes to send now (the header comes with
        the first call; frames are held back until the first source frame is chosen,
        at most ~1 s at the start of a call). ``time_s``: the frame's capture time in
        seconds, finite and increasing from frame to frame; default: 1 / fps after the
        previous frame (each push is then the next stream frame).

        With ``time_s``, the stream keeps real time at any camera rate: stream frame
        ``k`` is the capture nearest ``t0 + k / fps`` (``t0``: the first frame's time). A
        camera faster than ``fps`` has the captures between two stream frames dropped (the
        call returns no new frame); a slower one, or a stall, has the last frame repeated
        for the slots it missed (zero deltas: a few bits each), up to
        ``MAX_REPEAT_S``; a longer stall moves the stream's clock on."""
        if self._closed:  # a second header on the same wire would not decode
            raise InputError("the stream is closed: push() after close(); make a new "
                             "Encoder for a new stream")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"a frame must be RGB uint8 (H, W, 3), got {image.dtype} "
                             f"{image.shape}")
        last = self._live.last_time if self._live is not None else None
        if time_s is None:
            t = 0.0 if last is None else last + 1.0 / float(self.fps)
        else:
            if not _is_real(time_s):
                raise InputError(f"time_s must be a finite number of seconds, got {time_s!r}")
            t = float(time_s)
            if last is not None and t <= last:
                raise InputError(f"time_s must increase from frame to frame: {t!r} after "
                                 f"{last!r}")
        if self._live is None:
            sink = _Collect()
            self._live = _LiveState(
                # closed loop: the pose policy only finds the frontal first source
                FrontEnd(max_num_faces=self.max_num_faces),
                SourcePolicy(1 if self.source_choice == "render" else self.n_sources,
                             max_wait=max(1, round(SOURCE_WAIT_S * float(self.fps)))),
                sink, FcsWriter(sink, self.header(self.n_sources, self.audio), self.prior,
                                **self._writer_args()),
                Deadband(self.deadband), t0=t)
            if self.base is not None:
                self._live.base = self._base_encoder(live=True)
        st = self._live
        if time_s is not None and st.count:
            slot = math.ceil((t - st.t0) * float(self.fps) - 0.5)  # nearest; ties: earlier
            if slot < st.count:  # between two stream frames: a faster camera's extra frame
                st.last_time = t
                return st.sink.drain()
            missing = slot - st.count
            most = round(MAX_REPEAT_S * float(self.fps))
            if missing > most:  # a long stall: the stream's clock moves on
                st.t0 += (missing - most) / float(self.fps)
                missing = most
            self._repeat_last(st, missing)
        # the tube is re-centred only on a frame due intra anyway (TubeTracker.update)
        record = st.frontend.process(Frame(image, t, st.count),
                                     recentre=st.count % self.intra_period == 0)
        st.count += 1
        st.last_time = t
        values = self.sender_values(record.sup[None], record.iris[None], record.tube[None],
                                    st.band)[0]
        st.recent.append((record, values))
        update = st.policy.update(record)
        if update is not None:
            chosen = next(v for r, v in st.recent if r is update.record)
            tube = update.record.tube
            if st.refine is not None and st.refine[0] == update.slot:
                st.refine = None  # its slot gets another frame: nothing left to refine
            coded, side = self.source_image_bytes(tube), tube.shape[0]
            paced = self.paces_sources
            if not st.sources and (paced or self.first_source_quality < self.source_quality):
                # the first face, soon: a small first source now, the full one later
                # (paced: from now on, within source_kbps or the budget)
                side = min(side, FIRST_SOURCE_SIZE)
                small = self.source_image_bytes(_resize(tube, side), self.first_source_quality)
                st.writer.add_source(update.slot, self.source_codec, side, side, small, chosen)
                if not paced:
                    st.refine = (update.slot, tube, chosen, st.count + self._refine_after)
                    coded = None
                side = tube.shape[0]
            if coded is not None:
                st.writer.add_source(update.slot, self.source_codec, side, side, coded, chosen,
                                     paced=paced)
            st.sources.append(update.record.index)
            self._seen_by_receiver(st, update.slot, update.record, chosen,
                                   coded)
        elif st.refine is not None and st.count >= st.refine[3]:
            slot, tube, chosen, _ = st.refine  # the first source again, at full quality
            st.writer.add_source(slot, self.source_codec, tube.shape[1], tube.shape[0],
                                 self.source_image_bytes(tube), chosen)
            st.refine = None
        elif st.loop is not None and st.slots:
            self._close_the_loop(st, record, values)
        st.frame_size = (image.shape[1], image.shape[0])
        st.pending.append((record, values, st.frame_size))
        if st.sources:
            self._flush_pending(st)
        return st.sink.drain()

    def _received(self, v: Values) -> Values:
        """Values as the receiver decodes them (quantized)."""
        table = self.prior.table
        return table.dequantize(table.quantize(v))

    def _seen_by_receiver(self, st: _LiveState, slot: int, record: FrameRecord,
                          values: Values, coded: bytes | None = None) -> None:
        """Closed loop: a source just sent, put in the sender's copy of the receiver (as
        its full-size image decodes; ``coded``: those bytes, when already made)."""
        if self.source_choice != "render":
            return
        if st.view is None:
            st.loop = LiveCoverage(every=max(1, round(float(self.fps))))
            st.view = Renderer(self.package, max_sources=self.n_sources,
                               output_size=record.tube.shape[0])
        while len(st.slots) <= slot:
            st.slots.append(-1)
        st.slots[slot] = record.index
        image = decode_image(coded or self.source_image_bytes(record.tube),
                             codec=self.source_codec)
        st.view.set_source(slot, image, self._received(values))

    def _close_the_loop(self, st: _LiveState, record: FrameRecord, values: Values) -> None:
        """Closed loop, live (:class:`~facecodec.sender.coverage.LiveCoverage`): on one
        frame a second, draw it as the receiver will; when the receiver's error says the
        sources no longer cover the call, send the worst-drawn recent frame as a source,
        in a free slot or in place of the oldest after the frontal one."""
        if record.valid:
            st.openness.append(float(record.eyes_open))
        if not (record.valid and st.loop.due(record.index)) or self.n_sources < 2:
            return  # (one source: the frontal one, never replaced)
        drawn = st.view.render([self._received(values)])
        error = float(picture_error(drawn, record.tube[None])[0])
        # eyes open as the pose policy takes them: 3/4 of the call's typical openness
        usable = record.eyes_open >= max(0.02, 0.75 * float(np.median(st.openness)))
        full = len(st.slots) >= self.n_sources
        pick = st.loop.check(error, (record, values), usable, full,
                             busy=st.writer.sources_waiting > 0)
        if pick is None:
            return
        chosen_record, chosen = pick
        if full:  # the oldest source after the frontal one (slot 0) makes room
            slot = min(range(1, len(st.slots)), key=lambda k: st.slots[k])
        else:
            slot = len(st.slots)
        tube = chosen_record.tube
        coded = self.source_image_bytes(tube)  # sent, and drawn from as the receiver will
        st.writer.add_source(slot, self.source_codec, tube.shape[1], tube.shape[0], coded,
                             chosen, paced=self.paces_sources)
        st.sources.append(chosen_record.index)
        self._seen_by_receiver(st, slot, chosen_record, chosen, coded)

    def _repeat_last(self, st: _LiveState, n: int) -> None:
        """``n`` stream frames that repeat the last one (slots a slow camera missed)."""
        if n <= 0 or not st.recent:
            return
        record, values = st.recent[-1]
        for _ in range(n):
            st.pending.append((dataclasses.replace(record, new_box=False), values,
                               st.frame_size))
            st.count += 1
        if st.sources:
            self._flush_pending(st)

    @staticmethod
    def _flush_pending(st: _LiveState) -> None:
        for r, v, size in st.pending:
            if r.new_box:
                st.writer.add_crop(tuple(float(x) for x in r.box.as_array()), size)
            if st.base is not None:  # the frame's base-layer unit, just before its packet
                for frame, unit in st.base.encode(r.tube):  # low delay: this frame's
                    if unit:
                        st.writer.add_base(BasePacket(frame, unit))
            st.writer.add_frame(v)
        st.pending.clear()

    def push_audio(self, samples: np.ndarray, time_s: float | None = None) -> bytes:
        """Encode sound captured with the frames: mono samples at 48 kHz (int16, or float
        in [-1, 1]) whose first was captured at ``time_s`` on the frames' clock (``push``'s
        ``time_s``; default: right after the previous samples). Returns the bytes to send
        now (Opus packets complete every 60 ms, Codec 2's every 120 ms). The stream's time 0
        is the first frame's: push a frame first; sound from before it is dropped, a gap is
        silence."""
        if not self.audio:
            raise InputError("push_audio() on an Encoder made with audio=False")
        if self._closed:
            raise InputError("the stream is closed: push_audio() after close()")
        st = self._live
        if st is None:
            raise InputError("push_audio() before any frame: push() the first frame first "
                             "(the sound is placed from its time)")
        pcm = np.asarray(samples)
        if pcm.ndim != 1 or not (pcm.dtype == np.int16 or np.issubdtype(pcm.dtype,
                                                                         np.floating)):
            raise InputError(f"sound must be mono samples (int16 or float), got {pcm.dtype} "
                             f"{pcm.shape}")
        if pcm.dtype != np.int16:
            pcm = (np.clip(np.nan_to_num(pcm), -1.0, 1.0) * 32767).astype(np.int16)
        if time_s is not None and not _is_real(time_s):
            raise InputError(f"time_s must be a finite number of seconds, got {time_s!r}")
        rate = AUDIO_RATE
        start = st.audio_next if time_s is None else round((float(time_s) - st.t0) * rate)
        if start > st.audio_next:  # a gap: silence, or (over MAX_AUDIO_GAP_S) a new start
            if start - st.audio_next <= MAX_AUDIO_GAP_S * rate:
                pcm = np.concatenate([np.zeros(start - st.audio_next, np.int16), pcm])
                start = st.audio_next
            elif st.opus is not None:
                st.opus.flush_into(st.writer)
                st.opus = None
        elif start < st.audio_next:  # overlaps what was sent (or before time 0): cut
            pcm = pcm[st.audio_next - start:]
            start = st.audio_next
        if st.opus is None:
            st.opus = LiveSound(self.sound, start)
        st.opus.encode_into(pcm, st.writer)
        st.audio_next = start + len(pcm)
        return st.sink.drain()

    def close(self) -> bytes:
        """End the live stream; returns the last bytes to send."""
        if self._closed:
            raise InputError("the stream is closed: close() was called already")
        st = self._live
        if st is None:
            raise InputError("close() before any frame was pushed")
        if st.opus is not None:
            st.opus.flush_into(st.writer)
        if not st.sources:  # the call ended before a source was chosen: take the best
            faces = [(r, v) for r, v, _ in st.pending if r.valid]
            if not faces:
                raise InputError("no face found in the live input: nothing to encode")
            r, v = min(faces, key=lambda rv: abs(rv[0].yaw))
            st.writer.add_source(0, self.source_codec, r.tube.shape[1], r.tube.shape[0],
                                 self.source_image_bytes(r.tube), v)
            st.sources.append(r.index)
            self._flush_pending(st)
        st.writer.close()
        st.frontend.close()
        if st.base is not None:
            st.base.close()
        self._live = None
        self._closed = True
        return st.sink.drain()

    # -- files ----------------------------------------------------------------------------
    def encode_file(self, src: str | Path, dst: str | Path, progress: bool = True
                    ) -> EncodeStats:
        """Encode a video file into ``dst`` (.fcs). Two passes over the video, memory
        bounded: the first tracks every frame and keeps its values (a few hundred bytes),
        the second fetches the chosen source frames. ``dst`` is written under a temporary
        name and renamed at the end: a failure never leaves a partial file. A video that
        ends well before its header says (a cut copy) is encoded up to the cut, with a
        line in ``EncodeStats.warnings`` saying so."""
        t0 = time.perf_counter()
        src, dst = Path(src), Path(dst)
        # before the tracking pass: a bad destination must not cost a minute of work
        check_output(dst, inputs=[src], suffixes=(".fcs",), writes="encode writes a .fcs stream")
        reader = VideoReader(src, fps=float(self.fps))
        info = reader.info
        total = round(info.duration * float(self.fps)) if info.duration else None
        records, values = [], []
        stats: list[tuple[float, float]] = []  # each frame's picture, for the sources
        batch: list = []
        band = Deadband(self.deadband)
        # closed loop: the frames it draws keep their pixels (at most ~MAX_SAMPLES of them)
        every = self.coverage_stride(total)
        kept: dict[int, np.ndarray] = {}

        def run_batch() -> None:
            values.extend(self.sender_values(np.stack([r.sup for r in batch]),
                                             np.stack([r.iris for r in batch]),
                                             np.stack([r.tube for r in batch]), band))
            for r in batch:
                stats.append(picture_stats(r.tube))
                if self.source_choice == "render" and r.index % every == every // 2:
                    kept[r.index] = r.tube
                r.tube = None  # keep the values, not the pixels
                records.append(r)
            batch.clear()

        with reader, FrontEnd(max_num_faces=self.max_num_faces) as fe, \
                tqdm(total=total, desc="encode: track", unit="frame",
                     disable=not progress) as bar:
            for r in fe.run(reader, name=str(src)):
                batch.append(r)
                if len(batch) == SENDER_BATCH:
                    run_batch()
                bar.update(1)
            if batch:
                run_batch()
        short = reader.shortfall()
        warnings = [f"{short}: encoded {len(records)} frames"] if short else []
        yaw = np.array([r.yaw for r in records])
        valid = np.array([r.valid for r in records])
        eyes = np.array([r.eyes_open for r in records])
        chosen = self.choose_sources(yaw, valid, eyes, np.array(stats))
        tubes: dict[int, np.ndarray] = {}
        layer = self._base_encoder(live=False) if self.base is not None else None
        got: dict[int, bytes] = {}  # the base layer's units, by frame
        read = 0
        with VideoReader(src, fps=float(self.fps)) as video, \
                tqdm(total=len(records) if layer is not None else None,
                     desc="encode: base layer", unit="frame",
                     disable=not progress or layer is None) as bar:
            for frame in video:
                if frame.index >= len(records):
                    break
                read += 1
                tube = None
                if frame.index in chosen or layer is not None:
                    tube = crop(frame.image, records[frame.index].box, TUBE_SIZE)
                if frame.index in chosen:
                    tubes[frame.index] = tube
                if layer is not None:  # every frame's tube, coded as it is read
                    got.update(layer.encode(tube))
                    bar.update(1)
                elif len(tubes) == len(chosen) or frame.index >= max(chosen):
                    break
        base = None
        if layer is not None:
            got.update(layer.close())
            base = [got.get(i, b"") for i in range(len(records))]
        if len(tubes) != len(chosen) or (layer is not None and read != len(records)):
            raise InputError(f"{src}: the video changed between the two passes")
        if self.source_choice == "render":
            tubes.update(kept)
            chosen = self.cover_clip(chosen, tubes, values, valid, eyes, np.array(stats), every)
        sound = self._sound(src, len(records))
        part = dst.with_name(dst.name + ".part")
        try:
            with open(part, "wb") as f:
                crops = {i: r.box.as_array() for i, r in enumerate(records) if r.new_box}
                written = self.write_clip(f, values, {i: tubes[i] for i in chosen}, crops,
                                          (info.width, info.height), sound, base)
            os.replace(part, dst)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        if written.sources_dropped:
            warnings.append(f"{written.sources_dropped} of {len(chosen)} source frames did not "
                            f"fit the {self.budget.kbps:g}-kbps budget before the end and were "
                            "not sent")
        return EncodeStats(len(records), int(valid.sum()), list(chosen), dst.stat().st_size,
                           time.perf_counter() - t0, warnings,
                           written.audio_bytes)

    def _sound(self, src: Path, frames: int) -> list[AudioPacket] | None:
        """The video's sound as packets of :attr:`sound`, cut to its ``frames`` (None: no
        sound, or ``audio=False``)."""
        if not self.audio:
            return None

        pcm = read_audio(src)
        if pcm is None:
            return None
        return encode_audio(pcm[: round(frames * AUDIO_RATE / float(self.fps))], self.sound)


def _plan(package, kbps: float, fps: float, audio: bool, base: bool = False) -> BudgetPlan:
    default = package.prior()
    points = [(default.info.get("deadband", 0.0), default),
              *((s, package.prior(s)) for s in package.operating_points())]
    return plan_budget(kbps, fps, points, audio, package.profile.max_sources, base)


def budget_plan(model: str | Path | None, kbps: float, fps: float = DEFAULT_FPS,
                audio: bool = True) -> BudgetPlan:
    """The plan ``Encoder(model, kbps=kbps, fps=fps, audio=audio)`` would make, without
    loading its networks (e.g. to set up a call at the stream's frame rate: the plan may
    halve ``fps``). Raises :class:`~facecodec.sender.budget.BudgetError` as it would."""
    return _plan(find_model(model), float(kbps), float(fps), bool(audio))


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_encoder_args(fps, n_sources, source_codec, source_quality, intra_period,
                        packet_frames, prior, max_num_faces, deadband) -> None:
    """:class:`InputError` naming the first :class:`Encoder` argument that no stream can
    carry (the header's field sizes: docs/format.md) or that no part of the sender takes."""
    checks = [
        (_is_real(fps) and float(MIN_FPS) <= fps <= MAX_FPS,
         f"fps must be a finite number in [1/60, {MAX_FPS:g}] (what the stream header "
         f"carries), got {fps!r}"),
        (n_sources is None or (_is_int(n_sources) and 1 <= n_sources <= MAX_SOURCES),
         # a receiver refuses more
         f"n_sources must be None or an integer in 1..{MAX_SOURCES}, got {n_sources!r}"),
        (source_codec in CODECS,
         f"source_codec must be one of {', '.join(CODECS)}, got {source_codec!r}"),
        (_is_int(source_quality) and 1 <= source_quality <= 100,
         f"source_quality must be an integer in 1..100, got {source_quality!r}"),
        (intra_period is None or (_is_int(intra_period) and 1 <= intra_period <= 65535),
         f"intra_period must be None (2 s) or an integer in 1..65535, got {intra_period!r}"),
        (_is_int(packet_frames) and 1 <= packet_frames <= 255,
         f"packet_frames must be an integer in 1..255, got {packet_frames!r}"),
        (prior is None or isinstance(prior, Prior),
         f"prior must be None or a facecodec.bitstream.prior.Prior (Prior.load(path)), "
         f"got {type(prior).__name__}"),
        (_is_int(max_num_faces) and max_num_faces >= 1,
         f"max_num_faces must be an integer >= 1, got {max_num_faces!r}"),
        (deadband is None or (_is_real(deadband) and deadband >= 0),
         f"deadband must be None (the prior's) or a finite number >= 0, got {deadband!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


@dataclass
class _LiveState:
    """One live stream's sender state (``Encoder.push`` ... ``close``)."""

    frontend: FrontEnd
    policy: SourcePolicy
    sink: _Collect
    writer: FcsWriter
    band: Deadband
    count: int = 0
    last_time: float | None = None  # the previous frame's time (s)
    sources: list[int] = field(default_factory=list)  # frame index of each source sent
    # frames held back until the first source is chosen: (record, values, video size)
    pending: list[tuple[FrameRecord, Values, tuple[int, int]]] = field(default_factory=list)
    # the last frames' records and values, where a newly chosen source's values are found
    recent: deque[tuple[FrameRecord, Values]] = field(
        default_factory=lambda: deque(maxlen=64))
    t0: float = 0.0  # the first frame's time: the stream's time 0 (the sound's origin)
    frame_size: tuple[int, int] = (0, 0)  # the camera's picture (width, height)
    opus: LiveSound | None = None  # the sound's encoder, from the first push_audio
    audio_next: int = 0  # the sample (48 kHz, from t0) the next pushed sound continues
    # the first source, sent small, to send again at full quality: (slot, tube, values,
    # at which frame count)
    refine: tuple[int, np.ndarray, Values, int] | None = None
    # closed loop (source_choice="render"): what the receiver draws, and when it needs more
    loop: LiveCoverage | None = None
    view: Renderer | None = None  # the receiver's network with the sources sent
    slots: list[int] = field(default_factory=list)  # frame index in each source slot
    openness: deque[float] = field(default_factory=lambda: deque(maxlen=150))
    base: BaseEncoder | None = None  # the base layer's encoder (Encoder(base=...))


@dataclass
class DecodedImage:
    index: int
    image: np.ndarray  # (S, S, 3) uint8 RGB, S = the Decoder's output size
    values: Values
    held: bool  # tolerant mode: a lost frame, the last good values repeated
    intra: bool
    drawn: bool = True  # False: decoded but not drawn (``frames(draw=...)`` said so)


def _stream_source(src, stack: contextlib.ExitStack) -> BinaryIO | bytes | Iterable[bytes]:
    """What :meth:`Decoder.frames` accepts, as :class:`FcsReader` takes it: bytes-like,
    a path, a binary file object, or an iterable of byte strings (packets)."""
    if isinstance(src, bytes | bytearray | memoryview):
        return bytes(src)
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        return stack.enter_context(open(path, "rb"))  # read in blocks, closed at the end
    if hasattr(src, "read"):
        if isinstance(src, io.TextIOBase):
            raise InputError("a .fcs stream is binary: open the file with 'rb'")
        return src
    if isinstance(src, Iterable):
        return src
    raise InputError(f"cannot decode a {type(src).__name__}: give bytes, a path, a binary "
                     f"file or an iterable of packets")


class Decoder:
    """A ``.fcs`` stream -> rendered face-tube frames.

    Args:
        model: a model directory or name; default: the model the stream names (looked up
            in ``models/``). The stream's weight hash must match either way.
        tolerant: skip corrupt packets, hold the last good frame, resume at the next
            intra frame (what was skipped is in ``self.skipped`` afterwards).
        backend: ``auto`` (default) or ``torch``: the receiver runs on PyTorch
            (:mod:`facecodec.receiver.runtime`; ONNX is an export format).
        output_size: the side of the rendered frames; default: the stream's crop size, the
            size its source frames are sent at (256), at most ``MAX_DEFAULT_OUTPUT``. A
            model with the pixel blend warps the sources at this size, sharper than its own
            resolution upscaled.
        max_delay: tolerant mode, a stream with parity chunks (``Encoder(fec=G)``): the
            most frames a frame is held back while a lost packet may still be rebuilt
            (default: the stream's group, G - 1 frames; 0: no added latency, a repair then
            only shortens the freeze). Frames always come out in order.
        retouch: move the rendered eyelids and lips to where the stream's landmarks put
            them (:mod:`facecodec.receiver.expression`: blinks and mouth openings the
            generator does not draw); default on, fused frames too (a base layer coded at
            CRF 63 blurs blinks away: on 3 val clips with 69 closed-eye frames the fused
            frames showed 30 of them closed, 63 touched up, for +0.001 LPIPS and -0.25
            dB PSNR; docs/enhancement.md).
        finetune_s: fine-tune the receiver on the stream's source frames for this many
            seconds each time they change (issue 22; :mod:`facecodec.receiver.finetune`:
            the few-shot talking-heads model as its paper does, a Frontalizer drawing each
            source from the others; the rendering waits meanwhile); 0: off. FOM models
            ignore it.
        base: fuse a stream's base layer (format 2.5, ``Encoder(base=...)``) with the
            animation (:mod:`facecodec.receiver.fusion`); default on. A frame whose base
            packet is missing, or that follows a lost one before the next base key frame,
            is the animation alone. Off: the animation alone, as a 2.4 decoder draws it.
    """

    def __init__(self, model: str | Path | None = None, *, tolerant: bool = False,
                 backend: str | None = None, output_size: int | None = None,
                 max_delay: int | None = None, retouch: bool = True, base: bool = True,
                 finetune_s: float = 0.0):
        if max_delay is not None and not (_is_int(max_delay) and 0 <= max_delay <= MAX_REF):
            raise InputError(f"max_delay must be None (the stream's parity group) or an "
                             f"integer in 0..{MAX_REF} frames, got {max_delay!r}")
        self.model = model
        self.tolerant = tolerant
        self.max_delay = None if max_delay is None else int(max_delay)
        choose_backend(backend)  # a bad name fails here, not at the first frame
        self.backend = backend
        self.output_size = output_size
        self.retouch = bool(retouch)
        self.fuse_base = bool(base)
        if not (_is_real(finetune_s) and 0 <= finetune_s <= MAX_FINETUNE_S):
            raise InputError(f"finetune_s must be a number of seconds in 0..{MAX_FINETUNE_S:g}, "
                             f"got {finetune_s!r}")
        self.finetune_s = float(finetune_s)
        self._fusion_net = None  # the fusion network, loaded at the first base layer
        self.base_fused = 0  # frames of the last stream drawn with its base layer
        self.header: Header | None = None
        self.skipped: list = []
        self._reader: FcsReader | None = None
        self._audio: list[AudioPacket] = []  # read, not yet drained
        self._renderers: dict[tuple[Path, int], object] = {}
        self._retoucher: Retoucher | None = None  # preload()'s, kept for every stream

    def _renderer(self, header: Header, name: str):
        # the user's own model argument may be a path; the stream's id is only a name,
        # looked up among the installed models (a peer must not pick a directory)
        package = (find_model(self.model) if self.model
                   else find_installed_model(header.model_id, name))
        if package.name != header.model_id:
            raise ModelMismatchError(f"stream was encoded with model {header.model_id!r}, "
                                     f"not {package.name!r}", 8, name)
        if package.weights_hash() != header.model_hash:
            raise ModelMismatchError(f"stream was encoded with other weights of model "
                                     f"{header.model_id!r} than {package.path}", 8, name)
        # a header's crop size can say 65535: the default stays within what a call shows
        size = self.output_size or min(header.crop_size, MAX_DEFAULT_OUTPUT)
        r = self._cache_renderer(package, size)
        r.start(header.n_sources)
        return r

    def preload(self, size: int | None = None) -> None:
        """Load the receiver's weights and start the touch-up's face mesh now, before a
        stream arrives (a call's receiver: its first face then waits for the first source
        only): this Decoder's model (default:
        the shipped one), drawn at ``size`` (default: the output size, else a live
        stream's crop size). A stream naming another model or size loads its own."""
        package = find_model(self.model)
        self._cache_renderer(package, self.output_size or size or TUBE_SIZE)
        if self.retouch and self._retoucher is None:
            # the touch-up's face mesh takes ~1.5 s to start: a call's first face would
            # wait for it after its first source (measured: 1.0-1.3 s of a 3.2-s start)
            self._retoucher = Retoucher()
            self._retoucher.load()

    def _cache_renderer(self, package, size: int):
        key = (package.path, size)
        if key not in self._renderers:  # loading the weights once per model
            while len(self._renderers) >= MAX_RENDERERS:  # streams pick sizes: bounded
                self._renderers.pop(next(iter(self._renderers)))
            self._renderers[key] = Renderer(package, backend=self.backend, output_size=size,
                                            finetune_s=self.finetune_s)
        return self._renderers[key]

    def frames(self, src: BinaryIO | bytes | str | Path | Iterable[bytes],
               name: str | None = None,
               draw: Callable[[int], bool] | None = None) -> Iterator[DecodedImage]:
        """Decoded frames as the stream arrives (a frame per packet with one-frame
        packets). ``src``: bytes, a path, a binary file, or an iterable of byte strings
        (packets as they arrive: each is decoded as soon as it is complete, and damage is
        resynchronised on what has arrived).

        A frame that cannot be decoded from what arrived (a lost or damaged packet, or a
        packet whose reference was lost) is concealed in tolerant mode: the last good
        picture is shown again (``held``); :attr:`last_good` then names the frame a
        sender with a back channel should code against (``Encoder.recover_from``). A
        stream with parity chunks (``Encoder(fec=G)``) is repaired instead when one packet
        of a group is lost: the frames after the loss then come out up to ``max_delay``
        frames late (G - 1 by default), decoded, with none held.

        ``draw(index)``, when given, is asked before each decoded frame is rendered: False
        skips the rendering (a live receiver behind real time catches up on the next
        frame); the frame is yielded with ``drawn=False`` and the last picture."""
        name = name or (str(src) if isinstance(src, str | os.PathLike) else "stream")
        with contextlib.ExitStack() as stack:
            reader = FcsReader(_stream_source(src, stack), name=name, tolerant=self.tolerant,
                               max_delay=self.max_delay)
            yield from self._render(reader, name, draw)

    def _render(self, reader: FcsReader, name: str,
                draw: Callable[[int], bool] | None = None) -> Iterator[DecodedImage]:
        self._reader = reader
        self.header = reader.header
        self._audio = []

        renderer = self._renderer(reader.header, name)
        # one per stream, or preload()'s: it keeps the face mesh loaded (each frame is
        # touched up alone, so streams can share it)
        own = self.retouch and self._retoucher is None
        retoucher = Retoucher() if own else self._retoucher  # None without the touch-up
        last: np.ndarray | None = None
        layer, fusion = self._base_layer(reader, renderer.output_size)
        self.base_fused = 0
        try:
            for ev in reader:
                if isinstance(ev, BasePacket):
                    if layer is not None:
                        layer.add(ev)
                elif isinstance(ev, SourceFrame):
                    renderer.set_source(ev.index, decode_source(ev, name), ev.values)
                elif isinstance(ev, DecodedFrame):
                    if not renderer.ready:
                        raise FormatError(f"frame {ev.index} comes before any source frame",
                                          reader.offset, name)
                    drawn = True
                    if ev.held and last is not None:  # a freeze: nothing new to draw
                        image = last
                    elif draw is not None and last is not None and not draw(ev.index):
                        image, drawn = last, False
                    else:
                        image = renderer.render([ev.values])[0]
                        picture = layer.take(ev.index) if layer is not None else None
                        if picture is not None:
                            image = fusion(image, picture)
                            self.base_fused += 1
                        if retoucher is not None and "sup" in ev.values:
                            image = retoucher(image, ev.values["sup"])
                        last = image
                    yield DecodedImage(ev.index, image, ev.values, ev.held, ev.intra, drawn)
                elif isinstance(ev, AudioPacket):
                    self._audio.append(ev)  # drained by whoever plays it (drain_audio)
                elif isinstance(ev, Crop):
                    pass  # the output is the face tube; the crop places it in the original
        finally:
            self.skipped = reader.skipped
            if own:
                retoucher.close()

    def _base_layer(self, reader: FcsReader, size: int
                    ) -> tuple[BaseDecoder | None, Fusion | None]:
        """The stream's base layer decoder and the fusion, when it declares one (and
        ``base`` is on, and the output size suits the fusion network: a multiple of 16)."""
        if not self.fuse_base or reader.base is None or size % 16:
            return None, None
        side, crf = reader.base["side"], reader.base["crf"]
        if self._fusion_net is None:  # loaded once; each stream gives its condition
            self._fusion_net = find_fusion()
        return BaseDecoder(side, size), Fusion(side, crf, self._fusion_net)

    def drain_audio(self) -> list[AudioPacket]:
        """The sound packets (format 2.2, Opus) read since the last call, in time order:
        a stream's packets arrive interleaved with its frames, each before the frame its
        start falls in (decode them with ``facecodec.audio.sound_decoder(header.info)``)."""
        out, self._audio = self._audio, []
        return out

    @property
    def last_good(self) -> int | None:
        """The last frame of the current stream decoded from received values (None before
        the first): what to send back to the sender after a loss."""
        return None if self._reader is None else self._reader.last_good

    def decode_file(self, src: str | Path, dst: str | Path, compare: str | Path | None = None,
                    size: int = TUBE_SIZE, progress: bool = True) -> dict:
        """Render ``src`` (.fcs) into the video ``dst`` (H.264 in .mp4, .m4v, .mov or
        .mkv) at ``size`` x ``size``; with ``compare``, the original video's face tube
        (same crop boxes, from the stream) goes on the left. Written under a temporary
        name, renamed at the end."""
        src, dst = Path(src), Path(dst)
        if not src.is_file():
            raise InputError(f"{src}: no such file")
        # before any rendering: PyAV refuses other containers only at the first frame
        check_output(dst, inputs=[src, compare], suffixes=VIDEO_SUFFIXES,
                     writes="decode writes H.264 video")
        originals = self._originals(src, compare, size) if compare else None
        total = self._count_frames(src) if progress else None
        part = dst.with_name(dst.name + ".part" + dst.suffix)
        t0, n, held = time.perf_counter(), 0, 0
        try:
            with open(src, "rb") as f, av.open(str(part), "w") as out:
                frames = self.frames(f, name=str(src))
                first = next(frames, None)
                if first is None:
                    raise FormatError("stream holds no frame", source=str(src))
                stream = out.add_stream("libx264", rate=self.header.fps)
                stream.width, stream.height = size * (2 if compare else 1), size
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "18", "preset": "veryfast"}
                sound = _SoundTrack(out, self.header.fps, self.header.info) \
                    if audio_declared(self.header.info) else None
                with tqdm(desc="decode", unit="frame", total=total,
                          disable=not progress) as bar:
                    for fr in _chain(first, frames):
                        image = _resize(fr.image, size)
                        if originals is not None:
                            image = np.concatenate([next(originals, np.zeros_like(image)),
                                                    image], axis=1)
                        out.mux(stream.encode(av.VideoFrame.from_ndarray(image, "rgb24")))
                        if sound is not None:  # the sound up to the end of this frame
                            sound.add(self.drain_audio(), n + 1)
                        n += 1
                        held += fr.held
                        bar.update(1)
                out.mux(stream.encode(None))
                if sound is not None:
                    sound.close(n)
            os.replace(part, dst)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return {"frames": n, "held": held, "seconds": time.perf_counter() - t0,
                "skipped": [s.__dict__ for s in self.skipped]}

    def _count_frames(self, src: Path) -> int | None:
        """The frames ``src`` will give (the progress bar's total), from a pass over its
        values alone (a small share of the rendering time); None if that pass fails: the
        rendering pass then reports why, at the frame where it happens."""
        try:
            with open(src, "rb") as f:
                reader = FcsReader(f, name=str(src), tolerant=self.tolerant)
                return sum(isinstance(ev, DecodedFrame) for ev in reader)
        except Exception:  # noqa: BLE001 - any failure is reported by the real pass
            return None

    def _originals(self, fcs: Path, video: str | Path, size: int) -> Iterator[np.ndarray]:
        """The original's face tube, frame by frame, cropped with the stream's boxes."""
        with open(fcs, "rb") as f:
            reader = FcsReader(f, name=str(fcs), tolerant=True)
            crops = [ev for ev in reader if isinstance(ev, Crop)]
            fps = float(reader.header.fps)
        boxes = {c.frame: Box(*(round(x) for x in c.box)) for c in crops}

        def gen() -> Iterator[np.ndarray]:
            with VideoReader(video, fps=fps) as v:
                box = boxes.get(0)
                if box is None:
                    raise FormatError("the stream has no crop box for its first frame",
                                      source=str(fcs))
                for frame in v:
                    box = boxes.get(frame.index, box)
                    yield crop(frame.image, box, size)

        return gen()


class _SoundTrack:
    """The stream's sound muxed into the output video as AAC, sample-exact: each packet
    lands at its start, a lost one is silence, and the track ends with the video."""

    def __init__(self, out, fps: Fraction, info: dict):
        self.out, self.fps = out, fps
        self.stream = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        self.decoder = sound_decoder(info)
        self.written = 0  # samples muxed
        self._pending = np.zeros(0, np.int16)  # decoded, not yet muxed

    def add(self, packets: list[AudioPacket], frames: int) -> None:
        """Decode ``packets`` and mux what lies before the end of frame ``frames``."""
        pcm = [self.decoder.decode(p) for p in packets]
        self._pending = np.concatenate([self._pending, *pcm])
        end = round(frames * AUDIO_RATE / self.fps)
        take = max(0, min(len(self._pending), end - self.written))
        if take:
            frame = av.AudioFrame.from_ndarray(self._pending[None, :take], format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, self.written
            self.out.mux(self.stream.encode(frame))
            self.written += take
            self._pending = self._pending[take:]

    def close(self, frames: int) -> None:
        """Silence to the video's end if the sound stopped early; then flush."""
        short = round(frames * AUDIO_RATE / self.fps) - self.written - len(self._pending)
        if short > 0:
            self._pending = np.concatenate([self._pending, np.zeros(short, np.int16)])
        self.add([], frames)
        self.out.mux(self.stream.encode(None))


def _chain(first, rest):
    yield first
    yield from rest


# the module's own name for it: tests/test_codec.py hooks the decode loop through it
_resize = resize_square
