"""Helpers of the schema: fields with a help line, and value checks that name the key."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from dreamworld.errors import ConfigError


def option(text: str, default: Any) -> Any:
    """A dataclass field with a default and its one-line help."""
    return field(default=default, metadata={"help": text})


def section(text: str, factory: Any) -> Any:
    """A dataclass field built by ``factory`` (a nested section, a dict) with its one-line help."""
    return field(default_factory=factory, metadata={"help": text})


def choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """Rejects a value outside ``choices``, naming the key."""
    if value not in choices:
        raise ConfigError(f"config key '{key}' is '{value}'; choose one of: {', '.join(choices)}")


def positive(key: str, value: float) -> None:
    """Rejects a value that is not positive, naming the key."""
    if value <= 0:
        raise ConfigError(f"config key '{key}' must be positive, got {value}")
