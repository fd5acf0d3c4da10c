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

from facecodec.bitstream.prior import TOTAL, ClassModel, Prior, predict_deltas, predict_one
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


def _tables(cm: ClassModel) -> _Tables:
    def model(w: np.ndarray):
        return _model.Categorical((w - 1).astype(np.float64), perfect=False)

    return _Tables(
        [model(row) for row in cm.inter], model(cm.intra),
        -np.log2(cm.inter / TOTAL), -np.log2(cm.intra / TOTAL),
    )


_uniform_cache: dict[int, object] = {}


def _uniform(nbits: int):
    if nbits not in _uniform_cache:
        _uniform_cache[nbits] = _model.Uniform(1 << nbits)
    return _uniform_cache[nbits]


class FrameCoder:
    """Encoder- or decoder-side state: the last reconstructed indices and deltas.

    One instance per direction; both sides run the same state updates, which is what
    keeps them in lock-step.
    """

    def __init__(self, prior: Prior):
        self.prior = prior
        self.table = prior.table
        self._tables = {
            s.name: [_tables(cm) for cm in prior.streams[s.name].classes] for s in self.table
        }
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
        for spec in self.table:
            sp = self.prior.streams[spec.name]
            q = np.asarray(coded[spec.name], dtype=np.int64)
            cbits = spec.coded_bits
            if np.any(q < 0) or np.any(q >= (1 << cbits)):
                raise ValueError(f"stream {spec.name}: index out of range")
            classes = spec.coded_classes
            tabs = self._tables[spec.name]
            m = self.prior.context
            if intra:
                r = q - sp.predictor
                d = np.zeros_like(q)
            else:
                d = q - self.prev[spec.name]
                p = predict_deltas(sp.weights, d, self.prev_delta[spec.name])
                r = d - p
                ctx = np.clip(p, -m, m) + m
            # symbols and contexts of all coordinates at once, class by class
            sym = np.zeros(spec.n_coded, dtype=np.int64)
            extra = np.zeros_like(sym)
            nbits = np.zeros_like(sym)
            for k, cm in enumerate(sp.classes):
                cols = classes == k
                alphabet = cm.intra_alphabet if intra else cm.alphabet
                sym[cols], extra[cols], nbits[cols] = alphabet.encode(r[cols])
            total = 0.0
            for j in range(spec.n_coded):
                t = tabs[classes[j]]
                model, cost = (t.intra, t.intra_cost) if intra else \
                    (t.inter[ctx[j]], t.inter_cost[ctx[j]])
                sj = int(sym[j])
                enc.encode(sj, model)
                if sj == ESCAPE:
                    enc.encode(int(q[j]), _uniform(int(cbits[j])))
                    total += float(cost[sj]) + int(cbits[j])
                else:
                    if nbits[j]:
                        enc.encode(int(extra[j]), _uniform(int(nbits[j])))
                    total += float(cost[sj]) + int(nbits[j])
            self.prev_delta[spec.name] = d
            bits[spec.name] = total
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
        for spec in self.table:
            sp = self.prior.streams[spec.name]
            cbits = spec.coded_bits
            classes = spec.coded_classes
            tabs = self._tables[spec.name]
            q = np.zeros(spec.n_coded, dtype=np.int64)
            d = np.zeros(spec.n_coded, dtype=np.int64)
            total = 0.0
            m = self.prior.context
            own = self.prev_delta.get(spec.name)
            for j in range(spec.n_coded):
                cm, t = sp.classes[classes[j]], tabs[classes[j]]
                nb_abs = int(cbits[j])
                if intra:
                    r, raw, cost = self._get(dec, cm.intra_alphabet, t.intra, t.intra_cost,
                                             nb_abs)
                    q[j] = raw if raw is not None else sp.predictor[j] + r
                else:
                    p = predict_one(sp.weights, d, own, j)
                    ctx = min(max(p, -m), m) + m
                    r, raw, cost = self._get(dec, cm.alphabet, t.inter[ctx], t.inter_cost[ctx],
                                             nb_abs)
                    q[j] = raw if raw is not None else self.prev[spec.name][j] + p + r
                    d[j] = q[j] - self.prev[spec.name][j]
                if not 0 <= q[j] < (1 << nb_abs):
                    raise CorruptPayload(f"stream {spec.name}: index {q[j]} out of range")
                total += cost
            out[spec.name] = q
            self.prev_delta[spec.name] = d
            bits[spec.name] = total
        self.prev = out
        return out, bits

    @staticmethod
    def _get(dec, alphabet: Alphabet, model, cost: np.ndarray, nbits_abs: int
             ) -> tuple[int, int | None, float]:
        sym = int(dec.decode(model))
        if sym == ESCAPE:
            return 0, int(dec.decode(_uniform(nbits_abs))), float(cost[sym]) + nbits_abs
        nbits = alphabet.extra_bits(sym)
        extra = int(dec.decode(_uniform(nbits))) if nbits else 0
        return alphabet.decode(sym, extra), None, float(cost[sym]) + nbits


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
