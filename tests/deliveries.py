"""Webhook deliveries of every platform, built here: the shapes, headers and signatures.

The builders write each platform's body as that platform sends it (the fields Conveyor
reads, and the ones around them a reader expects), with the headers and the credential the
platform adds: an HMAC of the exact body bytes for GitHub and Bitbucket Cloud, the secret
token for GitLab, basic credentials for Azure Repos. The signatures are computed here, not
by the code under test, so a test that verifies one checks Conveyor against the platform's
rule rather than against itself.

The recorded real deliveries (`../shared/fixtures/webhooks`, outside the repository) are
read only through `recorded`; the conformance tier checks these builders against them.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from conveyor.settings import Settings

# GitHub's own test secret ("Validating webhook deliveries"); the recorded fixtures use it
# too, with the other platforms' secrets below.
GITHUB_SECRET = "It's a Secret to Everybody"
GITLAB_TOKEN = "test-webhook-token"
BITBUCKET_SECRET = "bitbucket-webhook-test-secret"
AZURE_USERNAME = "test-user"
AZURE_PASSWORD = "test-password"
SECRETS = Settings(
    github_secret=GITHUB_SECRET,
    gitlab_token=GITLAB_TOKEN,
    bitbucket_secret=BITBUCKET_SECRET,
    azure_username=AZURE_USERNAME,
    azure_password=AZURE_PASSWORD,
)
# The same secrets as the environment of `conveyor webhooks`.
SECRETS_ENV = {
    "CONVEYOR_GITHUB_SECRET": GITHUB_SECRET,
    "CONVEYOR_GITLAB_TOKEN": GITLAB_TOKEN,
    "CONVEYOR_BITBUCKET_SECRET": BITBUCKET_SECRET,
    "CONVEYOR_AZURE_USERNAME": AZURE_USERNAME,
    "CONVEYOR_AZURE_PASSWORD": AZURE_PASSWORD,
}
PLATFORMS = ("github", "gitlab", "bitbucket", "azure-repos")
# A review-starting delivery of each platform, the header carrying its credential, and the
# header naming its event (Azure names the event in the body).
SAMPLES = {
    "github": ("pull_request.opened", "X-Hub-Signature-256", "X-GitHub-Event"),
    "gitlab": ("merge_request.open", "X-Gitlab-Token", "X-Gitlab-Event"),
    "bitbucket": ("pullrequest.created", "X-Hub-Signature", "X-Event-Key"),
    "azure-repos": ("git.pullrequest.created", "Authorization", None),
}

RECORDED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "webhooks"
# URL segment -> the recorded fixtures' folder.
FOLDERS = {"github": "github", "gitlab": "gitlab", "bitbucket": "bitbucket", "azure-repos": "azure"}


@dataclass(frozen=True)
class Delivery:
    """One delivery as a platform sends it: where to, its headers, its body byte for byte."""

    platform: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return f"/webhooks/{self.platform}"

    def payload(self) -> Any:
        return json.loads(self.body)

    def with_headers(self, **changes: str | None) -> Delivery:
        """A copy with headers replaced (by name, any case) or removed (None)."""
        names = {name.replace("_", "-").lower(): value for name, value in changes.items()}
        kept = {k: v for k, v in self.headers.items() if k.lower() not in names}
        kept.update({k: v for k, v in names.items() if v is not None})
        return replace(self, headers=kept)

    def with_body(self, body: bytes) -> Delivery:
        """Another body, signed again the way the platform would sign it."""
        return replace(self, headers=credentials(self.platform, self.headers, body), body=body)

    def with_payload(self, change: Callable[[Any], None]) -> Delivery:
        """The payload changed in place by `change`, re-serialised and signed again."""
        payload = self.payload()
        change(payload)
        return self.with_body(orjson.dumps(payload))


def hmac_hex(secret: str, body: bytes, digest: str = "sha256") -> str:
    return hmac.new(secret.encode(), body, digest).hexdigest()


def credentials(platform: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
    """`headers` with the credential `platform` sends for `body`, under the test secrets."""
    if platform == "github":
        return {**headers, "X-Hub-Signature": "sha1=" + hmac_hex(GITHUB_SECRET, body, "sha1"),
                "X-Hub-Signature-256": "sha256=" + hmac_hex(GITHUB_SECRET, body)}
    if platform == "bitbucket":
        return {**headers, "X-Hub-Signature": "sha256=" + hmac_hex(BITBUCKET_SECRET, body)}
    if platform == "gitlab":
        return {**headers, "X-Gitlab-Token": GITLAB_TOKEN}
    pair = f"{AZURE_USERNAME}:{AZURE_PASSWORD}".encode()
    return {**headers, "Authorization": "Basic " + base64.b64encode(pair).decode()}


def _sent(platform: str, headers: dict[str, str], payload: dict[str, Any]) -> Delivery:
    body = orjson.dumps(payload)
    return Delivery(platform, credentials(platform, headers, body), body)


def commit() -> str:
    """A fresh 40-digit commit id, so each delivery that uses one is a new review."""
    return secrets.token_hex(20)


# GitHub: the event in X-GitHub-Event, the action in the body.

def _github(event: str, payload: dict[str, Any]) -> Delivery:
    return _sent("github", {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Hook-Installation-Target-ID": "186853002",
    }, payload)


def _github_repository(full_name: str, personal: bool = False) -> dict[str, Any]:
    owner, _, name = full_name.partition("/")
    return {"id": 186853002, "name": name, "full_name": full_name, "private": False,
            "owner": {"login": owner, "id": 21031067,
                      "type": "User" if personal else "Organization"},
            "html_url": f"https://github.com/{full_name}", "default_branch": "main"}


def _github_owner(full_name: str, personal: bool) -> dict[str, Any]:
    """The `repository` and, for an organisation's repository, the `organization` GitHub adds."""
    owner = full_name.partition("/")[0]
    found: dict[str, Any] = {"repository": _github_repository(full_name, personal)}
    if not personal:
        found["organization"] = {"login": owner, "id": 21031067,
                                 "url": f"https://api.github.com/orgs/{owner}"}
    return found


def github_pull_request(
    action: str = "opened", *, repository: str = "acme/api", number: int = 1,
    head: str | None = None, base: str = "main", draft: bool = False, merged: bool = False,
    sender: str = "octocat", personal: bool = False,
) -> Delivery:
    """A `pull_request` delivery: opened, synchronize, reopened, ready_for_review, closed...

    Of an organisation's repository, or of a user's own (`personal`, no `organization`).
    """
    url = f"https://github.com/{repository}/pull/{number}"
    closed = action == "closed"
    pull_request = {
        "url": f"https://api.github.com/repos/{repository}/pulls/{number}",
        "html_url": url, "number": number, "state": "closed" if closed else "open",
        "title": f"Tighten validation ({number})", "user": {"login": sender, "type": "User"},
        "draft": draft, "merged": merged if closed else False,
        "head": {"label": f"{repository.split('/')[0]}:feature-{number}",
                 "ref": f"feature-{number}", "sha": head or commit(),
                 "repo": _github_repository(repository)},
        "base": {"label": f"{repository.split('/')[0]}:{base}", "ref": base, "sha": "0" * 40,
                 "repo": _github_repository(repository)},
    }
    payload: dict[str, Any] = {"action": action, "number": number, "pull_request": pull_request,
                               **_github_owner(repository, personal),
                               "sender": {"login": sender, "type": "User"}}
    if action == "edited":
        payload["changes"] = {"title": {"from": "An older title"}}
    return _github("pull_request", payload)


def github_comment(
    text: str = "@conveyor review", *, repository: str = "acme/api", number: int = 1,
    on_pull_request: bool = True, comment_id: int | None = None, sender: str = "hubot",
    personal: bool = False,
) -> Delivery:
    """An `issue_comment` `created` delivery, on a pull request unless told otherwise."""
    issue: dict[str, Any] = {"number": number, "title": f"Tighten validation ({number})",
                             "state": "open", "html_url": f"https://github.com/{repository}"
                             f"/{'pull' if on_pull_request else 'issues'}/{number}"}
    if on_pull_request:
        issue["pull_request"] = {
            "url": f"https://api.github.com/repos/{repository}/pulls/{number}",
            "html_url": f"https://github.com/{repository}/pull/{number}"}
    return _github("issue_comment", {
        "action": "created", "issue": issue,
        "comment": {"id": comment_id or secrets.randbelow(10**9), "body": text,
                    "user": {"login": sender, "type": "User"}},
        **_github_owner(repository, personal),
        "sender": {"login": sender, "type": "User"},
    })


def github_ping() -> Delivery:
    """The `ping` GitHub sends when a webhook is created."""
    return _github("ping", {
        "zen": "Keep it logically awesome.", "hook_id": 292430182,
        "hook": {"type": "Repository", "id": 292430182, "active": True,
                 "events": ["pull_request", "issue_comment"],
                 "config": {"content_type": "json", "insecure_ssl": "0"}},
        "repository": _github_repository("acme/api"),
        "sender": {"login": "octocat", "type": "User"},
    })


# GitLab: the event in X-Gitlab-Event, the action in object_attributes.

def _gitlab(event: str, payload: dict[str, Any]) -> Delivery:
    return _sent("gitlab", {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.1.0-pre",
        "X-Gitlab-Event": event,
        "X-Gitlab-Instance": "https://gitlab.example.com",
        "X-Gitlab-Webhook-UUID": "02affd2d-2cba-4033-917d-ec22d5dc4b38",
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "Idempotency-Key": str(uuid.uuid4()),
    }, payload)


def _gitlab_project(path: str) -> dict[str, Any]:
    namespace, _, name = path.rpartition("/")
    return {"id": 15, "name": name, "path": name, "path_with_namespace": path,
            "namespace": namespace.rpartition("/")[2].capitalize(),
            "web_url": f"https://gitlab.example.com/{path}", "default_branch": "main"}


def _gitlab_merge_request(path: str, iid: int, head: str, target: str) -> dict[str, Any]:
    return {"id": 99, "iid": iid, "title": f"Tighten validation ({iid})",
            "target_branch": target, "source_branch": f"feature-{iid}", "state": "opened",
            "draft": False, "work_in_progress": False,
            "url": f"https://gitlab.example.com/{path}/-/merge_requests/{iid}",
            "last_commit": {"id": head, "message": "Tighten validation",
                            "url": f"https://gitlab.example.com/{path}/-/commit/{head}"}}


def gitlab_merge_request(
    action: str = "open", *, repository: str = "acme/api", iid: int = 1,
    head: str | None = None, oldrev: str | None = None, target: str = "main",
    draft: bool = False, changes: dict[str, Any] | None = None, user: str = "root",
) -> Delivery:
    """A `Merge Request Hook`: open, reopen, update (a push sets `oldrev`), close, merge."""
    attributes = {**_gitlab_merge_request(repository, iid, head or commit(), target),
                  "action": action, "draft": draft, "work_in_progress": draft}
    if action in ("close", "merge"):
        attributes["state"] = "closed" if action == "close" else "merged"
    if action == "update" and oldrev is None and not changes:
        oldrev = commit()  # an update without `changes` is a push
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    return _gitlab("Merge Request Hook", {
        "object_kind": "merge_request", "event_type": "merge_request",
        "user": {"id": 1, "name": "Administrator", "username": user},
        "project": _gitlab_project(repository), "object_attributes": attributes,
        "labels": [], "changes": changes or {},
    })


def gitlab_note(
    text: str = "@conveyor review", *, repository: str = "acme/api", iid: int = 1,
    head: str | None = None, note_id: int | None = None, noteable_type: str = "MergeRequest",
) -> Delivery:
    """A `Note Hook`: a comment on a merge request, naming the merge request it is on."""
    merge_request = _gitlab_merge_request(repository, iid, head or commit(), "main")
    note = note_id or secrets.randbelow(10**6)
    return _gitlab("Note Hook", {
        "object_kind": "note", "event_type": "note",
        "user": {"id": 1, "name": "Administrator", "username": "root"},
        "project": _gitlab_project(repository),
        "object_attributes": {"id": note, "note": text, "noteable_type": noteable_type,
                              "action": "create", "url": f"{merge_request['url']}#note_{note}"},
        "merge_request": merge_request,
    })


# Bitbucket Cloud: the event in X-Event-Key.

def _bitbucket(event: str, payload: dict[str, Any]) -> Delivery:
    return _sent("bitbucket", {
        "Content-Type": "application/json",
        "User-Agent": "Bitbucket-Webhooks/2.0",
        "X-Event-Key": event,
        "X-Hook-UUID": "b573037c-98af-58a4-b0d8-0aaa6e8ad7bb",
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Attempt-Number": "1",
    }, payload)


def _bitbucket_body(repository: str, number: int, head: str, state: str, draft: bool,
                    project: str | None = "API") -> dict[str, Any]:
    workspace = repository.partition("/")[0]
    repo: dict[str, Any] = {
        "type": "repository", "full_name": repository, "name": repository.split("/")[-1],
        "links": {"html": {"href": f"https://bitbucket.org/{repository}"}},
        "workspace": {"type": "workspace", "slug": workspace, "name": workspace.title(),
                      "uuid": "{145a94da-035e-42d6-bf85-296cea8005ba}"}}
    if project is not None:
        repo["project"] = {"type": "project", "key": project, "name": project.title(),
                           "uuid": "{aa857cae-daad-4fbd-93ef-503cc3d6c3d6}"}
    actor = {"type": "user", "display_name": "Ada Lovelace", "nickname": "ada",
             "account_id": "557058:ada"}
    return {
        "pullrequest": {
            "type": "pullrequest", "id": number, "title": f"Tighten validation ({number})",
            "state": state, "draft": draft, "author": actor,
            "source": {"branch": {"name": f"feature-{number}"}, "commit": {"hash": head[:12]},
                       "repository": repo},
            "destination": {"branch": {"name": "main"}, "commit": {"hash": "0" * 12},
                            "repository": repo},
            "links": {"html": {"href": f"https://bitbucket.org/{repository}"
                               f"/pull-requests/{number}"}},
        },
        "actor": actor,
        "repository": repo,
    }


def bitbucket_pull_request(
    event: str = "pullrequest:created", *, repository: str = "acme/api", number: int = 1,
    head: str | None = None, state: str | None = None, draft: bool = False,
    project: str | None = "API",
) -> Delivery:
    """`pullrequest:created`, `:updated`, `:fulfilled` (merged) or `:rejected` (declined).

    The repository is in its workspace's `project` (by key), or in none.
    """
    default = {"pullrequest:fulfilled": "MERGED", "pullrequest:rejected": "DECLINED"}
    return _bitbucket(event, _bitbucket_body(
        repository, number, head or commit(), state or default.get(event, "OPEN"), draft,
        project))


def bitbucket_comment(
    text: str = "@conveyor review", *, repository: str = "acme/api", number: int = 1,
    head: str | None = None, comment_id: int | None = None,
) -> Delivery:
    """`pullrequest:comment_created`: the comment and the pull request it is on."""
    payload = _bitbucket_body(repository, number, head or commit(), "OPEN", False)
    payload["comment"] = {"id": comment_id or secrets.randbelow(10**9),
                          "type": "pullrequest_comment", "user": payload["actor"],
                          "content": {"raw": text, "markup": "markdown"}}
    return _bitbucket("pullrequest:comment_created", payload)


# Azure Repos service hooks: no event header; the event is the body's `eventType`.

AZURE_MESSAGES = {
    "git.pullrequest.created": "Jamal Hartnett created a new pull request",
    "git.pullrequest.updated": "Jamal Hartnett updated the source branch of pull request {n}",
    "git.pullrequest.merged": "Jamal Hartnett has created a pull request merge commit",
}


AZURE_ORGANIZATION = "fabrikam"


def _azure(event: str, message: str, resource: dict[str, Any],
           organization: str = AZURE_ORGANIZATION) -> Delivery:
    base = f"https://dev.azure.com/{organization}/"
    return _sent("azure-repos", {"Content-Type": "application/json; charset=utf-8"}, {
        "id": str(uuid.uuid4()), "eventType": event, "publisherId": "tfs", "scope": "all",
        "message": {"text": message, "html": message, "markdown": message},
        "resource": resource,
        "resourceVersion": "1.0-preview.1",
        "resourceContainers": {
            "collection": {"id": "c2d3e4f5-0000-4000-8000-000000000001", "baseUrl": base},
            "account": {"id": "c2d3e4f5-0000-4000-8000-000000000002", "baseUrl": base},
            "project": {"id": "f5f5f5f5-aaaa-bbbb-cccc-d6d6d6d6d6d6", "baseUrl": base}},
        "createdDate": "2025-03-01T12:00:00.000Z",
    })


def _azure_pull_request(repository: str, number: int, head: str, status: str,
                        organization: str = AZURE_ORGANIZATION) -> dict[str, Any]:
    project, _, name = repository.partition("/")
    remote = f"https://dev.azure.com/{organization}/{project}/_git/{name}"
    author = {"displayName": "Jamal Hartnett", "uniqueName": "fabrikamfiber4@hotmail.com"}
    return {
        "repository": {"id": "b1b1b1b1-cccc-dddd-eeee-f2f2f2f2f2f2", "name": name,
                       "project": {"id": "f5f5f5f5-aaaa-bbbb-cccc-d6d6d6d6d6d6", "name": project},
                       "remoteUrl": remote},
        "pullRequestId": number, "status": status, "createdBy": author,
        "title": f"Tighten validation ({number})",
        "sourceRefName": f"refs/heads/feature-{number}", "targetRefName": "refs/heads/main",
        "lastMergeSourceCommit": {"commitId": head},
        "lastMergeTargetCommit": {"commitId": "0" * 40},
        **({"closedBy": author} if status != "active" else {}),
    }


def azure_pull_request(
    event: str = "git.pullrequest.created", *, repository: str = "acme/api", number: int = 1,
    head: str | None = None, status: str | None = None, message: str | None = None,
    organization: str = AZURE_ORGANIZATION,
) -> Delivery:
    """`git.pullrequest.created`, `.updated` (by default a push) or `.merged`.

    `repository` is `project/name`, in the Azure DevOps `organization`.
    """
    default = "completed" if event == "git.pullrequest.merged" else "active"
    text = message or AZURE_MESSAGES[event].format(n=number)
    return _azure(event, text, _azure_pull_request(
        repository, number, head or commit(), status or default, organization), organization)


def azure_comment(
    text: str = "@conveyor review", *, repository: str = "acme/api", number: int = 1,
    head: str | None = None,
) -> Delivery:
    """`ms.vss-code.git-pullrequest-comment-event`: a comment and its pull request."""
    return _azure("ms.vss-code.git-pullrequest-comment-event",
                  "Jamal Hartnett has edited a pull request comment", {
                      "comment": {"id": 2, "parentCommentId": 1, "content": text,
                                  "author": {"displayName": "Jamal Hartnett",
                                             "uniqueName": "fabrikamfiber4@hotmail.com"}},
                      "pullRequest": _azure_pull_request(
                          repository, number, head or commit(), "active"),
                  })


# Every kind of delivery the recorded fixtures hold, by the same (platform, name).
BUILDERS: dict[tuple[str, str], Callable[[], Delivery]] = {
    ("github", "ping"): github_ping,
    ("github", "pull_request.opened"): lambda: github_pull_request("opened"),
    ("github", "pull_request.synchronize"): lambda: github_pull_request("synchronize"),
    ("github", "pull_request.reopened"): lambda: github_pull_request("reopened"),
    ("github", "pull_request.ready_for_review"): lambda: github_pull_request("ready_for_review"),
    ("github", "pull_request.closed"): lambda: github_pull_request("closed"),
    ("github", "pull_request.edited"): lambda: github_pull_request("edited"),
    ("github", "issue_comment.created"): lambda: github_comment("Looks good to me"),
    ("gitlab", "merge_request.open"): lambda: gitlab_merge_request("open"),
    ("gitlab", "merge_request.reopen"): lambda: gitlab_merge_request("reopen"),
    ("gitlab", "merge_request.update"): lambda: gitlab_merge_request("update"),
    ("gitlab", "merge_request.close"): lambda: gitlab_merge_request("close"),
    ("gitlab", "merge_request.merge"): lambda: gitlab_merge_request("merge"),
    ("gitlab", "note.merge_request"): lambda: gitlab_note("Looks good to me"),
    ("bitbucket", "pullrequest.created"): lambda: bitbucket_pull_request("pullrequest:created"),
    ("bitbucket", "pullrequest.updated"): lambda: bitbucket_pull_request("pullrequest:updated"),
    ("bitbucket", "pullrequest.fulfilled"):
        lambda: bitbucket_pull_request("pullrequest:fulfilled"),
    ("bitbucket", "pullrequest.comment_created"): lambda: bitbucket_comment("Looks good to me"),
    ("azure-repos", "git.pullrequest.created"):
        lambda: azure_pull_request("git.pullrequest.created"),
    ("azure-repos", "git.pullrequest.updated"):
        lambda: azure_pull_request("git.pullrequest.updated", status="completed",
                                   message="Jamal Hartnett marked the pull request as completed"),
    ("azure-repos", "git.pullrequest.merged"):
        lambda: azure_pull_request("git.pullrequest.merged"),
    ("azure-repos", "ms.vss-code.git-pullrequest-comment-event"):
        lambda: azure_comment("Looks good to me"),
}


def build(platform: str, name: str) -> Delivery:
    """A fresh delivery of the kind the recorded fixture `(platform, name)` is."""
    return BUILDERS[platform, name]()


def sample(platform: str) -> Delivery:
    """A fresh review-starting delivery of `platform`."""
    return build(platform, SAMPLES[platform][0])


# The recorded real deliveries, read in place and never copied into the repository.

def recorded(platform: str, name: str) -> Delivery:
    """A recorded fixture's headers and its body byte for byte, unchanged."""
    folder = RECORDED / FOLDERS[platform]
    if not folder.is_dir():
        raise FileNotFoundError(f"the recorded webhook deliveries are not at {folder}")
    body = (folder / f"{name}.json").read_bytes()
    headers = json.loads((folder / f"{name}.headers.json").read_text(encoding="utf-8"))
    return Delivery(platform, headers, body)


def all_recorded() -> Iterator[tuple[str, str]]:
    """The (platform, name) of every recorded fixture found on disk."""
    for platform, folder in FOLDERS.items():
        for path in sorted((RECORDED / folder).glob("*.json")):
            if not path.name.endswith(".headers.json"):
                yield platform, path.name.removesuffix(".json")


def real_or_built(platform: str, name: str) -> Delivery:
    """The recorded delivery when the fixtures are beside the checkout, else a built one."""
    return recorded(platform, name) if RECORDED.is_dir() else build(platform, name)
