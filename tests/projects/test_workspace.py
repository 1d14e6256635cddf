"""Uploaded names never become paths unchecked."""
import pytest

from projects.errors import BadInput
from projects.workspace import safe_filename, slugify


@pytest.mark.parametrize("raw, expected", [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\boot.ini", "boot.ini"),
    ("/abs/path/talk.mp3", "talk.mp3"),
    (".hidden.wav", "hidden.wav"),
    ("Interview – Zoë.mp3", "Interview – Zoë.mp3"),
    ("", "file"),
    ("a\x00b.wav", "ab.wav"),
])
def test_safe_filename_keeps_names_readable_and_harmless(raw, expected):
    assert safe_filename(raw) == expected


def test_slugify_is_ascii_and_never_empty():
    assert slugify("Zoë's Podcast!") == "zoe-s-podcast"
    assert slugify("日本語") == "untitled"


def test_workspace_refuses_paths_that_escape(ws):
    with pytest.raises(BadInput):
        ws.resolve("../outside.txt")
    assert ws.resolve("projects/x").is_relative_to(ws.root)
