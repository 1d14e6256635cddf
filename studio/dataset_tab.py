"""Dataset tab: the project's recordings. Upload, analyse, and see what each contains.

Clip building (VAD, transcription, speakers) is added here by the dataset builder.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from projects import projects as project_store, sources
from studio.common import Studio, duration, ui_errors

HEADERS = ["#", "Recording", "Status", "Length", "Loudness (LUFS)", "Peak (dBFS)",
           "Clipped %", "Problem"]
REFRESH_S = 2.0


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else ""


def source_rows(studio: Studio, project: str | None) -> list[list]:
    """The recordings table for a project (empty when none is open)."""
    if not project:
        return []
    p = project_store.get_project(studio.store, project)
    return [[s.id, s.name, s.status, duration(s.duration_s), _fmt(s.lufs, ".1f"),
             _fmt(s.peak_dbfs, ".1f"),
             _fmt(None if s.clipped_fraction is None else s.clipped_fraction * 100, ".2f"),
             s.error or ""] for s in sources.list_sources(studio.store, p.id)]


def build(studio: Studio, current: gr.Dropdown) -> None:
    """Render the tab."""
    gr.Markdown("### Recordings\nAdd long recordings (wav, flac, mp3, ogg, opus, m4a, or the "
                "audio of mp4/mkv/webm videos). Each is copied into the project and measured: "
                "length, loudness, peak and clipping. Adding the same file twice is harmless.")
    files = gr.File(label="Recordings", file_count="multiple", type="filepath",
                    elem_id="recordings-upload")
    add_btn = gr.Button("Add and analyse", variant="primary", elem_id="add-recordings")
    table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="recordings-table",
                         label="Recordings in this project")
    timer = gr.Timer(REFRESH_S)

    @ui_errors
    def add(project: str | None, paths: list[str] | None):
        if not project:
            raise gr.Error("Create or open a project first (Projects tab).")
        if not paths:
            raise gr.Error("Choose one or more recordings to add.")
        pairs = [(Path(p), Path(p).name) for p in paths]
        job, problems = sources.add_and_analyse(studio.store, studio.ws, project, pairs)
        for line in problems:
            gr.Warning(line)
        if job is None:
            gr.Info("These recordings are already in the project.")
        else:
            gr.Info(f"Analysing {len(job.params['source_ids'])} recording(s) as job #{job.id}.")
        return source_rows(studio, project), None

    add_btn.click(add, [current, files], [table, files], api_name="add_recordings")
    refresh = ui_errors(lambda project: source_rows(studio, project))
    current.change(refresh, [current], [table], api_visibility="private")
    timer.tick(refresh, [current], [table], api_visibility="private", show_progress="hidden",
               queue=False)
