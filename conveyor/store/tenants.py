"""`tenant_settings`: each organisation's max-running, priority and rates, and the defaults.

What each organisation set, with the defaults of `Settings` (`CONVEYOR_TENANT_*`) for the
rest; the relay reads them all (`all`) at most once a poll (`conveyor/relay/admission.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from conveyor.store.tokens import Connect
from conveyor.tenancy import Rate, TenantSettings

_COLUMNS = "organization, max_running, priority, rates, updated_at, retention_days"


@dataclass(frozen=True)
class Tenant:
    """One organisation's settings: as set (`configured`) and in effect."""

    organization: str
    configured: TenantSettings
    effective: TenantSettings
    updated_at: datetime | None
    # Days its finished jobs are kept before `conveyor archive` takes them; None: the
    # default (CONVEYOR_RETENTION_DAYS). Read by the archive itself (conveyor/retention/).
    retention_days: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"organization": self.organization, **self.effective.as_dict(),
                "configured": self.configured.as_dict(), "updated_at": self.updated_at}


class TenantStore:
    """Reads and writes tenant settings; each call commits on its own.

    `connect` gives a connection with `dict_row` rows in autocommit mode.
    """

    def __init__(self, connect: Connect, defaults: TenantSettings) -> None:
        self.connect = connect
        self.defaults = defaults

    def get(self, organization: str) -> Tenant:
        """The organisation's settings; the defaults alone if it has set none."""
        with self.connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM tenant_settings WHERE organization = %s",
                               (organization,)).fetchone()
        if row is None:
            return Tenant(organization, TenantSettings(), self.defaults, None)
        return self._tenant(row)

    def effective(self, organization: str) -> TenantSettings:
        """The limits in effect for the organisation: its own, the defaults for the rest."""
        return self.get(organization).effective

    def all(self) -> list[Tenant]:
        """Every organisation that has set something, by name."""
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM tenant_settings ORDER BY organization").fetchall()
        return [self._tenant(row) for row in rows]

    def put(self, organization: str, settings: TenantSettings) -> Tenant:
        """Replace what the organisation set with `settings`."""
        with self.connect() as conn:
            row = conn.execute(
                "INSERT INTO tenant_settings (organization, max_running, priority, rates)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (organization) DO UPDATE"
                " SET max_running = excluded.max_running, priority = excluded.priority,"
                " rates = excluded.rates, updated_at = now()"
                f" RETURNING {_COLUMNS}",
                (organization, settings.max_running, settings.priority,
                 Jsonb(_rates_json(settings.rates.items())))).fetchone()
        assert row is not None
        return self._tenant(row)

    def update(self, organization: str, changes: TenantSettings,
               removed_rates: Iterable[str] = ()) -> Tenant:
        """Change only what `changes` sets (and drop `removed_rates`), keeping the rest."""
        removed = list(removed_rates)
        with self.connect() as conn:
            row = conn.execute(
                "INSERT INTO tenant_settings (organization, max_running, priority, rates)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (organization) DO UPDATE"
                " SET max_running = coalesce(excluded.max_running,"
                " tenant_settings.max_running),"
                " priority = coalesce(excluded.priority, tenant_settings.priority),"
                " rates = (tenant_settings.rates - %s::text[]) || excluded.rates,"
                " updated_at = now()"
                f" RETURNING {_COLUMNS}",
                (organization, changes.max_running, changes.priority,
                 Jsonb(_rates_json(changes.rates.items())), removed)).fetchone()
        assert row is not None
        return self._tenant(row)

    def set_retention(self, organization: str, days: int | None) -> Tenant:
        """Keep the organisation's finished jobs `days` days (None: the default)."""
        with self.connect() as conn:
            row = conn.execute(
                "INSERT INTO tenant_settings (organization, retention_days) VALUES (%s, %s)"
                " ON CONFLICT (organization) DO UPDATE"
                " SET retention_days = excluded.retention_days, updated_at = now()"
                f" RETURNING {_COLUMNS}", (organization, days)).fetchone()
        assert row is not None
        return self._tenant(row)

    def reset(self, organization: str) -> bool:
        """Forget what the organisation set (the defaults apply); False if it set nothing."""
        with self.connect() as conn:
            gone = conn.execute("DELETE FROM tenant_settings WHERE organization = %s",
                                (organization,)).rowcount
        return gone > 0

    def _tenant(self, row: dict[str, Any]) -> Tenant:
        configured = TenantSettings(
            max_running=row["max_running"], priority=row["priority"],
            rates={name: Rate(r["amount"], r["period"]) for name, r in row["rates"].items()})
        return Tenant(row["organization"], configured, configured.over(self.defaults),
                      row["updated_at"], row["retention_days"])


def _rates_json(rates: Iterable[tuple[str, Rate]]) -> dict[str, dict[str, Any]]:
    return {name: {"amount": rate.amount, "period": rate.period} for name, rate in rates}
