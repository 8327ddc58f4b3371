"""Parsing scopes, grants, rates and tenant settings; the token cache's age bound."""

from __future__ import annotations

import pytest

from conveyor.access import (
    Grant,
    InvalidAccessInputError,
    InvalidScopeError,
    Scope,
    parse_grant,
    parse_grant_body,
    parse_scope,
)
from conveyor.http.auth import CachedLookup
from conveyor.settings import Settings, SettingsError
from conveyor.tenancy import (
    InvalidTenantSettingError,
    Rate,
    TenantSettings,
    parse_rate,
    parse_rates,
    parse_tenant_settings,
)


@pytest.mark.parametrize("text, expected", [
    ("github_api=5000/h", ("github_api", Rate(5000, "h"))),
    ("llm_tokens=200000/d", ("llm_tokens", Rate(200_000, "d"))),
    ("a.b-c=1/s", ("a.b-c", Rate(1, "s"))),
])
def test_a_rate_is_a_name_a_whole_amount_and_a_period(text: str, expected: tuple[str, Rate]
                                                      ) -> None:
    assert parse_rate(text) == expected


def test_a_rate_knows_its_period_in_seconds_and_prints_as_it_was_written() -> None:
    assert (Rate(10, "m").seconds, str(Rate(10, "m"))) == (60, "10/m")


@pytest.mark.parametrize("text", [
    "x=fast", "github_api=5000", "github_api=5000/w", "=5/s", "github_api=0/s",
    "github_api=-1/s", "github_api=1.5/s", "github api=5/s", "github_api=5/s/s", "",
])
def test_a_malformed_rate_is_refused_naming_the_expected_form(text: str) -> None:
    with pytest.raises(InvalidTenantSettingError, match="NAME=AMOUNT/PERIOD") as error:
        parse_rate(text)
    assert error.value.field == "rate"


def test_the_same_rate_twice_is_refused() -> None:
    with pytest.raises(InvalidTenantSettingError, match="given twice"):
        parse_rates(["a=1/s", "a=2/s"], "--rate")


@pytest.mark.parametrize("value", ["read", "write", "admin"])
def test_the_three_scopes_parse(value: str) -> None:
    assert parse_scope(value).value == value


@pytest.mark.parametrize("value", ["root", "READ", "", "read,write"])
def test_an_unknown_scope_is_refused_naming_the_known_ones(value: str) -> None:
    with pytest.raises(InvalidScopeError, match="use one of read, write, admin"):
        parse_scope(value)


def test_each_scope_includes_the_weaker_ones_and_not_the_stronger() -> None:
    assert Scope.ADMIN.covered() == ["read", "write", "admin"]
    assert Scope.WRITE.includes(Scope.READ) and not Scope.WRITE.includes(Scope.ADMIN)
    assert Scope.READ.covered() == ["read"]


def test_a_grant_without_organisations_covers_all_of_them() -> None:
    assert parse_grant("ci", "read", []) == Grant("ci", Scope.READ, None)
    assert parse_grant("ci", "write", ["acme", "acme", "globex"]).organizations == {
        "acme", "globex"}


@pytest.mark.parametrize("name, scope, orgs", [
    ("ops", "admin", ["acme"]),  # an admin token manages every organisation
    ("has space", "read", []),
    ("ci", "read", ["acme/api"]),
    ("ci", "read", [""]),
])
def test_a_malformed_grant_is_refused(name: str, scope: str, orgs: list[str]) -> None:
    with pytest.raises(InvalidAccessInputError):
        parse_grant(name, scope, orgs)


@pytest.mark.parametrize("body, field", [
    ([], "body"), ({"name": "ci"}, "scope"), ({"name": 7, "scope": "read"}, "name"),
    ({"name": "ci", "scope": "read", "organizations": "acme"}, "organizations"),
    ({"name": "ci", "scope": "read", "admin": True}, "admin"),
])
def test_a_token_body_error_names_the_field(body: object, field: str) -> None:
    with pytest.raises(InvalidAccessInputError, match=f"^{field}: "):
        parse_grant_body(body)


def test_tenant_settings_from_a_body_leave_what_is_absent_to_the_defaults() -> None:
    parsed = parse_tenant_settings({"max_running": 0, "rates": {"github_api": "10/s"}})
    defaults = TenantSettings(max_running=20, priority=10, rates={
        "github_api": Rate(5000, "h"), "llm": Rate(1, "s")})

    assert parsed == TenantSettings(max_running=0, rates={"github_api": Rate(10, "s")})
    assert parsed.over(defaults) == TenantSettings(
        max_running=0, priority=10, rates={"github_api": Rate(10, "s"), "llm": Rate(1, "s")})


@pytest.mark.parametrize("body, field", [
    ("fast", "body"), ({"max_running": -1}, "max_running"), ({"max_running": "3"},
                                                            "max_running"),
    ({"max_running": True}, "max_running"), ({"priority": 0}, "priority"),
    ({"priority": 101}, "priority"), ({"rates": ["a=1/s"]}, "rates"),
    ({"rates": {"a": "fast"}}, "rates"), ({"rates": {"a": 5}}, "rates.a"),
    ({"max_runing": 3}, "max_runing"),
])
def test_a_bad_tenant_body_is_refused_naming_the_field(body: object, field: str) -> None:
    with pytest.raises(InvalidTenantSettingError) as error:
        parse_tenant_settings(body)
    assert error.value.field == field


def test_the_tenant_defaults_come_from_the_environment() -> None:
    settings = Settings.from_env({"CONVEYOR_TENANT_MAX_RUNNING": "0",
                                  "CONVEYOR_TENANT_PRIORITY": "5",
                                  "CONVEYOR_TENANT_RATES": "github_api=5000/h, llm=9/m"})

    assert settings.tenant_defaults == TenantSettings(
        max_running=0, priority=5, rates={"github_api": Rate(5000, "h"), "llm": Rate(9, "m")})
    assert Settings.from_env({}).tenant_defaults == TenantSettings(priority=10)


@pytest.mark.parametrize("name, value", [("TENANT_MAX_RUNNING", "many"),
                                         ("TENANT_PRIORITY", "0"), ("TENANT_RATES", "x=fast")])
def test_a_malformed_tenant_default_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^CONVEYOR_{name}: "):
        Settings.from_env({f"CONVEYOR_{name}": value})


def test_admin_tokens_may_also_write_and_read() -> None:
    settings = Settings.from_env({"CONVEYOR_API_ADMIN_TOKENS": "boss"})
    assert "boss" in settings.api_write_tokens and "boss" in settings.api_read_tokens


def test_the_token_cache_asks_again_once_its_answer_is_half_a_second_old() -> None:
    now = [100.0]
    answers: list[Grant | None] = [Grant("ci", Scope.READ, None), None]
    asked: list[str] = []

    def lookup(token: str) -> Grant | None:
        asked.append(token)
        return answers[len(asked) - 1]

    cached = CachedLookup(lookup, ttl=0.5, clock=lambda: now[0])
    assert cached("t") == Grant("ci", Scope.READ, None)
    now[0] += 0.49
    assert cached("t") is not None and asked == ["t"]
    now[0] += 0.02
    assert cached("t") is None and asked == ["t", "t"]
