"""DDP smoke test: ``torchrun --nproc_per_node 2 -m facecodec train`` (gloo on CPU) on the
synthetic cache, a few steps, unchanged config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from training_helpers import ROOT, TINY

from facecodec.training.synthetic import write_synthetic_cache


def test_torchrun_two_processes(tmp_path) -> None:  # noqa: ANN001
    cache = write_synthetic_cache(tmp_path / "cache", clips=4, frames=24)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "facecodec", "train", "--config", str(TINY), "--set",
           f"data.root={cache}", "--out", str(out), "--max-steps", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    ddp = [r for r in records if r["kind"] == "ddp"]
    assert ddp == [{"kind": "ddp", "step": 3, "world_size": 2, "replicas_in_sync": True}]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    # each rank draws its own random transforms and samples
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
