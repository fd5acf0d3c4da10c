"""The report in a few lines for the terminal (the JSON holds everything)."""

from __future__ import annotations


def text_summary(r: dict) -> str:
    if "frames" not in r:
        return f"call: {r.get('error', 'no report')}"
    f, fz, d = r["frames"], r["freezes"], r["delay"]["in_call"]
    lines = [
        f"frames: {f['sent']} sent, {f['drawn']} drawn, {f['concealed']} concealed, "
        f"{f['late']} decoded too late to draw, {f['not_shown']} never shown, "
        f"{f['lost_at_end']} lost at the end: "
        f"{'every frame accounted for' if f['accounted'] else 'NOT ACCOUNTED FOR'}",
        f"ended by {r.get('ended_by', 'the end chunk')}; first face after "
        f"{r['first_face_s']} s; sources complete at "
        + ", ".join(f"{t:.2f} s (slot {s})" for s, t in r["sources_s"]),
        f"capture to display (frames after the first face, {d['frames']}): "
        f"p50 {d['capture_to_display_ms']['p50']} ms, p95 {d['capture_to_display_ms']['p95']}"
        f" ms; of it the emulated link p50 {d['network_ms']['p50']} ms; added p50 "
        f"{d['added_ms']['p50']} ms, p95 {d['added_ms']['p95']} ms",
        f"freezes: longest {fz['longest_s']} s on screen, {fz['over_0_5_s']} over 0.5 s; "
        f"longest run of frames not drawn {fz['longest_run_frames']}",
    ]
    if r.get("av") and r["av"]["frames"]:
        a = r["av"]
        lines.append(f"audio-video offset (the sound played without gaps) |p50| "
                     f"{a['abs_offset_ms']['p50']} ms, |p95| {a['abs_offset_ms']['p95']} ms "
                     f"(offset p50 {a['offset_ms']['p50']} ms: negative, the sound late; "
                     f"{a['frames_held']} pictures held for it, |p95| "
                     f"{a['as_drawn_abs_offset_ms']['p95']} ms as drawn); sound packets "
                     f"{a['audio_packets']}, late {a['audio_packets_late']}")
        h = a.get("held_to_sync")
        if h and not a["frames_held"]:  # a receiver that did not hold: what holding gives
            lines.append(f"with pictures held to {h['lead_ms']:g} ms ahead of the sound: "
                         f"|offset| p95 {h['abs_offset_ms']['p95']} ms, added delay p50 "
                         f"{h['added_ms']['p50']} ms, p95 {h['added_ms']['p95']} ms")
    b = r["bits_sent"]
    budget = (f" against a budget of {b['budget_kbps']} kbps ({100 * b['of_budget']:.0f} %, "
              f"highest 10-s window {b['highest_window_of_budget']})"
              if b.get("budget_kbps") else "")
    lines.append(f"stream: {b['kbps']} kbps{budget}")
    if "bits_wire" in r:
        w = r["bits_wire"]
        lines.append("on the wire (UDP payload, DTLS+SCTP included): "
                     + ", ".join(f"{k} {v['kbps_udp']} kbps" for k, v in w.items()))
    if "work_ms" in r:
        w = r["work_ms"]
        lines.append(f"work per frame: encode p50 {w['encode']['p50']} ms, p95 "
                     f"{w['encode']['p95']} ms; draw p50 {w['draw']['p50']} ms, p95 "
                     f"{w['draw']['p95']} ms")
    fb = r["feedback"]
    lines.append(f"feedback: {fb['sent']} sent, {fb['acted_on']} acted on")
    if "call" in r:
        lines.append(f"load average {r['call'].get('load_avg')}")
    return "\n".join(lines)
