"""Signalling: how two peers swap their session descriptions (SDP offer and answer).

The simplest thing that works offline: the receiver listens on a TCP port; the sender
connects and writes one line, ``{"type": "offer", "sdp": ...}`` (JSON); the receiver
answers with one line ``{"type": "answer", "sdp": ...}`` and closes the connection. The
descriptions carry every ICE candidate (aiortc gathers them before it writes the SDP: no
trickle), so one exchange sets the call up; nothing else goes over this connection.

In loopback both peers bind their ICE sockets to 127.0.0.1 only (:func:`use_loopback_only`),
and :func:`via_relay` rewrites the candidates each peer is told so the media go through
the emulated link (facecodec/call/link.py).
"""

from __future__ import annotations

import asyncio
import json
import re

import aioice.ice

MAX_LINE = 1 << 20  # an SDP is a few KB


async def serve_once(host: str, port: int, answer_for, ready=None) -> None:
    """Accept one signalling connection on ``host:port``: read the offer, reply with
    ``await answer_for(offer_sdp)``. ``ready(port)`` is called once listening (port 0
    picks a free one)."""
    done: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            msg = json.loads(await reader.readline())
            if msg.get("type") != "offer":
                raise ValueError(f"expected an offer, got {msg.get('type')!r}")
            sdp = await answer_for(msg["sdp"])
            writer.write(json.dumps({"type": "answer", "sdp": sdp}).encode() + b"\n")
            await writer.drain()
            if not done.done():
                done.set_result(None)
        except Exception as e:  # noqa: BLE001 - reported to the waiting side
            if not done.done():
                done.set_exception(e)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, limit=MAX_LINE)
    if ready is not None:
        ready(server.sockets[0].getsockname()[1])
    async with server:
        await done


async def exchange(host: str, port: int, offer_sdp: str, timeout: float = 60.0) -> str:
    """Send the offer to the receiver at ``host:port`` and return its answer's SDP
    (retrying the connection until ``timeout``: the receiver may start later)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
            break
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        writer.write(json.dumps({"type": "offer", "sdp": offer_sdp}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), max(1.0, deadline - loop.time()))
        msg = json.loads(line)
        if msg.get("type") != "answer":
            raise ValueError(f"expected an answer, got {msg.get('type')!r}")
        return msg["sdp"]
    finally:
        writer.close()


def use_loopback_only() -> None:
    """ICE host candidates on 127.0.0.1 only, in this process from now on (aioice leaves
    the loopback address out of its host candidates and takes every other interface): a
    loopback call's peer processes call it first."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )(\S+) (\d+)( typ host.*)$",
                        re.IGNORECASE)


def candidate_ports(sdp: str) -> list[int]:
    """The ports of the description's UDP host candidates on 127.0.0.1."""
    return [int(m.group(3)) for line in sdp.splitlines()
            if (m := _CANDIDATE.match(line)) and m.group(2) == "127.0.0.1"]


def via_relay(sdp: str, relay_port: int) -> str:
    """The description with its 127.0.0.1 host candidates (and default address) moved to
    the relay's port: the other peer then sends everything to the relay. Other
    candidates are dropped, so no datagram can go around the relay."""
    out = []
    for line in sdp.splitlines():
        m = _CANDIDATE.match(line)
        if m:
            if m.group(2) != "127.0.0.1":
                continue
            line = f"{m.group(1)}127.0.0.1 {relay_port}{m.group(4)}"
        elif line.startswith("m="):
            parts = line.split(" ")
            parts[1] = str(relay_port)
            line = " ".join(parts)
        elif line.startswith("c=IN IP4 "):
            line = "c=IN IP4 127.0.0.1"
        out.append(line)
    return "\r\n".join(out) + "\r\n"
