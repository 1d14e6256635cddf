"""Imports every module that registers a job kind, so the worker knows them all.

``VOICE_STUDIO_JOB_MODULES`` (comma-separated module names) adds more kinds;
the test suite uses it for jobs whose timing it controls.
"""
import importlib
import os

from projects import registry, sources  # noqa: F401
from projects import narrate  # noqa: F401  (narration)
from projects import dataset  # noqa: F401  (dataset builds)
from projects import training  # noqa: F401  (VITS training runs)

for _name in filter(None, os.environ.get("VOICE_STUDIO_JOB_MODULES", "").split(",")):
    importlib.import_module(_name.strip())
