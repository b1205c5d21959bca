"""Where the orchestrator's settings come from: a keyword (a command's option) over
``MCOFLOW_<NAME>`` (any case; lists and mappings as JSON) over the config file over the
defaults, with a clear error naming what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mcoflow.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith("MCOFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_keyword_over_environment_over_file_over_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "mcoflow.yaml").write_text(
        "poll_interval: 0.7\nbatch_size: 9\nsimulation: {delay: 0.5}\nimports: [json]\n"
    )
    monkeypatch.setenv("MCOFLOW_BATCH_SIZE", "7")
    monkeypatch.setenv("mcoflow_allow_unknown_hosts", "true")
    monkeypatch.setenv("MCOFLOW_WEB_API_TOKENS", '["api:sha256$abc"]')
    settings = load_settings(poll_interval=None, database_url="sqlite:///other.db")
    assert settings.database_url == "sqlite:///other.db"  # keyword
    assert settings.batch_size == 7  # environment over the file
    assert settings.allow_unknown_hosts is True  # any case
    assert settings.web_api_tokens == ("api:sha256$abc",)  # JSON
    assert settings.poll_interval == 0.7  # file (the keyword None is not given)
    assert settings.simulation == {"delay": 0.5} and settings.imports == ("json",)
    assert settings.heartbeat_interval == 2.0  # default


def test_errors_name_the_variable_or_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MCOFLOW_WEB_USERS", "not json")
    with pytest.raises(SettingsError, match="MCOFLOW_WEB_USERS: expected JSON"):
        load_settings()
    monkeypatch.delenv("MCOFLOW_WEB_USERS")
    monkeypatch.setenv("MCOFLOW_BATCH_SIZE", "0")
    with pytest.raises(SettingsError, match="batch_size: Input should be greater than"):
        load_settings()
    monkeypatch.delenv("MCOFLOW_BATCH_SIZE")
    (tmp_path / "mcoflow.yaml").write_text("polling: 1\n")
    with pytest.raises(SettingsError, match="polling: Extra inputs are not permitted"):
        load_settings()
