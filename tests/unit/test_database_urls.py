"""A multi-host DATABASE_URL reaches libpq whole, and a read standby is configured by URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import psycopg.conninfo
import pytest

from conveyor.settings import SESSION_PARAMS, SessionBounds, Settings, SettingsError
from conveyor.startup import postgres_address

MULTI_HOST = ("postgresql://app:s%40cret@db-a:5432,db-b:5433/conveyor"
              "?target_session_attrs=read-write")


def test_a_multi_host_url_gives_the_event_store_both_hosts_and_their_ports() -> None:
    env = Settings(database_url=MULTI_HOST).eventsourcing_env()

    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"]) == ("db-a,db-b", "5432,5433")
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DBNAME"]) == (
        "app", "s@cret", "conveyor")


def test_the_urls_own_parameters_reach_the_event_stores_sessions_beside_the_bounds() -> None:
    env = Settings(database_url=MULTI_HOST).eventsourcing_env()

    assert dict(parse_qsl(env[SESSION_PARAMS])) == (
        SessionBounds().params() | {"target_session_attrs": "read-write"})


def test_hosts_without_ports_share_the_default_port() -> None:
    env = Settings(database_url="postgresql://db-a,db-b/conveyor").eventsourcing_env()

    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"]) == ("db-a,db-b", "5432")


def test_a_single_host_url_is_read_as_before() -> None:
    env = Settings(database_url="postgresql://db:5433/conveyor").eventsourcing_env()

    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_USER"],
            env["POSTGRES_PASSWORD"]) == ("db", "5433", "postgres", "")


def test_the_session_url_keeps_every_host_for_libpq() -> None:
    url = Settings(database_url=MULTI_HOST).session_url()

    parsed = psycopg.conninfo.conninfo_to_dict(url)
    assert (parsed["host"], parsed["port"], parsed["target_session_attrs"]) == (
        "db-a,db-b", "5432,5433", "read-write")
    assert urlsplit(url).netloc == "app:s%40cret@db-a:5432,db-b:5433"


def test_a_url_libpq_cannot_read_is_refused_in_one_line_without_the_url() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings(database_url="postgresql://u:hunter2@db/x?bogus=1").eventsourcing_env()

    assert "\n" not in str(refused.value) and "hunter2" not in str(refused.value)
    assert str(refused.value).startswith("CONVEYOR_DATABASE_URL is not a valid PostgreSQL URL")


def test_the_read_standbys_url_is_read_and_bounded_like_the_primarys() -> None:
    settings = Settings.from_env({"CONVEYOR_DATABASE_URL": MULTI_HOST,
                                  "CONVEYOR_READ_DATABASE_URL": "postgresql://db-b:5433/conveyor"})

    read = settings.read_session_url()
    assert read is not None and urlsplit(read).netloc == "db-b:5433"
    assert dict(parse_qsl(urlsplit(read).query)) == SessionBounds().params()
    assert Settings(database_url=MULTI_HOST).read_session_url() is None


def test_a_read_url_of_another_scheme_says_what_to_set() -> None:
    with pytest.raises(SettingsError, match="CONVEYOR_READ_DATABASE_URL must be a PostgreSQL"):
        Settings.from_env({"CONVEYOR_READ_DATABASE_URL": "mysql://db/conveyor"})


def test_the_address_a_waiting_process_logs_names_every_host_with_its_port() -> None:
    assert postgres_address(MULTI_HOST) == "db-a:5432,db-b:5433"
    assert postgres_address("postgresql://u:pw@db-a,db-b:6432/x") == "db-a:5432,db-b:6432"
    assert postgres_address("postgresql://db/x") == "db:5432"
