"""Benchmark: fuzzing the stream reader and the source-image checks (issue #16).

    python bench/fuzz_stream.py [--cases 10000] [--seed 0] [--time-limit 2]

Structural mutations of valid streams (tests/stream_fuzzing.py, the generator
tests/test_fuzz_stream.py runs a few hundred of) fed to FcsReader in strict and tolerant
mode and to the source-image check and decoder. Counts the cases, the failures (strict
reading raising anything but a FacecodecError, tolerant reading raising after the
header), the hangs (a case over the CPU time limit) and the process's peak resident
memory, and writes bench/results/fuzz_stream.json (bench/report.py renders it into
docs/BENCHMARKS.md), with the first failing inputs in hex and their tracebacks.

The address space is capped (``--memory-limit``, on top of what the process holds at
the start): an input that made the reader allocate without bound fails with a
MemoryError instead of taking the machine down.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from stream_fuzzing import (  # noqa: E402
    Corpus,
    peak_rss_mb,
    quiet_opencv,
    run_case,
    streams,
)

KEEP_FAILURES = 20  # failing inputs written out in full


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=2.0, help="CPU seconds per case")
    ap.add_argument("--memory-limit", type=float, default=2.0,
                    help="GB of address space allowed on top of the start's")
    ap.add_argument("--verbose", action="store_true", help="keep the image decoders' stderr")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz_stream.json")
    args = ap.parse_args()

    quiet_opencv()
    # libpng and libjpeg print a line per broken image on the C stderr: thousands here
    log_to = os.fdopen(os.dup(2), "w")
    if not args.verbose:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    corpus = Corpus.make()
    if _vm_bytes():
        limit = _vm_bytes() + int(args.memory_limit * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    stats: collections.Counter[str] = collections.Counter()
    strict_ends: collections.Counter[str] = collections.Counter()
    anomalies: collections.Counter[str] = collections.Counter()
    failures: list[dict] = []
    slowest = [0.0, []]
    t0 = time.perf_counter()

    @seed(args.seed)
    @settings(max_examples=args.cases, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(streams(corpus))
    def case(c: tuple[bytes, list[str]]) -> None:
        data, log = c
        out = run_case(data, corpus.prior, args.time_limit)
        stats["cases"] += 1
        stats[out.kind] += 1
        strict_ends[out.strict or "(not reached)"] += 1
        for a in out.anomalies:
            anomalies[re.sub(r"-?\d+", "N", a)] += 1
        if out.seconds > slowest[0]:
            slowest[:] = [out.seconds, log]
        if not out.ok and len(failures) < KEEP_FAILURES:
            failures.append({"kind": out.kind, "mutations": log, "detail": out.detail,
                             "input_hex": data.hex()})
        if stats["cases"] % 1000 == 0:
            print(f"{stats['cases']} cases, {stats['error']} errors, {stats['hang']} hangs, "
                  f"{time.perf_counter() - t0:.0f} s, peak {peak_rss_mb():.0f} MB",
                  file=log_to, flush=True)

    case()
    seconds = time.perf_counter() - t0
    summary = {
        "cases": stats["cases"], "failures": stats["error"] + stats["hang"],
        "errors": stats["error"], "hangs": stats["hang"],
        "peak_rss_mb": round(peak_rss_mb(), 1), "seconds": round(seconds, 1),
        "slowest_case_cpu_s": round(slowest[0], 3),
        "strict_error_kinds": len(strict_ends),
    }
    out = {
        "benchmark": "fuzz_stream",
        "command": f"python bench/fuzz_stream.py --cases {args.cases} --seed {args.seed} "
                   f"--time-limit {args.time_limit:g}",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "time_limit_cpu_s": args.time_limit,
        "memory_limit_gb_extra": args.memory_limit,
        "results": [summary],
        "slowest_case": slowest[1],
        "strict_outcomes": dict(strict_ends.most_common()),
        "anomalies": dict(anomalies.most_common()),
        "failures_kept": failures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
