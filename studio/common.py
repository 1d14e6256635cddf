"""What every tab shares: the open workspace, the error wrapper and small formatters."""
from __future__ import annotations

import functools
import html
import logging
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from projects.errors import StudioError
from projects.format import human_duration as duration  # noqa: F401  (re-exported for tabs)
from projects.registry import Registry
from projects.store import Store
from projects.workspace import Workspace

log = logging.getLogger("voice_studio.ui")


@dataclass
class Studio:
    """The workspace, store and registry one running studio serves."""

    ws: Workspace
    store: Store
    registry: Registry


def ui_errors(fn: Callable) -> Callable:
    """Turn a StudioError into a gr.Error toast; log anything else and say so in one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StudioError as err:
            raise gr.Error(esc(err), print_exception=False) from err
        except gr.Error:
            raise
        except Exception as err:
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(err).__name__}); details are in the "
                           "studio's console log.", print_exception=False) from err

    return wrapper


def keeping(choices: list[tuple[str, str]], value, fallback=None) -> gr.Dropdown:
    """A dropdown update with new choices; the value stays while it is still offered,
    otherwise ``fallback`` takes its place."""
    return gr.Dropdown(choices=choices, value=value if any(v == value for _l, v in choices)
                       else fallback)


def esc(text: object) -> str:
    """HTML-escape anything shown inside gr.HTML."""
    return html.escape(str(text if text is not None else ""))


def coming_soon(what: str, items: list[str]) -> None:
    """A plain statement of what a tab will hold; deliberately no controls."""
    lines = "\n".join(f"- {i}" for i in items)
    gr.Markdown(f"### {what}\n\nThis part of the studio is not built yet. It will let you:\n\n"
                f"{lines}\n")
