"""Every review-starting delivery names its tenant: the organisation, and a team below it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.http.webhooks.app import PLATFORMS
from conveyor.http.webhooks.azure import organization_of
from conveyor.http.webhooks.platform import MalformedDeliveryError, lower_headers
from conveyor.http.webhooks.trigger import Trigger
from conveyor.settings import Settings
from tests.deliveries import (
    SECRETS,
    Delivery,
    azure_comment,
    azure_pull_request,
    bitbucket_comment,
    bitbucket_pull_request,
    github_comment,
    github_pull_request,
    gitlab_merge_request,
    gitlab_note,
)


def trigger_of(delivery: Delivery, settings: Settings = SECRETS) -> Trigger:
    outcome = PLATFORMS[delivery.platform].parse(
        lower_headers(delivery.headers), delivery.body, settings)
    assert isinstance(outcome, Trigger), outcome
    return outcome


@pytest.mark.parametrize(("delivery", "organization", "team"), [
    (github_pull_request(repository="acme/api"), "acme", None),
    (github_pull_request("synchronize", repository="octocat/dotfiles", personal=True),
     "octocat", None),
    (github_comment(repository="acme/api"), "acme", None),
    (github_comment(repository="octocat/dotfiles", personal=True), "octocat", None),
    (gitlab_merge_request(repository="acme/api"), "acme", None),
    (gitlab_merge_request("update", repository="acme/platform/api"), "acme", "platform"),
    (gitlab_note(repository="acme/platform/backend/api"), "acme", "platform/backend"),
    (bitbucket_pull_request(repository="acme/api", project="PLAT"), "acme", "PLAT"),
    (bitbucket_pull_request(repository="acme/api", project=None), "acme", None),
    (bitbucket_comment(repository="globex/web"), "globex", "API"),
    (azure_pull_request(repository="Platform/api", organization="acme"), "acme", "Platform"),
    (azure_comment(repository="Web/site"), "fabrikam", "Web"),
], ids=lambda value: getattr(value, "platform", None) or repr(value))
def test_a_review_starting_delivery_names_its_organisation_and_team(
    delivery: Delivery, organization: str, team: str | None
) -> None:
    found = trigger_of(delivery)

    assert (found.organization, found.team) == (organization, team)


def test_the_tenant_is_kept_on_the_job_and_not_repeated_in_the_stored_trigger() -> None:
    stored = trigger_of(github_pull_request(repository="acme/api")).as_dict(datetime.now(UTC))

    assert "organization" not in stored and "team" not in stored


def test_a_github_delivery_without_an_organization_object_falls_back_to_the_owner() -> None:
    delivery = github_pull_request(repository="acme/api").with_payload(
        lambda p: p.pop("organization"))

    assert trigger_of(delivery).organization == "acme"


def test_a_bitbucket_delivery_without_a_workspace_takes_it_from_the_full_name() -> None:
    delivery = bitbucket_pull_request(repository="globex/api").with_payload(
        lambda p: p["repository"].pop("workspace"))

    assert trigger_of(delivery).organization == "globex"


def test_an_azure_delivery_falls_back_from_the_containers_to_the_repository_urls() -> None:
    def only_the_api_url(payload: dict[str, object]) -> None:
        payload.pop("resourceContainers")
        repository = payload["resource"]["repository"]  # type: ignore[index]
        repository.pop("remoteUrl")
        repository["url"] = "https://Contoso.visualstudio.com/_apis/git/repositories/1"

    delivery = azure_pull_request(organization="acme").with_payload(only_the_api_url)

    assert trigger_of(delivery).organization == "contoso"


def test_an_azure_delivery_that_names_no_organisation_is_malformed() -> None:
    def no_urls(payload: dict[str, object]) -> None:
        payload.pop("resourceContainers")
        payload["resource"]["repository"].pop("remoteUrl")  # type: ignore[index]

    delivery = azure_pull_request().with_payload(no_urls)

    with pytest.raises(MalformedDeliveryError, match="organisation"):
        PLATFORMS["azure-repos"].parse(lower_headers(delivery.headers), delivery.body, SECRETS)


@pytest.mark.parametrize(("url", "organization"), [
    ("https://dev.azure.com/Fabrikam/", "fabrikam"),
    ("https://dev.azure.com/fabrikam/Project/_git/repo", "fabrikam"),
    ("https://fabrikam.visualstudio.com/DefaultCollection/_git/Fabrikam", "fabrikam"),
    ("https://tfs.example.com/tfs/Research/_git/repo", "research"),
    ("https://devops.example.com/Research/_apis/git/repositories/1", "research"),
    ("https://dev.azure.com/", None),
    ("not a url", None),
    (None, None),
])
def test_an_azure_url_gives_its_organisation_or_its_server_collection(
    url: str | None, organization: str | None
) -> None:
    assert organization_of(url) == organization
