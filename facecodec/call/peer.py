"""The two ends of a call: the sender (camera or video file -> Encoder -> data channels) and
the receiver (data channels -> tolerant Decoder -> screen, recording, report).

Media go one way (sender -> receiver) with the receiver's feedback coming back: on a
2-core machine one encoder and one decoder already take most of a 67-ms frame each. The
encoder and the decoder run in threads of their own; aiortc (ICE, DTLS, SCTP) runs in the
asyncio loop, and the threads hand it what to send with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np

import facecodec
from facecodec.audio import RATE as AUDIO_RATE
from facecodec.audio import read_audio
from facecodec.bitstream.chunks import AUDIO_ORIGIN
from facecodec.bitstream.container import audio_declared
from facecodec.bitstream.header import parse_header
from facecodec.call import wire
from facecodec.call.congestion import CongestionMonitor
from facecodec.call.playout import Playout
from facecodec.call.record import Recorder
from facecodec.call.report import FrameEvent, ReceiverLog, SenderLog
from facecodec.call.witness import SoundWitness, sound_seconds
from facecodec.codec import MAX_REPEAT_S
from facecodec.errors import FormatError
from facecodec.sender.video import VideoReader

CLOCK = time.monotonic
SOUND_TICK_S = 0.02  # the sender pushes the sound in blocks this long, as captured
MAX_BACKLOG = 2  # newer frames waiting while a decoded one is still drawn (backlog_allowed)
DRAW_WINDOW = 30  # ... judged by the median of the receiver's last drawing times,
STALE_WINDOW_S = 10.0  # ... and not for a frame a period later than the fastest of these
PINGS = 5  # clock-offset samples the receiver takes (two-machine calls)
REQUEST_REPEAT_S = 0.2  # a recovery request repeated at most this often ...
REQUEST_COPIES = 2  # ... after being sent this many times on consecutive held frames
RECOVERY_COPIES = 2  # frames the sender codes against the frame a request names
# after a recovery request the sender codes two chains of frames (FcsWriter.set_chains)
# for this long: a loss then drops every other frame instead of freezing the picture
CHAINS_S = 10.0
DUPLICATE_S = 0.15  # a request for the same frame within this long of one acted on: a copy


@dataclass
class CallOptions:
    kbps: float | None = 6.0  # the Encoder's budget (None: its defaults)
    audio: bool = False
    protection: str = "none"
    feedback: bool = True  # the receiver asks for intra / recovery frames after a loss
    fps: float = 15.0
    seconds: float | None = None  # stop the sender after this much of the input
    model: str | None = None
    show: bool = False  # an OpenCV window at the receiver
    record: Path | None = None  # the receiver's screen (and sound) to a video file
    grace_s: float = 1.0  # after the end chunk, wait this long for late frame packets
    draw_late: bool = False  # draw every frame even when newer ones are waiting
    threads: int = 1  # PyTorch threads of each peer's network
    source_choice: str = "pose"  # "render": the sender's closed loop (docs/codec.md)
    packet_frames: int = 1  # frames per packet: fewer data-channel messages, more delay
    base: bool = False  # a base layer in what the budget leaves (Encoder(base="auto"))
    # the receiver ends the call after this long without a byte from the sender (a
    # sender gone without its end chunk, a link that stopped carrying anything)
    idle_s: float = 10.0
    # the receiver asks the sender to pack frame packets into fewer messages while the
    # link queues (facecodec/call/congestion.py); needs ``feedback``
    adapt_packing: bool = True
    # after a recovery request, two chains of frames for CHAINS_S (one frame per packet
    # only); needs ``feedback``
    chains: bool = True
    # a call with sound: the receiver holds a picture until it is at most 60 ms ahead of
    # its sound (facecodec/call/playout.py)
    lip_sync: bool = True


def make_source(spec: dict, fps: float, seconds: float | None):
    """The sender's input from ``{"video": path}`` or ``{"camera": device, "format": f}``
    (what a peer process is told)."""
    if spec.get("video"):
        return FileInput(Path(spec["video"]), fps, seconds)
    return CameraInput(spec["camera"], spec["format"], fps, seconds)


def open_channels(pc) -> dict[int, object]:
    """The call's data channels (facecodec/call/wire.py), negotiated: both peers call this
    with the same ids."""
    out = {}
    for cid, (label, ordered, retransmits) in wire.CHANNELS.items():
        out[cid] = pc.createDataChannel(label, ordered=ordered, maxRetransmits=retransmits,
                                        negotiated=True, id=cid)
    return out


async def wait_open(channels: dict[int, object], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(ch.readyState != "open" for ch in channels.values()):
        if loop.time() > deadline:
            raise TimeoutError("the data channels did not open (ICE or DTLS failed)")
        await asyncio.sleep(0.02)


# -- inputs ----------------------------------------------------------------------------------

class FileInput:
    """A video file played in real time as a stand-in for a camera, with its sound:
    yields (RGB frame, media time s); the sender paces them on its clock."""

    def __init__(self, path: Path, fps: float, seconds: float | None):
        self.path, self.fps, self.seconds = Path(path), fps, seconds
        self._reader = VideoReader(self.path, fps=fps)
        self.pcm = read_audio(self.path)

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        with self._reader as r:
            for f in r:
                if self.seconds is not None and f.time >= self.seconds - 1e-9:
                    return
                yield f.image, f.time

    realtime = True


class CameraInput:
    """A camera through PyAV (v4l2 on Linux, avfoundation on macOS, dshow on Windows):
    yields (RGB frame, capture time s from the first frame). Picture only: the sound of a
    camera call is not captured (see docs/call.md)."""

    def __init__(self, device: str, fmt: str, fps: float, seconds: float | None):
        self.fps, self.seconds = fps, seconds
        self._c = av.open(device, format=fmt, options={"framerate": str(int(round(fps)))})
        self.pcm = None

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        t0 = None
        try:
            for frame in self._c.decode(video=0):
                now = CLOCK()
                t0 = now if t0 is None else t0
                if self.seconds is not None and now - t0 >= self.seconds:
                    return
                yield frame.to_ndarray(format="rgb24"), now - t0
        finally:
            self._c.close()

    realtime = False  # frames come when the camera gives them


# -- sender ----------------------------------------------------------------------------------

def backlog_allowed(period_s: float, draw_s: float | None) -> int:
    """How many newer frames may be waiting while the receiver still draws the one it
    decoded: as many as it can draw in half a frame period (at most 2; none before it
    knows its drawing time). At 7.5 frames/s with a 25-ms drawing that is 2: a frame
    that comes just before the next one (the link's jitter bunches them) is drawn, not
    skipped. Until 2026-12-03 any waiting frame made it skip (~13 frames a minute in a
    6-kbps call with sound, and a skip next to a loss made a run of three frames not
    drawn: 0.53 s frozen). At 15 frames/s on a machine that draws in 55 ms it is 0: the
    receiver catches up at once. A frame over a period later than the fastest of the
    last 10 s is skipped all the same (``Receiver._draw``): drawing a backlog after a
    stall kept the receiver behind (added delay p95 264 ms in one call of five)."""
    if not draw_s or draw_s <= 0:
        return 0
    return max(0, min(MAX_BACKLOG, int(period_s / 2 / draw_s)))


def is_copy(answered: tuple[int | None, float], frame: int, now: float) -> bool:
    """Whether a recovery request for ``frame`` at ``now`` is a copy of the one acted on
    (``answered``: its frame and when): the receiver sends each request twice."""
    return frame == answered[0] and now - answered[1] < DUPLICATE_S


class Sender:
    """Encodes the input in real time and sends it; acts on the receiver's feedback."""

    def __init__(self, pc, source, options: CallOptions, encoder=None):
        self.pc, self.source, self.opt = pc, source, options
        self.channels = open_channels(pc)
        audio = options.audio and source.pcm is not None
        self.enc = encoder or facecodec.Encoder(options.model, fps=options.fps, kbps=options.kbps,
                                                audio=audio, protection=options.protection,
                                                source_choice=options.source_choice,
                                                packet_frames=options.packet_frames,
                                                base="auto" if options.base else None)
        if float(self.enc.fps) != float(options.fps):  # the CLI reads at the plan's rate
            raise ValueError(f"the encoder's {float(self.enc.fps):g} fps is not the call's "
                             f"{options.fps:g} (facecodec.codec.budget_plan says which)")
        self.audio = audio
        self.log = SenderLog(fps=options.fps, t0=0.0,
                             budget_kbps=self.enc.budget.kbps if self.enc.budget else None,
                             audio=audio)
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.bye = asyncio.Event()
        self.error: BaseException | None = None
        self.channels[wire.FEEDBACK].on("message", self._on_feedback)
        self.channels[wire.CONTROL].on("message", self._on_control)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pack = 1  # frame packets per fcs message (the receiver's last request)
        self._answered: tuple[int | None, float] = (None, -1e9)  # last recovery request
        self._chains_until = -1e9  # two chains of frames until then (CHAINS_S)
        self._pending = bytearray()  # fcs bytes waiting for the rest of their message
        self._pending_packets = 0

    def _on_feedback(self, msg) -> None:
        if isinstance(msg, bytes) and (req := wire.parse_feedback(msg)) is not None:
            self.requests.put(req)

    def _on_control(self, msg) -> None:
        m = json.loads(msg)
        if m.get("type") == "bye":
            self.bye.set()
        elif m.get("type") == "ping":
            self.channels[wire.CONTROL].send(json.dumps({"type": "pong", "t": m["t"],
                                                         "ts": CLOCK()}))

    def _send(self, cid: int, data: bytes) -> None:  # in the loop
        ch = self.channels[cid]
        if ch.readyState == "open":
            ch.send(data)

    def _emit(self, data: bytes, flush: bool = False) -> None:  # in the media thread
        """Sends what the encoder gave: setup chunks at once; the fcs chunks at once, or
        (packing) once ``_pack`` frame packets are waiting, or with ``flush``."""
        if not data and not (flush and self._pending):
            return
        setup, fcs = self.splitter.split(data) if data else (b"", b"")
        self._pending += fcs
        if self._pack > 1 and fcs:  # counted only when packing (not per frame by default)
            self._pending_packets += len(wire.packet_frames(fcs))
        if self._pack == 1 or self._pending_packets >= self._pack or flush:
            fcs, self._pending, self._pending_packets = bytes(self._pending), bytearray(), 0
        else:
            fcs = b""
        now = CLOCK()
        for cid, part, name in ((wire.SETUP, setup, "setup"), (wire.FCS, fcs, "fcs")):
            if part:
                self.log.sent.append((now, len(part), name))
                self._loop.call_soon_threadsafe(self._send, cid, part)

    def _media(self) -> None:
        """The media thread: pace the input, encode, send; feedback between frames."""
        enc, fps, log = self.enc, float(self.opt.fps), self.log
        self.splitter = wire.Splitter()
        pcm = self.source.pcm if self.audio else None
        start = None
        t_first = t_sound = None  # the first frame's media time: stream time 0
        count = 0  # stream frames made
        last_capture = None
        audio_next = 0  # samples of the input's sound pushed

        def sound_until(media_t: float) -> None:
            """Push the input's sound up to ``media_t`` on its clock. Until 2026-12-02 a
            frame's push took the sound up to the end of its interval, one frame period
            (67-133 ms) before a microphone could have given it."""
            nonlocal audio_next
            if pcm is None:
                return
            upto = min(len(pcm), round((media_t - t_sound) * AUDIO_RATE))
            if upto > audio_next:
                self._emit(enc.push_audio(pcm[audio_next:upto],
                                          t_sound + audio_next / AUDIO_RATE))
                audio_next = upto

        try:
            for image, t in self.source.frames():
                if start is None:
                    start = CLOCK() + 0.05 - t  # the wall time of media time 0
                    log.t0 = start + t
                    t_first = t
                    t_sound = t  # where the input's sound starts (never moves)
                due = start + t
                if self.source.realtime:
                    now = CLOCK()
                    if now > due + 1.0 / fps and count:
                        log.frames_dropped += 1  # a camera gives its newest frame: skip
                        continue
                    while now < due:  # the sound goes out as a microphone gives it
                        if count:
                            sound_until(now - start)
                        time.sleep(min(due - now, SOUND_TICK_S))
                        now = CLOCK()
                self._feedback()
                # which stream slot this capture fills (Encoder.push's own rule), and
                # the slots before it that repeat the last picture
                slot = 0 if not count else math.ceil((t - t_first) * fps - 0.5)
                if slot < count:
                    log.frames_dropped += 1
                    continue
                if slot - count > round(MAX_REPEAT_S * fps):  # a long stall: as push()
                    t_first += (slot - count - round(MAX_REPEAT_S * fps)) / fps
                    slot = count + round(MAX_REPEAT_S * fps)
                while count < slot:
                    log.capture.append(last_capture)
                    count += 1
                capture = due
                began = CLOCK()
                out = enc.push(image, t)
                log.push_s.append(CLOCK() - began)
                self._emit(out)
                if not count:
                    # the camera's clock starts once the encoder has taken its first frame
                    # (MediaPipe and the sender network start up on it: seconds)
                    start = CLOCK() - t
                    log.t0 = start + t  # the sound's time 0 and the report's origin
                log.capture.append(capture)
                last_capture = capture
                count += 1
                log.frames_pushed += 1
                # the sound captured so far (a file not played in real time: up to the
                # end of this frame's interval)
                sound_until(CLOCK() - start if self.source.realtime else t + 1.0 / fps)
            if count:
                sound_until(t + 1.0 / fps)  # the last frame's interval: its sound too
                self._emit(enc.close(), flush=True)
        except BaseException as e:  # noqa: BLE001 - reported by run()
            self.error = e

    def _feedback(self) -> None:
        self._take_requests()
        if self.enc._live is not None:  # two chains while the link loses frames
            chains = 2 if CLOCK() < self._chains_until else 1
            if self.enc.packet_frames == 1:
                self.enc.set_chains(chains)
                self.log.chain_frames += chains > 1

    def _take_requests(self) -> None:
        while True:
            try:
                kind, frame = self.requests.get_nowait()
            except queue.Empty:
                return
            if kind == "pack":
                self._pack = int(frame)
                self.log.packing.append((CLOCK(), self._pack))
                self.log.feedback[kind] += 1
                continue
            if self.enc._live is None:
                continue  # nothing sent yet
            if kind == "intra":
                self.enc.request_intra()
            else:
                # the receiver sends each request twice (a lost request would cost a
                # round trip): the copy is not a new loss
                now = CLOCK()
                if is_copy(self._answered, frame, now):
                    self.log.feedback["duplicate"] += 1
                    continue
                self._answered = (frame, now)
                # two frames against it: a lost recovery frame does not cost a round trip
                self.enc.recover_from(frame, copies=RECOVERY_COPIES)
                if self.opt.chains:
                    self._chains_until = now + CHAINS_S
            self.log.feedback[kind] += 1

    async def run(self, bye_timeout: float = 30.0, send_log: bool = False) -> SenderLog:
        self._loop = asyncio.get_running_loop()
        await wait_open(self.channels)
        th = threading.Thread(target=self._media, name="facecodec-call-sender", daemon=True)
        th.start()
        while th.is_alive():
            await asyncio.sleep(0.05)
        if self.error is not None:
            raise self.error
        end = {"type": "end", "frames": len(self.log.capture)}
        if send_log:  # a receiver on another machine computes the report from it
            end["log"] = asdict(self.log)
        self.channels[wire.CONTROL].send(json.dumps(end))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.bye.wait(), bye_timeout)
        return self.log


# -- receiver --------------------------------------------------------------------------------

class RecoveryRequests:
    """When the receiver asks for a recovery frame: a new request (a new last decoded
    frame) goes out on ``REQUEST_COPIES`` held frames in a row, in separate messages, so
    that one lost on the way costs no round trip; then the same request again only every
    ``REQUEST_REPEAT_S``: under sustained loss a request per concealed frame congests the
    way back."""

    def __init__(self) -> None:
        self._good: object = object()  # the frame the last request named (None: intra)
        self._when = -1e9
        self._sent = 0

    def due(self, good: int | None, now: float) -> bool:
        """Whether to send the request for ``good`` on a held frame at ``now``."""
        sent = self._sent if good == self._good else 0
        if sent < REQUEST_COPIES or now - self._when >= REQUEST_REPEAT_S:
            self._good, self._when, self._sent = good, now, sent + 1
            return True
        return False


class Receiver:
    """Receives the stream, decodes it in a thread, shows / records what it draws, sends
    feedback after a loss and logs everything the report needs."""

    def __init__(self, pc, options: CallOptions, net_delay=None, decoder=None):
        self.pc, self.opt = pc, options
        self.channels = open_channels(pc)
        self.dec = decoder or facecodec.Decoder(options.model, tolerant=True)
        self.dec.preload()  # the weights before the call, not when its header arrives
        self.net_delay = net_delay or (lambda: 0.0)  # the link's delay of the last datagram
        self.log = ReceiverLog()
        self.feed: queue.SimpleQueue = queue.SimpleQueue()
        self._frames_waiting = 0
        self._lateness: deque[tuple[float, float]] = deque()  # (when, delay): _draw
        self._lock = threading.Lock()
        self._header_in = False
        self._source_in = False
        self._held: list[tuple[bytes, float, float, bool]] = []  # messages before a source
        self._end_chunk: bytes | None = None
        self._finished = False
        self._heard: float | None = None  # when the last message of the sender arrived
        self._draw_began: float | None = None  # when the decoder began drawing a frame
        self._audio_data: list = []  # the sound's packets, for the recording
        self.sender_end: dict | None = None
        self.ended = asyncio.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.clock_offset = 0.0  # sender clock - receiver clock
        self._pongs: list[tuple[float, float]] = []  # (rtt, offset)
        self._packet_frames = 1  # the stream header's, once it arrives
        self._stream_info: dict = {}  # the stream header's info (which sound)
        self._stream_fps = float(options.fps)  # the stream header's, once it arrives
        self.monitor = (CongestionMonitor(options.fps)
                        if options.feedback and options.adapt_packing else None)
        # a lost frame seen from the sound sent after it (facecodec/call/witness.py); one
        # frame per message only (packed frames leave later than their time)
        self.witness = SoundWitness(options.fps) if options.feedback else None
        self._packing = 1  # frame packets per message, as last asked of the sender
        self.requests = RecoveryRequests()  # both threads ask through it, under _lock
        # lip sync (a call with sound): when the sound plays, how long a picture waits for
        # it (facecodec/call/playout.py); made when the header declares sound
        self.playout: Playout | None = None
        self._screen: queue.SimpleQueue = queue.SimpleQueue()  # decoded frames to show
        self._source_at = math.inf  # when the first source came in
        self._audio_last = -AUDIO_ORIGIN - 1  # the latest sound packet's start heard
        self.channels[wire.FCS].on("message", self._on_fcs)
        self.channels[wire.SETUP].on("message", self._on_setup)
        self.channels[wire.CONTROL].on("message", self._on_control)
        self._loop: asyncio.AbstractEventLoop | None = None

    # the loop's side
    def _put(self, data: bytes, arrived: float, net: float, frames: bool) -> None:
        """``data`` to the decoder thread; ``frames``: whether it holds a frame packet."""
        with self._lock:
            self._frames_waiting += frames
        self.feed.put((data, arrived, net, frames))

    def _on_fcs(self, msg) -> None:
        self._heard = CLOCK()
        if not isinstance(msg, bytes):
            return
        now, net = CLOCK(), self.net_delay()
        self.log.received.append((now, len(msg), "fcs"))
        try:
            packets = wire.audio_packets(msg, self._audio_last)
        except (ValueError, IndexError):
            packets = []  # damaged: the decoder reports it
        if packets:
            self._audio_last = max(self._audio_last, *(p.start for p in packets))
        for p in packets:
            self.log.audio.append((p.start, now))
            self._witness_sound(p, now)
            if self.playout is not None:
                with self._lock:
                    self.playout.sound(now, now - p.start / AUDIO_RATE)
        if self.opt.record:
            self._audio_data.extend(packets)
        try:  # the frame packets' numbers, read once for the monitor and the decoder
            numbers = wire.packet_frames(msg)
        except ValueError:
            numbers = []  # damaged: the decoder reports it
        if self.monitor is not None and numbers:
            self._watch_link(numbers, len(msg), now)
        if self.witness is not None and numbers:
            k = self._packet_frames
            # the margin learns from frames that left as soon as they were coded, in the
            # call proper (not packed, and not the first ones, which wait for start-up)
            self.witness.frames((f + j for f in numbers for j in range(k)),
                                learn=self._source_in and len(numbers) == 1 and k == 1)
        if not self._source_in:
            self._held.append((msg, now, net, bool(numbers)))
        else:
            self._put(msg, now, net, bool(numbers))

    def _witness_sound(self, packet, now: float) -> None:
        """A sound packet that proves a frame packet lost: ask for the recovery frame now,
        not when the next frame comes (SoundWitness)."""
        if self.witness is None:
            return
        seen = self.witness.sound(packet.start,
                                  sound_seconds(self._stream_info, len(packet.data)))
        if seen is None or not self._source_in or self._packing > 1:
            return  # (heard all the same: the margin learns from every sound packet)
        with self._lock:
            due = self.requests.due(seen[1], now)
        if due:
            self.log.feedback_sent["recover_early"] += 1
            self._send(wire.FEEDBACK, wire.recover_request(seen[1]))

    def _watch_link(self, frames: list[int], nbytes: int, now: float) -> None:
        """The congestion verdict on a frame message holding the packets ``frames``
        (their first frame numbers; facecodec/call/congestion.py)."""
        k = self._packet_frames  # a packet holds k frames from its number on
        verdict = self.monitor.arrived(max(frames) + k - 1, now, nbytes,
                                       [f + j for f in frames for j in range(k)])
        if verdict is not None:
            self.log.congestion.append((now, verdict.frames, round(verdict.queue_s, 3),
                                        round(verdict.kbps, 2)))
            self.log.feedback_sent["pack"] += 1
            self._packing = verdict.frames
            self._send(wire.FEEDBACK, wire.pack_request(verdict.frames))

    def _on_setup(self, msg) -> None:
        self._heard = CLOCK()
        if not isinstance(msg, bytes):
            return
        now, net = CLOCK(), self.net_delay()
        self.log.received.append((now, len(msg), "setup"))
        if not self._header_in:  # the header comes first, then whole chunks
            self._header_in = True
            n = wire.header_length(msg[:8], "stream")
            with contextlib.suppress(FormatError, ValueError):  # the decoder reports it
                header = parse_header(msg[:n], "stream")
                self._packet_frames, self._stream_info = header.packet_frames, header.info
                self._stream_fps = float(header.fps)  # the sender's budget may halve --fps
                if self.monitor is not None and self.monitor.fps != self._stream_fps:
                    self.monitor = CongestionMonitor(self._stream_fps)
                if self.witness is not None:
                    self.witness = SoundWitness(self._stream_fps)
                if self.opt.lip_sync and audio_declared(header.info):
                    self.playout = Playout()
            self.feed.put((msg[:n], now, net, False))
            msg = msg[n:]
            if not msg:
                return
        if wire.has_end(msg):
            self.log.end_frames = wire.end_frames(msg)
            self._end_chunk = msg
            # frame packets still on the way (jitter, reordering) come before the end
            self._loop.call_later(self.opt.grace_s, self._finish)
            return
        for slot in wire.source_completed(msg):
            self.log.sources.append((slot, now))
        self.feed.put((msg, now, net, False))
        if not self._source_in and any(k == wire.SOURCE for k, _, _ in wire.chunk_spans(msg)):
            self._source_in = True
            self._source_at = now
            for held in self._held:
                self._put(*held)
            self._held.clear()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        for held in self._held:  # never got a source: the decoder says what it skipped
            self._put(*held)
        self._held.clear()
        if self._end_chunk is not None:
            self.feed.put((self._end_chunk, CLOCK(), 0.0, False))
        self.feed.put(None)

    def _on_control(self, msg) -> None:
        self._heard = CLOCK()
        m = json.loads(msg)
        if m.get("type") == "end":
            self.sender_end = m
            self.ended.set()
        elif m.get("type") == "pong":
            now = CLOCK()
            rtt = now - m["t"]
            self._pongs.append((rtt, m["ts"] - (m["t"] + now) / 2))
            self.clock_offset = min(self._pongs)[1]

    def _send(self, cid: int, data) -> None:
        ch = self.channels[cid]
        if ch.readyState == "open":
            ch.send(data)

    # the decoder thread
    def _packets(self, current: dict):
        while True:
            item = self.feed.get()
            if item is None:
                return
            data, arrived, net, frames = item
            with self._lock:
                self._frames_waiting -= frames
            if frames:
                current["arrived"], current["net"] = arrived, net
            yield data

    def _draw(self, index: int) -> bool:
        # a frame later than the fastest of the last seconds by over a frame period is
        # stale (a stall, not the link's jitter): skip it if a newer one waits
        period = 1.0 / self._stream_fps
        now = CLOCK()
        late = now - index * period  # its delay, up to an origin both ends share
        self._lateness.append((now, late))
        while self._lateness[0][0] < now - STALE_WINDOW_S:
            self._lateness.popleft()
        stale = late - min(x for _, x in self._lateness) > period
        recent = self.log.draw_s[-DRAW_WINDOW:]
        allowed = 0 if stale else backlog_allowed(
            period, float(np.median(recent)) if recent else None)
        with self._lock:
            draw = self.opt.draw_late or self._frames_waiting <= allowed
        self._draw_began = CLOCK() if draw else None
        return draw

    def _decode(self) -> None:
        current = {"arrived": 0.0, "net": 0.0}
        presenter = threading.Thread(target=self._present, name="facecodec-call-screen",
                                     daemon=True)
        presenter.start()
        try:
            for fr in self.dec.frames(self._packets(current), name="call", draw=self._draw):
                kind = "concealed" if fr.held else "drawn" if fr.drawn else "late"
                if kind == "drawn" and self._draw_began is not None:
                    self.log.draw_s.append(CLOCK() - self._draw_began)
                self._draw_began = None
                now = CLOCK()
                hold = 0.0
                # lip sync: the picture waits for its sound; not the frames that came
                # before the first source (drawn late, all at once: no measure of delay)
                if (kind == "drawn" and self.playout is not None
                        and current["arrived"] >= self._source_at):
                    with self._lock:
                        hold = self.playout.picture(now, now - fr.index / self._stream_fps)
                self._screen.put((fr, kind, now, now + hold, current["arrived"],
                                  current["net"]))
                if fr.held and self.opt.feedback:
                    good = self.dec.last_good
                    with self._lock:
                        due = self.requests.due(good, now)
                    if due:
                        req = (wire.intra_request() if good is None
                               else wire.recover_request(good))
                        self.log.feedback_sent["intra" if good is None else "recover"] += 1
                        self._loop.call_soon_threadsafe(self._send, wire.FEEDBACK, req)
        except BaseException as e:  # noqa: BLE001 - reported by run()
            self.error = e
            while self.feed.get() is not None:  # let the loop's side finish
                pass
        finally:
            self.log.skipped = [s.reason for s in self.dec.skipped]
            self.log.not_shown = sum(s.not_shown for s in self.dec.skipped)
            self.log.base_fused = self.dec.base_fused
            if self.witness is not None:
                self.log.witness_margin_s = self.witness.margin_s
            self._screen.put(None)
            presenter.join()
            self.done.set()

    def _present(self) -> None:
        """The screen's thread: each decoded frame in order, a drawn one at its time (held
        for lip sync in a call with sound): shown, recorded, logged."""
        recorder = None  # made at the first frame: the header (its rate, its sound) is in
        window = None
        due_last = 0.0
        try:
            while (item := self._screen.get()) is not None:
                fr, kind, drawn, due, arrived, net = item
                due_last = max(due_last, due)  # in order, never before the one before
                wait = due_last - CLOCK()
                if wait > 0:
                    time.sleep(wait)
                if self.opt.show and kind == "drawn":
                    window = _show(fr.image)
                if self.opt.record and recorder is None:
                    recorder = Recorder(self.opt.record, self._stream_fps, self._stream_info)
                if recorder is not None:
                    recorder.frame(fr.index, fr.image)
                # (held: how long it waited for its sound, or behind one that did)
                held = max(0.0, due_last - drawn)
                self.log.frames.append(FrameEvent(fr.index, CLOCK(), kind, arrived, net,
                                                  held))
        except BaseException as e:  # noqa: BLE001 - reported by run()
            self.error = self.error or e
            while self._screen.get() is not None:
                pass
        finally:
            if recorder is not None:
                recorder.close(self._audio_data)
            if window:
                cv2.destroyAllWindows()

    async def run(self, timeout: float | None = None, ping: bool = False) -> ReceiverLog:
        self._loop = asyncio.get_running_loop()
        await wait_open(self.channels)
        if ping:  # the sender's clock against ours (min round trip of a few)
            for _ in range(PINGS):
                self.channels[wire.CONTROL].send(json.dumps({"type": "ping", "t": CLOCK()}))
                await asyncio.sleep(0.1)
        th = threading.Thread(target=self._decode, name="facecodec-call-receiver", daemon=True)
        th.start()
        self._heard = self._heard or CLOCK()  # the channels are open: silence counts
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.done.is_set():
            why = None
            if deadline is not None and loop.time() > deadline:
                why, deadline = "the receiver's timeout", None
            elif self.pc.connectionState in ("failed", "closed"):
                why = f"the connection {self.pc.connectionState}"
            elif self._heard is not None and CLOCK() - self._heard > self.opt.idle_s:
                why = f"nothing from the sender for {self.opt.idle_s:g} s"
            if why is not None and not self._finished:
                self.log.ended = why
                self._finish()
            await asyncio.sleep(0.05)
        if self.log.ended == ReceiverLog.ended:  # (not when the sender is gone)
            with contextlib.suppress(TimeoutError):  # the sender's end message (its log)
                await asyncio.wait_for(self.ended.wait(), 10.0)
        self._send(wire.CONTROL, json.dumps({"type": "bye"}))
        await asyncio.sleep(0.2)  # let the bye go out
        if self.error is not None:
            raise self.error
        return self.log


def _show(image: np.ndarray) -> bool:
    cv2.imshow("facecodec call", np.ascontiguousarray(image[..., ::-1]))
    cv2.waitKey(1)
    return True
