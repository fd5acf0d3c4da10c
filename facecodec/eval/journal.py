"""Resume an interrupted ``facecodec eval``: each score is journaled as soon as it is made.

A full eval of the val split takes hours on two cores; stopped half-way (a
session ends, Ctrl-C), it would otherwise start over. While it runs, every score it makes
is appended as one JSON line to ``<results>.partial.jsonl`` beside its results.json; a
later run with the same command on the same commit takes those scores instead of running
them again, and the journal is deleted once the results are written.

Scores are resumed only from a journal of the same clean commit (``git_commit`` without
"+changes": uncommitted code may have changed what a method computes), the same
``--max-frames`` and identity measure, and per method only when its settings (what the
report records of it) are the same. Anything else starts a new journal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from facecodec.eval.metrics import ClipScore
from facecodec.eval.report import jsonable
from facecodec.eval.reuse import Key, score_from_row


def journal_path(results: Path) -> Path:
    return results.with_name(results.stem + ".partial.jsonl")


class Journal:
    """The scores of one eval run, appended as they are made."""

    def __init__(self, path: Path, commit: str, max_frames: int | None,
                 identity: str | None, settings: Mapping[str, dict]):
        self.path = path
        self.resumable = not commit.endswith("+changes") and commit != "unknown"
        self.context = jsonable({"commit": commit, "max_frames": max_frames,
                                 "identity": identity})
        self.settings = {k: jsonable(v) for k, v in settings.items()}
        self._started = False

    def load(self) -> dict[str, dict[Key, ClipScore]]:
        """The journaled scores this run can take, per method (empty when the journal is
        missing, unreadable or from another commit or setting)."""
        out: dict[str, dict[Key, ClipScore]] = {}
        if not self.resumable:
            return out
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return out
        try:
            head = json.loads(lines[0]) if lines else None
        except ValueError:
            return out
        if not isinstance(head, dict) or head.get("context") != self.context:
            return out
        before = head.get("methods", {})
        for line in lines[1:]:
            try:
                row = json.loads(line)
            except ValueError:  # the line being written when the run was stopped
                continue
            method = row.get("method") if isinstance(row, dict) else None
            if method in self.settings and before.get(method) == self.settings[method]:
                out.setdefault(method, {})[row["clip"], row["target_kbps"]] = \
                    score_from_row(row)
        return out

    def add(self, score: ClipScore, keep: Mapping[str, dict[Key, ClipScore]]) -> None:
        """Append ``score``. The first call rewrites the journal with this run's header
        and the resumed scores ``keep``, so that it always describes one run."""
        if not self.resumable:
            return
        if not self._started:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            head = {"context": self.context, "methods": self.settings}
            rows = [s.as_dict() for by_key in keep.values() for s in by_key.values()]
            self.path.write_text("".join(json.dumps(jsonable(x)) + "\n"
                                         for x in [head, *rows]))
            self._started = True
        with open(self.path, "a") as f:
            f.write(json.dumps(jsonable(score.as_dict())) + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
