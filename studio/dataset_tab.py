"""Dataset tab: the project's recordings, and building clips grouped by speaker from them.

Upload files or record with the microphone, set the build parameters, start
the build (one background job; the jobs panel cancels and resumes it), watch
its stage, read the summary, and move the re-cluster slider to regroup clips
instantly from their stored embeddings.
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import gradio as gr

from engines import asr
from projects import dataset, jobs, projects as project_store, sources
from studio.common import Studio, duration, esc, ui_errors

HEADERS = ["#", "Recording", "Status", "Length", "Loudness (LUFS)", "Peak (dBFS)",
           "Clipped %", "Problem"]
REFRESH_S = 2.0
#: Height of the folder drop box, in pixels (it sits under the microphone).
FOLDER_BOX_PX = 180
NO_SUMMARY = "No dataset built in this project yet."


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


def model_choices(studio: Studio) -> list[str]:
    """Whisper models that can run now: the bundled tiny.en plus installed registry models."""
    installed = [e.id for e in studio.registry.entries("asr")
                 if e.id != "whisper-tiny.en" and studio.registry.is_installed(e.id)]
    return [asr.DEFAULT_MODEL] + installed


def _latest_build(studio: Studio, project: str | None):
    if not project:
        return None
    p = project_store.get_project(studio.store, project)
    found = jobs.list_jobs(studio.store, limit=1, project_id=p.id, kind=dataset.KIND)
    return found[0] if found else None


def build_status_html(studio: Studio, project: str | None) -> str:
    """One line on the latest build of this project: stage message, progress, ETA."""
    job = _latest_build(studio, project)
    if job is None:
        return '<div id="build-state" data-status="none">No build started yet.</div>'
    eta = f" · ETA {duration(job.eta_s)}" if job.status == "running" and job.eta_s else ""
    detail = job.error if job.status == "failed" and job.error else job.message
    return (f'<div id="build-state" data-status="{job.status}"><b>Build #{job.id}: '
            f'{job.status}</b> {job.progress * 100:.0f}%{eta}<br>{esc(detail)}</div>')


def summary_markdown(studio: Studio, project: str | None) -> str:
    """The dataset summary (or a hint when nothing was built)."""
    if not project:
        return NO_SUMMARY
    summary = dataset.dataset_summary(studio.store, project)
    if not summary["clips"] and not summary["failed"]:
        return NO_SUMMARY
    return dataset.format_summary(summary)


def _parameters(defaults: dataset.BuildConfig, models: list[str]) -> dict:
    """The build parameter widgets, keyed by BuildConfig field."""
    d = defaults
    w = {}
    with gr.Accordion("Build parameters", open=False, elem_id="build-params"):
        with gr.Row():
            w["speech_prob"] = gr.Slider(0.05, 0.95, d.speech_prob, step=0.05,
                                         label="Speech threshold (VAD)",
                                         info="Higher skips more breaths, music and noise.")
            w["cluster_criteria"] = gr.Slider(0.3, 0.99, d.cluster_criteria, step=0.01,
                                              label="Speaker similarity",
                                              info="Higher splits voices into more speakers.")
        with gr.Row():
            w["model"] = gr.Dropdown(models, value=d.model, allow_custom_value=True,
                                     label="Whisper model", elem_id="build-model",
                                     info="tiny.en is bundled; download larger ones in Models.")
            w["backend"] = gr.Dropdown(list(asr.BACKENDS), value=d.backend, label="Backend",
                                       info="faster-whisper is quickest on CPU and GPU.")
            w["language"] = gr.Textbox(d.language, label="Language",
                                       info="Code such as en or de; empty detects it.")
            w["device"] = gr.Dropdown(["auto", "cpu", "cuda"], value=d.device, label="Device",
                                      info="auto uses the GPU when there is one.")
        with gr.Row():
            w["min_seconds"] = gr.Slider(0.5, 5.0, d.min_seconds, step=0.1,
                                         label="Shortest clip (s)")
            w["max_seconds"] = gr.Slider(4.0, 30.0, d.max_seconds, step=0.5,
                                         label="Longest clip (s)")
            w["pad_seconds"] = gr.Slider(0.0, 0.5, d.pad_seconds, step=0.05,
                                         label="Silence kept around words (s)")
            w["separate"] = gr.Checkbox(d.separate, label="Separate voice from music first",
                                        info="Uses the UVR MDX-Net model (67 MB, downloaded "
                                             "the first time); slow on CPU.")
    return w


def build(studio: Studio, current: gr.Dropdown) -> None:
    """Render the tab."""
    gr.Markdown("### Recordings\nAdd long recordings (wav, flac, mp3, ogg, opus, m4a, or the "
                "audio of mp4/mkv/webm videos), or a zip or folder of ready clips (with an "
                "LJSpeech `metadata.csv` to keep their transcripts). Adding the same file twice "
                "is harmless.")
    with gr.Row():
        files = gr.File(label="Recordings", file_count="multiple", type="filepath",
                        elem_id="recordings-upload", scale=3)
        with gr.Column(scale=2):
            mic = gr.Audio(sources=["microphone"], type="filepath", label="Or record here",
                           elem_id="mic-record")
            mic_btn = gr.Button("Add this recording", elem_id="add-mic")
            folder = gr.File(label="Or a folder of ready clips (metadata.csv keeps transcripts)",
                             file_count="directory", type="filepath", height=FOLDER_BOX_PX,
                             elem_id="clip-folder-upload")
    with gr.Row():
        add_btn = gr.Button("Add and analyse only", elem_id="add-recordings")
        build_btn = gr.Button("Build dataset", variant="primary", elem_id="build-dataset")
    names = list(dataset.BuildConfig.__dataclass_fields__)
    widgets = _parameters(dataset.BuildConfig(), model_choices(studio))
    status = gr.HTML(build_status_html(studio, None), elem_id="build-status")
    gr.Markdown("### Summary")
    summary = gr.Markdown(NO_SUMMARY, elem_id="dataset-summary")
    recluster_slider = gr.Slider(0.3, 0.99, dataset.BuildConfig().cluster_criteria, step=0.01,
                                 label="Re-cluster: speaker similarity threshold",
                                 info="Regroups clips at once from stored voice prints; "
                                      "speakers you named or edited in Review stay as they are.",
                                 elem_id="recluster-threshold")
    table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="recordings-table",
                         label="Recordings in this project")
    timer = gr.Timer(REFRESH_S)
    seen = gr.State(None)
    keys = [k for k in names if k in widgets]

    def need_project(project: str | None) -> str:
        if not project:
            raise gr.Error("Create or open a project first (Projects tab).")
        return project

    @ui_errors
    def add(project: str | None, paths: list[str] | None):
        need_project(project)
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

    @ui_errors
    def add_mic(project: str | None, path: str | None):
        need_project(project)
        if not path:
            raise gr.Error("Record something first (press the microphone button).")
        source = sources.add_microphone_take(studio.store, studio.ws, project, Path(path))
        gr.Info(f"Added '{source.name}'; it is built with the others.")
        return source_rows(studio, project), None

    @ui_errors
    def start(project: str | None, paths: list[str] | None, folder_paths: list[str] | None,
              *values):
        need_project(project)
        config = dataset.BuildConfig.from_dict(dict(zip(keys, values)))
        pairs = [(Path(p), Path(p).name) for p in paths or []]
        with ExitStack() as stack:
            if folder_paths:
                clips = stack.enter_context(sources.staged_clip_folder(
                    studio.ws, [Path(p) for p in folder_paths]))
                pairs.append((clips, "folder of clips"))
            job, problems = dataset.start_build(studio.store, studio.ws, project, pairs, config)
        for line in problems:
            gr.Warning(line)
        gr.Info(f"Building the dataset as job #{job.id}; progress shows below and in Jobs.")
        return source_rows(studio, project), None, None, build_status_html(studio, project)

    @ui_errors
    def regroup(project: str | None, threshold: float):
        need_project(project)
        result = dataset.recluster(studio.store, studio.ws, project, threshold)
        gr.Info(f"{result['clips']} clips in {result['speakers']} speaker(s).")
        return summary_markdown(studio, project)

    @ui_errors
    def refresh(project: str | None, last):
        job = _latest_build(studio, project)
        marker = [project, job.id, job.status] if job else [project]
        text = summary_markdown(studio, project) if marker != last else gr.update()
        return source_rows(studio, project), build_status_html(studio, project), text, marker

    @ui_errors
    def open_project(project: str | None):
        rows, state, text, marker = refresh(project, None)
        config = (dataset.load_settings(studio.store, project_store.get_project(studio.store,
                                                                                 project))
                  if project else dataset.BuildConfig())
        return [rows, state, text, marker, config.cluster_criteria] + \
            [getattr(config, k) for k in keys]

    inputs = [widgets[k] for k in keys]
    add_btn.click(add, [current, files], [table, files], api_name="add_recordings")
    mic_btn.click(add_mic, [current, mic], [table, mic], api_name="add_microphone_take")
    build_btn.click(start, [current, files, folder] + inputs, [table, files, folder, status],
                    api_name="build_dataset")
    recluster_slider.release(regroup, [current, recluster_slider], [summary],
                             api_name="recluster")
    current.change(open_project, [current],
                   [table, status, summary, seen, recluster_slider] + inputs,
                   api_visibility="private")
    timer.tick(refresh, [current, seen], [table, status, summary, seen],
               api_visibility="private", show_progress="hidden", queue=False)
