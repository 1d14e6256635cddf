"""The "Voice library" section: every usable voice, import, rename, delete, zip, try it.

Rendered at the bottom of the Train tab (promoted checkpoints land here). Voices
belong to the workspace, not to a project, so the panel ignores the project picker.
"""
from __future__ import annotations

import gradio as gr
import numpy as np

from projects import synthesis, voices
from projects.errors import BadInput
from studio.common import Studio, ui_errors

#: Where voice zips are written (inside the workspace, which the studio may serve).
EXPORT_SUBDIR = ("exports", "voices")
PCM_FULL_SCALE = 32767
SPEAK_DEFAULT = "Hello! This is a voice from my library."


def _choices(studio: Studio) -> list[tuple[str, str]]:
    return [(f"{r[1]} ({r[0]})", r[0]) for r in voices.voice_rows(studio.store, studio.ws,
                                                                  studio.registry)]


def _refreshed(studio: Studio, keep: str | None = None) -> tuple:
    """The table and the picker, after a change (keeps the pick when it still exists)."""
    choices = _choices(studio)
    value = keep if any(k == keep for _l, k in choices) else None
    return voices.voice_rows(studio.store, studio.ws, studio.registry), \
        gr.Dropdown(choices=choices, value=value)


class _VoicesPanel:
    """Components and handlers of the section."""

    def __init__(self, studio: Studio):
        self.studio = studio

    def layout(self) -> None:
        s = self.studio
        gr.Markdown("### Voice library\nEvery voice that can narrate, in any project. The "
                    "bundled voice is read-only.")
        self.table = gr.Dataframe(value=voices.voice_rows(s.store, s.ws, s.registry),
                                  headers=voices.VOICE_HEADERS, interactive=False,
                                  elem_id="voices-table", wrap=True)
        self.refresh_btn = gr.Button("Refresh list", size="sm", elem_id="voices-refresh")
        with gr.Row():
            self.onnx = gr.File(label="Piper model (.onnx)", type="filepath",
                                elem_id="voice-import-onnx", scale=2)
            self.config = gr.File(label="Its config (.onnx.json)", type="filepath",
                                  elem_id="voice-import-json", scale=2)
            self.import_name = gr.Textbox(label="Name (optional)", elem_id="voice-import-name",
                                          scale=2)
            self.import_btn = gr.Button("Import voice", elem_id="voice-import", scale=1)
        with gr.Row():
            self.pick = gr.Dropdown(label="Voice", choices=_choices(s),
                                    elem_id="library-voice-pick", scale=2)
            self.new_name = gr.Textbox(label="New name", elem_id="voice-new-name", scale=2)
            self.rename_btn = gr.Button("Rename", elem_id="voice-rename", scale=1)
        with gr.Row():
            self.confirm = gr.Checkbox(label="Yes, delete this voice and its files",
                                       elem_id="voice-delete-confirm")
            self.delete_btn = gr.Button("Delete voice", variant="stop", elem_id="voice-delete")
            self.export_btn = gr.Button("Export as zip", elem_id="voice-export")
        self.download = gr.File(label="Voice zip", interactive=False, elem_id="voice-zip")
        with gr.Row():
            self.text = gr.Textbox(label="Speak this", value=SPEAK_DEFAULT,
                                   elem_id="voice-speak-text", scale=4)
            self.speak_btn = gr.Button("Speak", elem_id="voice-speak", scale=1)
        self.audio = gr.Audio(label="Speech", type="numpy", interactive=False,
                              elem_id="voice-speak-audio")

    def wire(self) -> None:
        s = self.studio
        listed = [self.table, self.pick]
        #: The events after which the library changed; other sections chain their refresh on them.
        self.changes = [
            self.import_btn.click(ui_errors(self.import_voice),
                                  [self.onnx, self.config, self.import_name],
                                  [*listed, self.onnx, self.config], api_name="import_voice"),
            self.rename_btn.click(ui_errors(self.rename), [self.pick, self.new_name],
                                  [*listed, self.new_name], api_name="rename_voice"),
            self.delete_btn.click(ui_errors(self.delete), [self.pick, self.confirm],
                                  [*listed, self.confirm], api_name="delete_voice"),
            # Voices imported from the command line appear on demand, not by polling.
            self.refresh_btn.click(ui_errors(lambda keep: _refreshed(s, keep)), [self.pick],
                                   listed, api_name="list_voices")]
        self.export_btn.click(ui_errors(self.export), [self.pick], [self.download],
                              api_name="export_voice")
        self.speak_btn.click(ui_errors(self.speak), [self.pick, self.text], [self.audio],
                             api_name="speak_voice")

    def refreshed(self, keep: str | None = None) -> tuple:
        """New values for ``[self.table, self.pick]`` after a change made elsewhere."""
        return _refreshed(self.studio, keep)

    def import_voice(self, onnx_path, json_path, name):
        """Copy two uploaded files into the library."""
        if not onnx_path or not json_path:
            raise BadInput("Choose both files of the voice: the .onnx and its .onnx.json.")
        v = voices.import_piper_voice(self.studio.store, self.studio.ws, onnx_path, json_path,
                                      name or None)
        gr.Info(f"Voice '{v.name}' is in the library.")
        return (*_refreshed(self.studio, v.key), None, None)

    def rename(self, key, new_name):
        """Give the picked voice a new name."""
        v = voices.rename_voice(self.studio.store, self.studio.ws, key, new_name)
        gr.Info(f"Renamed to '{v.name}'.")
        return (*_refreshed(self.studio, v.slug), "")

    def delete(self, key, confirmed):
        """Delete the picked voice once the box is ticked."""
        if not key:
            raise BadInput("Pick a voice first.")
        if not confirmed:
            raise BadInput("Tick 'Yes, delete' to confirm: the voice's files are deleted too.")
        name = voices.delete_voice(self.studio.store, self.studio.ws, key)
        gr.Info(f"Voice '{name}' deleted.")
        return (*_refreshed(self.studio), False)

    def export(self, key):
        """Zip the picked voice for download."""
        out_dir = self.studio.ws.root.joinpath(*EXPORT_SUBDIR)
        return str(voices.export_voice_zip(self.studio.store, self.studio.ws, key, out_dir,
                                           self.studio.registry))

    def speak(self, key, text):
        """Say the text with the picked voice."""
        voice = voices.get_voice(self.studio.store, self.studio.ws, key, self.studio.registry)
        audio, rate = synthesis.synthesize(text, voice)
        return rate, (np.clip(audio, -1, 1) * PCM_FULL_SCALE).astype(np.int16)


def build(studio: Studio) -> _VoicesPanel:
    """Render the Voice library section where it is called (bottom of the Train tab).

    The returned panel's ``table`` and ``pick`` can be outputs of other events (a promote), and
    its ``changes`` are the events after which the library changed.
    """
    panel = _VoicesPanel(studio)
    panel.layout()
    panel.wire()
    return panel
