"""Building a :class:`~dreamworld.config.schema.Config` from presets, YAML files and overrides.

Sources are merged in this order, later ones winning: the schema's defaults, the named presets in the
order given, the user's YAML files, then dotted command-line overrides such as
``--replay.capacity 1e6``. Merging and type conversion are OmegaConf's structured configs; this module
adds messages that fit on one line and name the closest valid key, and reads command-line strings
against the schema (``1e6`` is a valid int, ``null`` clears an optional field).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dreamworld.config.schema import Config
from dreamworld.errors import ConfigError

CONFIG_FILE = "config.yaml"


def available_presets() -> list[str]:
    """Names of the presets shipped with dreamworld, usable with ``--preset``."""
    folder = resources.files("dreamworld.config") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_config(
    presets: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    overrides: Mapping[str, Any] | None = None,
    base: str | Path | None = None,
) -> Config:
    """Resolves a configuration.

    Args:
        presets: Names of shipped presets (see :func:`available_presets`), merged in order.
        files: Paths of the user's YAML files, merged after the presets.
        overrides: Dotted keys to values, merged last. String values are read against the field's
            type, so command-line text can be passed as is.
        base: A YAML file merged first, before the presets: a run's own ``config.yaml`` when the
            run is continued, so that the command line only changes what it names.

    Returns:
        The frozen, validated configuration.

    Raises:
        ConfigError: An unknown preset, key or file, or a value of the wrong type.

    Example:
        >>> cfg = load_config(overrides={"replay.capacity": "1e6", "env.name": "carracing"})
        >>> cfg.replay.capacity, cfg.env.name
        (1000000, 'carracing')
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    if base is not None:
        layers.append((f"file '{base}'", _read_yaml(Path(base))))
    for name in presets:
        layers.append((f"preset '{name}'", _read_yaml(_preset_path(name))))
    for path in files:
        layers.append((f"file '{path}'", _read_yaml(Path(path))))
    if overrides:
        layers.append(("command line", _nest(_coerce_overrides(overrides))))
    merged = OmegaConf.structured(Config)
    for source, layer in layers:
        _check_keys(layer, Config, prefix="", source=source)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as error:
            raise _type_error(error, source) from None
    try:
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise _type_error(error, "config") from None
    assert isinstance(config, Config)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """The configuration as plain nested dicts (for checkpoints and YAML)."""
    container = OmegaConf.to_container(OmegaConf.structured(config), resolve=True)
    assert isinstance(container, dict)
    return typing.cast(dict[str, Any], container)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Rebuilds a validated configuration from :func:`config_to_dict`'s output."""
    _check_keys(dict(data), Config, prefix="", source="stored config")
    try:
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), dict(data)))
    except OmegaConfBaseException as error:
        raise _type_error(error, "stored config") from None
    assert isinstance(config, Config)
    return config


TASK_KEYS = ("env.name", "env.obs", "env.size", "env.gray", "env.discrete")
"""What a run learns from: a checkpoint's run continues only with these unchanged."""


def changed_keys(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ, as ``{key: (after, before)}``; nothing without ``before``."""
    if not before:
        return {}
    flat_before, flat_after = _flatten(before), _flatten(after)
    return {
        key: (flat_after.get(key), flat_before.get(key))
        for key in sorted(flat_after.keys() | flat_before.keys())
        if flat_after.get(key) != flat_before.get(key)
    }


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "kwargs":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def save_config(config: Config, path: str | Path) -> Path:
    """Writes the resolved configuration as YAML; passing the file back with ``--config`` reproduces it.

    Args:
        config: The configuration.
        path: A file path, or a run directory (the file is then ``<dir>/config.yaml``).

    Returns:
        The path written.
    """
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Resolved dreamworld configuration; rerun with --config this-file.\n" + config_yaml(config)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def config_yaml(config: Config) -> str:
    """The configuration as YAML text."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def parse_overrides(args: Iterable[str]) -> dict[str, str]:
    """Reads ``--a.b value`` and ``--a.b=value`` pairs from command-line arguments.

    Args:
        args: Arguments left over after the command's own flags.

    Returns:
        Dotted keys to their raw strings, in order.

    Raises:
        ConfigError: An argument that is not a ``--key value`` pair.

    Example:
        >>> parse_overrides(["--replay.capacity", "1e6", "--env.gray=true"])
        {'replay.capacity': '1e6', 'env.gray': 'true'}
    """
    args = list(args)
    result: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument '{arg}': overrides are written --section.key value")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        elif index + 1 < len(args):
            index += 1
            value = args[index]
        else:
            raise ConfigError(f"override '--{key}' has no value: write --{key} VALUE")
        result[key.replace("-", "_")] = value
        index += 1
    return result


def field_help(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """Every configuration key with its default and help line, for ``dreamworld config --keys``."""
    rows: list[tuple[str, str, str]] = []
    defaults = cls()
    for f in dataclasses.fields(cls):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            rows += field_help(type(value), f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", repr(value), f.metadata.get("help", "")))
    return rows


def _preset_path(name: str) -> Path:
    names = available_presets()
    if name not in names:
        raise ConfigError(f"unknown preset '{name}'{_suggest(name, names)}; presets: {', '.join(names)}")
    return Path(str(resources.files("dreamworld.config") / "presets" / f"{name}.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist") from None
    except (OSError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(f"config file '{path}' is not readable YAML: {reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys, not {type(data).__name__}")
    return data


def _check_keys(layer: Mapping[str, Any], cls: type, prefix: str, source: str) -> None:
    """Rejects keys the schema does not have, naming the closest valid one."""
    hints = typing.get_type_hints(cls)
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if key not in hints:
            valid = [f"{prefix}{name}" for name in hints]
            raise ConfigError(f"unknown config key '{path}' in {source}{_suggest(path, valid)}")
        target = hints[key]
        if dataclasses.is_dataclass(target):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"config key '{path}' in {source} is a section; give its keys, e.g. {path}.KEY"
                )
            _check_keys(value, typing.cast(type, target), f"{path}.", source)


def _field_type(path: str) -> Any:
    """The annotated type of a dotted key, or None for an unknown key (reported by _check_keys)."""
    cls: Any = Config
    target: Any = None
    for part in path.split("."):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return None
        target = typing.get_type_hints(cls).get(part)
        if target is None:
            return None
        cls = target
    return target


def _coerce_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    leaves = [key for key, _, _ in field_help()]
    for key in overrides:
        if _field_type(key) is None:
            raise ConfigError(f"unknown config key '{key}' on the command line{_suggest(key, leaves)}")
    return {key: _coerce(key, value) for key, value in overrides.items()}


def _coerce(key: str, value: Any) -> Any:
    """Reads command-line text as the field's type; leaves type errors to the merge."""
    if not isinstance(value, str):
        return value
    target = _field_type(key)
    args = typing.get_args(target)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), target) if optional else target
    if optional and value.strip().lower() in ("null", "none", "~"):
        return None
    if base is str:
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if base is int and isinstance(parsed, str | float):
        number = _float_or_none(parsed)
        if number is not None and number.is_integer():
            return int(number)
    if base is float and isinstance(parsed, str):
        number = _float_or_none(parsed)
        return value if number is None else number
    return parsed


def _float_or_none(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{key}' conflicts with another override of '{part}'")
        node[parts[-1]] = value
    return nested


def _type_error(error: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(error, "full_key", None) or "?"
    target = _field_type(key) if key != "?" else None
    expected = _type_name(target) if target is not None else "another type"
    value = getattr(error, "msg", str(error)).splitlines()[0]
    return ConfigError(f"config key '{key}' in {source} expects {expected}: {value}")


def _type_name(target: Any) -> str:
    if isinstance(target, type):
        return target.__name__
    return str(target).replace("typing.", "")


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
