"""Making calls: a loopback call through the emulated link, or one end of a call between
two machines (``facecodec call send`` / ``call receive``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from aiortc import RTCPeerConnection, RTCSessionDescription

from facecodec.call.link import LinkModel, LinkProfile, UdpRelay
from facecodec.call.peer import CLOCK, CallOptions, Receiver, Sender, make_source
from facecodec.call.report import FrameEvent, ReceiverLog, SenderLog, summarize
from facecodec.call.signalling import (
    candidate_ports,
    exchange,
    serve_once,
    use_loopback_only,
    via_relay,
)


def _quiet() -> None:
    # aioice / aiortc log every ICE check at INFO; a call prints its own report
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)


async def loopback_call(source: dict, options: CallOptions, forward: LinkProfile,
                        backward: LinkProfile | None = None, seed: int = 0,
                        timeout: float | None = None, logs: Path | None = None) -> dict:
    """A call between two peer processes on this machine, each with its own
    RTCPeerConnection and ICE bound to 127.0.0.1, every datagram through the relay in this
    process (``forward``: sender -> receiver; ``backward``: the feedback and the
    acknowledgements, by default the same impairments). ``source``: ``{"video": path}`` or
    ``{"camera": device, "format": f}``. Signalling: the sender's offer goes over the TCP
    exchange of facecodec/call/signalling.py to this process, which points each peer at
    the relay (``via_relay``) and passes it on to the receiver the same way. Separate
    processes: in one, the encoder's and the decoder's threads stall each other on
    Python's lock (the decoder's value decoding is pure Python). ``timeout``: the
    receiver stops waiting for the end this long after the start. ``logs``: also write
    both peers' logs there (JSON: ``sender``, ``receiver``), what the report is computed
    from. Returns the report (facecodec/call/report.py)."""
    _quiet()
    backward = backward or forward
    relay = UdpRelay(LinkModel(forward, seed), LinkModel(backward, seed + 1))
    await relay.start()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="facecodec-call-") as tmp:
        slog_path, rlog_path = Path(tmp) / "sender.json", Path(tmp) / "receiver.json"
        receiver = ctx.Process(target=_receiver_process, name="facecodec-call-receiver",
                               args=(options, ready, str(rlog_path), timeout), daemon=True)
        receiver.start()
        procs = [receiver]
        try:
            recv_port = await loop.run_in_executor(None, ready.get, True, 600)

            async def answer_for(offer_sdp: str) -> str:
                relay.peer_addr["a"] = ("127.0.0.1", candidate_ports(offer_sdp)[0])
                answer = await exchange("127.0.0.1", recv_port,
                                        via_relay(offer_sdp, relay.port("a")))
                relay.peer_addr["b"] = ("127.0.0.1", candidate_ports(answer)[0])
                return via_relay(answer, relay.port("b"))

            port_ready: asyncio.Future = loop.create_future()
            server = asyncio.ensure_future(serve_once("127.0.0.1", 0, answer_for,
                                                      ready=port_ready.set_result))
            port = await port_ready
            sender = ctx.Process(target=_sender_process, name="facecodec-call-sender",
                                 args=(source, options, port, str(slog_path)), daemon=True)
            sender.start()
            procs.append(sender)
            await server
            started = CLOCK()
            while any(p.is_alive() for p in procs):
                await asyncio.sleep(0.1)
            end = CLOCK()
            for p in procs:
                if p.exitcode != 0:
                    err = (Path(tmp) / f"{p.name}.error")
                    why = err.read_text() if err.is_file() else f"exit code {p.exitcode}"
                    raise RuntimeError(f"{p.name} failed: {why}")
            slog = _load_sender(json.loads(slog_path.read_text()))
            rlog = _load_receiver(json.loads(rlog_path.read_text()))
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join(5)
            relay.close()
    for e in rlog.frames:  # the emulated delay of the datagram that brought each frame
        e.net_delay = relay.delay_before("a_to_b", e.arrived)
    if logs is not None:
        Path(logs).write_text(json.dumps({"sender": asdict(slog), "receiver": asdict(rlog)}))
    report = summarize(slog, rlog, link=relay.summary(), offered=relay.offered)
    report["call"] = {"mode": "loopback", "seconds": round(end - started, 2),
                      "options": {k: (str(v) if isinstance(v, Path) else v)
                                  for k, v in asdict(options).items()},
                      "source": {k: str(v) for k, v in source.items()},
                      "seed": seed, "load_avg": list(os.getloadavg()),
                      "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    return report


def _child_setup(options: CallOptions) -> None:
    import torch  # noqa: PLC0415 - a peer process's own setting
    torch.set_num_threads(options.threads)
    _quiet()
    use_loopback_only()


def _answerer(pc: RTCPeerConnection):
    """What the receiver does with the sender's offer: its answer (SDP)."""
    async def answer_for(offer_sdp: str) -> str:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp
    return answer_for


def _fail(path: str, name: str) -> None:
    (Path(path).parent / f"{name}.error").write_text(traceback.format_exc())


def _receiver_process(options: CallOptions, ready, log_path: str, timeout) -> None:
    try:
        _child_setup(options)

        async def main() -> None:
            pc = RTCPeerConnection()
            receiver = Receiver(pc, options)
            try:
                await serve_once("127.0.0.1", 0, _answerer(pc), ready=ready.put)
                log = await receiver.run(timeout=timeout)
            finally:
                await pc.close()
            Path(log_path).write_text(json.dumps(asdict(log)))

        asyncio.run(main())
    except BaseException:
        _fail(log_path, "facecodec-call-receiver")
        raise


def _sender_process(source: dict, options: CallOptions, port: int, log_path: str) -> None:
    try:
        _child_setup(options)

        async def main() -> None:
            pc = RTCPeerConnection()
            sender = Sender(pc, make_source(source, options.fps, options.seconds), options)
            try:
                await pc.setLocalDescription(await pc.createOffer())
                answer = await exchange("127.0.0.1", port, pc.localDescription.sdp)
                await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
                log = await sender.run()
            finally:
                await pc.close()
            Path(log_path).write_text(json.dumps(asdict(log)))

        asyncio.run(main())
    except BaseException:
        _fail(log_path, "facecodec-call-sender")
        raise


def _load_sender(d: dict) -> SenderLog:
    log = SenderLog(**{k: v for k, v in d.items() if k not in ("capture", "sent")})
    log.capture = list(d["capture"])
    log.sent = [tuple(x) for x in d["sent"]]
    return log


def _load_receiver(d: dict) -> ReceiverLog:
    log = ReceiverLog(**{k: v for k, v in d.items()
                         if k not in ("frames", "received", "sources", "audio")})
    log.frames = [FrameEvent(**e) for e in d["frames"]]
    log.received = [tuple(x) for x in d["received"]]
    log.sources = [tuple(x) for x in d["sources"]]
    log.audio = [tuple(x) for x in d["audio"]]
    return log


async def send_call(source, options: CallOptions, host: str, port: int) -> SenderLog:
    """The sender's end of a call between two machines: offer to the receiver listening
    at ``host:port``, then send until the input ends."""
    _quiet()
    pc = RTCPeerConnection()
    sender = Sender(pc, source, options)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        answer = await exchange(host, port, pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return await sender.run(send_log=True)
    finally:
        await pc.close()


async def receive_call(options: CallOptions, host: str, port: int, ready=None) -> dict:
    """The receiver's end: wait for a sender's offer on ``host:port``, receive, show or
    record, and return the report (the sender's times mapped to this clock with the
    offset measured over the control channel)."""
    _quiet()
    pc = RTCPeerConnection()
    receiver = Receiver(pc, options)
    try:
        await serve_once(host, port, _answerer(pc), ready=ready)
        started = CLOCK()
        rlog = await receiver.run(ping=True)
        end = CLOCK()
    finally:
        with contextlib.suppress(Exception):
            await pc.close()
    slog = _sender_log(receiver.sender_end, receiver.clock_offset)
    report = summarize(slog, rlog) if slog else {"error": "the sender's log did not arrive"}
    report["call"] = {"mode": "receive", "seconds": round(end - started, 2),
                      "clock_offset_s": receiver.clock_offset,
                      "load_avg": list(os.getloadavg())}
    return report


def _sender_log(end: dict | None, offset: float) -> SenderLog | None:
    """The sender's log from its end message, its times moved onto this clock."""
    if not end or "log" not in end:
        return None
    d = end["log"]
    log = SenderLog(**{k: v for k, v in d.items() if k not in ("capture", "sent")})
    log.t0 -= offset
    log.capture = [None if c is None else c - offset for c in d["capture"]]
    log.sent = [(t - offset, n, ch) for t, n, ch in d["sent"]]
    return log
