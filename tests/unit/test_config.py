"""Settings: flags beat the environment, which beats the file, which beats the defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from singlecell import config as settings
from singlecell.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, "serve")
    return parser.parse_args(argv)


def test_defaults_give_sqlite_urls_under_the_data_dir(tmp_path: Path) -> None:
    config = settings.load(parse("--data-dir", str(tmp_path)), environ={})
    assert config.time_limit == 30.0
    assert config.store_url == f"sqlite:///{tmp_path}/singlecell.db"
    assert config.files_url == f"sqlite:///{tmp_path}/files.db"


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    file = tmp_path / "sc.toml"
    file.write_text('time_limit = 7\ncpu-limit = 9\nmax_queue = 11\n')
    env = {"SINGLECELL_TIME_LIMIT": "5", "SINGLECELL_CPU_LIMIT": "8"}
    config = settings.load(parse("--config", str(file), "--time-limit", "3"), environ=env)
    assert (config.time_limit, config.cpu_limit, config.max_queue, config.output_limit) == (3.0, 8, 11, 1_000_000)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SINGLECELL_KERNELS"):
        settings.load(None, environ={"SINGLECELL_KERNELS": "many"})


def test_unknown_key_in_config_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "sc.toml"
    file.write_text("time_limt = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'time_limt'"):
        settings.load(parse("--config", str(file)), environ={})


@pytest.mark.parametrize(("flag", "value", "words"), [
    ("--kernels", "0", "kernels must be at least 1"),
    ("--time-limit", "-1", "time_limit must be positive"),
    ("--port", "70000", "port must be 1–65535"),
    ("--memory-limit", "-5", "memory_limit must not be negative"),
    ("--uid-cache", "10", r"uid_cache must be 0 \(automatic\) or at least .* \(24\)"),
])
def test_invalid_values_are_refused_with_the_reason(flag: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        settings.load(parse(flag, value), environ={})


def test_the_uids_kept_are_twice_what_a_device_holds_at_once_within_the_range() -> None:
    assert settings.load(parse(), environ={}).uids_kept == 2 * (8 + 4 + 12)
    assert settings.load(parse("--uid-cache", "30"), environ={}).uids_kept == 30
    assert settings.load(parse("--kernel-uids", "200000-200011"), environ={}).uids_kept == 12


def test_only_the_flags_a_command_takes_are_offered() -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, "device")
    with pytest.raises(SystemExit):
        parser.parse_args(["--port", "1"])  # a device serves no HTTP
