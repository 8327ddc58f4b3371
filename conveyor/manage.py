"""`conveyor tokens ...` and `conveyor tenants ...`: the API's tokens and tenant settings.

Every argument is parsed before anything is written, so refused input (exit 2, one line
on stderr) changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from conveyor.access import (
    AccessError,
    parse_grant,
    parse_organization,
    parse_token_name,
)
from conveyor.settings import Settings
from conveyor.store.tenants import Tenant, TenantStore
from conveyor.store.tokens import Connect, TokenStore
from conveyor.tenancy import (
    InvalidTenantSettingError,
    TenantSettings,
    parse_max_running,
    parse_priority,
    parse_rate_name,
    parse_rates,
    parse_retention_days,
)

REFUSED = (AccessError, InvalidTenantSettingError)


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a token and print it (shown only once)")
    create.add_argument("--name", required=True, help="a name to list and revoke it by")
    # Not `choices=`: argparse's refusal is two lines; parse_scope's is one.
    create.add_argument("--scope", required=True, help="read, write or admin")
    create.add_argument("--organization", action="append", default=[], metavar="ORG",
                        help="limit the token to this organisation (repeatable); none: all")
    sub.add_parser("list", help="list the tokens (never the tokens themselves)")
    revoke = sub.add_parser("revoke", help="refuse the named token from now on")
    revoke.add_argument("name")


def add_tenant_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    change = sub.add_parser("set", help="change an organisation's settings; the rest stay")
    change.add_argument("organization")
    change.add_argument("--max-running", metavar="N",
                        help="stages it may run at once (0 pauses its dispatch)")
    change.add_argument("--priority", metavar="P", help="1 (lowest) to 100")
    change.add_argument("--rate", action="append", default=[], metavar="NAME=AMOUNT/PERIOD",
                        help="e.g. github_api=5000/h; PERIOD is s, m, h or d (repeatable)")
    change.add_argument("--remove-rate", action="append", default=[], metavar="NAME",
                        help="drop a rate it set, so the default applies (repeatable)")
    change.add_argument("--retention-days", metavar="DAYS",
                        help="days its finished jobs are kept before `conveyor archive`"
                             " takes them, or `default`")
    show = sub.add_parser("show", help="an organisation's settings, or every one's")
    show.add_argument("organization", nargs="?")
    reset = sub.add_parser("reset", help="forget an organisation's settings: defaults apply")
    reset.add_argument("organization")


def run_tokens(settings: Settings, args: argparse.Namespace) -> int:
    return _refusing(args, lambda: _tokens(TokenStore(_connect(settings)), args))


def run_tenants(settings: Settings, args: argparse.Namespace) -> int:
    store = TenantStore(_connect(settings), settings.tenant_defaults)
    return _refusing(args, lambda: _tenants(store, args))


def _tokens(store: TokenStore, args: argparse.Namespace) -> int:
    if args.action == "create":
        token = store.create(parse_grant(args.name, args.scope, args.organization))
        print(token)
        print(f"token {args.name!r} created; it is shown only now, so keep it safe",
              file=sys.stderr)
    elif args.action == "revoke":
        store.revoke(parse_token_name(args.name))
        print(f"token {args.name!r} revoked")
    else:
        rows: list[tuple[str, ...]] = [
            ("NAME", "SCOPE", "ORGANIZATIONS", "PRINCIPAL", "CREATED", "REVOKED")]
        for t in store.list():
            orgs = "(all)" if t.grant.organizations is None else ",".join(
                sorted(t.grant.organizations))
            rows.append((t.grant.name, t.grant.scope.value, orgs, t.principal,
                         f"{t.created_at:%Y-%m-%d %H:%M:%S}",
                         "-" if t.revoked_at is None else f"{t.revoked_at:%Y-%m-%d %H:%M:%S}"))
        _table(rows)
    return 0


def _tenants(store: TenantStore, args: argparse.Namespace) -> int:
    if args.action == "set":
        org = parse_organization(args.organization)
        changes = TenantSettings(
            max_running=None if args.max_running is None
            else parse_max_running(args.max_running, "--max-running"),
            priority=None if args.priority is None
            else parse_priority(args.priority, "--priority"),
            rates=parse_rates(args.rate, "--rate"),
        )
        removed = [parse_rate_name(name) for name in args.remove_rate]
        retention = (None if args.retention_days is None
                     else parse_retention_days(args.retention_days))
        tenant = store.update(org, changes, removed)
        _show(tenant if args.retention_days is None else store.set_retention(org, retention))
    elif args.action == "reset":
        org = parse_organization(args.organization)
        forgotten = store.reset(org)
        print(f"{org}: {'settings forgotten' if forgotten else 'had no settings'};"
              " the defaults apply")
    elif args.organization is not None:
        _show(store.get(parse_organization(args.organization)))
    else:
        print("defaults:")
        _show_settings(store.defaults, None)
        for tenant in store.all():
            _show(tenant)
    return 0


def _show(tenant: Tenant) -> None:
    print(f"{tenant.organization}:")
    _show_settings(tenant.effective, tenant.configured)
    if tenant.retention_days is not None:
        print(f"  retention    {tenant.retention_days} days")


def _show_settings(effective: TenantSettings, configured: TenantSettings | None) -> None:
    """The settings in effect, each marked when it is the default (not for the defaults)."""
    def mark(is_set: bool) -> str:
        return " (default)" if configured is not None and not is_set else ""

    own = configured or TenantSettings()
    limit = "no limit" if effective.max_running is None else str(effective.max_running)
    print(f"  max-running  {limit}{mark(own.max_running is not None)}")
    print(f"  priority     {effective.priority}{mark(own.priority is not None)}")
    rates = [f"{name}={rate}{mark(name in own.rates)}"
             for name, rate in sorted(effective.rates.items())]
    print(f"  rates        {', '.join(rates) or 'none'}")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())


def _connect(settings: Settings) -> Connect:
    url = settings.session_url()

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(url, autocommit=True, row_factory=dict_row)

    return connect


def _refusing(args: argparse.Namespace, run: Callable[[], int]) -> int:
    try:
        return run()
    except REFUSED as error:
        print(f"conveyor {args.command} {args.action}: {error}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"conveyor {args.command} {args.action}: cannot reach PostgreSQL: {reason}",
              file=sys.stderr)
        return 1
