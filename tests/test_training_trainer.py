"""The training harness: a few steps learn, resume is bit-for-bit, CLI and export work."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import default_collate
from training_helpers import TINY, random_batch, tiny_config

from facecodec.models.blocks import resize_image
from facecodec.models.registry import build_model, load_model, read_config
from facecodec.training.config import load_config, parse_override
from facecodec.training.data import ClipStore, FrameSampleDataset, to_tensors
from facecodec.training.export import read_run_log
from facecodec.training.objective import GeneratorObjective
from facecodec.training.synthetic import write_synthetic_cache
from facecodec.training.trainer import train


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return write_synthetic_cache(tmp_path_factory.mktemp("cache"), clips=4, frames=24)


def test_config_rejects_unknown_keys_and_parses_overrides() -> None:
    with pytest.raises(KeyError, match="model.encoder.widht"):
        tiny_config("model.encoder.widht=3")
    assert parse_override("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    cfg = tiny_config("optim.batch_size=5", "data.resolution=128")
    assert cfg.optim.batch_size == 5 and cfg.data.resolution == 128
    for name in ("fom", "frontalizer_sup", "frontalizer_sup_unsup",
                 "frontalizer_sup_unsup_expr"):
        assert load_config(TINY.parent / f"{name}.yaml").name == name


@pytest.mark.parametrize("family", ["frontalizer", "fom"])
def test_a_few_steps_on_one_batch_lower_the_loss(cache, family: str) -> None:  # noqa: ANN001
    cfg = tiny_config(f"family={family}", "losses.equivariance_value=0",
                      "losses.equivariance_jacobian=0")
    torch.manual_seed(0)
    model = build_model(cfg)
    objective = GeneratorObjective(model, cfg.losses)
    ds = FrameSampleDataset(ClipStore(cache, 64), cfg.data, "train", 0, augment=False,
                            flip_perm=None)
    batch = to_tensors(default_collate([ds[n] for n in range(2)]))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.99))
    losses = []
    for _ in range(25):
        total, _, _ = objective(batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses


def test_resume_continues_bit_for_bit(cache, tmp_path) -> None:  # noqa: ANN001
    over = [f"data.root={cache}"]
    straight = train(TINY, over, tmp_path / "a", max_steps=4, resume=False)
    train(TINY, over, tmp_path / "b", max_steps=2, resume=False)
    with open(tmp_path / "b" / "log.jsonl", "a") as f:  # a step logged, then a crash
        f.write(json.dumps({"kind": "train", "step": 3, "total": -1.0}) + "\n")
    resumed = train(TINY, over, tmp_path / "b", max_steps=4, resume=True)
    a = torch.load(straight, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 4
    for part in ("model", "disc"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["opt_g"]["state"][0]["exp_avg"].equal(b["opt_g"]["state"][0]["exp_avg"])
    log_a = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    loss_a = [r["total"] for r in log_a if r["kind"] == "train"]
    loss_b = [r["total"] for r in log_b if r["kind"] == "train"]
    assert loss_a == loss_b and len(loss_a) == 4
    # and training did change the weights
    fresh = build_model(tiny_config())
    moved = [k for k, v in fresh.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, a["model"][k])]
    assert len(moved) > 10


def test_resume_follows_the_configs_new_milestones(cache, tmp_path) -> None:  # noqa: ANN001
    """A run whose config moved the lr decay (fitted to the CPU budget) resumes at the
    config's lr: decayed when the new milestone is behind it, decayed later when ahead."""
    over = [f"data.root={cache}", "optim.milestones=[100,200]"]
    train(TINY, over, tmp_path / "r", max_steps=3, resume=False)
    now = [f"data.root={cache}", "optim.milestones=[2,5]"]
    last = torch.load(train(TINY, now, tmp_path / "r", max_steps=6, resume=True),
                      weights_only=False)
    base = tiny_config().optim
    gamma = base.gamma
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "r" / "log.jsonl").read_text()
                                .splitlines()) if r["kind"] == "train"]
    assert lrs[:3] == [base.lr_generator] * 3  # before the change
    # as a run made with [2, 5] from the start: the lr logged at step s is the one of
    # step s + 1, once decayed after step 2 (so at the resume), twice from step 5 on
    assert lrs[3:] == pytest.approx([base.lr_generator * gamma]
                                    + [base.lr_generator * gamma**2] * 2)
    assert sorted(last["sched_g"]["milestones"]) == [2, 5]
    assert last["opt_d"]["param_groups"][0]["lr"] == pytest.approx(
        base.lr_discriminator * gamma**2)


def test_training_at_the_display_size_renders_as_the_receiver_does() -> None:
    """data.output_resolution: the networks see the frames at their resolution, the pixel
    blend warps the sources at the display size, the loss compares at that size."""
    cfg = tiny_config("data.output_resolution=128", "model.decoder.blend_bias=20")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    big = random_batch(tiny_config("data.resolution=128"))
    small = {**big, **{k: resize_image(big[k].flatten(0, 1), 64).unflatten(0, big[k].shape[:2])
                       for k in ("sources", "drivers")}}
    with torch.no_grad():
        out = model.training_forward(big)
        sv, dv = model.frame_values(small)
        cache = model.receiver.embed_sources(small["sources"], sv, big["sources"])
        want = model.receiver.render(cache.repeat(2), dv).image
    assert torch.equal(out.target, big["drivers"].flatten(0, 1))
    assert out.sender_frames is not None and out.sender_frames.shape[-1] == 64
    assert out.prediction.shape[-1] == 128 and torch.allclose(out.prediction, want)
    # the blend (mask ~1 here) keeps detail that a 64-pixel picture cannot hold
    blurred = resize_image(resize_image(out.prediction, 64), 128)
    assert (out.prediction - blurred).abs().mean() > 0.05
    with pytest.raises(ValueError, match="pixel blend"):
        build_model(tiny_config("data.output_resolution=128",
                                "model.decoder.pixel_blend=false")).training_forward(big)


def test_a_fine_tune_starts_from_another_runs_checkpoint(cache, tmp_path) -> None:  # noqa: ANN001
    over = [f"data.root={cache}", "losses.gan=0"]
    base = train(TINY, over, tmp_path / "base", max_steps=2, resume=False)
    tuned = [*over, "data.output_resolution=128"]
    last = torch.load(train(TINY, tuned, tmp_path / "ft", max_steps=3, init_from=base),
                      weights_only=False)
    log = [json.loads(x) for x in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    assert log[0] == {"kind": "init", "step": 2, "from": str(base)}
    assert [r["step"] for r in log if r["kind"] == "train"] == [3]
    assert last["step"] == 3 and last["config"]["data"]["output_resolution"] == 128
    # once the run has its own checkpoint, it resumes from that one
    again = torch.load(train(TINY, tuned, tmp_path / "ft", max_steps=4, init_from=base),
                       weights_only=False)
    assert again["step"] == 4
    # its model card tells the whole history: the base run's steps, then the fine-tune's
    chain = [(r["kind"], r["step"]) for r in read_run_log(tmp_path / "ft" / "log.jsonl")
             if r["kind"] in ("train", "init")]
    assert chain == [("train", 1), ("train", 2), ("init", 2), ("train", 3), ("train", 4)]


def test_resume_with_a_data_worker_in_one_process(cache, tmp_path) -> None:  # noqa: ANN001
    """The real configs load data in a worker process: resume is bit-for-bit there too, and
    a second run in the same process starts (a worker forked after OpenCV's thread pool
    existed used to deadlock in its first cv2 call). In a subprocess, so a hang fails."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import cv2, numpy as np, torch
        from facecodec.training.trainer import train
        over = ["data.root={cache}", "data.num_workers=1"]
        a = train("{TINY}", over, "{tmp_path}/a", max_steps=4, resume=False)
        cv2.setNumThreads(2)  # the process uses OpenCV's thread pool (the real val crops do)
        cv2.resize(np.zeros((2048, 2048, 3), np.uint8), (1000, 1000))
        train("{TINY}", over, "{tmp_path}/b", max_steps=2, resume=False)
        b = train("{TINY}", over, "{tmp_path}/b", max_steps=4, resume=True)
        a, b = torch.load(a, weights_only=False), torch.load(b, weights_only=False)
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        print("same")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "same", res.stderr[-2000:]


def test_sigterm_saves_a_checkpoint_and_stops(cache, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """kill -TERM between two periodic checkpoints: the step under way finishes, a
    checkpoint is saved at it, and the run ends there (resumable, nothing lost)."""
    from facecodec.training.trainer import Trainer

    step = Trainer.train_step

    def step_then_signal(self, batch):  # noqa: ANN001, ANN202
        logs = step(self, batch)
        if self.step == 1:  # during the second step
            os.kill(os.getpid(), signal.SIGTERM)
        return logs

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    ckpt = train(TINY, [f"data.root={cache}"], tmp_path / "run", max_steps=5, resume=False)
    assert torch.load(ckpt, weights_only=False)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler given back


def test_data_workers_leave_stopping_to_the_main_process(cache, tmp_path) -> None:  # noqa: ANN001
    """With a data-loader worker, `pkill -TERM -f` (which hits the worker too) still ends
    the run with a checkpoint."""
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "facecodec", "train", "--config", str(TINY),
                             "--set", f"data.root={cache}", "--set", "data.num_workers=1",
                             "--set", "training.progress=false", "--out", str(out),
                             "--max-steps", "100000"], stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 240
    while not (log.is_file() and log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert log.is_file(), "no step was logged"
    subprocess.run(["pkill", "-TERM", "-f", str(out)], check=False)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] >= 1


def test_cli_train_then_export_then_load(cache, tmp_path) -> None:  # noqa: ANN001
    from facecodec.cli import cli

    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(cli, ["train", "--config", str(TINY), "--set", f"data.root={cache}",
                              "--set", "losses.gan=0", "--out", str(out), "--max-steps", "2"])
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    val = [r for r in records if r["kind"] == "val"]
    assert val and {"psnr", "held_psnr", "l1"} <= set(val[0])
    assert list(out.glob("val_*.png"))
    dest = tmp_path / "models" / "tiny"
    res = runner.invoke(cli, ["export-model", str(out / "checkpoint.pt"), "--dest", str(dest),
                              "--inference", "pose_temperature=0.002"])
    assert res.exit_code == 0, res.output
    # a receiver setting chosen after the checkpoint was saved ships with it
    assert read_config(dest)["inference"] == {"pose_temperature": 0.002, "pose_smoothing": 0.7}
    res = runner.invoke(cli, ["export-model", str(out / "checkpoint.pt"), "--dest", str(dest),
                              "--inference", "lr=1"])
    assert res.exit_code != 0 and "unknown config key 'inference.lr'" in res.output
    model = load_model(dest, parts=("sender",))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    for k, v in model.sender.state_dict().items():
        assert torch.equal(v, ckpt["model"][f"sender.{k}"])


@pytest.mark.parametrize("name", ["fom", "frontalizer_sup", "frontalizer_sup_unsup",
                                  "frontalizer_sup_unsup_expr"])
def test_every_parameter_of_each_variant_gets_a_gradient(name: str) -> None:
    """DDP (find_unused_parameters=False) fails on a parameter no loss reaches; so would the
    optimizer silently skip it. The real configs at their real sizes, tiny perceptual net."""
    from training_helpers import random_batch

    cfg = load_config(TINY.parent / f"{name}.yaml",
                      ["losses.perceptual.network=random_tiny", "losses.perceptual.scales=[1]"])
    model = build_model(cfg, None)
    total, terms, _ = GeneratorObjective(model, cfg.losses)(random_batch(cfg, batch=2))
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    expected = {"perceptual", "l1"} | ({"equivariance_value", "equivariance_jacobian"}
                                       if model.layout.unsup else set())
    assert set(terms) == expected
