"""Conveyor's Falcon apps: webhook ingest and the REST API."""

from __future__ import annotations
