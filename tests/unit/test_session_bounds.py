"""Every PostgreSQL session Conveyor opens carries the same bounds, set in one place."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from conveyor.settings import SESSION_PARAMS, SessionBounds, Settings, SettingsError


def test_the_bounds_default_to_a_second_idle_two_seconds_for_a_lock_and_keepalives() -> None:
    params = Settings().session_bounds.params()
    assert params["keepalives"] == "1"
    assert (params["keepalives_idle"], params["keepalives_interval"],
            params["keepalives_count"]) == ("5", "2", "3")
    assert params["options"].split(" -c ") == [
        "-c idle_in_transaction_session_timeout=1s", "lock_timeout=2s", "statement_timeout=10s",
        "tcp_keepalives_idle=5", "tcp_keepalives_interval=2", "tcp_keepalives_count=3"]


def test_long_work_is_not_timed_but_keeps_its_keepalives() -> None:
    options = SessionBounds().params(long_work=True)["options"]
    assert "idle_in_transaction_session_timeout=0s" in options
    assert "lock_timeout=0s" in options and "statement_timeout=0s" in options
    assert "tcp_keepalives_idle=5" in options


def test_the_bounds_are_read_from_the_environment() -> None:
    settings = Settings.from_env({
        "CONVEYOR_DB_IDLE_IN_TRANSACTION_TIMEOUT": "3", "CONVEYOR_DB_LOCK_TIMEOUT": "4",
        "CONVEYOR_DB_STATEMENT_TIMEOUT": "0", "CONVEYOR_DB_KEEPALIVES_COUNT": "5",
    })
    assert settings.session_bounds == SessionBounds(idle_in_transaction=3, lock=4, statement=0,
                                                    keepalives_count=5)


def test_a_bound_in_fractions_of_a_second_is_refused_with_what_to_set() -> None:
    with pytest.raises(SettingsError, match="CONVEYOR_DB_LOCK_TIMEOUT must be whole seconds"):
        Settings.from_env({"CONVEYOR_DB_LOCK_TIMEOUT": "0.5"})


def test_the_session_url_adds_the_bounds_but_keeps_the_urls_own_parameters() -> None:
    settings = Settings(database_url="postgresql://u:p@db:5433/conveyor?keepalives_idle=60")
    query = dict(parse_qsl(urlsplit(settings.session_url()).query))
    assert query["keepalives_idle"] == "60"
    assert query["options"] == settings.session_bounds.params()["options"]
    assert urlsplit(settings.session_url()).netloc == "u:p@db:5433"


def test_the_event_store_gets_the_same_bounds() -> None:
    env = Settings(database_url="postgresql://db/conveyor").eventsourcing_env()
    assert env["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"] == "1"
    assert env["POSTGRES_LOCK_TIMEOUT"] == "2"
    assert dict(parse_qsl(env[SESSION_PARAMS])) == SessionBounds().params()
    assert env["PERSISTENCE_MODULE"] == "conveyor.store.postgres:Factory"
