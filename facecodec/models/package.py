"""Finding an exported model (``models/<name>/``), what its variant means, and naming it
in a bitstream.

:class:`ModelProfile` is the one place that reads what a model *is* from its
``config.yaml`` (through the typed :class:`facecodec.config.Config`): its family, keypoint
layout, stream table, network resolution, pixel warp and how many sources its receiver
takes. The Encoder, the Decoder, the renderer, eval and export read the profile instead of
the config.

A model package also owns its entropy-coding priors: ``prior.json`` (fitted at the dead
zone the encoder uses by default, which it records) and ``operating_points/deadband<S>.json``
(the same streams fitted at other dead-zone strengths S). :meth:`ModelPackage.prior` picks
the one for a strength; a receiver finds any of them by the id a stream names
(:func:`facecodec.bitstream.prior.find_prior` searches the model folders).

A ``.fcs`` header carries the model's id (its config name) and a 16-byte hash of its
receiver weights: a receiver refuses a stream made for other weights instead of rendering
garbage (facecodec/bitstream/container.py checks both).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from facecodec.bitstream.limits import MAX_SOURCES, MODEL_ID_PATTERN
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES, table_of_streams
from facecodec.config import Config, ConfigError, InferenceConfig
from facecodec.errors import InputError, ModelMismatchError
from facecodec.models.layout import KeypointLayout
from facecodec.resources import search_path

DEFAULT_MODEL = "frontalizer_sup_unsup_expr"
PRIOR_FILE = "prior.json"
OPERATING_POINTS = "operating_points"
_POINT_FILE = re.compile(r"deadband(\d+(?:\.\d+)?)\.json")

FAMILY_MAX_SOURCES: dict[str, int] = {"frontalizer": MAX_SOURCES, "fom": 1,
                                      "nth": MAX_SOURCES}
"""The most source frames each family's receiver uses: FOM animates one, the Frontalizer
fuses as many as a stream carries, the few-shot model averages their embeddings. Known
here without loading the networks; their classes (``max_sources`` in
facecodec/models/animation.py) say the same."""

STORED_SECTIONS = ("name", "family", "data", "model")
"""The keys a stored model config must have. Any other key may be missing (the config was
written before the key existed) and takes its default; without these the config does not
describe its weights."""


def model_dirs() -> list[Path]:
    """Where models are looked up by name: ``$FACECODEC_MODELS`` (colon-separated), then
    the shipped models (package data ``facecodec._models``: the checkout's ``models/`` in
    an editable install, see :mod:`facecodec.resources`)."""
    return search_path("models")


def stored_config(raw: object, source: str | None = None) -> Config:
    """A model's config as stored (``config.yaml``, a dict) read through the typed loader;
    raises :class:`ModelMismatchError` for one that is not a model config."""
    missing = [k for k in STORED_SECTIONS if not isinstance(raw, Mapping) or k not in raw]
    try:
        if missing:
            raise ConfigError(f"no {missing[0]!r}")
        return Config.from_dict(raw)
    except ConfigError as e:
        raise ModelMismatchError(f"config.yaml is not a model config ({e})",
                                 source=source) from None


@dataclass(frozen=True)
class ReceiverSettings:
    """How the receiver draws with a model, beyond its weights: its config's ``inference``
    section (:class:`facecodec.config.InferenceConfig`, where the defaults are).

    Attributes:
        pose_temperature: the pose weighting of source pixels (0: the learned
            confidences alone).
        pose_smoothing: the moving average of that weighting over frames.
    """

    pose_temperature: float
    pose_smoothing: float

    @classmethod
    def from_section(cls, section: InferenceConfig) -> ReceiverSettings:
        return cls(section.pose_temperature or 0.0, section.pose_smoothing)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ReceiverSettings:
        """From a stored config's optional ``inference`` section."""
        return cls.from_section(InferenceConfig.from_dict(cfg.get("inference") or {},
                                                          "inference."))


DEFAULT_RECEIVER = ReceiverSettings.from_section(InferenceConfig())
POSE_TEMPERATURE = DEFAULT_RECEIVER.pose_temperature
"""The receiver's pose weighting of source pixels where a model's config sets none."""
POSE_SMOOTHING = DEFAULT_RECEIVER.pose_smoothing
"""Its smoothing over frames where a model's config sets none."""


@dataclass(frozen=True)
class ModelProfile:
    """What a model variant means to the codec, read once from its config.

    Attributes:
        name: the config's name, which a stream header carries as the model id.
        family: ``frontalizer`` or ``fom`` (facecodec/models/registry.py).
        layout: the keypoints and values a frame carries.
        table_name: the bitstream stream table of those values (bitstream/streams.py).
        resolution: the side of the images the networks take.
        pixel_warp: how the receiver samples the source pixels it blends.
        max_sources: the most source frames its receiver uses (1 for FOM).
        receiver: how the receiver draws with it (:class:`ReceiverSettings`).
    """

    name: str
    family: str
    layout: KeypointLayout
    table_name: str
    resolution: int
    pixel_warp: str
    max_sources: int
    receiver: ReceiverSettings = DEFAULT_RECEIVER

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], source: str | None = None) -> ModelProfile:
        """From a config as stored (:func:`stored_config`)."""
        return cls.of(stored_config(cfg, source), source)

    @classmethod
    def of(cls, config: Config, source: str | None = None) -> ModelProfile:
        """Raises :class:`ModelMismatchError` for a config no stream can carry."""
        layout = KeypointLayout.from_config(config.model)
        table_name = table_of_streams(layout.streams)
        if table_name is None:
            raise ModelMismatchError(f"no stream table carries the values {layout.streams}",
                                     source=source)
        if config.family not in FAMILY_MAX_SOURCES:
            raise ModelMismatchError(f"unknown model family {config.family!r} (known: "
                                     f"{', '.join(FAMILY_MAX_SOURCES)})", source=source)
        return cls(
            name=config.name, family=config.family, layout=layout, table_name=table_name,
            resolution=config.data.resolution, pixel_warp=config.model.decoder.pixel_warp,
            max_sources=FAMILY_MAX_SOURCES[config.family],
            receiver=ReceiverSettings.from_section(config.inference))


@dataclass(frozen=True)
class ModelPackage:
    path: Path
    config: Config
    profile: ModelProfile

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def resolution(self) -> int:
        return self.profile.resolution

    @property
    def table_name(self) -> str:
        """The bitstream stream table of this variant (facecodec/bitstream/streams.py)."""
        return self.profile.table_name

    def weights_hash(self) -> bytes:
        """16 bytes of the SHA-256 of the receiver weights."""
        return hashlib.sha256((self.path / "receiver.safetensors").read_bytes()).digest()[:16]

    @property
    def prior_path(self) -> Path:
        """The model's default prior (``fit-priors --model`` writes it)."""
        return self.path / PRIOR_FILE

    def operating_points(self) -> dict[float, Path]:
        """Dead-zone strength -> the prior fitted to the streams sent at it
        (``operating_points/deadband<S>.json``; ``fit-priors --operating-points``)."""
        folder = self.path / OPERATING_POINTS
        points = {}
        for path in sorted(folder.glob("deadband*.json")) if folder.is_dir() else []:
            if m := _POINT_FILE.fullmatch(path.name):
                points[float(m.group(1))] = path
        return points

    def prior(self, deadband: float | None = None) -> Prior:
        """The prior to encode with at dead-zone strength ``deadband``: the operating
        point fitted at that strength if the model has one, else its default prior (whose
        ``info["deadband"]`` says the strength it was fitted at; None asks for that one).
        Raises :class:`InputError` when the model has no prior and
        :class:`ModelMismatchError` for a prior of another stream table or strength."""
        point = None
        if deadband is not None and math.isfinite(deadband):
            point = self.operating_points().get(float(deadband))
        path = point or self.prior_path
        if not path.is_file():
            raise InputError(f"model {self.name!r} has no prior ({path}); run: facecodec "
                             f"fit-priors --model {self.path} --cache <training cache>")
        prior = Prior.load(path)
        if prior.table != TABLES[self.table_name]:
            raise ModelMismatchError(f"prior is for another stream table than model "
                                     f"{self.name}", source=str(path))
        if point is not None and prior.info.get("deadband") != float(deadband):
            raise ModelMismatchError(f"prior was fitted at dead zone "
                                     f"{prior.info.get('deadband')}, not {deadband:g} as its "
                                     "name says", source=str(path))
        return prior

    def fingerprint(self) -> str:
        """12 hex digits of the SHA-256 of the sender and receiver weights: tells two
        trainings of one config apart (eval's ``--reuse`` keys on it)."""
        h = hashlib.sha256()
        for part in ("sender.safetensors", "receiver.safetensors"):
            h.update((self.path / part).read_bytes())
        return h.hexdigest()[:12]


def find_model(name_or_path: str | Path | None = None) -> ModelPackage:
    """A model directory given as a path, or by name in :func:`model_dirs`. For the
    user's own argument (trusted input); a name read from a stream goes through
    :func:`find_installed_model`."""
    name_or_path = name_or_path or DEFAULT_MODEL
    candidates = [Path(name_or_path)] + [d / str(name_or_path) for d in model_dirs()]
    return _load_first(candidates, name_or_path)


def valid_model_id(model_id: str) -> bool:
    """Whether ``model_id`` is a model *name* (:data:`MODEL_ID_PATTERN`, no ``..``): a
    string that, joined to a models directory, stays inside it."""
    return bool(re.fullmatch(MODEL_ID_PATTERN, model_id)) and ".." not in model_id


def find_installed_model(model_id: str, source: str | None = None) -> ModelPackage:
    """The installed model a stream names: ``model_id`` is looked up by name in
    :func:`model_dirs` only, never taken as a path (a stream comes from a network peer:
    an absolute or ``..`` id would make the receiver load a directory of the sender's
    choosing). A malformed or unknown id is a :class:`ModelMismatchError` at the header
    (byte 8, where the id is)."""
    if not valid_model_id(model_id):
        shown = model_id if len(model_id) <= 80 else model_id[:80] + "..."
        raise ModelMismatchError(f"stream names model {shown!r}, which is not a model name "
                                 f"({MODEL_ID_PATTERN}, no '..')", 8, source)
    try:
        return _load_first([d / model_id for d in model_dirs()], model_id)
    except InputError as e:
        raise ModelMismatchError(f"stream was encoded with model {model_id!r}, which is not "
                                 f"installed ({e})", 8, source) from None


def _load_first(candidates: list[Path], name_or_path: str | Path) -> ModelPackage:
    for path in candidates:
        if (path / "config.yaml").is_file():
            try:
                raw = yaml.safe_load((path / "config.yaml").read_text())
            except (OSError, yaml.YAMLError) as e:
                raise ModelMismatchError(f"unreadable config.yaml ({e})", source=str(path)) \
                    from None
            for part in ("sender", "receiver"):
                if not (path / f"{part}.safetensors").is_file():
                    raise ModelMismatchError(f"{part}.safetensors is missing", source=str(path))
            config = stored_config(raw, str(path))
            return ModelPackage(path, config, ModelProfile.of(config, str(path)))
    looked = ", ".join(str(d) for d in model_dirs())
    raise InputError(f"no model {str(name_or_path)!r} (a directory with config.yaml and "
                     f"*.safetensors; looked in {looked})")
