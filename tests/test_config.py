"""Configuration: presets, files and overrides merge in order; bad input names the key."""

from __future__ import annotations

import dataclasses

import pytest

from dreamworld.config import (
    Config,
    available_presets,
    config_from_dict,
    config_to_dict,
    field_help,
    load_config,
    parse_overrides,
    save_config,
)
from dreamworld.errors import ConfigError


def test_defaults_come_from_the_schema():
    config = load_config()
    assert config == Config()
    assert config.env.name == "gym/CartPole-v1"


def test_sources_merge_in_order(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("env:\n  size: 32\nreplay:\n  batch: 7\n")
    config = load_config(["carracing", "debug"], [user], {"replay.batch": "9"})
    assert config.env.name == "carracing"  # from the first preset
    assert config.env.time_limit == 50  # from the second preset
    assert config.env.size == 32  # the file overrides the presets
    assert config.replay.batch == 9  # the command line overrides the file


def test_command_line_text_is_read_against_the_schema():
    config = load_config(
        overrides={
            "replay.capacity": "1e6",
            "env.repeat": "null",
            "env.time_limit": "100",
            "env.gray": "true",
            "env.name": "123",
            "env.kwargs": "{continuous: false}",
            "log.every": "5",
        }
    )
    assert config.replay.capacity == 1_000_000 and isinstance(config.replay.capacity, int)
    assert config.env.repeat is None
    assert config.env.time_limit == 100
    assert config.env.gray is True
    assert config.env.name == "123"  # a str field keeps text as text
    assert config.env.kwargs == {"continuous": False}
    assert config.log.every == 5.0 and isinstance(config.log.every, float)


def test_unknown_override_names_the_closest_key():
    with pytest.raises(ConfigError, match=r"'replay\.capacty'.*did you mean 'replay\.capacity'"):
        load_config(overrides={"replay.capacty": "1"})


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("env:\n  nmae: carracing\n")
    with pytest.raises(ConfigError) as error:
        load_config(files=[path])
    message = str(error.value)
    assert "env.nmae" in message and "env.name" in message and "mine.yaml" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("env.size", "abc", "int"), ("replay.batch", "1.5", "int"), ("env.gray", "maybe", "bool")],
)
def test_wrong_type_names_key_type_and_value(key, value, expected):
    with pytest.raises(ConfigError) as error:
        load_config(overrides={key: value})
    message = str(error.value)
    assert key in message and expected in message and value in message


def test_values_outside_the_allowed_choices_are_rejected():
    with pytest.raises(ConfigError, match=r"env\.parallel.*process, thread, serial"):
        load_config(overrides={"env.parallel": "cluster"})
    with pytest.raises(ConfigError, match=r"'replay\.batch' must be positive"):
        load_config(overrides={"replay.batch": "0"})


def test_unknown_preset_and_missing_file():
    with pytest.raises(ConfigError, match="did you mean 'carracing'"):
        load_config(["carracng"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(files=["/nonexistent/config.yaml"])


def test_unreadable_yaml_is_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("env: [unclosed\n")
    with pytest.raises(ConfigError) as error:
        load_config(files=[path])
    assert "not readable YAML" in str(error.value) and "\n" not in str(error.value)


def test_saved_config_reproduces_the_run(tmp_path):
    config = load_config(["dmc_vision"], overrides={"seed": "7", "env.kwargs": "{a: [1, 2]}"})
    path = save_config(config, tmp_path)
    assert path.name == "config.yaml"
    assert load_config(files=[path]) == config
    assert config_from_dict(config_to_dict(config)) == config


def test_config_is_frozen():
    config = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize("preset", available_presets())
def test_every_shipped_preset_loads(preset):
    assert isinstance(load_config([preset]), Config)


def test_every_field_has_a_help_line():
    rows = field_help()
    assert len(rows) > 20
    assert all(text for _, _, text in rows), [key for key, _, text in rows if not text]


def test_parse_overrides_forms_and_errors():
    assert parse_overrides(["--a.b", "1", "--c-d=x y"]) == {"a.b": "1", "c_d": "x y"}
    with pytest.raises(ConfigError, match="has no value"):
        parse_overrides(["--a.b"])
    with pytest.raises(ConfigError, match="unexpected argument"):
        parse_overrides(["a.b", "1"])
