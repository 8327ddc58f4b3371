"""`/workflow-queue/whoami`, `/tokens`, `/tenants` and `/organizations`: who asks, the tokens,
tenant settings, and what each organisation has running, held and deferred.

The tokens and tenants routes need an admin token (`scope` below, read by `BearerAuth`);
an admin token is never limited to organisations, so they show every organisation.
`/organizations` needs a read token and shows the organisations it may see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from conveyor.access import Grant, Scope, parse_grant_body, parse_organization
from conveyor.http.scoping import visible
from conveyor.store.dispatches import DispatchStore
from conveyor.store.tenants import Tenant, TenantStore
from conveyor.store.tokens import TokenRecord, TokenStore
from conveyor.tenancy import parse_tenant_settings

MAX_BODY_BYTES = 16 * 1024


class WhoAmIResource:
    """`GET /workflow-queue/whoami`: the asking token's name, scope and organisations."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        grant: Grant = req.context.grant
        resp.media = {
            "name": grant.name, "scope": grant.scope.value, "scopes": grant.scope.covered(),
            "organizations": None if grant.organizations is None
            else sorted(grant.organizations),
            "principal": req.context.principal,
        }


class TokensResource:
    """`GET /workflow-queue/tokens` lists the tokens; `POST` creates one, shown only then."""

    scope = Scope.ADMIN

    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"tokens": [present_token(t) for t in self.tokens.list()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        grant = parse_grant_body(_body(req))
        token = self.tokens.create(grant)
        resp.status = falcon.HTTP_201
        resp.media = {**present_grant(grant), "token": token}


class TokenResource:
    """`DELETE /workflow-queue/tokens/{name}` revokes the token of that name."""

    scope = Scope.ADMIN

    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.tokens.revoke(name)
        resp.status = falcon.HTTP_204


class TenantsResource:
    """`GET /workflow-queue/tenants`: the defaults, and every organisation that set any."""

    scope = Scope.ADMIN

    def __init__(self, tenants: TenantStore) -> None:
        self.tenants = tenants

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenants = self.tenants.all()
        resp.media = {
            "defaults": self.tenants.defaults.as_dict(),
            "tenants": [t.as_dict() for t in tenants],
            "dispatch": dispatch_loads(self.tenants, tenants, None),
        }


def dispatch_loads(store: TenantStore, tenants: list[Tenant],
                   organizations: frozenset[str] | None) -> list[dict[str, Any]]:
    """Per organisation (of `organizations`; None: every one), its stages in flight (sent,
    no outcome yet) against its limit, and its stages held back; the scoped token's own
    organisations are listed even when idle."""
    limits = {t.organization: t.effective.max_running for t in tenants}
    with store.connect() as conn:
        loads = {load.organization: load for load in DispatchStore.loads(conn)}
    names = sorted(loads if organizations is None else organizations)
    return [{"organization": name or None,
             "running": loads[name].running if name in loads else 0,
             "max_running": limits.get(name, store.defaults.max_running),
             "held": loads[name].held if name in loads else 0} for name in names]


class OrganizationsResource:
    """`GET /workflow-queue/organizations`: what the dashboard's overview shows of each
    organisation the token may see: stages running against its limit, stages held back by
    fair dispatch, and stages deferred by its rate limits (in all)."""

    def __init__(self, tenants: TenantStore, deferrals: Callable[[], dict[str, int]]) -> None:
        self.tenants = tenants
        self.deferrals = deferrals

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        organizations = visible(req)
        deferred = self.deferrals()
        loads = dispatch_loads(self.tenants, self.tenants.all(), organizations)
        resp.media = {"organizations": [
            load | {"deferred": deferred.get(load["organization"] or "", 0)} for load in loads]}


class TenantResource:
    """`/workflow-queue/tenants/{organization}`: `GET` its settings, `PUT` replaces them."""

    scope = Scope.ADMIN

    def __init__(self, tenants: TenantStore) -> None:
        self.tenants = tenants

    def on_get(self, req: falcon.Request, resp: falcon.Response, organization: str) -> None:
        resp.media = self.tenants.get(parse_organization(organization)).as_dict()

    def on_put(self, req: falcon.Request, resp: falcon.Response, organization: str) -> None:
        org = parse_organization(organization)
        settings = parse_tenant_settings(_body(req))
        resp.media = self.tenants.put(org, settings).as_dict()


def present_grant(grant: Grant) -> dict[str, Any]:
    return {"name": grant.name, "scope": grant.scope.value,
            "organizations": None if grant.organizations is None
            else sorted(grant.organizations)}


def present_token(record: TokenRecord) -> dict[str, Any]:
    """A stored token as listed: never the token, which is not kept."""
    return {**present_grant(record.grant), "principal": record.principal,
            "created_at": record.created_at, "revoked_at": record.revoked_at}


def _body(req: falcon.Request) -> Any:
    if (req.content_length or 0) > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(title="Body too large",
                                         description=f"At most {MAX_BODY_BYTES} bytes.")
    return req.get_media(default_when_empty=None)
