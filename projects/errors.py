"""The project's user-facing errors, shared with the engines."""
from engines.errors import BadInput, Cancelled, ModelMissing, NoGPU, StudioError


class NotFound(StudioError):
    """A project, job, voice or model id that does not exist."""


class Conflict(StudioError):
    """The action clashes with the current state (a name taken, a job already running)."""


__all__ = ["BadInput", "Cancelled", "Conflict", "ModelMissing", "NoGPU", "NotFound",
           "StudioError"]
