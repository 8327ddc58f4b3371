"""The dashboard's files and `whoami`, through Falcon's test client."""

from __future__ import annotations

import falcon.testing
import pytest

from conveyor.application import Jobs
from conveyor.http.api import create_app
from conveyor.settings import Settings


@pytest.fixture
def client(settings: Settings, jobs: Jobs) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=lambda: None))


def test_whoami_tells_a_read_token_from_a_write_token_and_refuses_an_unknown_one(
    client: falcon.testing.TestClient,
) -> None:
    read = client.simulate_get("/workflow-queue/whoami",
                               headers={"Authorization": "Bearer read-token"})
    write = client.simulate_get("/workflow-queue/whoami",
                                headers={"Authorization": "Bearer write-token"})
    unknown = client.simulate_get("/workflow-queue/whoami",
                                  headers={"Authorization": "Bearer nobody"})

    assert read.status_code == 200
    assert {k: read.json[k] for k in ("name", "scope", "scopes", "organizations")} == {
        "name": "CONVEYOR_API_READ_TOKENS", "scope": "read", "scopes": ["read"],
        "organizations": None}
    assert (write.status_code, write.json["scopes"]) == (200, ["read", "write"])
    assert unknown.status_code == 401
    assert client.simulate_get("/workflow-queue/whoami").status_code == 401


def test_the_dashboard_page_and_its_assets_are_served_without_a_token_but_its_data_is_not(
    client: falcon.testing.TestClient,
) -> None:
    page = client.simulate_get("/")
    script = client.simulate_get("/dashboard/app.js")
    chart = client.simulate_get("/dashboard/vendor/uPlot.iife.min.js")
    styles = client.simulate_get("/dashboard/app.css")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="dashboard/app.js"' in page.text
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert chart.status_code == 200 and "uPlot" in chart.text
    assert styles.status_code == 200 and styles.headers["content-type"].startswith("text/css")
    assert client.simulate_get("/workflow-queue/jobs").status_code == 401


def test_the_dashboard_serves_nothing_outside_its_folder_and_unknown_paths_stay_404(
    client: falcon.testing.TestClient,
) -> None:
    assert client.simulate_get("/dashboard/../ui.py").status_code == 404
    assert client.simulate_get("/dashboard/%2e%2e/ui.py").status_code == 404
    assert client.simulate_get("/dashboard/missing.js").status_code == 404
    assert client.simulate_get("/nothing-here",
                               headers={"Authorization": "Bearer read-token"}).status_code == 404
