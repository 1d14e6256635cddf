"""Errors a user can cause, and the callbacks long operations take.

Every exception here carries a one-line message meant for the user: the UI shows
it as a warning and the CLI prints it and exits 2. Anything else is a bug and
goes to the log with its traceback.
"""
from __future__ import annotations

from typing import Callable

#: ``progress(fraction, message)``: fraction in 0..1 of the whole operation.
ProgressFn = Callable[[float, str], None]
#: ``should_cancel()``: True once the user asked to stop.
CancelFn = Callable[[], bool]


class StudioError(Exception):
    """A problem the user can fix; ``str(err)`` is the one-line message."""


class BadInput(StudioError):
    """A file, text or parameter the studio cannot use."""


class ModelMissing(StudioError):
    """A model the operation needs is not installed."""


class NoGPU(StudioError):
    """The operation needs a GPU that this machine does not offer."""


class Cancelled(Exception):
    """Raised by a long operation when its cancel check turns true.

    Not a StudioError: cancelling is an outcome, not a mistake.
    """


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that ignores its reports."""


def never_cancel() -> bool:
    """A cancel check that never asks to stop."""
    return False


def check_cancel(should_cancel: CancelFn) -> None:
    """Raise :class:`Cancelled` when ``should_cancel()`` says so."""
    if should_cancel():
        raise Cancelled()
