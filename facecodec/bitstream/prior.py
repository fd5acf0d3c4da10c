"""Learned priors: integer frequency tables the range coder codes residuals against.

Per stream and coordinate class (``StreamSpec.period``) a prior holds

- an *inter* model: one categorical table per context, over the residual alphabet of
  :mod:`facecodec.bitstream.symbols`, for the delta of quantization indices to the
  previous frame;
- an *intra* model: one table for the index minus a per-coordinate predictor (the
  median index seen in training), used on intra frames and source frames.

Context (our addition to the paper's single static distribution): the magnitude of the
same coordinate's delta in the previous frame (motion persists), and of the delta
already coded for the previous coordinate of the same class in this frame (points of a
face move together). Each magnitude is bucketed into ``levels`` levels by per-class
integer thresholds, giving ``levels**2`` tables per class.

Tables are integer weights ``w >= 1`` summing to ``2**24`` (the range coder's
precision), stored in JSON, so every platform decodes bit-exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecodec.bitstream.streams import StreamSpec, StreamTable
from facecodec.bitstream.symbols import Alphabet
from facecodec.errors import FormatError

PRECISION = 24
TOTAL = 1 << PRECISION
PRIOR_FORMAT = "facecodec-prior"
PRIOR_VERSION = 1


def to_weights(p: np.ndarray) -> np.ndarray:
    """Probabilities (any positive scale) -> integer weights >= 1 summing to ``2**24``."""
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum()
    n = p.size
    w = 1 + np.floor(p * (TOTAL - n)).astype(np.int64)
    rest = TOTAL - int(w.sum())
    # hand the rounding remainder to the largest entries, deterministically
    order = np.argsort(-p, kind="stable")
    w[order[: rest % n]] += 1
    w += rest // n
    assert w.sum() == TOTAL and w.min() >= 1
    return w


@dataclass
class ClassModel:
    """The tables of one coordinate class of one stream."""

    alphabet: Alphabet
    thresholds: tuple[int, ...]  # context levels: level(x) = #{t in thresholds : x > t}
    inter: np.ndarray  # (levels**2, alphabet.size) int64 weights
    intra_alphabet: Alphabet
    intra: np.ndarray  # (intra_alphabet.size,) int64 weights

    def check(self, levels: int) -> None:
        for name, table, size in (("inter", self.inter, self.alphabet.size),
                                  ("intra", self.intra[None], self.intra_alphabet.size)):
            if table.ndim != 2 or table.shape[1] != size:
                raise ValueError(f"{name} table shape {table.shape} does not fit alphabet {size}")
            if table.min() < 1 or np.any(table.sum(axis=1) != TOTAL):
                raise ValueError(f"{name} weights must be >= 1 and sum to 2**{PRECISION}")
        if self.inter.shape[0] != levels * levels or len(self.thresholds) > levels - 1:
            raise ValueError("context tables do not match the context levels")


@dataclass
class StreamPrior:
    spec: StreamSpec
    predictor: np.ndarray  # (n_coded,) int64 intra predictor
    classes: list[ClassModel]


@dataclass
class Prior:
    """A named set of stream priors for one stream table."""

    name: str
    table: StreamTable
    levels: int
    streams: dict[str, StreamPrior]
    info: dict = field(default_factory=dict)  # how it was fitted; not part of the id

    # -- identity -------------------------------------------------------------------------
    def _body(self) -> dict:
        return {
            "format": PRIOR_FORMAT,
            "version": PRIOR_VERSION,
            "name": self.name,
            "streams": self.table.to_json(),
            "levels": self.levels,
            "tables": {
                s: {
                    "predictor": sp.predictor.tolist(),
                    "classes": [
                        {
                            "exact": c.alphabet.exact, "buckets": c.alphabet.buckets,
                            "thresholds": list(c.thresholds), "inter": c.inter.tolist(),
                            "intra_exact": c.intra_alphabet.exact,
                            "intra_buckets": c.intra_alphabet.buckets,
                            "intra": c.intra.tolist(),
                        }
                        for c in sp.classes
                    ],
                }
                for s, sp in self.streams.items()
            },
        }

    @property
    def id(self) -> str:
        """``name-<12 hex digits of the tables' sha256>``: written in every ``.fcs`` header,
        so a stream is never decoded against other tables than it was coded with."""
        digest = hashlib.sha256(json.dumps(self._body(), sort_keys=True).encode()).hexdigest()
        return f"{self.name}-{digest[:12]}"

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = self._body()
        body["id"] = self.id
        body["info"] = self.info
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(body, separators=(",", ":")))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Prior:
        path = Path(path)
        try:
            body = json.loads(path.read_text())
        except FileNotFoundError:
            raise FormatError("prior file not found", source=str(path)) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"prior file is not valid JSON ({e})", source=str(path)) from None
        try:
            return cls.from_body(body)
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"malformed prior ({e})", source=str(path)) from None

    @classmethod
    def from_body(cls, body: dict) -> Prior:
        if body.get("format") != PRIOR_FORMAT:
            raise ValueError("not a facecodec prior")
        if body["version"] > PRIOR_VERSION:
            raise ValueError(f"prior version {body['version']} is newer than this facecodec")
        table = StreamTable.from_json(body["streams"])
        levels = int(body["levels"])
        streams = {}
        for spec in table:
            t = body["tables"][spec.name]
            classes = []
            for c in t["classes"]:
                cm = ClassModel(
                    Alphabet(c["exact"], c["buckets"]), tuple(c["thresholds"]),
                    np.asarray(c["inter"], dtype=np.int64),
                    Alphabet(c["intra_exact"], c["intra_buckets"]),
                    np.asarray(c["intra"], dtype=np.int64),
                )
                cm.check(levels)
                classes.append(cm)
            if len(classes) != spec.n_classes:
                raise ValueError(f"stream {spec.name}: {len(classes)} classes, "
                                 f"expected {spec.n_classes}")
            predictor = np.asarray(t["predictor"], dtype=np.int64)
            if predictor.shape != (spec.n_coded,):
                raise ValueError(f"stream {spec.name}: predictor has the wrong length")
            streams[spec.name] = StreamPrior(spec, predictor, classes)
        prior = cls(body["name"], table, levels, streams, body.get("info", {}))
        if "id" in body and body["id"] != prior.id:
            raise ValueError(f"tables do not match the recorded id {body['id']}")
        return prior

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def untrained(cls, table: StreamTable, name: str = "untrained", levels: int = 2) -> Prior:
        """A generic prior for any stream table: geometric tables, a few buckets.

        Correct for every input (escapes cover the rest) but not efficient: for tests and
        for stream tables no prior has been fitted to yet."""
        streams = {}
        for spec in table:
            classes = []
            for _ in range(spec.n_classes):
                a = Alphabet(2, min(spec.bits, 6))
                inter = np.stack([to_weights(_geometric(a, 0.5))] * levels**2)
                ia = Alphabet(2, min(spec.bits, 6))
                classes.append(ClassModel(a, tuple(range(levels - 1)), inter, ia,
                                          to_weights(_geometric(ia, 0.7))))
            predictor = spec.to_coded(np.zeros(spec.count))  # the middle of the range
            streams[spec.name] = StreamPrior(spec, predictor, classes)
        return cls(name, table, levels, streams, {"fitted": False})

    @classmethod
    def fit(cls, table: StreamTable, clips: Sequence[dict[str, np.ndarray]], name: str,
            levels: int = 3, intra_period: int = 30, strength: float = 32.0) -> Prior:
        """Fit tables to coded value sequences.

        Args:
            clips: one dict per clip, stream name -> (T, n_coded) int64 indices.
            levels: context levels per context variable (1 = one static table per class).
            intra_period: the intra spacing the streams will be coded with (resets the
                previous-delta context, as the coder does).
            strength: Dirichlet strength pulling a context's table towards its class's
                pooled table, so rare contexts are not over-fitted.
        """
        streams = {}
        for spec in table:
            seqs = [np.asarray(c[spec.name], dtype=np.int64) for c in clips]
            allq = np.concatenate(seqs)
            predictor = np.median(allq, axis=0).astype(np.int64) if len(allq) else \
                spec.to_coded(np.zeros(spec.count))
            classes_of = spec.coded_classes
            d_all, own_all, nb_all = [], [], []
            for q in seqs:
                d, own, nb = residual_terms(q, spec, intra_period)
                d_all.append(d[1:])
                own_all.append(own[1:])
                nb_all.append(nb[1:])
            d = np.concatenate(d_all) if d_all else np.zeros((0, spec.n_coded), np.int64)
            own = np.concatenate(own_all) if own_all else d
            nb = np.concatenate(nb_all) if nb_all else d
            classes = []
            for k in range(spec.n_classes):
                cols = classes_of == k
                dk = d[:, cols].reshape(-1)
                ik = (allq[:, cols] - predictor[cols]).reshape(-1)
                a = _fit_alphabet(dk)
                thr = _fit_thresholds(np.abs(dk), levels)
                ctx = (level_array(np.abs(own[:, cols]).reshape(-1), thr) * levels
                       + level_array(np.abs(nb[:, cols]).reshape(-1), thr))
                sym, _, _ = a.encode(dk)
                pooled = np.bincount(sym, minlength=a.size) + 0.5
                pooled = pooled / pooled.sum()
                inter = np.stack([
                    to_weights(np.bincount(sym[ctx == c], minlength=a.size) + strength * pooled)
                    for c in range(levels * levels)
                ])
                ia = _fit_alphabet(ik)
                isym, _, _ = ia.encode(ik)
                intra = to_weights(np.bincount(isym, minlength=ia.size) + 0.5)
                classes.append(ClassModel(a, thr, inter, ia, intra))
            streams[spec.name] = StreamPrior(spec, predictor, classes)
        return cls(name, table, levels, streams, {"fitted": True, "levels": levels})

    # -- evaluation -----------------------------------------------------------------------
    def code_length(self, clip: dict[str, np.ndarray], intra_period: int) -> dict[str, np.ndarray]:
        """Ideal code length in bits, per stream and frame, of a coded clip under this
        prior (symbols plus their raw extra bits and escapes), as the coder codes it."""
        out = {}
        for spec in self.table:
            sp = self.streams[spec.name]
            q = np.asarray(clip[spec.name], dtype=np.int64)
            d, own, nb = residual_terms(q, spec, intra_period)
            intra = _intra_mask(len(q), intra_period)
            bits = np.zeros(q.shape, dtype=np.float64)
            for k, cm in enumerate(sp.classes):
                cols = spec.coded_classes == k
                # inter frames
                dk = d[~intra][:, cols]
                sym, _, nbits = cm.alphabet.encode(dk)
                ctx = level_array(np.abs(own[~intra][:, cols]), cm.thresholds) * self.levels \
                    + level_array(np.abs(nb[~intra][:, cols]), cm.thresholds)
                p = cm.inter[ctx, sym] / TOTAL
                raw = np.where(sym == 0, spec.coded_bits[cols], nbits)
                bits[np.ix_(~intra, cols)] = -np.log2(p) + raw
                # intra frames
                ik = q[intra][:, cols] - sp.predictor[cols]
                isym, _, inb = cm.intra_alphabet.encode(ik)
                p = cm.intra[isym] / TOTAL
                raw = np.where(isym == 0, spec.coded_bits[cols], inb)
                bits[np.ix_(intra, cols)] = -np.log2(p) + raw
            out[spec.name] = bits.sum(axis=1)
        return out


def residual_terms(q: np.ndarray, spec: StreamSpec, intra_period: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a (T, n_coded) index sequence: the deltas to the previous frame, the previous
    frame's delta of the same coordinate (0 at and right after intra frames) and this
    frame's delta of the previous coordinate of the same class (0 where there is none).
    The coder computes the same terms one frame at a time."""
    q = np.asarray(q, dtype=np.int64)
    d = np.zeros_like(q)
    d[1:] = q[1:] - q[:-1]
    intra = _intra_mask(len(q), intra_period)
    d[intra] = 0
    own = np.zeros_like(d)
    own[1:] = d[:-1]
    return d, own, neighbor_deltas(d, spec)


def neighbor_deltas(d: np.ndarray, spec: StreamSpec) -> np.ndarray:
    """Delta of coordinate ``j - period`` (same class, coded before ``j``), 0 if none. A
    point set's mean and offsets are separate groups."""
    lag = spec.period
    nb = np.zeros_like(d)
    first = 2 if spec.points else 0  # offsets start here; the two means have no neighbour
    if d.shape[-1] > first + lag:
        nb[..., first + lag:] = d[..., first:-lag]
    return nb


def _intra_mask(n: int, intra_period: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[:: max(1, intra_period)] = True
    return m


def level(x: int, thresholds: Iterable[int]) -> int:
    """Context level of one magnitude (the coder's scalar form of :func:`level_array`)."""
    return sum(1 for t in thresholds if x > t)


def level_array(x: np.ndarray, thresholds: Sequence[int]) -> np.ndarray:
    out = np.zeros(np.shape(x), dtype=np.int64)
    for t in thresholds:
        out += x > t
    return out


def _fit_alphabet(r: np.ndarray) -> Alphabet:
    """Exact region covering 95% of residuals (at most 48), buckets to twice the largest."""
    if r.size == 0:
        return Alphabet(2, 4)
    a = np.abs(r)
    exact = int(min(48, np.quantile(a, 0.95)))
    top = int(a.max())
    buckets = 1
    while exact + (1 << buckets) - 1 < 2 * top + 1 and buckets < 21:
        buckets += 1
    return Alphabet(exact, buckets)


def _fit_thresholds(a: np.ndarray, levels: int) -> tuple[int, ...]:
    """Integer thresholds at equal-mass quantiles of |delta|, distinct and increasing."""
    if levels <= 1 or a.size == 0:
        return ()
    qs = np.quantile(a, np.arange(1, levels) / levels, method="lower").astype(int)
    out: list[int] = []
    for t in qs:
        t = max(int(t), out[-1] + 1 if out else 0)
        out.append(t)
    return tuple(out)


def _geometric(a: Alphabet, ratio: float) -> np.ndarray:
    """A two-sided geometric distribution over an alphabet (the untrained prior)."""
    p = np.zeros(a.size)
    p[0] = 1e-4  # escape
    v = np.arange(-a.exact, a.exact + 1)
    p[1 : 2 * a.exact + 2] = ratio ** np.abs(v)
    for k in range(a.buckets):
        mass = ratio ** (a.exact + (1 << k)) * (1 << k)
        p[2 * a.exact + 2 + 2 * k : 2 * a.exact + 4 + 2 * k] = max(mass, 1e-6)
    return p


def prior_dirs() -> list[Path]:
    """Where installed priors are looked up: ``$FACECODEC_PRIORS`` (colon-separated),
    then the project's ``priors/`` folder."""
    import os

    dirs = [Path(p) for p in os.environ.get("FACECODEC_PRIORS", "").split(":") if p]
    return [*dirs, Path(__file__).resolve().parents[2] / "priors"]


def find_prior(prior_id: str) -> Prior | None:
    """The installed prior with this id, or None."""
    for d in prior_dirs():
        for path in sorted(d.glob("**/*.json")) if d.is_dir() else []:
            try:
                head = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(head, dict) and head.get("id") == prior_id:
                return Prior.load(path)
    return None
