"""A tenant's settings: how many stages it may run at once, its priority, its rates.

Pure values and their parsing, shared by the CLI, the API, `Settings` (the defaults) and
the store (`conveyor/store/tenants.py`). The relay enforces `max_running` and weighs
dispatch by `priority` (`conveyor/relay/admission.py`); workers enforce the rates
(`conveyor/rate_gate.py`), read through `TenantStore.effective`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_RUNNING_LIMIT = 1_000_000
PRIORITY_RANGE = (1, 100)
DEFAULT_PRIORITY = 10
MAX_AMOUNT = 10**12
RATE = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]{0,63})=([0-9]{1,13})/([smhd])")
RATE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Rate:
    """At most `amount` of a resource per `period` (`s`, `m`, `h` or `d`)."""

    amount: int
    period: str

    @property
    def seconds(self) -> int:
        return PERIODS[self.period]

    def __str__(self) -> str:
        return f"{self.amount}/{self.period}"


@dataclass(frozen=True)
class TenantSettings:
    """A tenant's limits; a field that is None (or a rate not named) takes the default.

    `max_running` None in the effective settings means no limit; 0 pauses the tenant.
    """

    max_running: int | None = None
    priority: int | None = None
    rates: Mapping[str, Rate] = field(default_factory=dict)

    def over(self, defaults: TenantSettings) -> TenantSettings:
        """These settings with every unset field taken from `defaults`."""
        return TenantSettings(
            max_running=self.max_running if self.max_running is not None
            else defaults.max_running,
            priority=self.priority if self.priority is not None else defaults.priority,
            rates={**defaults.rates, **self.rates},
        )

    def as_dict(self) -> dict[str, Any]:
        """Primitive values, as the API shows them and the store keeps them."""
        return {"max_running": self.max_running, "priority": self.priority,
                "rates": {name: str(rate) for name, rate in sorted(self.rates.items())}}


def parse_rate(value: str) -> tuple[str, Rate]:
    """`NAME=AMOUNT/PERIOD`, e.g. `github_api=5000/h`, into its name and `Rate`."""
    match = RATE.fullmatch(value.strip())
    if match is None or not 0 < int(match[2]) <= MAX_AMOUNT:
        raise InvalidTenantSettingError(
            "rate", f"{value!r} is not NAME=AMOUNT/PERIOD (e.g. github_api=5000/h): a name of"
            f" letters, digits, '_', '.' or '-', a whole amount from 1 to {MAX_AMOUNT},"
            " a period of s, m, h or d")
    return match[1], Rate(int(match[2]), match[3])


def parse_rates(values: Mapping[str, Any] | list[str], field_name: str = "rates"
                ) -> dict[str, Rate]:
    """A mapping of names to `AMOUNT/PERIOD` texts (API), or `NAME=AMOUNT/PERIOD`s (CLI)."""
    if isinstance(values, list):
        texts = values
    else:
        texts = []
        for name, amount in values.items():
            if not isinstance(amount, str):
                raise InvalidTenantSettingError(
                    f"{field_name}.{name}", f"must be a text like '5000/h', not {amount!r}")
            texts.append(f"{name}={amount}")
    rates: dict[str, Rate] = {}
    for text in texts:
        try:
            name, rate = parse_rate(text)
        except InvalidTenantSettingError as error:
            raise InvalidTenantSettingError(field_name, error.why) from None
        if name in rates:
            raise InvalidTenantSettingError(field_name, f"{name!r} is given twice")
        rates[name] = rate
    return rates


def parse_rate_name(value: str) -> str:
    if not RATE_NAME.fullmatch(value):
        raise InvalidTenantSettingError("rate", f"{value!r} is not a rate's name")
    return value


def parse_max_running(value: object, field_name: str = "max_running") -> int:
    """A whole number of stages from 0 (pause the tenant) to a million."""
    number = _whole(value, field_name)
    if not 0 <= number <= MAX_RUNNING_LIMIT:
        raise InvalidTenantSettingError(
            field_name, f"must be from 0 to {MAX_RUNNING_LIMIT}, not {number}")
    return number


def parse_priority(value: object, field_name: str = "priority") -> int:
    """A whole number from 1 (lowest) to 100; fair dispatch weighs tenants by it."""
    number = _whole(value, field_name)
    low, high = PRIORITY_RANGE
    if not low <= number <= high:
        raise InvalidTenantSettingError(field_name, f"must be from {low} to {high}, not {number}")
    return number


def parse_retention_days(value: str, field_name: str = "--retention-days") -> int | None:
    """Whole days from 1, or `default` (None: CONVEYOR_RETENTION_DAYS applies)."""
    if value.strip() == "default":
        return None
    days = _whole(value, field_name)
    if days < 1:
        raise InvalidTenantSettingError(field_name, f"must be at least 1 day, not {days}")
    return days


def parse_tenant_settings(body: object) -> TenantSettings:
    """An API body `{"max_running", "priority", "rates"}`; absent or null takes the default."""
    if not isinstance(body, dict):
        raise InvalidTenantSettingError("body", "must be a JSON object")
    unknown = sorted(set(body) - {"max_running", "priority", "rates"})
    if unknown:
        raise InvalidTenantSettingError(unknown[0], "is not a tenant setting")
    rates = body.get("rates")
    if rates is not None and not isinstance(rates, dict):
        raise InvalidTenantSettingError("rates", 'must be an object like {"github_api": "5000/h"}')
    for name in ("max_running", "priority"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidTenantSettingError(name, f"must be a whole number or null, not {value!r}")
    return TenantSettings(
        max_running=None if body.get("max_running") is None
        else parse_max_running(body["max_running"]),
        priority=None if body.get("priority") is None else parse_priority(body["priority"]),
        rates=parse_rates(rates or {}),
    )


def _whole(value: object, field_name: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidTenantSettingError(field_name, f"must be a whole number, not {value!r}")


class InvalidTenantSettingError(ConveyorError, ValueError):
    """Raised when a tenant setting (CLI option, API body field or default) is malformed;
    nothing is stored."""

    def __init__(self, field_name: str, why: str) -> None:
        super().__init__(f"{field_name}: {why}")
        self.field = field_name
        self.why = why
