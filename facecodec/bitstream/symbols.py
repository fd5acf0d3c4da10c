"""The symbol alphabet of one prior class: integer residual <-> (symbol, extra bits).

A residual ``v`` (a delta of quantization indices, or an intra value minus its predictor)
is mapped to a symbol of a categorical alphabet of ``n = 2E + 2 + 2K`` symbols:

==================  ==========================================  ===================
symbol              meaning                                     extra bits
==================  ==========================================  ===================
0                   escape: the absolute index follows raw      ``bits`` of the coordinate
1 .. 2E+1           ``v = symbol - 1 - E`` exactly (|v| <= E)   none
2E+2+2k (+1 if <0)  ``|v| - E`` in ``[2**k, 2**(k+1))``          ``k`` (``|v| - E - 2**k``)
==================  ==========================================  ===================

Small residuals, the bulk of a well-predicted stream, are coded exactly; large ones fall
into logarithmic buckets whose low bits are sent uniformly (as JPEG codes its AC
magnitudes), so a small table covers any residual; beyond ``E + 2**K - 1`` the escape
symbol sends the value itself, so every input is encodable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESCAPE = 0


@dataclass(frozen=True)
class Alphabet:
    """Exact half-width ``E`` and number of logarithmic buckets ``K`` per sign."""

    exact: int
    buckets: int

    def __post_init__(self) -> None:
        if not 0 <= self.exact <= 4096 or not 0 <= self.buckets <= 21:
            raise ValueError(f"alphabet E={self.exact} K={self.buckets} out of range")

    @property
    def size(self) -> int:
        return 2 * self.exact + 2 + 2 * self.buckets

    @property
    def max_abs(self) -> int:
        """Largest |residual| coded without escape."""
        return self.exact + (1 << self.buckets) - 1 if self.buckets else self.exact

    def encode(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Residuals -> (symbols, extra values, extra bit counts). Escapes get symbol 0 and
        zero extra bits here: the caller sends the absolute index after them."""
        v = np.asarray(v, dtype=np.int64)
        a = np.abs(v)
        sym = np.zeros(v.shape, dtype=np.int64)
        extra = np.zeros(v.shape, dtype=np.int64)
        nbits = np.zeros(v.shape, dtype=np.int64)

        exact = a <= self.exact
        sym[exact] = v[exact] + self.exact + 1

        r = a - self.exact
        big = (~exact) & (a <= self.max_abs)
        if np.any(big):
            k = np.floor(np.log2(r[big])).astype(np.int64)
            # log2 of an exact power of two is exact in float64; guard the rounding anyway
            k = np.where((1 << (k + 1)) <= r[big], k + 1, k)
            k = np.where((1 << k) > r[big], k - 1, k)
            sym[big] = 2 * self.exact + 2 + 2 * k + (v[big] < 0)
            extra[big] = r[big] - (1 << k)
            nbits[big] = k
        return sym, extra, nbits

    def extra_bits(self, symbol: int) -> int:
        """Number of raw low bits that follow a bucket symbol (0 for exact symbols)."""
        if symbol <= 2 * self.exact + 1:
            return 0
        return (symbol - 2 * self.exact - 2) // 2

    def decode(self, symbol: int, extra: int) -> int:
        """(symbol, extra value) -> residual. Not for the escape symbol."""
        if symbol <= 2 * self.exact + 1:
            return symbol - 1 - self.exact
        b = symbol - 2 * self.exact - 2
        k, neg = b // 2, b % 2
        mag = self.exact + (1 << k) + extra
        return -mag if neg else mag
