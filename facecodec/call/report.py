"""The call's report: what the sender and the receiver logged, turned into the figures people
judge a call by (docs/call.md, "The report"). Pure arithmetic on the logs, no I/O.

Times are seconds on one clock (a loopback call's peers share ``time.monotonic``; between
two machines the receiver maps the sender's times with the offset it estimated).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from facecodec.call.playout import AV_LEAD_S, Playout

FREEZE_S = 0.5  # the target's freeze: no new picture for longer than this
WINDOW_S = 10.0  # bitrate windows held against the budget


@dataclass
class SenderLog:
    fps: float
    t0: float  # the capture time of stream time 0 (the first frame's slot)
    capture: list[float] = field(default_factory=list)  # stream frame k's picture, when taken
    sent: list[tuple[float, int, str]] = field(default_factory=list)  # (time, bytes, channel)
    frames_pushed: int = 0  # camera frames given to the encoder (the rest were dropped late)
    frames_dropped: int = 0  # camera frames the sender was too late for
    chain_frames: int = 0  # frames coded in two chains (after a loss; facecodec/call/peer.py)
    # requests acted on; "duplicate": a request's copy, ignored (facecodec/call/peer.py)
    feedback: dict[str, int] = field(
        default_factory=lambda: {"intra": 0, "recover": 0, "pack": 0, "duplicate": 0})
    packing: list[tuple[float, int]] = field(default_factory=list)  # (when, packets/message)
    budget_kbps: float | None = None
    audio: bool = False
    push_s: list[float] = field(default_factory=list)  # Encoder.push's time per frame


@dataclass
class FrameEvent:
    index: int
    shown: float  # when the frame's picture was on screen (drawn), or its slot passed
    kind: str  # "drawn", "concealed" (the last picture held) or "late" (decoded, not drawn)
    arrived: float  # when the message that completed it arrived
    net_delay: float  # the emulated one-way delay of that message (0 if unknown)
    held: float = 0.0  # how long the receiver held the drawn picture for lip sync


@dataclass
class ReceiverLog:
    frames: list[FrameEvent] = field(default_factory=list)
    not_shown: int = 0  # frames the decoder skipped without output (a gap over its limit)
    end_frames: int | None = None  # the end chunk's frame count, when it arrived
    received: list[tuple[float, int, str]] = field(default_factory=list)
    sources: list[tuple[int, float]] = field(default_factory=list)  # (slot, complete at)
    audio: list[tuple[int, float]] = field(default_factory=list)  # (start sample, arrived)
    feedback_sent: dict[str, int] = field(
        default_factory=lambda: {"intra": 0, "recover": 0, "recover_early": 0, "pack": 0})
    # the congestion verdicts: (when, packets per message asked, queueing delay s, kbps)
    congestion: list[tuple[float, int, float, float]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what the decoder reported
    draw_s: list[float] = field(default_factory=list)  # rendering a drawn frame, each
    ended: str = "the sender's end chunk"  # or why the receiver ended the call itself
    witness_margin_s: float | None = None  # the SoundWitness's learned margin at the end
    base_fused: int = 0  # frames drawn with the stream's base layer (issue 20)


def quantiles(xs: list[float], qs=(50, 95)) -> dict[str, float | None]:
    """Nearest-rank percentiles (``p50``, ``p95``...), None for an empty list."""
    s = sorted(xs)
    out = {}
    for q in qs:
        out[f"p{q}"] = (s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]
                        if s else None)
    return out


def _ms(d: dict) -> dict:
    return {k: (None if v is None else round(1000 * v, 1)) for k, v in d.items()}


def account(n_sent: int, frames: list[FrameEvent], not_shown: int) -> dict:
    """Every stream frame the sender made, by what became of it at the receiver."""
    kinds = {"drawn": 0, "concealed": 0, "late": 0}
    seen = set()
    duplicates = 0
    for e in frames:
        kinds[e.kind] += 1
        duplicates += e.index in seen
        seen.add(e.index)
    out_of_range = sum(1 for i in seen if not 0 <= i < n_sent)
    last = max(seen, default=-1)
    # frames after the last one the decoder gave out: their packets were lost with none
    # after them to reveal the gap
    lost_at_end = max(0, n_sent - 1 - last)
    gaps = n_sent - len(seen) - lost_at_end  # never given out, within the stream
    return {"sent": n_sent, **kinds, "not_shown": gaps, "lost_at_end": lost_at_end,
            "decoder_not_shown": not_shown, "duplicates": duplicates,
            "out_of_range": out_of_range,
            "accounted": (duplicates == 0 and out_of_range == 0
                          and sum(kinds.values()) + gaps + lost_at_end == n_sent
                          and gaps == not_shown)}


def freezes(frames: list[FrameEvent], fps: float, end: float | None = None,
            since: int = 0) -> dict:
    """Freezes as seen on screen: the time between two consecutive drawn pictures (and,
    with ``end``, from the last one to the end of the call), from the first picture on;
    and in stream frames from ``since`` on: the longest run of frames not drawn (the
    frames captured before the first face was shown are skipped as the receiver catches
    up, which is no freeze)."""
    shown = [e.shown for e in frames if e.kind == "drawn"]
    gaps = [b - a for a, b in zip(shown, shown[1:], strict=False)]
    if end is not None and shown:
        gaps.append(max(0.0, end - shown[-1]))
    run = longest = 0
    started = False
    for e in sorted(frames, key=lambda e: e.index):
        if e.index < since:
            continue
        if e.kind == "drawn":
            started, run = True, 0
        elif started:
            run += 1
            longest = max(longest, run)
    interval = 1.0 / fps
    return {"longest_s": round(max(gaps, default=0.0), 3),
            "over_0_5_s": sum(g > FREEZE_S for g in gaps),
            "time_frozen_s": round(sum(g - interval for g in gaps if g > 2 * interval), 3),
            "longest_run_frames": longest,
            "longest_run_s": round(longest * interval, 3)}


def delays(sender: SenderLog, frames: list[FrameEvent], first_face: float | None) -> dict:
    """Capture to display of the drawn frames, the emulated network's share, and what is
    left (the added delay); all frames, and those captured once the first face was on
    screen (the call proper: before it, frames wait for the first source)."""
    out = {}
    for name, keep in (("all", lambda e: True),
                       ("in_call", lambda e: first_face is not None
                        and sender.capture[e.index] >= first_face)):
        total, net, added, arrival = [], [], [], []
        for e in frames:
            if e.kind != "drawn" or not 0 <= e.index < len(sender.capture) or not keep(e):
                continue
            d = e.shown - sender.capture[e.index]
            total.append(d)
            net.append(e.net_delay)
            added.append(d - e.net_delay)
            arrival.append(e.arrived - sender.capture[e.index])
        out[name] = {"frames": len(total), "capture_to_display_ms": _ms(quantiles(total)),
                     "network_ms": _ms(quantiles(net)), "added_ms": _ms(quantiles(added)),
                     # where the time goes: up to the packet's arrival (the sender's
                     # encoding and the transport), the rest is the receiver's
                     "capture_to_arrival_ms": _ms(quantiles(arrival)),
                     "added_ms_max": round(1000 * max(added), 1) if added else None}
    return out


def av_offset(sender: SenderLog, receiver: ReceiverLog,
              first_face: float | None = None) -> dict | None:
    """Audio against video, as the player of facecodec/call/playout.py plays them: the
    sound without gaps, at a playout delay ``L`` that covers its packets' delays and is
    never earlier than the pictures'. A shown frame's offset is its capture-to-display
    delay minus ``L`` (positive: the picture after the sound; negative: the sound after
    the picture). Frames captured once the first face was shown (``first_face``), as for
    the delays. ``late``: sound packets that came after their playing time (gaps).

    A receiver that holds pictures for lip sync (``FrameEvent.held``) logs when it showed
    them: the offsets are those. ``held_to_sync`` is what holding would give a call whose
    receiver did not (the offsets and the added delays, capture to display less the
    link's delay), and ``as_drawn`` the offsets without any hold.

    Until 2026-12-02 ``L`` followed the pictures alone, so most sound packets (~64 % in
    the calls of docs/call.md) came after their playing time: an offset no player could
    keep without gaps in the sound."""
    if not sender.audio:
        return None
    drawn = [e for e in receiver.frames if e.kind == "drawn"
             and 0 <= e.index < len(sender.capture)
             and (first_face is None or sender.capture[e.index] >= first_face)]
    if not drawn:
        return {"frames": 0, "audio_packets": len(receiver.audio)}
    # one timeline: pictures drawn (0) and sound packets arrived (1), in time order
    events = sorted([(e.shown - e.held, 0, e) for e in drawn]
                    + [(arrived, 1, sender.t0 + start / 48000)
                       for start, arrived in receiver.audio], key=lambda x: (x[0], x[1]))
    player = Playout()
    sound_delays, offsets, as_drawn, synced = [], [], [], []
    for t, kind, x in events:
        if kind == 1:
            sound_delays.append(t - x)
            player.sound(t, t - x)
            continue
        capture = sender.capture[x.index]
        d = t - capture  # drawn
        hold = player.picture(t, d)
        shown = x.shown - capture
        offsets.append(shown - player.level)
        as_drawn.append(d - player.level)
        synced.append((d + hold - player.level, d + hold - x.net_delay, hold > 0))
    absolute = [abs(o) for o in offsets]
    return {"frames": len(offsets), "offset_ms": _ms(quantiles(offsets, (5, 50, 95))),
            "abs_offset_ms": _ms(quantiles(absolute)),
            "abs_offset_ms_max": round(1000 * max(absolute), 1),
            "frames_held": sum(e.held > 0 for e in drawn),
            "as_drawn_abs_offset_ms": _ms(quantiles([abs(o) for o in as_drawn])),
            "playout_delay_ms": _ms(quantiles(player.levels)),
            "audio_delay_ms": _ms(quantiles(sound_delays)),
            "audio_packets": len(receiver.audio), "audio_packets_played": player.played,
            "audio_packets_late": player.late,
            "held_to_sync": {
                "lead_ms": round(1000 * AV_LEAD_S, 1),
                "frames_held": sum(h for _, _, h in synced),
                "abs_offset_ms": _ms(quantiles([abs(o) for o, _, _ in synced])),
                "added_ms": _ms(quantiles([a for _, a, _ in synced]))}}


def bitrate(events: list[tuple[float, int, str]], start: float, end: float,
            budget: float | None) -> dict:
    """kbps of the stream's bytes over the call and in every full ``WINDOW_S`` window
    after the first, against the budget."""
    span = max(end - start, 1e-9)
    total = sum(n for _, n, _ in events)
    by_channel: dict[str, int] = {}
    for _, n, ch in events:
        by_channel[ch] = by_channel.get(ch, 0) + n
    windows = []
    w = start + WINDOW_S  # the first window holds the first source: the budget's start-up
    while w + WINDOW_S <= end + 1e-9:
        windows.append(sum(n for t, n, _ in events if w <= t < w + WINDOW_S) * 8
                       / WINDOW_S / 1000)
        w += WINDOW_S
    out = {"kbps": round(total * 8 / span / 1000, 3),
           "kbps_by_channel": {k: round(v * 8 / span / 1000, 3) for k, v in by_channel.items()},
           "bytes": total, "seconds": round(span, 2),
           "windows_kbps": [round(x, 3) for x in windows]}
    if budget:
        out["budget_kbps"] = budget
        out["of_budget"] = round(out["kbps"] / budget, 3)
        out["highest_window_of_budget"] = (round(max(windows) / budget, 3) if windows
                                           else None)
    return out


def summarize(sender: SenderLog, receiver: ReceiverLog, link: dict | None = None,
              end: float | None = None,
              offered: dict[str, list[tuple[float, int]]] | None = None) -> dict:
    """The whole report (see docs/call.md). ``offered``: per direction of the link, the
    (time, bytes) of every datagram (the relay's log): the wire rates then count the
    media's span only, not the connection's set-up (ICE, DTLS) before it."""
    n = len(sender.capture)
    drawn = [e for e in receiver.frames if e.kind == "drawn"]
    first_face = min((e.shown for e in drawn), default=None)
    start = sender.t0
    stop = end if end is not None else max([start, *(t for t, _, _ in sender.sent)])
    report = {
        "frames": account(n, receiver.frames, receiver.not_shown),
        "end_chunk_frames": receiver.end_frames,
        "ended_by": receiver.ended,
        "base_fused": receiver.base_fused,
        "camera_frames": {"pushed": sender.frames_pushed, "dropped_late": sender.frames_dropped},
        "first_face_s": None if first_face is None else round(first_face - start, 3),
        "sources_s": [[slot, round(t - start, 3)] for slot, t in receiver.sources],
        "delay": delays(sender, receiver.frames, first_face),
        "freezes": freezes(receiver.frames, sender.fps,
                           end=max((e.shown for e in receiver.frames), default=None),
                           since=bisect.bisect_left(sender.capture, first_face)
                           if first_face is not None else 0),
        "av": av_offset(sender, receiver, first_face),
        "bits_sent": bitrate(sender.sent, start, stop, sender.budget_kbps),
        "feedback": {"sent": receiver.feedback_sent, "acted_on": sender.feedback,
                     "frames_in_two_chains": sender.chain_frames,
                     "witness_margin_ms": (None if receiver.witness_margin_s is None
                                           else round(1000 * receiver.witness_margin_s, 1))},
        # the receiver's congestion verdicts: when, packets per message, queue s, kbps
        "packing": [[round(t - start, 3), k, q, r] for t, k, q, r in receiver.congestion],
        # how long each end's network took per frame in this call (the machine's load
        # shows here): the sender's Encoder.push, the receiver's drawing of a frame
        "work_ms": {"encode": _ms(quantiles(sender.push_s)),
                    "draw": _ms(quantiles(receiver.draw_s))},
        "decoder_skipped": receiver.skipped[:50],
    }
    if link is not None:
        report["link"] = link
        span = max(stop - start, 1e-9)
        wire = {}
        for d, s in link.items():
            size, count = s["bytes"], s["datagrams"]
            if offered is not None and d in offered:
                sizes = [n for t, n in offered[d] if start <= t <= stop]
                size, count = sum(sizes), len(sizes)
            wire[d] = {"kbps_udp": round(size * 8 / span / 1000, 3),
                       "kbps_ip": round((size + 28 * count) * 8 / span / 1000, 3),
                       "datagrams_per_s": round(count / span, 2)}
        report["bits_wire"] = wire
    return report
