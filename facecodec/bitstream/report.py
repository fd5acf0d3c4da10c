"""``facecodec bitrate --report``: where the bits of ``.fcs`` files go.

Per stream, the bits are the ideal code length of its symbols under the prior
(``-log2 p`` plus raw bits); a packet's remaining bits (chunk kind, length, CRC, the
range coder's final word, intra frame numbers) are its *overhead*. Both add up to the
packet bytes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecodec.bitstream.chunks import FRAME_KINDS, ChunkParser
from facecodec.bitstream.container import DecodedFrame, FcsReader, SourceFrame
from facecodec.bitstream.header import header_length

# Oquab et al. 2022, Table 4: bits per frame after arithmetic coding, 15 fps test videos.
PAPER_TABLE4 = {
    "FOM (Unsup+Jac)": 426,
    "Ours (Sup)": 264,
    "Ours (Sup+Unsup)": 418,
    "Ours (Sup+Unsup+Expr)": 433,
}


WINDOW_S = 10.0  # the report's rate-over-time windows (issue #17 judges a budget on 10 s)


def first_face_bytes(data: bytes) -> int:
    """Bytes of a stream up to the end of its first frame packet, everything before it
    included (header, the first source, sound): what a receiver must have to draw the
    first face, so its time on a link is this over the link's rate (issue 17)."""
    start = header_length(data[:8], "stream")
    p = ChunkParser(start)
    p.feed(data[start:])
    p.close()
    first = next((c for c in p.chunks() if getattr(c, "kind", None) in FRAME_KINDS), None)
    if first is None:
        raise ValueError("the stream has no frame packet")
    return first.offset + first.nbytes


@dataclass
class FileStats:
    name: str
    fps: float
    frames: int = 0
    intra_frames: int = 0
    file_bytes: int = 0
    header_bytes: int = 0
    source_bytes: int = 0
    sources: int = 0
    other_bytes: int = 0
    stream_bits: dict[str, list[float]] = field(default_factory=dict)
    packet_bits: list[float] = field(default_factory=list)
    held: int = 0
    skipped: int = 0
    redundant_bytes: int = 0  # copies of packets (recovery points sent twice)
    parity_bytes: int = 0  # parity chunks (forward error correction, format 2.1)
    audio_bytes: int = 0  # the sound's chunks (Opus, format 2.2)
    base_bytes: int = 0  # the base layer's chunks (AV1, format 2.5)
    budget_kbps: float | None = None  # the sender's budget (header info "budget_kbps")
    # per frame, the bytes read since the previous frame: (sources, frame packets with
    # their copies and parities, sound, base layer, the rest): where the rate went
    arrivals: list[tuple[int, int, int, int, int]] = field(default_factory=list)

    def summary(self) -> dict:
        n = max(self.frames - self.held, 1)
        pk = np.asarray(self.packet_bits) if self.packet_bits else np.zeros(1)
        payload = sum(np.sum(v) for v in self.stream_bits.values())
        # copies of packets and parities belong to the steady rate as much as the packets do
        frame_bits = float(pk.mean()) + 8 * (self.redundant_bytes + self.parity_bytes) / max(
            len(pk), 1)
        duration = self.frames / self.fps if self.fps else 0.0
        streams = {
            name: {"mean": float(np.mean(v)), "p95": float(np.percentile(v, 95))}
            for name, v in self.stream_bits.items() if v
        }
        return {
            "file": self.name,
            "fps": self.fps,
            "frames": self.frames,
            "intra_frames": self.intra_frames,
            "duration_s": duration,
            "streams": streams,
            "payload_bits_per_frame": float(payload / n),
            "overhead_bits_per_frame": float(pk.sum() / n - payload / n),
            "redundant_bits_per_frame": 8 * self.redundant_bytes / n,
            "parity_bits_per_frame": 8 * self.parity_bytes / n,
            "bits_per_frame": frame_bits,
            "bits_per_frame_p95": float(np.percentile(pk, 95)),
            "header_bytes": self.header_bytes,
            "source_frames": self.sources,
            "source_bytes": self.source_bytes,
            "audio_bytes": self.audio_bytes,
            "audio_kbps": self.audio_bytes * 8 / duration / 1000 if duration else 0.0,
            "base_bytes": self.base_bytes,
            "base_kbps": self.base_bytes * 8 / duration / 1000 if duration else 0.0,
            "file_bytes": self.file_bytes,
            "steady_kbps_15fps": frame_bits * 15 / 1000,
            "steady_kbps": frame_bits * self.fps / 1000,
            "all_in_kbps": self.file_bytes * 8 / duration / 1000 if duration else 0.0,
            "held_frames": self.held,
            "skipped_chunks": self.skipped,
            "windows": self.windows(),
            "budget_kbps": self.budget_kbps,
        }

    def windows(self, seconds: float = WINDOW_S) -> list[dict]:
        """The all-in rate per ``seconds`` of stream (the header counted in the first),
        and what it went to: sources, frame packets, sound, base layer, the rest (kbps)."""
        if not self.arrivals or not self.fps:
            return []
        per = max(1, round(seconds * self.fps))
        out = []
        for i in range(0, len(self.arrivals), per):
            part = np.asarray(self.arrivals[i:i + per], dtype=np.int64).sum(axis=0)
            if i == 0:
                part[4] += self.header_bytes
            span = len(self.arrivals[i:i + per]) / self.fps
            kbps = part * 8 / span / 1000
            out.append({"start_s": i / self.fps, "seconds": span,
                        "all_in_kbps": float(kbps.sum()), "sources_kbps": float(kbps[0]),
                        "frames_kbps": float(kbps[1]), "audio_kbps": float(kbps[2]),
                        "base_kbps": float(kbps[3]), "other_kbps": float(kbps[4])})
        return out


def _budget_lines(s: dict) -> list[str]:
    """A budgeted stream (``encode --kbps``): its highest window against the budget, the
    first window apart (it carries the header and the first source, sent at once)."""
    budget = s.get("budget_kbps")
    full = [w for w in s["windows"][1:] if w["seconds"] >= WINDOW_S - 1e-6]
    if not budget or not full:
        return []
    top = max(full, key=lambda w: w["all_in_kbps"])
    return [f"Budget {budget:g} kbps (the sender's `--kbps`): the highest full window after "
            f"the first is {top['all_in_kbps']:.2f} kbps ({top['all_in_kbps'] / budget:.0%} "
            f"of it, from {top['start_s']:.0f} s); the first is "
            f"{s['windows'][0]['all_in_kbps']:.2f} kbps.", ""]


def analyse(path: str | Path, tolerant: bool = False) -> FileStats:
    """Decode a ``.fcs`` file's values (no rendering) and account for every byte."""
    path = Path(path)
    with open(path, "rb") as f:
        reader = FcsReader(f, name=str(path), tolerant=tolerant)
        st = FileStats(str(path), float(reader.header.fps), header_bytes=reader.header_bytes)
        budget = reader.header.info.get("budget_kbps")
        if isinstance(budget, int | float) and not isinstance(budget, bool):
            st.budget_kbps = float(budget)
        st.stream_bits = {name: [] for name in reader.header.table.names}
        seen = dict(reader.chunk_bytes)
        for ev in reader:
            if isinstance(ev, SourceFrame):
                st.sources += 1
            elif isinstance(ev, DecodedFrame):
                now = reader.chunk_bytes
                d = {k: now[k] - seen.get(k, 0) for k in now}
                seen = dict(now)
                st.arrivals.append((d["source"], d["frames"] + d["redundant"] + d["parity"],
                                    d["audio"], d["base"], d["other"]))
                st.frames += 1
                if ev.held:
                    st.held += 1
                    continue
                st.intra_frames += ev.intra
                st.packet_bits.append(ev.packet_bits)
                for name, b in ev.bits.items():
                    st.stream_bits[name].append(b)
        st.source_bytes = reader.chunk_bytes["source"]
        st.other_bytes = reader.chunk_bytes["other"]
        st.redundant_bytes = reader.chunk_bytes["redundant"]
        st.parity_bytes = reader.chunk_bytes["parity"]
        st.audio_bytes = reader.chunk_bytes["audio"]
        st.base_bytes = reader.chunk_bytes["base"]
        st.skipped = len(reader.skipped)
    st.file_bytes = path.stat().st_size
    return st


def overall(stats: list[FileStats]) -> FileStats:
    """All files' frames pooled (fps: the frame-weighted mean)."""
    frames = sum(s.frames for s in stats)
    fps = sum(s.fps * s.frames for s in stats) / frames if frames else 15.0
    out = FileStats("overall", fps)
    for s in stats:
        out.frames += s.frames
        out.intra_frames += s.intra_frames
        out.file_bytes += s.file_bytes
        out.header_bytes += s.header_bytes
        out.source_bytes += s.source_bytes
        out.sources += s.sources
        out.held += s.held
        out.redundant_bytes += s.redundant_bytes
        out.parity_bytes += s.parity_bytes
        out.audio_bytes += s.audio_bytes
        out.base_bytes += s.base_bytes
        out.skipped += s.skipped
        out.packet_bits += s.packet_bits
        for k, v in s.stream_bits.items():
            out.stream_bits.setdefault(k, []).extend(v)
    return out


def to_markdown(summaries: list[dict]) -> str:
    """A table per file (and overall), then the paper's Table 4 for comparison."""
    lines = []
    for s in summaries:
        lines += [
            f"### {s['file']}",
            "",
            f"{s['frames']} frames ({s['intra_frames']} intra) at {s['fps']:.3g} fps, "
            f"{s['duration_s']:.1f} s; {s['file_bytes']} bytes in all",
            "",
            "| stream | bits/frame mean | bits/frame p95 |",
            "|---|---:|---:|",
        ]
        for name, v in s["streams"].items():
            lines.append(f"| {name} | {v['mean']:.1f} | {v['p95']:.1f} |")
        lines += [
            f"| *payload (sum)* | {s['payload_bits_per_frame']:.1f} | |",
            f"| *packet overhead* | {s['overhead_bits_per_frame']:.1f} | |",
            *([f"| *redundant copies* | {s['redundant_bits_per_frame']:.1f} | |"]
              if s["redundant_bits_per_frame"] else []),
            *([f"| *parity (FEC)* | {s['parity_bits_per_frame']:.1f} | |"]
              if s.get("parity_bits_per_frame") else []),
            f"| **frame packets** | **{s['bits_per_frame']:.1f}** | "
            f"{s['bits_per_frame_p95']:.1f} |",
            "",
            "| | |",
            "|---|---:|",
            f"| header | {s['header_bytes']} B |",
            f"| source frames | {s['source_frames']} ({s['source_bytes']} B) |",
            *([f"| sound | {s['audio_bytes']} B, {s['audio_kbps']:.2f} kbps |"]
              if s.get("audio_bytes") else []),
            *([f"| base layer | {s['base_bytes']} B, {s['base_kbps']:.2f} kbps |"]
              if s.get("base_bytes") else []),
            f"| steady-state kbps at 15 fps | {s['steady_kbps_15fps']:.2f} |",
            f"| steady-state kbps at the file's {s['fps']:.3g} fps | {s['steady_kbps']:.2f} |",
            f"| all-in kbps over {s['duration_s']:.1f} s (sound included) | "
            f"{s['all_in_kbps']:.2f} |",
        ]
        if s["held_frames"] or s["skipped_chunks"]:
            lines.append(f"| damaged | {s['skipped_chunks']} skips, {s['held_frames']} "
                         f"frames held |")
        lines.append("")
        if len(s.get("windows") or []) > 1:
            lines += ["Rate over time (kbps per window, the header in the first):", "",
                      "| from s | all-in | sources | frame packets | sound | base layer | "
                      "other |", "|---:|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {w['start_s']:.0f} | {w['all_in_kbps']:.2f} | "
                      f"{w['sources_kbps']:.2f} | {w['frames_kbps']:.2f} | "
                      f"{w['audio_kbps']:.2f} | {w.get('base_kbps', 0.0):.2f} | "
                      f"{w['other_kbps']:.2f} |" for w in s["windows"]]
            lines.append("")
            lines += _budget_lines(s)
    lines += ["### Oquab et al. 2022, Table 4 (bits/frame, arithmetic coded, 15 fps)", "",
              "| model | bits/frame | kbps at 15 fps |", "|---|---:|---:|"]
    for name, b in PAPER_TABLE4.items():
        lines.append(f"| {name} | {b} | {b * 15 / 1000:.1f} |")
    return "\n".join(lines) + "\n"
