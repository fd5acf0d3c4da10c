"""Making calls: a loopback call through the emulated link, or one end of a call between
two machines (``facecodec call send`` / ``call receive``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from aiortc import RTCPeerConnection, RTCSessionDescription

from facecodec.call.link import LinkModel, LinkProfile, UdpRelay
from facecodec.call.peer import CLOCK, CallOptions, Receiver, Sender
from facecodec.call.report import SenderLog, summarize
from facecodec.call.signalling import (
    candidate_ports,
    exchange,
    loopback_only,
    serve_once,
    via_relay,
)


def _quiet() -> None:
    # aioice / aiortc log every ICE check at INFO; a call prints its own report
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)


async def loopback_call(source, options: CallOptions, forward: LinkProfile,
                        backward: LinkProfile | None = None, seed: int = 0,
                        encoder=None, decoder=None, timeout: float | None = None) -> dict:
    """Both peers in this process, each with its own RTCPeerConnection, ICE bound to
    127.0.0.1, every datagram through the relay (``forward``: sender -> receiver,
    ``backward``: the feedback and acknowledgements; default the same impairments).
    Signalling goes over the TCP exchange of facecodec/call/signalling.py. Returns the
    report (facecodec/call/report.py)."""
    _quiet()
    backward = backward or forward
    relay = UdpRelay(LinkModel(forward, seed), LinkModel(backward, seed + 1))
    await relay.start()
    with loopback_only():
        pc_s, pc_r = RTCPeerConnection(), RTCPeerConnection()
    sender = Sender(pc_s, source, options, encoder=encoder)
    receiver = Receiver(pc_r, options, net_delay=lambda: relay.last_delay_s["a_to_b"],
                        decoder=decoder)
    port_ready: asyncio.Future = asyncio.get_running_loop().create_future()

    async def answer_for(offer_sdp: str) -> str:
        # the receiver is told the relay's port "a" for the sender
        relay.peer_addr["a"] = ("127.0.0.1", candidate_ports(offer_sdp)[0])
        await pc_r.setRemoteDescription(RTCSessionDescription(
            via_relay(offer_sdp, relay.port("a")), "offer"))
        with loopback_only():
            await pc_r.setLocalDescription(await pc_r.createAnswer())
        return pc_r.localDescription.sdp

    server = asyncio.ensure_future(serve_once("127.0.0.1", 0, answer_for,
                                              ready=port_ready.set_result))
    try:
        port = await port_ready
        with loopback_only():
            await pc_s.setLocalDescription(await pc_s.createOffer())
        answer = await exchange("127.0.0.1", port, pc_s.localDescription.sdp)
        await server
        relay.peer_addr["b"] = ("127.0.0.1", candidate_ports(answer)[0])
        await pc_s.setRemoteDescription(RTCSessionDescription(
            via_relay(answer, relay.port("b")), "answer"))
        started = CLOCK()
        slog, rlog = await asyncio.gather(sender.run(), receiver.run(timeout=timeout))
        end = CLOCK()
    finally:
        server.cancel()
        await pc_s.close()
        await pc_r.close()
        relay.close()
    report = summarize(slog, rlog, link=relay.summary())
    report["call"] = {"mode": "loopback", "seconds": round(end - started, 2),
                      "options": {k: (str(v) if isinstance(v, Path) else v)
                                  for k, v in asdict(options).items()},
                      "seed": seed, "load_avg": list(os.getloadavg()),
                      "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    return report


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

    async def answer_for(offer_sdp: str) -> str:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    try:
        await serve_once(host, port, answer_for, ready=ready)
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
