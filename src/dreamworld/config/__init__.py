"""Typed configuration: the schema, shipped presets, the user's YAML and command-line overrides.

Example:
    >>> from dreamworld.config import load_config
    >>> cfg = load_config(presets=["carracing"], overrides={"seed": "3"})
    >>> cfg.env.name, cfg.seed
    ('carracing', 3)
"""

from dreamworld.config.loader import (
    CONFIG_FILE,
    available_presets,
    config_from_dict,
    config_to_dict,
    field_help,
    load_config,
    parse_overrides,
    save_config,
)
from dreamworld.config.schema import CollectConfig, Config, EnvConfig, LogConfig, ReplayConfig

__all__ = [
    "CONFIG_FILE",
    "CollectConfig",
    "Config",
    "EnvConfig",
    "LogConfig",
    "ReplayConfig",
    "available_presets",
    "config_from_dict",
    "config_to_dict",
    "field_help",
    "load_config",
    "parse_overrides",
    "save_config",
]
