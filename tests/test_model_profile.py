"""The model profile: one reading of what a model variant means (issue #21)."""

from __future__ import annotations

import math

import pytest
import yaml

from facecodec.bitstream.limits import MAX_SOURCES
from facecodec.bitstream.streams import TABLES, table_of_streams
from facecodec.errors import ModelMismatchError
from facecodec.models.package import FAMILY_MAX_SOURCES, ModelProfile, find_model
from facecodec.models.registry import FAMILIES

SHIPPED = {  # name -> (family, stream table, network resolution, most sources)
    "frontalizer_sup_unsup_expr": ("frontalizer", "sup_unsup_expr", 128, MAX_SOURCES),
    "frontalizer_sup_unsup": ("frontalizer", "sup_unsup", 128, MAX_SOURCES),
    "frontalizer_sup": ("frontalizer", "sup", 128, MAX_SOURCES),
    "fom": ("fom", "fom", 128, 1),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_models_profiles(name):
    p = find_model(name).profile
    assert (p.family, p.table_name, p.resolution, p.max_sources) == SHIPPED[name]
    assert p.name == name and TABLES[p.table_name].names == list(p.layout.streams)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_profiles_value_shapes_are_what_its_stream_table_carries(name):
    """The renderer and the export reshape a frame's flat values to the layout's shapes:
    each must hold exactly the floats its stream sends."""
    p = find_model(name).profile
    table = TABLES[p.table_name]
    assert list(p.layout.shapes) == table.names
    assert {k: math.prod(s) for k, s in p.layout.shapes.items()} == \
        {s.name: s.count for s in table}


def test_a_familys_source_limit_is_its_networks():
    """The profile knows each family's limit without loading torch; the network classes
    (what training and the export read) must say the same."""
    assert set(FAMILY_MAX_SOURCES) == set(FAMILIES)
    for family, cls in FAMILIES.items():
        assert FAMILY_MAX_SOURCES[family] == (getattr(cls, "max_sources", None) or MAX_SOURCES)


def test_a_config_of_an_unknown_family_is_refused_with_where():
    cfg = find_model("fom").config.to_dict()
    cfg["family"] = "vae"
    with pytest.raises(ModelMismatchError, match=r"unknown model family 'vae'.*fom"):
        ModelProfile.from_config(cfg, "somewhere/config.yaml")


def test_the_stream_table_follows_the_values_a_frame_carries():
    assert table_of_streams(("sup", "iris")) == "sup"  # not "landmarks": a model's table
    assert table_of_streams(("unsup", "jac")) == "fom"
    assert table_of_streams(("iris", "sup")) is None  # order matters: it is the wire order
    assert table_of_streams(()) is None


def test_a_config_no_stream_carries_is_refused_with_where():
    pkg = find_model("frontalizer_sup")
    cfg = pkg.config.to_dict()
    cfg["model"]["landmarks"]["iris"] = False  # sup without iris: no table has that
    with pytest.raises(ModelMismatchError, match=r"no stream table carries.*'sup',\)"):
        ModelProfile.from_config(cfg, "somewhere/config.yaml")
    del cfg["data"]
    with pytest.raises(ModelMismatchError, match="not a model config"):
        ModelProfile.from_config(cfg, "somewhere/config.yaml")


def test_a_model_directory_with_a_broken_config_is_a_mismatch(tmp_path):
    pkg = find_model("fom")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"name": "x", "family": "fom"}))
    for part in ("sender", "receiver"):
        (tmp_path / f"{part}.safetensors").write_bytes((pkg.path / f"{part}.safetensors")
                                                      .read_bytes()[:8])
    with pytest.raises(ModelMismatchError, match="not a model config"):
        find_model(tmp_path)


def test_the_receiver_settings_are_the_models():
    """The pose weighting of source pixels is read from the model's config (the shipped
    model sets its own tau), with the defaults where a config says nothing."""
    from facecodec.models.package import POSE_SMOOTHING, POSE_TEMPERATURE, ReceiverSettings

    shipped = find_model("frontalizer_sup_unsup_expr").profile.receiver
    assert (shipped.pose_temperature, shipped.pose_smoothing) == (0.0015, 0.7)
    assert ReceiverSettings.from_config({}) == ReceiverSettings(POSE_TEMPERATURE,
                                                                POSE_SMOOTHING)
    off = ReceiverSettings.from_config({"inference": {"pose_temperature": None}})
    assert off.pose_temperature == 0.0
