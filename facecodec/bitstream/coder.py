"""Closed-loop delta coding of coded frames with a range coder and a learned prior.

Inter frames code ``q_t - q_{t-1}`` (differences of quantization *indices*, so the decoder
reconstructs exactly what the encoder predicted from and nothing drifts); intra frames
code ``q_t - predictor``, so a decoder can start there (Oquab et al. 2022, section 4.3
sends deltas; intra frames, the linear delta prediction and the contexts of
:mod:`facecodec.bitstream.prior` are ours). Inter symbols are ``d_j - p_j`` coded with
the table of context ``clip(p_j, -m, m)``.

Symbols go through ``constriction``'s range coder (``stream.queue.RangeEncoder``), which
costs ~16 bits per flushed packet against ~35 for ANS. Each table is handed to
``constriction`` as ``Categorical(w - 1, perfect=False)``: with ``sum(w) == 2**24`` its
fixed-point quantization then reproduces the integer weights ``w`` exactly, so the coded
bytes depend only on our integer tables (checked in tests/test_bitstream_coder.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np

from facecodec.bitstream.prior import TOTAL, ClassModel, Prior, Q, predict_deltas
from facecodec.bitstream.streams import Coded
from facecodec.bitstream.symbols import ESCAPE, Alphabet

_model = constriction.stream.model
RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder


class CorruptPayload(ValueError):
    """The payload decodes to values no encoder could have produced."""


@dataclass
class _Tables:
    """constriction models of one class, built once per prior."""

    inter: list
    intra: object
    inter_cost: np.ndarray  # -log2 p, per (context, symbol): the report's per-stream bits
    intra_cost: np.ndarray
    inter_cost_list: list[list[float]]  # the same as Python floats, for the coding loops
    intra_cost_list: list[float]


def _tables(cm: ClassModel) -> _Tables:
    def model(w: np.ndarray):
        return _model.Categorical((w - 1).astype(np.float64), perfect=False)

    inter_cost, intra_cost = -np.log2(cm.inter / TOTAL), -np.log2(cm.intra / TOTAL)
    return _Tables([model(row) for row in cm.inter], model(cm.intra), inter_cost, intra_cost,
                   inter_cost.tolist(), intra_cost.tolist())


_uniform_cache: dict[int, object] = {}


def _uniform(nbits: int):
    if nbits not in _uniform_cache:
        _uniform_cache[nbits] = _model.Uniform(1 << nbits)
    return _uniform_cache[nbits]


@dataclass
class _Layout:
    """One stream of a prior, per coded coordinate: what the coding loops look up (built
    once per prior: the tables are constriction models, costly to make)."""

    name: str
    n: int
    bits: list[int]  # coded bit depth
    limit: np.ndarray  # 2 ** bits
    tables: list[_Tables]  # the coordinate's class tables
    alphabets: list[Alphabet]  # inter alphabet
    intra_alphabets: list[Alphabet]
    exact: np.ndarray  # inter alphabets' E, per coordinate
    max_abs: np.ndarray
    intra_exact: np.ndarray
    intra_max_abs: np.ndarray
    predictor: np.ndarray
    predictor_list: list[int]
    weights: np.ndarray  # (n, n + 1) Q12 delta predictor
    columns: list[np.ndarray]  # weights[:, i], the contribution of delta i to every p_j
    own_weights: list[int]  # weights[:, n]
    cross: bool  # any weight on the other deltas of the frame


_layout_cache: dict[int, tuple[Prior, list[_Layout]]] = {}


def _layouts(prior: Prior) -> list[_Layout]:
    got = _layout_cache.get(id(prior))
    if got is not None and got[0] is prior:
        return got[1]
    out = []
    for spec in prior.table:
        sp = prior.streams[spec.name]
        tabs = [_tables(cm) for cm in sp.classes]
        classes = spec.coded_classes.tolist()
        inter = [sp.classes[c].alphabet for c in classes]
        intra = [sp.classes[c].intra_alphabet for c in classes]
        bits = spec.coded_bits
        w = np.asarray(sp.weights, dtype=np.int64)
        n = spec.n_coded
        out.append(_Layout(
            spec.name, n, bits.tolist(), np.left_shift(1, bits), [tabs[c] for c in classes],
            inter, intra, np.array([a.exact for a in inter], dtype=np.int64),
            np.array([a.max_abs for a in inter], dtype=np.int64),
            np.array([a.exact for a in intra], dtype=np.int64),
            np.array([a.max_abs for a in intra], dtype=np.int64),
            np.asarray(sp.predictor, dtype=np.int64), [int(v) for v in sp.predictor], w,
            [np.ascontiguousarray(w[:, i]) for i in range(n)], w[:, n].tolist(),
            bool(np.any(w[:, :n]))))
    if len(_layout_cache) > 16:  # priors are few; do not hold on to old ones for ever
        _layout_cache.clear()
    _layout_cache[id(prior)] = (prior, out)
    return out


def _symbols(r: np.ndarray, exact: np.ndarray, max_abs: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`Alphabet.encode` of residuals whose alphabets differ per coordinate."""
    a = np.abs(r)
    small = a <= exact
    sym = np.where(small, r + exact + 1, 0)
    extra = np.zeros_like(r)
    nbits = np.zeros_like(r)
    big = ~small & (a <= max_abs)
    if big.any():
        rb = (a - exact)[big]
        k = np.floor(np.log2(rb)).astype(np.int64)
        # log2 of an exact power of two is exact in float64; guard the rounding anyway
        k = np.where((1 << (k + 1)) <= rb, k + 1, k)
        k = np.where((1 << k) > rb, k - 1, k)
        sym[big] = 2 * exact[big] + 2 + 2 * k + (r[big] < 0)
        extra[big] = rb - (1 << k)
        nbits[big] = k
    return sym, extra, nbits


class FrameCoder:
    """Encoder- or decoder-side state: the last reconstructed indices and deltas.

    One instance per direction; both sides run the same state updates, which is what
    keeps them in lock-step.
    """

    def __init__(self, prior: Prior):
        self.prior = prior
        self.table = prior.table
        self._layout = _layouts(prior)
        self.prev: Coded | None = None
        self.prev_delta: Coded = {}

    def reset(self) -> None:
        """Forget the past: the next frame must be intra."""
        self.prev = None
        self.prev_delta = {}

    # -- encoder --------------------------------------------------------------------------
    def encode_frame(self, enc, coded: Coded, intra: bool) -> dict[str, float]:
        """Append one frame's symbols to ``enc``; returns ideal bits per stream."""
        if not intra and self.prev is None:
            raise ValueError("the first frame after a reset must be intra")
        bits = {}
        m = self.prior.context
        for lay in self._layout:
            q = np.asarray(coded[lay.name], dtype=np.int64)
            if q.shape != (lay.n,) or q.min() < 0 or np.any(q >= lay.limit):
                raise ValueError(f"stream {lay.name}: index out of range")
            if intra:
                r = q - lay.predictor
                d = np.zeros_like(q)
                sym, extra, nbits = _symbols(r, lay.intra_exact, lay.intra_max_abs)
            else:
                d = q - self.prev[lay.name]
                p = predict_deltas(lay.weights, d, self.prev_delta[lay.name])
                r = d - p
                ctx = (np.clip(p, -m, m) + m).tolist()
                sym, extra, nbits = _symbols(r, lay.exact, lay.max_abs)
            total = 0.0
            for j, (sj, xj, nj) in enumerate(zip(sym.tolist(), extra.tolist(), nbits.tolist(),
                                                 strict=True)):
                t = lay.tables[j]
                if intra:
                    model, cost = t.intra, t.intra_cost_list
                else:
                    model, cost = t.inter[ctx[j]], t.inter_cost_list[ctx[j]]
                enc.encode(sj, model)
                if sj == ESCAPE:
                    enc.encode(int(q[j]), _uniform(lay.bits[j]))
                    total += cost[sj] + lay.bits[j]
                else:
                    if nj:
                        enc.encode(xj, _uniform(nj))
                    total += cost[sj] + nj
            self.prev_delta[lay.name] = d
            bits[lay.name] = total
        self.prev = {k: np.asarray(v, dtype=np.int64) for k, v in coded.items()}
        return bits

    # -- decoder --------------------------------------------------------------------------
    def decode_frame(self, dec, intra: bool) -> tuple[Coded, dict[str, float]]:
        """Read one frame's symbols from ``dec``. Raises :class:`CorruptPayload` on values
        outside what an encoder can produce."""
        if not intra and self.prev is None:
            raise CorruptPayload("inter frame without a preceding intra frame")
        out: Coded = {}
        bits = {}
        m = self.prior.context
        half = 1 << (Q - 1)
        for lay in self._layout:
            n = lay.n
            q = [0] * n
            d = [0] * n
            total = 0.0
            if not intra:
                prev = self.prev[lay.name].tolist()
                own_arr = self.prev_delta.get(lay.name)
                own = own_arr.tolist() if own_arr is not None else [0] * n
                # the cross terms of each p_j, summed as the deltas before it come in
                acc = np.zeros(n, dtype=np.int64) if lay.cross else None
            for j in range(n):
                t = lay.tables[j]
                nb_abs = lay.bits[j]
                if intra:
                    alphabet, cost = lay.intra_alphabets[j], t.intra_cost_list
                    sym = int(dec.decode(t.intra))
                else:
                    p = lay.own_weights[j] * own[j]
                    if acc is not None:
                        p += int(acc[j])
                    p = (p + half) >> Q
                    ctx = min(max(p, -m), m) + m
                    alphabet, cost = lay.alphabets[j], t.inter_cost_list[ctx]
                    sym = int(dec.decode(t.inter[ctx]))
                if sym == ESCAPE:
                    v = int(dec.decode(_uniform(nb_abs)))
                    total += cost[sym] + nb_abs
                else:
                    nbits = alphabet.extra_bits(sym)
                    extra = int(dec.decode(_uniform(nbits))) if nbits else 0
                    total += cost[sym] + nbits
                    r = alphabet.decode(sym, extra)
                    v = lay.predictor_list[j] + r if intra else prev[j] + p + r
                if not 0 <= v < (1 << nb_abs):
                    raise CorruptPayload(f"stream {lay.name}: index {v} out of range")
                q[j] = v
                if not intra:
                    dj = d[j] = v - prev[j]
                    if dj and acc is not None:
                        acc += lay.columns[j] * dj
            out[lay.name] = np.array(q, dtype=np.int64)
            self.prev_delta[lay.name] = np.array(d, dtype=np.int64)
            bits[lay.name] = total
        self.prev = out
        return out, bits


def words_to_bytes(words: np.ndarray) -> bytes:
    """Range coder output (uint32 words, little-endian) without its trailing zero bytes:
    the decoder pads with zeros, which restores them exactly."""
    return words.astype("<u4").tobytes().rstrip(b"\0")


def bytes_to_words(data: bytes) -> np.ndarray:
    pad = (-len(data)) % 4
    return np.frombuffer(data + b"\0" * pad, dtype="<u4").astype(np.uint32)


def encode_packet(coder: FrameCoder, frames: list[Coded], first_intra: bool
                  ) -> tuple[bytes, list[dict[str, float]]]:
    """Code frames into one range-coded payload; the first is intra if ``first_intra``."""
    enc = RangeEncoder()
    bits = [coder.encode_frame(enc, f, first_intra and i == 0) for i, f in enumerate(frames)]
    return words_to_bytes(enc.get_compressed()), bits


def decode_packet(coder: FrameCoder, payload: bytes, n_frames: int, first_intra: bool
                  ) -> tuple[list[Coded], list[dict[str, float]]]:
    dec = RangeDecoder(bytes_to_words(payload))
    frames, bits = [], []
    for i in range(n_frames):
        f, b = coder.decode_frame(dec, first_intra and i == 0)
        frames.append(f)
        bits.append(b)
    return frames, bits
