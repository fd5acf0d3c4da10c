"""Config sections as frozen dataclasses, read from and written to plain dicts: the form a
YAML file, a checkpoint's ``config`` and a model's ``config.yaml`` hold.

Reading is strict, so that a typo fails loudly instead of silently training something
else: a key the section does not have is an :class:`UnknownKeyError`, a value of the wrong
type a :class:`ConfigError`, both naming the key's path. A key left out takes the field's
default, which is written nowhere else.

A field is a bool, int, float (an int is taken and stored as a float), str, ``Literal`` of
strings, tuple (``tuple[X, ...]`` or fixed length), ``X | None``, or another section.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Mapping
from typing import Any, Literal, Self, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A config value of the wrong type (or a section that is not a mapping)."""

    def __str__(self) -> str:  # a KeyError would quote the message
        return str(self.args[0])


class UnknownKeyError(ConfigError, KeyError):
    """A key that no section has."""


class Section:
    """Base of the config dataclasses (each ``@dataclass(frozen=True)``, every field with
    a default)."""

    @classmethod
    def from_dict(cls, raw: object, where: str = "") -> Self:
        """``raw``'s keys over the defaults; ``where`` is the section's path ("model.")."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"config section '{where.rstrip('.') or '.'}' must be a "
                              f"mapping, got {raw!r}")
        hints = _field_types(cls)
        unknown = [key for key in raw if key not in hints]
        if unknown:
            raise UnknownKeyError(f"unknown config key '{where}{unknown[0]}'")
        return cls(**{key: _read(hints[key], value, f"{where}{key}")
                      for key, value in raw.items()})

    def to_dict(self) -> dict[str, Any]:
        """Every field (tuples as lists): what ``yaml.safe_dump`` writes."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _read(kind: Any, value: object, where: str) -> Any:
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):  # only ``X | None`` is used
        if value is None:
            return None
        (inner,) = (k for k in get_args(kind) if k is not type(None))
        return _read(inner, value, where)
    if isinstance(kind, type) and issubclass(kind, Section):
        return kind.from_dict(value, f"{where}.")
    if origin is Literal:
        if value not in get_args(kind):
            raise _wrong(where, " or ".join(repr(a) for a in get_args(kind)), value)
        return value
    if origin is tuple:
        return _read_tuple(get_args(kind), value, where)
    # bool is an int to Python, never to a config
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if kind in (bool, int, float, str):
        raise _wrong(where, {bool: "true or false", int: "an integer", float: "a number",
                             str: "a string"}[kind], value)
    raise TypeError(f"config field '{where}' has a type the loader does not read: {kind}")


def _read_tuple(kinds: tuple[Any, ...], value: object, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise _wrong(where, "a list", value)
    if len(kinds) == 2 and kinds[1] is Ellipsis:
        kinds = (kinds[0],) * len(value)
    elif len(value) != len(kinds):
        raise _wrong(where, f"a list of {len(kinds)}", value)
    pairs = enumerate(zip(kinds, value, strict=True))
    return tuple(_read(k, v, f"{where}[{i}]") for i, (k, v) in pairs)


def _wrong(where: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f"config key '{where}' must be {expected}, got {value!r}")


def _plain(value: object) -> object:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
