"""Authenticity: each platform accepts its own deliveries and refuses anything else."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from conveyor.http.webhooks.app import PLATFORMS
from conveyor.http.webhooks.github import sample_github_delivery, sign_github
from conveyor.http.webhooks.platform import UnauthorizedError, lower_headers
from conveyor.settings import Settings
from tests.deliveries import GITHUB_SECRET

GITHUB_TEST_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# platform, a kind of delivery, the header carrying the credential, a wrong credential
CASES = [
    ("github", "pull_request.opened", "X-Hub-Signature-256", {"github_secret": "not-it"}),
    ("gitlab", "merge_request.open", "X-Gitlab-Token", {"gitlab_token": "not-it"}),
    ("bitbucket", "pullrequest.created", "X-Hub-Signature", {"bitbucket_secret": "not-it"}),
    ("azure-repos", "git.pullrequest.created", "Authorization", {"azure_password": "not-it"}),
]
# Platforms whose credential is an HMAC of the body; the others send a shared secret.
BODY_BOUND = {"github", "bitbucket"}


def verify(platform: str, headers: dict[str, str], body: bytes, settings: Settings) -> None:
    PLATFORMS[platform].verify(lower_headers(headers), body, settings)


def test_github_signature_matches_githubs_published_test_vector() -> None:
    headers = sign_github(b"Hello, World!", GITHUB_SECRET)

    assert headers == {"X-Hub-Signature-256": GITHUB_TEST_SIGNATURE}
    verify("github", headers, b"Hello, World!", Settings(github_secret=GITHUB_SECRET))


def test_a_sample_github_delivery_verifies_with_the_secret_it_was_signed_with() -> None:
    headers, body = sample_github_delivery("s3cret", pull_request=7)

    verify("github", headers, body, Settings(github_secret="s3cret"))
    with pytest.raises(UnauthorizedError):
        verify("github", headers, body, Settings(github_secret="other"))


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES)
def test_every_platforms_delivery_verifies_with_the_test_secret(
    delivery, secrets, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name)

    verify(platform, sent.headers, sent.body, secrets)


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES)
def test_a_delivery_checked_against_another_secret_is_refused(
    delivery, secrets, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name)

    with pytest.raises(UnauthorizedError):
        verify(platform, sent.headers, sent.body, dataclasses.replace(secrets, **wrong))


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES)
def test_a_delivery_without_its_credential_header_is_refused(
    delivery, secrets, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name).with_headers(**{header: None})

    with pytest.raises(UnauthorizedError):
        verify(platform, sent.headers, sent.body, secrets)


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES)
def test_a_body_altered_by_one_byte_fails_only_where_the_body_is_signed(
    delivery, secrets, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name)
    middle = len(sent.body) // 2
    altered = (
        sent.body[:middle] + bytes([sent.body[middle] ^ 1]) + sent.body[middle + 1 :]
    )

    if platform in BODY_BOUND:
        with pytest.raises(UnauthorizedError):
            verify(platform, sent.headers, altered, secrets)
    else:
        # GitLab's token and Azure's basic credentials do not cover the body; TLS must.
        verify(platform, sent.headers, altered, secrets)


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES)
def test_re_serialised_json_fails_only_where_the_body_is_signed(
    delivery, secrets, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name)
    reserialised = json.dumps(json.loads(sent.body), indent=2).encode()
    assert reserialised != sent.body

    if platform in BODY_BOUND:
        with pytest.raises(UnauthorizedError):
            verify(platform, sent.headers, reserialised, secrets)
    else:
        verify(platform, sent.headers, reserialised, secrets)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha1=76ac21982c0083585ee317e1e94f0edb8ce7ee9f",
        "sha256=",
        "sha256=zz",
        GITHUB_TEST_SIGNATURE.upper(),
        "sha256=é",
    ],
)
def test_a_github_signature_that_is_malformed_is_refused(delivery, secrets, value) -> None:
    sent = delivery("github", "pull_request.opened").with_headers(x_hub_signature_256=value)

    with pytest.raises(UnauthorizedError):
        verify("github", sent.headers, sent.body, secrets)


def basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer dGVzdC11c2VyOnRlc3QtcGFzc3dvcmQ=",
        "Basic",
        "Basic not base64!",
        basic(b"test-user"),
        basic(b"test-user:"),
        basic(b"other-user:test-password"),
        basic(b"test-user:test-password:extra"),
        basic(b"\xff\xfe:\xff"),
    ],
)
def test_azure_refuses_credentials_that_are_not_exactly_the_configured_pair(
    delivery, secrets, authorization
) -> None:
    sent = delivery("azure-repos", "git.pullrequest.created")
    sent = sent.with_headers(authorization=authorization)

    with pytest.raises(UnauthorizedError):
        verify("azure-repos", sent.headers, sent.body, secrets)


def test_azure_accepts_the_basic_scheme_in_any_case(delivery, secrets) -> None:
    sent = delivery("azure-repos", "git.pullrequest.created")
    encoded = base64.b64encode(b"test-user:test-password").decode()
    sent = sent.with_headers(authorization=f"basic {encoded}")

    verify("azure-repos", sent.headers, sent.body, secrets)


def test_a_platform_without_its_secret_is_disabled() -> None:
    assert not any(platform.enabled(Settings()) for platform in PLATFORMS.values())
    assert not PLATFORMS["azure-repos"].enabled(Settings(azure_username="only-a-user"))
