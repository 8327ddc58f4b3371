"""The conformance tier: real recorded deliveries, which live outside the repository.

They are read in place from `../shared/fixtures/webhooks`. Where that folder is absent the
tier is skipped, except on CI (the `CI` environment variable set), where it must run.
"""

from __future__ import annotations

import os

import pytest

from tests import deliveries


@pytest.fixture(autouse=True)
def recorded_deliveries_present() -> None:
    folder = deliveries.RECORDED
    if folder.is_dir():
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and the recorded webhook deliveries are not at {folder}")
    pytest.skip(f"the recorded webhook deliveries are not at {folder}")
