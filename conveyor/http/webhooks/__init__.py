"""Webhook ingest: one module per Git platform behind one small interface."""

from __future__ import annotations

from conveyor.http.webhooks.platform import (
    MalformedDeliveryError,
    Platform,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from conveyor.http.webhooks.trigger import Closing, Ignored, Outcome, Pong, Trigger

__all__ = [
    "Closing",
    "Ignored",
    "MalformedDeliveryError",
    "Outcome",
    "Platform",
    "Pong",
    "Trigger",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "WebhookError",
]
