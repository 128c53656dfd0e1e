"""Typed configuration: dataclass defaults, YAML files, ``--set key=value`` overrides.

Every generator parameter is a dataclass field created with :func:`option`, which carries its
help text and where the value comes from (paper / reference digest section). The same
metadata renders the commented YAML printed by ``matseg config STAGE`` and the docs, so the
defaults are written down exactly once.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and why."""


def option(default: Any, help: str, ref: str = "", choices: tuple | None = None) -> Any:
    """A documented config field. ``ref`` names the source of the default (paper/digest section)."""
    meta = {"help": help, "ref": ref, "choices": choices}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, help: str = "") -> Any:
    """A nested config section (another config dataclass)."""
    return dataclasses.field(default_factory=cls, metadata={"help": help, "section": True})


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass (YAML/JSON friendly)."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field annotation, converting the harmless cases (int -> float)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if annotation is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict | None, prefix: str = "") -> T:
    """Build ``cls`` from a (partial) nested dict; unknown keys are an error listing valid ones."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)} at {where}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    hints = _field_types(cls)
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        key = prefix + name
        if f.metadata.get("section"):
            kwargs[name] = from_dict(hints[name], value, key + ".")
            continue
        value = _coerce(value, hints[name], key)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"scene.p_hard=0.3"`` -> (["scene", "p_hard"], 0.3); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. scene.p_hard=0.3)")
    key, raw = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse value ({exc})") from None
    return key.split("."), value


def merge_override(data: dict, path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part} is not a section")
    node[path[-1]] = value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple = ()) -> T:
    """Defaults, then the YAML file at ``path``, then each override, validated.

    An override is ``"dotted.key=yaml value"`` or an already parsed ``(["dotted", "key"], value)``.
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the config must be a mapping of keys to values")
        data = loaded or {}
    for override in overrides:
        keys, value = parse_override(override) if isinstance(override, str) else override
        merge_override(data, list(keys), value)
    return from_dict(cls, data)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def describe(cls: type, indent: int = 0) -> str:
    """Commented YAML of the defaults of ``cls``: each key with its help text and source."""
    lines: list[str] = []
    pad = "  " * indent
    defaults = cls()
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "")
        if f.metadata.get("section"):
            if help_text:
                lines.append(f"{pad}# {help_text}")
            lines.append(f"{pad}{f.name}:")
            lines.append(describe(typing.get_type_hints(cls)[f.name], indent + 1))
            continue
        value = getattr(defaults, f.name)
        if isinstance(value, Path):
            value = str(value)
        rendered = yaml.safe_dump({f.name: value}, default_flow_style=True, width=1000).strip()
        rendered = rendered[1:-1] if rendered.startswith("{") else rendered
        comment = help_text
        if f.metadata.get("ref"):
            comment += f" [{f.metadata['ref']}]"
        lines.append(f"{pad}{rendered}  # {comment}" if comment else f"{pad}{rendered}")
    return "\n".join(lines)


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(prefix + k)
    return keys


def check_probabilities(cfg: Any, *names: str) -> None:
    """Raise ``ValueError`` unless each named field (default: every field called ``p_*``) is in [0, 1]."""
    names = names or tuple(f.name for f in dataclasses.fields(cfg) if f.name.startswith("p_"))
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
