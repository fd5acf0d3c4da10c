"""The base layer (issue 20, format 2.5): the face tube coded with SVT-AV1 at a low
resolution and quality, sent beside the keypoint stream, decoded with libdav1d by the
receiver, which fuses it with its animation (facecodec/receiver/fusion.py).

A live stream uses SVT-AV1's low-delay prediction structure (``pred-struct=1``, no
reordering, no look-ahead): one temporal unit per input frame at once, which goes out
beside that frame's packet. A file uses its random-access structure (hidden reference
frames coded ahead, the units still one per frame in frame order), which a file can wait
for: on a val clip low delay needed CRF 50 and 15.3 kbps for the LPIPS random access
reached at CRF 56 and 11.7 (docs/enhancement.md). A key frame every
``key_period`` frames, and on request (a receiver that lost a base packet cannot decode
the following ones until one). Both sides are PyAV's
FFmpeg (libsvtav1 / libdav1d, docs/environment.md): nothing of a pixel codec is written
here but the AV1 OBU walk that drops what a transport does not carry.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import cv2
import numpy as np

from facecodec.bitstream.container import BasePacket

PRESET = "8"
"""SVT-AV1's speed preset for a live sender: ~2 ms a 256-px frame in low delay on this CPU,
where preset 5 takes ~9 ms for 4 % fewer bits at the same LPIPS (a val clip at CRF 56,
docs/enhancement.md)."""
FILE_PRESET = "5"
"""And for a file (random access, as the eval's anchor and the fusion's training data)."""

_OBU_SEQUENCE_HEADER = 1
_DROP_OBUS = frozenset({2, 15})  # temporal delimiter, padding: the transport does not carry them


def _leb128(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    for k in range(8):
        byte = data[i + k]
        value |= (byte & 0x7F) << (7 * k)
        if not byte & 0x80:
            return value, i + k + 1
    raise ValueError("leb128 longer than 8 bytes")


def av1_obus(data: bytes) -> list[tuple[int, bytes]]:
    """(type, bytes) of each OBU of an AV1 low-overhead bitstream (AV1 spec 5.3)."""
    out, i = [], 0
    while i < len(data):
        header = data[i]
        obu_type, has_ext, has_size = (header >> 3) & 15, (header >> 2) & 1, (header >> 1) & 1
        j = i + 1 + has_ext
        if has_size:
            size, j = _leb128(data, j)
        else:
            size = len(data) - j
        out.append((obu_type, data[i:j + size]))
        i = j + size
    return out


def carried(data: bytes) -> bytes:
    """An encoder's temporal unit minus the OBUs a transport does not carry."""
    return b"".join(obu for t, obu in av1_obus(data) if t not in _DROP_OBUS)


def is_key(data: bytes) -> bool:
    """Whether a temporal unit starts a decodable sequence (SVT-AV1 sends a sequence
    header with each key frame)."""
    try:
        return any(t == _OBU_SEQUENCE_HEADER for t, _ in av1_obus(data))
    except (IndexError, ValueError):  # a damaged unit: not a place to start
        return False


class _Bits:
    """An MSB-first bit reader (AV1 spec 4.10 f(n), 4.10.3 uvlc())."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def f(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]  # IndexError past the end: a damaged header
            v = (v << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def uvlc(self) -> int:
        zeros = 0
        while not self.f(1):
            zeros += 1
            if zeros >= 32:
                return (1 << 32) - 1
        return self.f(zeros) + (1 << zeros) - 1


def sequence_size(unit: bytes) -> tuple[int, int] | None:
    """The largest frame (width, height) a unit's sequence header allows (AV1 spec 5.5:
    max_frame_width_minus_1 / max_frame_height_minus_1), None without one or when it
    does not parse. Read before decoding: a peer's header could ask libdav1d for frames
    of 65536 x 65536."""
    try:
        for obu_type, obu in av1_obus(unit):
            if obu_type != _OBU_SEQUENCE_HEADER:
                continue
            has_ext, has_size = (obu[0] >> 2) & 1, (obu[0] >> 1) & 1
            pos = 1 + has_ext
            if has_size:
                _, pos = _leb128(obu, pos)
            b = _Bits(obu[pos:])
            b.f(3)  # seq_profile
            b.f(1)  # still_picture
            if b.f(1):  # reduced_still_picture_header
                b.f(5)  # seq_level_idx[0]
            else:
                decoder_model = False
                delay_bits = 0
                if b.f(1):  # timing_info_present_flag
                    b.f(32), b.f(32)  # num_units_in_display_tick, time_scale
                    if b.f(1):  # equal_picture_interval
                        b.uvlc()
                    decoder_model = bool(b.f(1))
                    if decoder_model:  # decoder_model_info()
                        delay_bits = b.f(5) + 1
                        b.f(32)
                        b.f(5), b.f(5)
                initial_delay = b.f(1)
                for _ in range(b.f(5) + 1):  # operating points
                    b.f(12)  # operating_point_idc
                    if b.f(5) > 7:  # seq_level_idx
                        b.f(1)  # seq_tier
                    if decoder_model and b.f(1):
                        b.f(delay_bits), b.f(delay_bits), b.f(1)
                    if initial_delay and b.f(1):
                        b.f(4)
            wbits, hbits = b.f(4) + 1, b.f(4) + 1
            return b.f(wbits) + 1, b.f(hbits) + 1
    except (IndexError, ValueError):
        return None
    return None


def shrink(image: np.ndarray, side: int) -> np.ndarray:
    """An RGB picture to ``side`` x ``side`` (area averaging), as the layer is coded."""
    if image.shape[0] == side:
        return np.ascontiguousarray(image)
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


def enlarge(image: np.ndarray, side: int) -> np.ndarray:
    """A decoded base picture to the output size, bicubic (as the fusion was trained)."""
    if image.shape[0] == side:
        return image
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)


def parse_base(value: str) -> tuple[int, int]:
    """``"SIDE:CRF"`` (e.g. ``"256:63"``, the CLI's and eval's spelling) -> (side, crf);
    ValueError otherwise (the Encoder checks the ranges)."""
    side, colon, crf = value.partition(":")
    if not (colon and side.isdigit() and crf.isdigit()):
        raise ValueError(f"a base layer is SIDE:CRF, e.g. 256:63 (got {value!r})")
    return int(side), int(crf)


CBR_SHARE = 0.88
"""What a constant-rate base layer asks SVT-AV1 for, of the rate it is given: measured in
low delay at 256 px on a val clip, SVT-AV1 lands 2-9 % above its target (8 kbps asked:
8.73; 15: 15.36), and each unit's chunk adds 4-5 bytes (~0.5 kbps at 15 fps)."""


class BaseEncoder:
    """Face tubes in (``encode``, one per frame), AV1 temporal units out, each with the
    frame it pictures: one per frame, in frame order.

    ``low_delay`` (a live stream): SVT-AV1's low-delay structure, each frame's unit
    returned at once, at ``PRESET``. Otherwise (a file, which can wait): its random-access
    structure at ``FILE_PRESET``, units returned when the encoder has seen enough of what
    follows (and the rest at ``close``): fewer bits at equal quality (module docstring),
    and the kind of base layer the fusion was trained on. At a constant quality
    (``crf``), or, low delay only, a constant rate (``kbps``: SVT-AV1's CBR, the only rate
    control it has there; used by a budget)."""

    def __init__(self, side: int, crf: int, fps: Fraction | float, key_period: int,
                 kbps: float | None = None, low_delay: bool = True):
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its config at info level
        if kbps is not None and not low_delay:
            raise ValueError("a constant-rate base layer is low delay")
        self.side, self.crf, self.low_delay = int(side), int(crf), bool(low_delay)
        cc = av.CodecContext.create("libsvtav1", "w")
        cc.width = cc.height = self.side
        cc.pix_fmt = "yuv420p"
        rate = Fraction(fps).limit_denominator(1001)
        cc.time_base, cc.framerate = 1 / rate, rate
        cc.gop_size = max(1, int(key_period))
        params = "lp=1:pred-struct=1" if low_delay else "lp=1"  # one thread
        if kbps is None:
            cc.options = {"crf": str(self.crf), "svtav1-params": params,
                          "preset": PRESET if low_delay else FILE_PRESET}
        else:
            cc.options = {"b": str(round(CBR_SHARE * kbps * 1000)), "preset": PRESET,
                          "svtav1-params": params + ":rc=2"}
        self._cc = cc
        self.frames = 0  # frames given to encode(): the next one's number
        self._key = False

    def request_key(self) -> None:
        """Code the next frame as a key frame (a receiver lost a base packet)."""
        self._key = True

    def encode(self, tube: np.ndarray) -> list[tuple[int, bytes]]:
        """An RGB face tube (any square size) -> the (frame, unit) pairs now complete:
        this frame's in low delay; in random access none or several earlier ones."""
        frame = av.VideoFrame.from_ndarray(shrink(tube, self.side), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = self.frames
        if self._key:
            frame.pict_type = av.video.frame.PictureType.I
            self._key = False
        self.frames += 1
        return self._units(self._cc.encode(frame))

    def close(self) -> list[tuple[int, bytes]]:
        """End the stream: the units still held (none in low delay). SVT-AV1 complains
        on stderr when it is freed without this."""
        if self._cc is None:
            return []
        out = self._units(self._cc.encode(None))
        self._cc = None
        return out

    @staticmethod
    def _units(packets) -> list[tuple[int, bytes]]:
        return [(int(p.pts), carried(bytes(p))) for p in packets]


def encode_all(enc: BaseEncoder, tubes, frames: int | None = None) -> list[bytes]:
    """Every tube through ``enc`` (then closed) -> each frame's unit, in frame order (b""
    for a frame the encoder gave none)."""
    got: dict[int, bytes] = {}
    for tube in tubes:
        got.update(enc.encode(tube))
    got.update(enc.close())
    n = enc.frames if frames is None else frames
    return [got.get(i, b"") for i in range(n)]


class BaseDecoder:
    """Base-layer packets in (``add``), each frame's picture at the output size out
    (``take``). After a lost packet the layer waits for the next key frame."""

    MAX_KEPT = 64  # pictures waiting for their frame: bounded whatever a peer sends

    def __init__(self, side: int, output_size: int):
        self.side, self.output_size = int(side), int(output_size)
        self._cc = av.CodecContext.create("libdav1d", "r")
        self._cc.thread_count = 1
        self._next: int | None = None  # the frame the layer can decode next
        self._pictures: dict[int, np.ndarray] = {}
        self.broken = 0  # packets skipped while waiting for a key frame

    def add(self, packet: BasePacket) -> None:
        key = is_key(packet.data)
        if key and sequence_size(packet.data) != (self.side, self.side):
            self.broken += 1  # not the declared side (or no size): never decoded
            self._next = None
            return
        if packet.frame != self._next and not key:
            self.broken += 1  # its reference is lost: wait for a key frame
            self._next = None
            return
        try:
            frames = self._cc.decode(av.Packet(packet.data))
        except av.error.FFmpegError:
            self.broken += 1
            self._next = None
            return
        self._next = packet.frame + 1
        for f in frames:
            if (f.width, f.height) != (self.side, self.side):
                continue  # a frame header's own size: not this stream's layer
            self._pictures[packet.frame] = enlarge(f.to_ndarray(format="rgb24"),
                                                   self.output_size)
        while len(self._pictures) > self.MAX_KEPT:
            self._pictures.pop(min(self._pictures))

    def take(self, frame: int) -> np.ndarray | None:
        """Frame ``frame``'s picture, if it arrived and decoded (older ones are dropped)."""
        for old in [k for k in self._pictures if k < frame]:
            del self._pictures[old]
        return self._pictures.pop(frame, None)
