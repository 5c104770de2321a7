"""Hyperparameter dataclasses: `--set key=value` overrides with type checks, and their help text."""

from __future__ import annotations

import ast
import dataclasses
import math
import types
import typing
from typing import Any

from core.errors import ConfigError


def _field_types(config_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def _coerce(name: str, raw: Any, annotation: Any) -> Any:
    """Turn `raw` (a CLI string or an already typed value) into `annotation`'s type or raise."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, raw, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: bad value {raw!r}")
    if origin is typing.Literal:
        for choice in args:
            if str(choice) == str(raw):
                return choice
        raise ConfigError(f"{name} must be one of {', '.join(map(str, args))}, not {raw!r}")
    if origin in (tuple, list):
        if isinstance(raw, str):
            try:
                raw = ast.literal_eval(raw if raw.strip().startswith(("(", "[")) else f"({raw},)")
            except (ValueError, SyntaxError) as exc:
                raise ConfigError(f"{name} must be a list like 64,64, not {raw!r}") from exc
        if not isinstance(raw, (tuple, list)):
            raw = (raw,)
        item = args[0] if args else Any
        values = [_coerce(name, v, item) for v in raw]
        return tuple(values) if origin is tuple else values
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {raw!r}")
    if annotation is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{name} must be an integer, not {raw!r}")
        try:
            value = float(raw) if isinstance(raw, str) else raw
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} must be an integer, not {raw!r}") from exc
    if annotation is float:
        try:
            value = float(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} must be a number, not {raw!r}") from exc
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, not {raw!r}")
        return value
    if annotation is str:
        return str(raw)
    return raw


def parse_overrides(pairs: list[str], option: str = "--set", literal: bool = False) -> dict[str, Any]:
    """`["lr=0.1", "gamma=0.99"]` -> `{"lr": "0.1", "gamma": "0.99"}`. With `literal`, values that read as
    Python literals become them (`size=8` -> 8, `mode="a"` -> "a"); others stay strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} takes key=value, not {pair!r}")
        value = value.strip()
        if literal:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        out[key.strip()] = value
    return out


def build_config(config_cls: type, *layers: dict[str, Any]) -> Any:
    """Defaults, then each layer of overrides in order (preset, then --set); every value type-checked."""
    types_ = _field_types(config_cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, raw in layer.items():
            if key not in types_:
                valid = ", ".join(sorted(types_))
                raise ConfigError(f"unknown hyperparameter '{key}' for {config_cls.__name__}; valid: {valid}")
            values[key] = _coerce(key, raw, types_[key])
    config = config_cls(**values)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain containers only (tuples become lists), fit for JSON and `weights_only` checkpoints."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def field_docs(config_cls: type) -> dict[str, str]:
    """The docstring under each dataclass field, read from the source of the class and its bases."""
    import inspect

    docs: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            tree = ast.parse(inspect.getsource(cls)).body[0]
        except (OSError, TypeError, IndexError):
            continue
        body = getattr(tree, "body", [])
        for node, after in zip(body, body[1:], strict=False):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if isinstance(after, ast.Expr) and isinstance(getattr(after, "value", None), ast.Constant):
                    docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


def describe_config(
    config_cls: type,
    presets: dict[str, dict[str, Any]] | None = None,
    exclude: tuple[str, ...] = (),
    prefix: str = "",
) -> str:
    """A table of every field (but `exclude`): `prefix`name, type, default, doc; then the per-env presets."""
    docs = field_docs(config_cls)
    types_ = _field_types(config_cls)
    rows = []
    for f in dataclasses.fields(config_cls):
        if f.name in exclude:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        annotation = types_[f.name]
        type_name = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
        rows.append((prefix + f.name, type_name, repr(default), docs.get(f.name, "")))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"  {n:<{width[0]}}  {t:<{width[1]}}  {d:<{width[2]}}  {doc}" for n, t, d, doc in rows]
    if presets:
        lines.append("")
        lines.append("Presets (applied for these envs before --set; a family, such as atari, for each of its ids):")
        for env_id, preset in presets.items():
            lines.append(f"  {env_id}: " + ", ".join(f"{k}={v}" for k, v in preset.items()))
    return "\n".join(lines)
