"""Learned priors: integer frequency tables the range coder codes residuals against.

Per stream a prior holds

- a *linear predictor* of each coordinate's delta (to the previous frame's quantization
  index) from the deltas already coded in this frame and from the same coordinate's delta
  in the previous frame: ``p_j = (sum_{i<j} W_ji d_i + W_jn own_j + 2**11) >> 12``, integer
  weights in Q12, so encoder and decoder compute the same ``p_j`` on every platform. A
  face's points move together (turning, nodding, opening the mouth), which the deltas coded
  first reveal;
- per coordinate class (``StreamSpec.period``) an *inter* model: one categorical table per
  context ``c = clip(p_j, -m, m) + m`` over the residual alphabet of
  :mod:`facecodec.bitstream.symbols`, for ``d_j - p_j``;
- an *intra* model: one table for the index minus a per-coordinate predictor (the median
  index seen in training), used on intra frames and source frames.

The prediction and the contexts are our addition: the paper (Oquab et al. 2022, 4.3)
codes deltas with one static distribution per value type, the baseline ``fit`` gives with
``context=0, predict=False``; ``facecodec fit-priors`` measures the difference.

Tables are integer weights ``w >= 1`` summing to ``2**24`` (the range coder's
precision), stored in JSON, so every platform decodes bit-exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecodec.bitstream.streams import StreamSpec, StreamTable
from facecodec.bitstream.symbols import Alphabet
from facecodec.defaults import FIT_INTRA_PERIOD
from facecodec.errors import FormatError
from facecodec.resources import search_path

PRECISION = 24
TOTAL = 1 << PRECISION
PRIOR_FORMAT = "facecodec-prior"
PRIOR_VERSION = 2  # 2: linear prediction + predicted-value contexts (1: magnitude contexts)
Q = 12  # fixed-point bits of the predictor weights
W_MAX = 1 << 16  # |weight| bound: keeps every dot product far inside int64


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
    inter: np.ndarray  # (2 * context + 1, alphabet.size) int64 weights
    intra_alphabet: Alphabet
    intra: np.ndarray  # (intra_alphabet.size,) int64 weights

    def check(self, context: int) -> None:
        for name, table, size in (("inter", self.inter, self.alphabet.size),
                                  ("intra", self.intra[None], self.intra_alphabet.size)):
            if table.ndim != 2 or table.shape[1] != size:
                raise ValueError(f"{name} table shape {table.shape} does not fit alphabet {size}")
            if table.min() < 1 or np.any(table.sum(axis=1) != TOTAL):
                raise ValueError(f"{name} weights must be >= 1 and sum to 2**{PRECISION}")
        if self.inter.shape[0] != 2 * context + 1:
            raise ValueError("inter tables do not match the context width")


@dataclass
class StreamPrior:
    spec: StreamSpec
    predictor: np.ndarray  # (n_coded,) int64 intra predictor
    weights: np.ndarray  # (n_coded, n_coded + 1) int64 Q12 delta predictor, see predict()
    classes: list[ClassModel]

    def check(self) -> None:
        n = self.spec.n_coded
        w = self.weights
        if self.predictor.shape != (n,):
            raise ValueError(f"stream {self.spec.name}: predictor has the wrong length")
        if w.shape != (n, n + 1):
            raise ValueError(f"stream {self.spec.name}: predictor weights are {w.shape}, "
                             f"expected {(n, n + 1)}")
        if np.any(np.triu(w[:, :n]) != 0) or np.abs(w).max(initial=0) > W_MAX:
            raise ValueError(f"stream {self.spec.name}: predictor weights must be strictly "
                             f"causal and within +-{W_MAX}")


@dataclass
class Prior:
    """A named set of stream priors for one stream table."""

    name: str
    table: StreamTable
    context: int  # m: inter contexts are clip(prediction, -m, m)
    streams: dict[str, StreamPrior]
    info: dict = field(default_factory=dict)  # how it was fitted; not part of the id

    # -- identity -------------------------------------------------------------------------
    def _body(self) -> dict:
        return {
            "format": PRIOR_FORMAT,
            "version": PRIOR_VERSION,
            "name": self.name,
            "streams": self.table.to_json(),
            "context": self.context,
            "q": Q,
            "tables": {
                s: {
                    "predictor": sp.predictor.tolist(),
                    "weights": sp.weights.tolist(),
                    "classes": [
                        {
                            "exact": c.alphabet.exact, "buckets": c.alphabet.buckets,
                            "inter": c.inter.tolist(),
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
        # the id first: find_prior reads it from a file's first bytes (recorded_id)
        body = {"id": self.id, **self._body(), "info": self.info}
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
        if body["version"] < PRIOR_VERSION or body.get("q") != Q:
            raise ValueError(f"prior version {body['version']} is no longer supported: "
                             "fit it again with facecodec fit-priors")
        table = StreamTable.from_json(body["streams"])
        context = int(body["context"])
        if not 0 <= context <= 64:
            raise ValueError(f"context width {context} out of range")
        streams = {}
        for spec in table:
            t = body["tables"][spec.name]
            classes = []
            for c in t["classes"]:
                cm = ClassModel(
                    Alphabet(c["exact"], c["buckets"]),
                    np.asarray(c["inter"], dtype=np.int64),
                    Alphabet(c["intra_exact"], c["intra_buckets"]),
                    np.asarray(c["intra"], dtype=np.int64),
                )
                cm.check(context)
                classes.append(cm)
            if len(classes) != spec.n_classes:
                raise ValueError(f"stream {spec.name}: {len(classes)} classes, "
                                 f"expected {spec.n_classes}")
            sp = StreamPrior(spec, np.asarray(t["predictor"], dtype=np.int64),
                             np.asarray(t["weights"], dtype=np.int64), classes)
            sp.check()
            streams[spec.name] = sp
        prior = cls(body["name"], table, context, streams, body.get("info", {}))
        if "id" in body and body["id"] != prior.id:
            raise ValueError(f"tables do not match the recorded id {body['id']}")
        return prior

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def untrained(cls, table: StreamTable, name: str = "untrained") -> Prior:
        """A generic prior for any stream table: no prediction, geometric tables.

        Correct for every input (escapes cover the rest) but not efficient: for tests and
        for stream tables no prior has been fitted to yet."""
        streams = {}
        for spec in table:
            classes = []
            for _ in range(spec.n_classes):
                a = Alphabet(2, min(spec.bits, 6))
                ia = Alphabet(2, min(spec.bits, 6))
                classes.append(ClassModel(a, to_weights(_geometric(a, 0.5))[None], ia,
                                          to_weights(_geometric(ia, 0.7))))
            predictor = spec.to_coded(np.zeros(spec.count))  # the middle of the range
            weights = np.zeros((spec.n_coded, spec.n_coded + 1), dtype=np.int64)
            streams[spec.name] = StreamPrior(spec, predictor, weights, classes)
        return cls(name, table, 0, streams, {"fitted": False})

    @classmethod
    def fit(cls, table: StreamTable, clips: Sequence[dict[str, np.ndarray]], name: str,
            context: int = 3, predict: bool = True, intra_period: int = FIT_INTRA_PERIOD,
            strength: float = 32.0, ridge: float = 10.0, select: bool = True) -> Prior:
        """Fit predictors and tables to coded value sequences.

        Args:
            clips: one dict per clip, stream name -> (T, n_coded) int64 indices.
            context: m, the inter contexts are the prediction clipped to [-m, m]
                (0 = one table per class).
            predict: fit the linear delta predictor (False: predict 0, plain deltas).
            select: with ``predict``, keep the predictor only for the streams whose code
                length on ``clips`` it shortens; the others get plain deltas (zero
                weights). Least squares minimises the squared error, not the code length:
                on a stream whose deltas are mostly exactly zero (the sender's dead
                zone), a small predicted value turns those zeros into costly residuals.
            intra_period: the intra spacing the streams will be coded with (resets the
                previous-delta term, as the coder does).
            strength: Dirichlet strength pulling a context's table towards its class's
                pooled table, so rare contexts are not over-fitted.
            ridge: ridge penalty of the least-squares predictor fit (in delta units**2).
        """
        if predict and select:
            kw = dict(context=context, intra_period=intra_period, strength=strength,
                      ridge=ridge, select=False)
            on = cls.fit(table, clips, name, predict=True, **kw)
            off = cls.fit(table, clips, name, predict=False, **kw)
            cost_on, cost_off = (
                {k: sum(float(v.sum()) for v in x) for k, x in _per_stream(
                    [pr.code_length(c, intra_period) for c in clips]).items()}
                for pr in (on, off))
            chosen = {k: "prediction" if cost_on[k] <= cost_off[k] else "plain deltas"
                      for k in cost_on}
            streams = {k: (on if v == "prediction" else off).streams[k]
                       for k, v in chosen.items()}
            return cls(name, table, context, streams,
                       {"fitted": True, "context": context, "predict": chosen})
        streams = {}
        for spec in table:
            n = spec.n_coded
            seqs = [np.asarray(c[spec.name], dtype=np.int64) for c in clips]
            allq = np.concatenate(seqs) if seqs else np.zeros((0, n), np.int64)
            predictor = np.median(allq, axis=0).astype(np.int64) if len(allq) else \
                spec.to_coded(np.zeros(spec.count))
            d_all, own_all = [], []
            for q in seqs:
                d, own, intra = delta_terms(q, intra_period)
                d_all.append(d[~intra])
                own_all.append(own[~intra])
            d = np.concatenate(d_all) if d_all else np.zeros((0, n), np.int64)
            own = np.concatenate(own_all) if own_all else d
            weights = _fit_predictor(d, own, ridge) if predict and len(d) else \
                np.zeros((n, n + 1), dtype=np.int64)
            p = predict_deltas(weights, d, own)
            r = d - p
            ctx = np.clip(p, -context, context) + context
            classes = []
            for k in range(spec.n_classes):
                cols = spec.coded_classes == k
                rk, ck = r[:, cols].reshape(-1), ctx[:, cols].reshape(-1)
                ik = (allq[:, cols] - predictor[cols]).reshape(-1)
                a = _fit_alphabet(rk)
                sym, _, _ = a.encode(rk)
                pooled = np.bincount(sym, minlength=a.size) + 0.5
                pooled = pooled / pooled.sum()
                inter = np.stack([
                    to_weights(np.bincount(sym[ck == c], minlength=a.size) + strength * pooled)
                    for c in range(2 * context + 1)
                ])
                ia = _fit_alphabet(ik)
                isym, _, _ = ia.encode(ik)
                intra = to_weights(np.bincount(isym, minlength=ia.size) + 0.5)
                classes.append(ClassModel(a, inter, ia, intra))
            streams[spec.name] = StreamPrior(spec, predictor, weights, classes)
        return cls(name, table, context, streams,
                   {"fitted": True, "context": context, "predict": predict})

    # -- evaluation -----------------------------------------------------------------------
    def code_length(self, clip: dict[str, np.ndarray], intra_period: int) -> dict[str, np.ndarray]:
        """Ideal code length in bits, per stream and frame, of a coded clip under this
        prior (symbols plus their raw extra bits and escapes), as the coder codes it."""
        out = {}
        m = self.context
        for spec in self.table:
            sp = self.streams[spec.name]
            q = np.asarray(clip[spec.name], dtype=np.int64)
            d, own, intra = delta_terms(q, intra_period)
            p = predict_deltas(sp.weights, d, own)
            r = d - p
            ctx = np.clip(p, -m, m) + m
            bits = np.zeros(q.shape, dtype=np.float64)
            for k, cm in enumerate(sp.classes):
                cols = spec.coded_classes == k
                # inter frames
                sym, _, nbits = cm.alphabet.encode(r[~intra][:, cols])
                pr = cm.inter[ctx[~intra][:, cols], sym] / TOTAL
                raw = np.where(sym == 0, spec.coded_bits[cols], nbits)
                bits[np.ix_(~intra, cols)] = -np.log2(pr) + raw
                # intra frames
                ik = q[intra][:, cols] - sp.predictor[cols]
                isym, _, inb = cm.intra_alphabet.encode(ik)
                pr = cm.intra[isym] / TOTAL
                raw = np.where(isym == 0, spec.coded_bits[cols], inb)
                bits[np.ix_(intra, cols)] = -np.log2(pr) + raw
            out[spec.name] = bits.sum(axis=1)
        return out


def delta_terms(q: np.ndarray, intra_period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a (T, n_coded) index sequence: the deltas to the previous frame (0 on intra
    frames), the previous frame's delta of the same coordinate, and the intra mask. The
    coder computes the same terms one frame at a time."""
    q = np.asarray(q, dtype=np.int64)
    d = np.zeros_like(q)
    d[1:] = q[1:] - q[:-1]
    intra = _intra_mask(len(q), intra_period)
    d[intra] = 0
    own = np.zeros_like(d)
    own[1:] = d[:-1]
    return d, own, intra


def predict_deltas(weights: np.ndarray, d: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Predicted deltas ``p_j = (sum_{i<j} W_ji d_i + W_jn own_j + 2**(Q-1)) >> Q`` for
    (..., n) deltas; ``W`` is strictly lower-triangular, so ``p_j`` needs only the deltas
    coded before ``j`` (the decoder's :func:`predict_one` gives the same integers)."""
    n = d.shape[-1]
    acc = d @ weights[:, :n].T + own * weights[:, n]
    return (acc + (1 << (Q - 1))) >> Q


def predict_one(weights: np.ndarray, d: np.ndarray, own: np.ndarray, j: int) -> int:
    """``predict_deltas`` of coordinate ``j`` alone, from the first ``j`` deltas."""
    acc = int(weights[j, :j] @ d[:j]) + int(weights[j, -1]) * int(own[j])
    return (acc + (1 << (Q - 1))) >> Q


def _fit_predictor(d: np.ndarray, own: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge least squares of each delta on the deltas before it and its own last delta,
    rounded to Q12 integers."""
    n = d.shape[1]
    x = np.concatenate([d, own], axis=1).astype(np.float64)
    w = np.zeros((n, n + 1))
    for j in range(n):
        cols = [*range(j), n + j]
        xj = x[:, cols]
        a = xj.T @ xj + ridge * np.eye(len(cols))
        w[j, [*range(j), n]] = np.linalg.solve(a, xj.T @ x[:, j])
    return np.clip(np.rint(w * (1 << Q)), -W_MAX, W_MAX).astype(np.int64)


def _intra_mask(n: int, intra_period: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[:: max(1, intra_period)] = True
    return m


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
    """Where a stream's prior is looked up by id: ``$FACECODEC_PRIORS``, the model
    folders (each model keeps its priors: ``prior.json`` and ``operating_points/``), then
    the shipped ``priors/`` (:func:`facecodec.resources.search_path`). Only the files'
    locations: nothing here reads a model."""
    priors = search_path("priors")
    return [*priors[:-1], *search_path("models"), priors[-1]]


HEAD_BYTES = 512  # what recorded_id reads of a file
_ID_HEAD = re.compile(rb'\{\s*"id"\s*:\s*"([^"\\]{1,400})"')
_OLD_HEAD = re.compile(rb'\{\s*"format"\s*:\s*"%s"\s*,\s*"version"\s*:\s*\d+\s*,\s*'
                       rb'"name"\s*:\s*"([^"\\]{1,400})"' % PRIOR_FORMAT.encode())


def recorded_id(path: Path, prior_id: str | None = None) -> str | None:
    """The id a prior file records, read from its first :data:`HEAD_BYTES` bytes
    (:meth:`Prior.save` writes it first); None for a file that is not a prior. A prior
    saved by an older facecodec (``format``, ``version``, ``name`` first, the id at the
    end) is parsed whole, and only when its name is the one ``prior_id``
    (``<name>-<digest>``) names."""
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return None
    if m := _ID_HEAD.match(head):
        return m.group(1).decode("utf-8", "replace")
    m = _OLD_HEAD.match(head)
    if m is None or (prior_id is not None
                     and prior_id.rpartition("-")[0] != m.group(1).decode("utf-8", "replace")):
        return None
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return body.get("id") if isinstance(body, dict) and isinstance(body.get("id"), str) else None


def find_prior(prior_id: str) -> Prior | None:
    """The installed prior with this id, or None: the first file in :func:`prior_dirs`
    (each searched recursively, in name order) whose :func:`recorded_id` is ``prior_id``.
    Only that file is parsed (a malformed one is a :class:`FormatError` naming it); the id,
    which comes from a stream, is compared, never used as a path."""
    for d in prior_dirs():
        for path in sorted(d.glob("**/*.json")) if d.is_dir() else []:
            if recorded_id(path, prior_id) == prior_id:
                return Prior.load(path)  # checks the tables against the recorded id
    return None


def _per_stream(lengths: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for per_clip in lengths:
        for k, v in per_clip.items():
            out.setdefault(k, []).append(v)
    return out
