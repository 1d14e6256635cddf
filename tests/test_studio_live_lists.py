"""Live lists of the studio: the Train tab's run pickers follow the timer without flicker, and
the voice pickers follow the library. Handlers are tested without a browser; the browser tests
(tests/browser/test_train_browser.py) drive the same paths end to end."""
from __future__ import annotations

import gradio as gr
import pytest

from studio.train_tab import runs_update

CHOICES = [("#2 Joe · tiny · running", 2), ("#1 Joe · tiny · done", 1)]
ROWS = [[2, "running", "Joe", "tiny", "3/8", "", ""], [1, "done", "Joe", "tiny", "8/8", "", ""]]
SKIP = gr.skip()


def explicit(update) -> dict:
    """The arguments a component update was built with (what Gradio sends to the page)."""
    return update._constructor_args[0]


def test_nothing_changed_sends_nothing():
    table, pickers = runs_update(CHOICES, ROWS, 1, (ROWS, CHOICES))
    assert table == SKIP and pickers == [SKIP, SKIP]


def test_progress_updates_the_table_but_leaves_the_open_dropdown_alone():
    stepped = [[2, "running", "Joe", "tiny", "4/8", "", ""], ROWS[1]]
    table, pickers = runs_update(CHOICES, stepped, 1, (ROWS, CHOICES))
    assert table == stepped and pickers == [SKIP, SKIP]


@pytest.mark.parametrize("picked", [1, 2, None])
def test_a_new_run_or_status_refreshes_choices_and_keeps_the_pick(picked):
    newer = [("#3 Ann · tiny · queued", 3), ("#2 Joe · tiny · done", 2), CHOICES[1]]
    _table, (run_pick, base_run) = runs_update(newer, ROWS, picked, (ROWS, CHOICES))
    assert explicit(run_pick) == {"choices": newer}  # no value: the user's pick stays
    assert explicit(base_run) == {"choices": newer}


def test_a_run_deleted_elsewhere_clears_the_pick():
    left = [CHOICES[1]]
    _table, (run_pick, _base) = runs_update(left, ROWS[1:], 2, (ROWS, CHOICES))
    assert explicit(run_pick) == {"choices": left, "value": None}


def test_first_tick_after_page_load_sends_the_choices():
    table, (run_pick, _base) = runs_update(CHOICES, ROWS, None, None)
    assert table == ROWS and explicit(run_pick) == {"choices": CHOICES}


def test_promote_and_library_edits_update_the_library_and_the_tab_pickers(ws, store):
    from projects.registry import Registry
    from studio import app
    from studio.common import Studio

    demo = app.build_app(Studio(ws, store, Registry()))
    config = demo.get_config_file()
    ids = {c["id"]: c["props"].get("elem_id") for c in config["components"]}
    deps = config["dependencies"]

    def outputs(dep) -> set:
        return {ids[o] for o in dep["outputs"]}

    promote = next(d for d in deps if d["api_name"] == "promote_checkpoint")
    assert {"voices-table", "library-voice-pick", "speak-voice",
            "train-base-voice"} <= outputs(promote)
    for api in ("import_voice", "rename_voice", "delete_voice", "list_voices"):
        source = next(d["id"] for d in deps if d["api_name"] == api)
        chained = [d for d in deps if d.get("trigger_after") == source]
        assert any({"speak-voice", "train-base-voice"} <= outputs(d) for d in chained), api
    tab_selects = [d for d in deps if any(t[1] == "select" for t in d["targets"])]
    assert any("voice-pick" in outputs(d) for d in tab_selects)
