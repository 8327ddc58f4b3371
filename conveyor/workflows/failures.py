"""What a stage's exception means for its job: retry it, fail it, or stop."""

from __future__ import annotations

from conveyor.aggregates import Classification


class StageError(Exception):
    """Base of the errors a stage handler raises to say how its failure should be treated."""


class RetryableError(StageError):
    """Raised by a handler whose failure is passing (a timeout, an overloaded service)."""


class PermanentError(StageError):
    """Raised by a handler whose failure no retry can fix (invalid input, a missing resource)."""


# Checked in order, by type; the first match wins. Unknown errors are retryable,
# because a transient fault misread as permanent loses work, and the reverse
# costs only the attempt budget.
_BY_TYPE: tuple[tuple[type[BaseException], Classification], ...] = (
    (PermanentError, Classification.PERMANENT),
    (RetryableError, Classification.RETRYABLE),
    (TimeoutError, Classification.RETRYABLE),
    (ConnectionError, Classification.RETRYABLE),
    (ValueError, Classification.PERMANENT),
    (LookupError, Classification.PERMANENT),
)


def classify(
    error: BaseException, never_retry: tuple[type[BaseException], ...] = ()
) -> Classification:
    """Classify a stage's exception; `never_retry` names types its stage must not retry."""
    if isinstance(error, never_retry):
        return Classification.PERMANENT
    for error_type, classification in _BY_TYPE:
        if isinstance(error, error_type):
            return classification
    return Classification.RETRYABLE
