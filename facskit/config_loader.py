"""Strict YAML configs for any trainer: dataclass schemas, ``base:`` inheritance, typed ``key=value``
overrides, and the registry of shipped presets.

A trainer declares its schema as nested dataclasses (:mod:`facskit.config` for the heatmap AU networks,
:mod:`facskit.tcae.config` for TCAE pretraining) and reads it with :func:`read_config`, then
:func:`apply_overrides`. Every key is checked: an unknown key is an error naming it and listing the valid
keys of its section, a value of the wrong type is an error naming the expected type, and a number outside
the :class:`Range` declared beside its field is an error naming the range, so a typo never silently trains
with a default.

Presets are the YAML files of ``facskit/configs/``. Each says which trainer it is for with a top-level
``trainer:`` key (:data:`TRAINERS`), so one folder holds them all, a variant names any preset of its trainer
as its ``base:``, and a file given to the wrong command is refused in one line that names the right one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from facskit.errors import UsageError

__all__ = [
    "NON_NEGATIVE",
    "POSITIVE",
    "SEED",
    "TRAINERS",
    "ConfigError",
    "Range",
    "apply_overrides",
    "build_config",
    "config_to_dict",
    "list_presets",
    "read_config",
    "save_config",
]

T = typing.TypeVar("T")

# The trainers a preset can be for (its top-level ``trainer:`` key) and the command that runs each.
TRAINERS = {"heatmap": "facskit train", "tcae": "facskit pretrain-tcae"}


class ConfigError(UsageError):
    """A config file or override names an unknown key or gives a value of the wrong type."""


@dataclass(frozen=True)
class Range:
    """The values a numeric config field accepts, declared beside it: ``Annotated[int, Range(ge=1)]``.

    Every value read into a config (file, preset, override, a checkpoint's config) is checked against its
    field's range in one place (:func:`build_config`), so a 0-epoch run or a NaN learning rate is a one-line
    error before anything is trained, not a traceback (or a silent no-op) deep in the loop. Bounds named
    ``ge``/``le`` include the limit, ``gt``/``lt`` exclude it; a float must also be finite. ``None`` (where
    the field allows it) is never range-checked.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: int | float, key: str) -> None:
        inside = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )
        if not inside:
            raise ConfigError(f"config key {key!r} must be {self.describe()}, got {value!r}")

    def describe(self) -> str:
        """``>= 1``, ``> 0 and < 1``: the range in words for the error message."""
        bounds = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        return " and ".join(f"{words} {bound}" for words, bound in bounds if bound is not None)


# Seeds feed numpy's SeedSequence (no negatives) and torch.manual_seed (64 bits).
SEED = Range(ge=0, le=2**63 - 1)
POSITIVE = Range(ge=1)  # counts: epochs, batch sizes, steps, frames
NON_NEGATIVE = Range(ge=0)


# --- typing ------------------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        return str(annotation).replace("typing.", "")
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _coerce_scalar(value: Any, annotation: Any, error: ConfigError) -> Any:
    """``value`` as a bool, int, float or str field; numbers written as strings are accepted because YAML
    1.1 reads ``5e-4`` (no dot) as a string."""
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is int and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise error from None
    if annotation is float and not isinstance(value, bool):
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise error from None
    if annotation is str and isinstance(value, str):
        return value
    raise error


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against ``annotation`` and converted where lossless; ConfigError otherwise."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    error = ConfigError(f"config key {key!r} expects {_type_name(annotation)}, got {value!r}")
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise error
    if origin is Literal:
        if value in args:
            return value
        raise error
    if origin is list:
        if not isinstance(value, list | tuple):
            raise error
        (item,) = args
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise error
        return {str(k): v for k, v in value.items()}
    return _coerce_scalar(value, annotation, error)


def _fields(cls: type) -> dict[str, Any]:
    """Field name -> annotation (Range annotations stripped) of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_range(annotation: Any, value: Any, key: str) -> None:
    """``value`` (already coerced to ``annotation``'s type) within the :class:`Range` declared in it, and
    finite if a float; list items are checked against the item's annotation."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
    if typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        if isinstance(value, int | float) and not isinstance(value, bool):
            for extra in extras:
                if isinstance(extra, Range):
                    extra.check(value, key)
    if isinstance(value, list):
        args = [a for a in typing.get_args(annotation) if typing.get_origin(a) is list]
        items = typing.get_args(args[0] if args else annotation)
        for i, item in enumerate(value):
            _check_range(items[0] if items else Any, item, f"{key}[{i}]")


def _unknown_key(key: str, where: str, fields: Iterable[str]) -> ConfigError:
    return ConfigError(f"unknown config key {key!r}; valid keys in {where}: {', '.join(fields)}")


def build_config(cls: type[T], data: Any, prefix: str = "") -> T:
    """An instance of the dataclass ``cls`` from a nested mapping, every key, type and range checked."""
    where = prefix.rstrip(".") or "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    fields = _fields(cls)
    declared = typing.get_type_hints(cls, include_extras=True)  # with each field's Range
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise _unknown_key(prefix + str(unknown[0]), where, fields)
    values = {}
    for name, annotation in fields.items():
        if name not in data:
            continue
        if dataclasses.is_dataclass(annotation):
            values[name] = build_config(annotation, data[name], f"{prefix}{name}.")
        else:
            values[name] = _coerce(data[name], annotation, prefix + name)
            _check_range(declared[name], values[name], prefix + name)
    return cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (YAML- and torch.save-safe) of a config."""
    return dataclasses.asdict(config)


# --- overrides ---------------------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_override(data: dict[str, Any], schema: type, key: str, text: str) -> None:
    """Set the dotted ``key`` of the nested dict ``data`` (a config of the dataclass ``schema``) to ``text``
    parsed as YAML, checking each part of the key against the schema; a free-form dict field
    (``model.overrides.width=32``) is entered without checks."""
    parts = key.split(".")
    node: Any = data
    cls: Any = schema
    for depth, part in enumerate(parts[:-1]):
        if cls is not None:
            fields = _fields(cls)
            if part not in fields:
                raise _unknown_key(
                    ".".join(parts[: depth + 1]), ".".join(parts[:depth]) or "the config", fields
                )
            cls = fields[part] if dataclasses.is_dataclass(fields[part]) else None
            if cls is None and typing.get_origin(fields[part]) is not dict:
                raise ConfigError(f"config key {'.'.join(parts[: depth + 1])!r} is not a section")
        node = node.setdefault(part, {})
    last = parts[-1]
    if cls is not None:
        fields = _fields(cls)
        if last not in fields:
            raise _unknown_key(key, ".".join(parts[:-1]) or "the config", fields)
        if dataclasses.is_dataclass(fields[last]):
            raise ConfigError(f"config key {key!r} is a section; set a key in it ({key}.<name>=...)")
    node[last] = _parse_value(text)


def apply_overrides(config: T, overrides: Iterable[str], from_dict: Callable[[dict[str, Any]], T]) -> T:
    """A new config with ``key=value`` overrides applied (dotted keys, values parsed as YAML scalars),
    rebuilt by the schema's ``from_dict`` so every override is checked like a file's value."""
    data = config_to_dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.epochs=3)")
        _set_override(data, type(config), key, text)
    return from_dict(data)


# --- presets and files -------------------------------------------------------------------------------------


def _preset_text(stem: str) -> str:
    return (resources.files("facskit") / "configs" / f"{stem}.yaml").read_text()


def _preset_names() -> list[str]:
    folder = resources.files("facskit") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


@functools.cache
def _preset_trainer(stem: str) -> str | None:
    """The ``trainer:`` of a shipped preset, read from its base chain if the preset itself does not say."""
    data = yaml.safe_load(_preset_text(stem)) or {}
    if not isinstance(data, dict):
        return None
    if "trainer" in data or not isinstance(data.get("base"), str):
        return data.get("trainer")
    base = data["base"].removesuffix(".yaml")
    return _preset_trainer(base) if base in _preset_names() and base != stem else None


def list_presets(trainer: str | None = None) -> list[str]:
    """Names of the shipped presets (``facskit/configs/*.yaml`` without the extension); with ``trainer``
    (a key of :data:`TRAINERS`), only the presets for that trainer."""
    if trainer is not None and trainer not in TRAINERS:
        raise ValueError(f"unknown trainer {trainer!r}; choose from: {', '.join(TRAINERS)}")
    names = _preset_names()
    return names if trainer is None else [n for n in names if _preset_trainer(n) == trainer]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, section by section (a key in ``extra`` wins)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml_mapping(
    name_or_path: str | Path, presets: Sequence[str], seen: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    """The mapping of a YAML file or preset, with its ``base:`` (a preset name, or a file path relative to
    the file naming it) resolved and merged under it, and the name of its source for error messages."""
    path = Path(name_or_path)
    folder: Path | None = None
    if path.is_file():
        resolved = path.resolve()
        text, source, folder, identity = path.read_text(), str(path), resolved.parent, str(resolved)
    else:
        stem = str(name_or_path).removesuffix(".yaml")
        if stem not in presets:
            raise ConfigError(
                f"no config file or preset named {str(name_or_path)!r}; presets: {', '.join(presets)}"
            )
        text = _preset_text(stem)
        source = identity = f"preset {stem}"
    if identity in seen:
        raise ConfigError(f"{source}: its base chain comes back to it")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {error}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} is not a mapping of config sections")
    base = data.pop("base", None)
    if base is None:
        return data, source
    if not isinstance(base, str):
        raise ConfigError(f"{source}: base must be a preset name or a YAML path, not {base!r}")
    relative = folder / base if folder is not None else None
    base_source = relative if relative is not None and relative.is_file() else base
    try:
        base_data, _ = _read_yaml_mapping(base_source, presets, (*seen, identity))
    except ConfigError as error:
        raise ConfigError(f"{source}: base {base!r}: {error}") from None
    return _merge(base_data, data), source


def read_config(name_or_path: str | Path, trainer: str, from_dict: Callable[[dict[str, Any]], T]) -> T:
    """A YAML file, or a shipped preset for ``trainer``, parsed by the schema's ``from_dict``; every error
    names the file or preset it came from.

    A top-level ``base: NAME`` (a preset for the same trainer, or a YAML path relative to the file) reads
    that config first and lays this one over it, section by section, so a variant states only what it
    changes. A ``trainer:`` key (optional in a file, inherited from its base) other than ``trainer`` is an
    error naming the command that runs it.
    """
    data, source = _read_yaml_mapping(name_or_path, list_presets(trainer))
    meant = data.pop("trainer", trainer)
    if meant != trainer:
        command = TRAINERS.get(meant) if isinstance(meant, str) else None
        hint = f"run it with `{command}`" if command else f"trainer must be one of {', '.join(TRAINERS)}"
        raise ConfigError(f"{source} is a config for trainer {meant!r}, not {trainer!r}: {hint}")
    try:
        return from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (every key, defaults included), the run folder's record."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
