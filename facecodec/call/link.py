"""The emulated link of a loopback call: a UDP relay on 127.0.0.1 between the two peers.

Each peer's ICE host candidate (127.0.0.1) is replaced, in the description the other peer
receives, by a port of this relay (:func:`facecodec.call.signalling.via_relay`); so every
datagram the peers exchange (STUN, DTLS, SCTP: the data channels, the feedback, the
acknowledgements) crosses the relay, which drops, delays, reorders and rate-limits it.
The impairments act on what really travels: whole UDP datagrams, encrypted.

:class:`LinkModel` is the pure decision (when a datagram leaves, or that it is lost),
seeded so a run repeats; :class:`UdpRelay` applies it on sockets.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from dataclasses import asdict, dataclass, field

UDP_IP_OVERHEAD = 28  # IPv4 + UDP headers, counted on the capped link
ORDER_EPS_S = 1e-6  # a datagram leaves at least this long after the one ahead of it


@dataclass(frozen=True)
class LinkProfile:
    """One direction's impairments.

    loss: probability a datagram is dropped (independent draws).
    delay_ms: fixed one-way delay.
    jitter_ms: a further delay drawn uniformly in [0, jitter_ms] per datagram; the queue
        keeps its order (a datagram never overtakes an earlier one because of jitter:
        real jitter is mostly queueing), so the one-way delay is delay + U(0, jitter).
    reorder: probability a datagram is held back a further ``reorder_ms`` (beyond the
        jitter's order), letting the ones behind it overtake it.
    cap_kbps: the link's rate (IP + UDP headers counted); datagrams queue behind each
        other, and one that would wait over ``queue_ms`` is dropped (a full buffer).
    cut_after: the link carries this many datagrams, then none (a peer or a route gone;
        counted, not timed, so a run repeats); None: never cut.
    """

    loss: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 50.0
    cap_kbps: float | None = None
    queue_ms: float = 500.0
    cut_after: int | None = None

    def __post_init__(self) -> None:
        for name in ("loss", "reorder"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        for name in ("delay_ms", "jitter_ms", "reorder_ms", "queue_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.cap_kbps is not None and self.cap_kbps <= 0:
            raise ValueError(f"cap_kbps must be > 0, got {self.cap_kbps!r}")
        if self.cut_after is not None and self.cut_after < 0:
            raise ValueError(f"cut_after must be >= 0, got {self.cut_after!r}")

    @property
    def mean_delay_ms(self) -> float:
        """The emulated one-way delay on average, before any queueing behind the cap."""
        return self.delay_ms + self.jitter_ms / 2


@dataclass
class LinkStats:
    datagrams: int = 0
    bytes: int = 0  # UDP payload bytes offered to the link
    lost: int = 0  # dropped by the loss draw or after the cut
    overflow: int = 0  # dropped by the cap's full queue
    reordered: int = 0  # held back to be overtaken
    delivered_bytes: int = 0
    delays_ms: list[float] = field(default_factory=list)  # per delivered datagram

    def summary(self) -> dict:
        d = asdict(self)
        delays = sorted(d.pop("delays_ms"))
        d["delivered"] = len(delays)
        if delays:
            d["delay_ms_p50"] = delays[len(delays) // 2]
            d["delay_ms_p95"] = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
            d["delay_ms_max"] = delays[-1]
        return d


class LinkModel:
    """Decides each datagram's fate on one direction of the link (times in seconds)."""

    def __init__(self, profile: LinkProfile, seed: int = 0):
        self.profile = profile
        self.rng = random.Random(seed)
        self.stats = LinkStats()
        self._last_out = float("-inf")  # when the previous in-order datagram leaves
        self._link_free = float("-inf")  # when the capped link has sent what it holds

    def send(self, now: float, size: int) -> float | None:
        """When a datagram of ``size`` UDP payload bytes offered at ``now`` arrives at the
        other end, or None if it is lost."""
        p = self.profile
        self.stats.datagrams += 1
        self.stats.bytes += size
        # the draws happen in a fixed order whatever the outcome: a run repeats per seed
        lost = self.rng.random() < p.loss
        jitter = self.rng.uniform(0.0, p.jitter_ms) / 1000 if p.jitter_ms else 0.0
        held = self.rng.random() < p.reorder
        if p.cut_after is not None and self.stats.datagrams > p.cut_after:
            lost = True
        if lost:
            self.stats.lost += 1
            return None
        start = now
        if p.cap_kbps is not None:  # serialisation behind what is queued
            wait = max(0.0, self._link_free - now)
            if wait * 1000 > p.queue_ms:
                self.stats.overflow += 1
                return None
            start = now + wait
            self._link_free = start + (size + UDP_IP_OVERHEAD) * 8 / (p.cap_kbps * 1000)
            start = self._link_free
        # order kept: strictly after the previous datagram (the event loop's timers do not
        # keep the order of equal times)
        out = max(start + p.delay_ms / 1000 + jitter, self._last_out + ORDER_EPS_S)
        self._last_out = out
        if held:
            out += p.reorder_ms / 1000
            self.stats.reordered += 1
        self.stats.delivered_bytes += size
        self.stats.delays_ms.append((out - now) * 1000)
        return out


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, name: str):
        self.relay, self.name = relay, name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.relay._received(self.name, data)


class UdpRelay:
    """Two UDP ports on 127.0.0.1 standing for the two peers.

    Port ``a`` stands for peer A in what peer B is told, port ``b`` for peer B: a datagram
    arriving at ``a`` came from B and is sent on from ``b`` to A's real address, and the
    other way round. ``a_to_b`` and ``b_to_a`` are the two directions' :class:`LinkModel`.
    :attr:`last_delay_s` holds, per direction, the emulated delay of the last datagram
    delivered (what a receiver in the same process subtracts from a frame's delay).
    """

    def __init__(self, a_to_b: LinkModel, b_to_a: LinkModel):
        self.models = {"a_to_b": a_to_b, "b_to_a": b_to_a}
        self.peer_addr: dict[str, tuple[str, int] | None] = {"a": None, "b": None}
        self.sides: dict[str, _Side] = {}
        self.last_delay_s = {"a_to_b": 0.0, "b_to_a": 0.0}
        # per direction, (when delivered, its emulated delay) of every datagram, on the
        # loop's clock (time.monotonic): a peer in another process finds the delay of the
        # datagram that brought a message from the message's arrival time
        self.delivered: dict[str, list[tuple[float, float]]] = {"a_to_b": [], "b_to_a": []}
        # per direction, (when offered, UDP payload bytes) of every datagram a peer sent:
        # the wire rate over the media's span, without the connection's set-up
        self.offered: dict[str, list[tuple[float, int]]] = {"a_to_b": [], "b_to_a": []}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handles: set[asyncio.TimerHandle] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for name in ("a", "b"):
            _, side = await self._loop.create_datagram_endpoint(
                lambda n=name: _Side(self, n), local_addr=("127.0.0.1", 0))
            self.sides[name] = side

    def port(self, name: str) -> int:
        return self.sides[name].transport.get_extra_info("sockname")[1]

    def _received(self, at: str, data: bytes) -> None:
        # at "a" (standing for A, in B's view): from B, to A, leaving from "b"
        direction, out, dest = ("b_to_a", "b", "a") if at == "a" else ("a_to_b", "a", "b")
        addr = self.peer_addr[dest]
        if addr is None:
            return
        now = self._loop.time()
        self.offered[direction].append((now, len(data)))
        arrive = self.models[direction].send(now, len(data))
        if arrive is None:
            return
        delay = arrive - now

        def deliver() -> None:
            self._handles.discard(handle)
            self.last_delay_s[direction] = delay
            self.delivered[direction].append((self._loop.time(), delay))
            tr = self.sides[out].transport
            if tr is not None and not tr.is_closing():
                tr.sendto(data, addr)

        handle = self._loop.call_at(arrive, deliver)
        self._handles.add(handle)

    def delay_before(self, direction: str, t: float) -> float:
        """The emulated delay of the last datagram delivered in ``direction`` at or before
        ``t`` (0 before the first)."""
        log = self.delivered[direction]
        i = bisect.bisect_right(log, (t, float("inf")))
        return log[i - 1][1] if i else 0.0

    def close(self) -> None:
        for h in list(self._handles):
            h.cancel()
        for side in self.sides.values():
            if side.transport is not None:
                side.transport.close()

    def summary(self) -> dict:
        return {k: {"profile": asdict(m.profile), **m.stats.summary()}
                for k, m in self.models.items()}
