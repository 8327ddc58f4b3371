"""The root of every error Conveyor raises on purpose."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base of Conveyor's own errors; each module's errors sit beneath it, named `...Error`."""
