"""``facecodec eval --calls``: the codec and SVT-AV1's ladder on one-minute calls
(issue 17, "judged like a call"; docs/EVAL_CALLS.md).

The clips are facecodec/eval/calls.py's, the methods any of the registry's (by default
SVT-AV1 on its six rungs and the codec at budgets, with and without sound), the metrics
eval/metrics.py's. Unlike the val report it keeps, per run, the time to the first face,
and, per budget the codec's plan refuses, the refusal; the results file is rewritten
after each score, so a stopped run keeps what it measured.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import torch
from tqdm import tqdm

from facecodec.errors import InputError
from facecodec.eval import calls_report
from facecodec.eval.calls import CALL_SECONDS, LOOPS, call_clips
from facecodec.eval.identity import FaceIdentity, unavailable_reason
from facecodec.eval.methods import make_method
from facecodec.eval.metrics import LPIPS, ClipScore, score, track_landmarks
from facecodec.eval.report import git_commit, jsonable
from facecodec.sender.landmarks import quiet_mediapipe_logs
from facecodec.sender.prepare import DEFAULT_MANIFEST, default_out

Say = Callable[[str], None]

CALL_RATES = (3.0, 5.0, 6.0, 8.0, 12.0)  # the 3, 5, 8, 12, and its 6-kbps target
CALL_METHODS = (
    *(f"svtav1-ladder:size={s};fps={f}" for s in (256, 192, 128) for f in ("15", "7.5")),
    "facecodec-budget",
    # with sound every budget of the issue is below the plan's minimum: the refusals are
    # reported, and 16 kbps shows what the sound costs where it fits
    "facecodec-budget:sound=yes;kbps=3/5/6/8/12/16",
)


@dataclass
class CallsRequest:
    """What ``facecodec eval --calls`` was asked; see the CLI's options."""

    methods: list[str]
    rates: list[float]
    report: Path | None
    json_path: Path | None = None
    manifest: Path | None = None
    cache: Path | None = None
    seconds: float = CALL_SECONDS
    loops: int = LOOPS
    names: tuple[str, ...] = ()  # val clips to loop instead of the longest
    which: str = "both"  # "call": the call clip only, "loops": the looped val clips only
    max_frames: int | None = None
    threads: int = 1
    progress: bool = True
    verbose: bool = False
    command: str = "facecodec eval --calls"

    @property
    def results_path(self) -> Path | None:
        if self.json_path is not None or self.report is None:
            return self.json_path
        return self.report.parent / self.report.stem.lower() / "results.json"


def _key(setting: dict, bits: int) -> tuple:
    """Two operating points giving the same stream are scored once (a ladder rung's
    coarsest CRF is often what its lowest targets end at)."""
    return repr(sorted((k, v) for k, v in setting.items() if k != "coarsest")), bits


def run_calls(req: CallsRequest, say: Say, warn: Say) -> dict:
    """Run ``req``; returns the results document (also written to its JSON / report)."""
    if req.report is not None and req.report.suffix.lower() != ".md":
        raise InputError(f"{req.report}: the report is Markdown (.md)")
    torch.set_num_threads(req.threads)
    cv2.setNumThreads(req.threads)
    manifest = req.manifest or DEFAULT_MANIFEST
    refs = call_clips(manifest, req.cache or default_out(), req.seconds,
                      0 if req.which == "call" else req.loops, list(req.names) or None,
                      call=req.which != "loops")
    methods = [make_method(s) for s in req.methods]
    if len({m.name for m in methods}) != len(methods):
        raise InputError(f"a method is listed twice: {', '.join(req.methods)}")
    points = {m.name: m.operating_points(req.rates) for m in methods}
    refused = {m.name: {f"{r:g}": msg for r, msg in getattr(m, "refused", {}).items()}
               for m in methods if getattr(m, "refused", None)}
    for name, rungs in refused.items():
        for r, msg in rungs.items():
            warn(f"{name} at {r} kbps refused: {msg}")
    missing = unavailable_reason()
    identity = None if missing else FaceIdentity()
    if missing:
        warn(f"warning: no identity distance: {missing}")
    doc = {"command": req.command, "commit": git_commit(),
           "date": datetime.date.today().isoformat(), "threads": req.threads,
           "seconds_per_call": req.seconds, "rates_kbps": req.rates,
           "max_frames": req.max_frames,
           "methods": {m.name: {"description": m.description, **m.settings()}
                       for m in methods},
           "identity": identity.description if identity else None,
           "identity_missing": missing, "refused": refused, "clips": [], "not_run": [],
           "planned_calls": [r.name for r in refs], "complete": False, "scores": []}
    path = req.results_path
    start = time.monotonic()
    lpips = LPIPS()
    total = len(refs) * sum(len(p) for p in points.values())
    with quiet_mediapipe_logs(), tqdm(total=total, unit="run", disable=not req.progress,
                                      dynamic_ncols=True) as bar:
        for ref in refs:
            bar.set_postfix_str(f"{ref.name[:30]} (loading)")
            clip = ref.load(req.max_frames)
            doc["clips"].append({"name": clip.name, "frames": len(clip.frames),
                                 "seconds": clip.seconds, "origin": clip.origin,
                                 "sound": clip.audio is not None})
            ref_lm = track_landmarks(clip.frames)
            ref_id = identity.reference(clip.frames) if identity else None
            for method in methods:
                why = getattr(method, "applies", lambda c: None)(clip)
                if why:
                    doc["not_run"].append({"clip": clip.name, "method": method.name,
                                           "why": why})
                    bar.update(len(points[method.name]))
                    continue
                done: dict[tuple, ClipScore] = {}
                for target in points[method.name]:
                    bar.set_postfix_str(f"{clip.name[:30]} {method.name} {target}")
                    enc = method.run(clip, target)
                    enc.check(clip, method.name)
                    key = _key(enc.setting, int(enc.frame_bits.sum()) + enc.setup_bits)
                    if key in done:
                        s = replace(done[key], target_kbps=target, reached=enc.reached,
                                    setting=dict(enc.setting))
                    else:
                        s = done[key] = score(clip, enc, method.name, target, lpips, ref_lm,
                                              identity, ref_id)
                    doc["scores"].append(s.as_dict())
                    if req.verbose:
                        warn(f"{clip.name} {method.name}@{target}: {s.kbps_all:.2f} kbps, "
                             f"LPIPS {s.lpips:.3f}, NME {s.nme:.3f}, identity "
                             f"{s.identity:.3f}, {s.setting}")
                    doc["elapsed_min"] = (time.monotonic() - start) / 60
                    if path is not None:  # a stopped run keeps what it measured
                        _write_json(path, doc)
                    bar.update()
    for method in methods:
        method.close()
    doc["elapsed_min"] = (time.monotonic() - start) / 60
    doc["complete"] = True
    say(calls_report.summary_table(doc))
    if path is not None:
        _write_json(path, doc)
        say(f"results: {path}")
    if req.report is not None:
        calls_report.write(doc, req.report)
        say(f"report: {req.report}")
    return doc


def _load(results: Path) -> dict:
    try:
        doc = json.loads(results.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{results}: not a results file ({e})") from None
    if not isinstance(doc, dict) or "scores" not in doc or "clips" not in doc:
        raise InputError(f"{results}: not the results of facecodec eval --calls")
    return doc


def merge(docs: list[dict]) -> dict:
    """Several runs' results as one (e.g. the call clip from one run, looped clips from a
    second with fewer methods): clips and methods joined, a score of a later run
    replacing the same (clip, method, target) of an earlier one, and a call a stopped run
    had only started dropped when a later run has it."""
    later = [{c["name"] for c in d["clips"]} for d in docs]
    scores: dict[tuple, dict] = {}
    clips: dict[str, dict] = {}
    for k, d in enumerate(docs):
        scored = {r["clip"] for r in d["scores"]}
        for c in d["clips"]:
            if c["name"] in scored or not any(c["name"] in x for x in later[k + 1:]):
                clips.setdefault(c["name"], c)
        for r in d["scores"]:
            scores[r["clip"], r["method"], r["target_kbps"]] = r
    first = docs[0]
    return {**first,
            "command": " ; ".join(d["command"] for d in docs),
            "commit": ", ".join(dict.fromkeys(d["commit"] for d in docs)),
            "date": docs[-1]["date"],
            "elapsed_min": sum(d.get("elapsed_min", 0.0) for d in docs),
            "methods": {k: v for d in docs for k, v in d["methods"].items()},
            "refused": {k: v for d in docs for k, v in d.get("refused", {}).items()},
            "not_run": [n for d in docs for n in d.get("not_run", [])],
            "planned_calls": list(dict.fromkeys(n for d in docs
                                                for n in d.get("planned_calls", []))),
            "parts": [{k: d.get(k) for k in ("command", "commit", "date", "elapsed_min",
                                             "complete", "planned_calls")} for d in docs],
            "complete": all(d.get("complete", True) for d in docs),
            "clips": list(clips.values()), "scores": list(scores.values())}


def report_from(results: list[Path], report: Path) -> Path:
    """The report of results files (e.g. of a run stopped before its end; several:
    :func:`merge`, written beside the report). Returns the results file it links to."""
    if not results:
        raise InputError("no results file given")
    docs = [_load(p) for p in results]
    if len(docs) == 1:
        calls_report.write(docs[0], report, results[0])
        return results[0]
    doc = merge(docs)
    path = report.parent / report.stem.lower() / "results.json"
    if path.resolve() in {p.resolve() for p in results}:
        raise InputError(f"{path}: the merged results would overwrite one of the inputs")
    _write_json(path, doc)
    calls_report.write(doc, report, path)
    return path


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(jsonable(doc), indent=1) + "\n")
    tmp.replace(path)
