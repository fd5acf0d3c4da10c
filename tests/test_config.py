"""The typed experiment config (issue #21): strict reading, --set overrides, the stored
form of checkpoints and model packages."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from facecodec.config import Config, ConfigError, InferenceConfig, Section, UnknownKeyError
from facecodec.config.enhancer import EnhancerConfig
from facecodec.training.config import load_config, with_overrides
from facecodec.training.enhance import load_config as load_enhancer_config

ROOT = Path(__file__).resolve().parents[1]
# configs/enhancer*.yaml are the enhancement layer's (facecodec/config/enhancer.py), the
# others experiments (facecodec/config/experiment.py)
ENHANCER_CONFIGS = sorted((ROOT / "configs").glob("enhancer*.yaml"))
CONFIGS = [p for p in sorted((ROOT / "configs").glob("*.yaml")) if p not in ENHANCER_CONFIGS]


def _sections(cls: type[Section]) -> list[type[Section]]:
    """``cls`` and every section below it."""
    out = [cls]
    for f in dataclasses.fields(cls):
        default = f.default
        if isinstance(default, Section):
            out += _sections(type(default))
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_file_round_trips(path: Path) -> None:
    cfg = load_config(path)
    assert Config.from_dict(cfg.to_dict()) == cfg
    # to_dict is what yaml.safe_dump writes (no tuples, no dataclasses)
    assert Config.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("path", ENHANCER_CONFIGS, ids=lambda p: p.stem)
def test_every_enhancer_config_round_trips(path: Path) -> None:
    cfg = load_enhancer_config(path)
    assert EnhancerConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


def _kept(stored: object, written: object, where: str = "") -> None:
    """Every value ``stored`` sets is in ``written`` (which adds the defaults it lacks)."""
    if isinstance(stored, dict):
        assert isinstance(written, dict), where
        for key, value in stored.items():
            _kept(value, written[key], f"{where}{key}.")
    else:
        assert written == stored, where


def test_the_shipped_packages_read_unchanged() -> None:
    """Every stored config.yaml reads through the typed loader, keeping what it sets."""
    shipped = sorted((ROOT / "models").glob("*/config.yaml"))
    models = [p for p in shipped if (p.parent / "receiver.safetensors").is_file()]
    assert len(models) == 4
    for path in models:
        raw = yaml.safe_load(path.read_text())
        _kept(raw, Config.from_dict(raw).to_dict(), f"{path.parent.name}: ")
    # the rest are fusion networks (issue 20), with their own config
    from facecodec.config.enhancer import EnhancerConfig

    others = [p for p in shipped if p not in models]
    assert [p.parent.name for p in others] == ["fusion_wide"]
    for path in others:
        raw = yaml.safe_load(path.read_text())
        _kept(raw, EnhancerConfig.from_dict(raw).to_dict(), f"{path.parent.name}: ")


def test_a_missing_key_takes_its_default_written_once() -> None:
    assert load_config(None) == Config()
    cfg = Config.from_dict({"model": {"decoder": {"blend_bias": 1}}})
    assert cfg.model.decoder.blend_bias == 1.0 and isinstance(cfg.model.decoder.blend_bias,
                                                               float)
    assert cfg.model.decoder.pixel_warp == "bilinear" and cfg.data == Config().data


def test_every_section_is_frozen_and_fully_defaulted() -> None:
    for cls in _sections(Config):
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls
        cls()  # every field has a default
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().data.resolution = 64  # type: ignore[misc]


def test_unknown_keys_are_errors_naming_the_key() -> None:
    with pytest.raises(UnknownKeyError, match=r"unknown config key 'model\.decoder\.widht'"):
        Config.from_dict({"model": {"decoder": {"widht": 3}}})
    with pytest.raises(KeyError, match=r"unknown config key 'lossses'"):
        Config.from_dict({"lossses": {}})


@pytest.mark.parametrize(("raw", "where"), [
    ({"data": {"resolution": "128"}}, "data.resolution"),
    ({"data": {"resolution": 128.0}}, "data.resolution"),
    ({"data": {"by_person": 1}}, "data.by_person"),
    ({"optim": {"batch_size": True}}, "optim.batch_size"),
    ({"optim": {"betas": [0.5]}}, "optim.betas"),
    ({"optim": {"milestones": [1, "x"]}}, r"optim.milestones\[1\]"),
    ({"data": {"strategy": "rotation"}}, "data.strategy"),
    ({"model": {"decoder": {"pixel_warp": "nearest"}}}, "model.decoder.pixel_warp"),
    ({"model": {"landmarks": None}}, "model.landmarks"),
    ({"losses": {"l1": None}}, "losses.l1"),
])
def test_wrong_types_are_errors_naming_the_key(raw: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        Config.from_dict(raw)


def test_overrides_are_type_checked_and_merge_into_sections() -> None:
    tiny = ROOT / "configs" / "tiny_test.yaml"
    cfg = load_config(tiny, ["data.augment={flip: false}", "optim.milestones=[5, 7]",
                             "data.output_resolution=128", "data.output_resolution=null"])
    assert cfg.data.augment.flip is False and cfg.data.augment.hue == 0.02  # merged
    assert cfg.optim.milestones == (5, 7) and cfg.data.output_resolution is None
    with pytest.raises(ConfigError, match="optim.batch_size"):
        load_config(tiny, ["optim.batch_size=many"])
    with pytest.raises(KeyError, match="inference.lr"):
        with_overrides(cfg, ["inference.lr=1"])
    assert with_overrides(cfg, ["inference.pose_temperature=0"]).inference == \
        InferenceConfig(pose_temperature=0.0)


def test_cli_train_set_reports_a_wrong_type(tmp_path: Path) -> None:
    from facecodec.cli import cli

    res = CliRunner().invoke(cli, ["train", "--config", str(ROOT / "configs" / "tiny_test.yaml"),
                                   "--set", "optim.batch_size=two", "--out", str(tmp_path)])
    assert res.exit_code == 2  # a usage error, not a traceback
    assert "config key 'optim.batch_size' must be an integer, got 'two'" in res.output


def test_training_imports_neither_the_receiver_nor_the_codec() -> None:
    """The training config's defaults are its sections' (the receiver's ``inference`` one
    included), not values imported from the receiver."""
    script = ("import sys, facecodec.training.config, facecodec.training.trainer; "
              "print(sorted(m for m in sys.modules if m.startswith(('facecodec.receiver', "
              "'facecodec.codec'))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
