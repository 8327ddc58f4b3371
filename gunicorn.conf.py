"""gunicorn configuration for running the apps by hand; `conveyor` commands load the same."""

from conveyor.gunicorn_conf import *  # noqa: F403
