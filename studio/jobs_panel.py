"""The jobs panel under every tab: live progress bars, cancel and resume."""
from __future__ import annotations

import gradio as gr

from projects import jobs
from projects.records import Job
from studio.common import Studio, duration, esc, ui_errors

REFRESH_S = 1.0
SHOWN_JOBS = 8
STATUS_COLOURS = {"queued": "#888", "running": "#2b7cd3", "done": "#2e9e4f",
                  "failed": "#c0392b", "cancelled": "#a67c00", "interrupted": "#a67c00"}


def _row_html(job: Job) -> str:
    pct = job.progress * 100
    colour = STATUS_COLOURS.get(job.status, "#888")
    eta = f" · ETA {duration(job.eta_s)}" if job.status == "running" and job.eta_s else ""
    elapsed = f" · {duration(job.elapsed_s())}" if job.started_at else ""
    detail = job.error if job.status == "failed" and job.error else job.message
    return (
        f'<div class="vs-job" data-job-id="{job.id}" data-status="{job.status}">'
        f'<div class="vs-job-head"><b>#{job.id} {esc(job.title)}</b> '
        f'<span style="color:{colour}">{job.status}</span>'
        f'<span class="vs-job-pct">{pct:.0f}%{eta}{elapsed}</span></div>'
        f'<div class="vs-bar"><div style="width:{pct:.1f}%;background:{colour}"></div></div>'
        f'<div class="vs-job-msg">{esc(detail)}</div></div>')


def jobs_html(studio: Studio) -> str:
    """The panel's HTML: active jobs first, then the latest finished ones."""
    rows = jobs.list_jobs(studio.store, limit=SHOWN_JOBS)
    if not rows:
        return '<div class="vs-jobs vs-empty">No jobs yet.</div>'
    return '<div class="vs-jobs">' + "".join(_row_html(j) for j in rows) + "</div>"


def _choices(studio: Studio) -> list[tuple[str, int]]:
    rows = jobs.list_jobs(studio.store, limit=SHOWN_JOBS)
    return [(f"#{j.id} {j.title} ({j.status})", j.id) for j in rows]


CSS = """
.vs-jobs {display:flex; flex-direction:column; gap:6px}
.vs-job {border:1px solid var(--border-color-primary); border-radius:6px; padding:6px 10px}
.vs-job-head {display:flex; gap:10px; align-items:baseline}
.vs-job-pct {margin-left:auto; font-variant-numeric:tabular-nums}
.vs-bar {height:8px; background:var(--background-fill-secondary); border-radius:4px; overflow:hidden; margin:4px 0}
.vs-bar > div {height:100%}
.vs-job-msg {font-size:0.9em; opacity:0.85}
"""


def build(studio: Studio) -> None:
    """Render the panel; it refreshes itself on a timer."""
    with gr.Accordion("Jobs", open=True, elem_id="jobs-panel"):
        panel = gr.HTML(jobs_html(studio), elem_id="jobs-list")
        with gr.Row():
            picked = gr.Dropdown(label="Job", choices=_choices(studio), scale=3,
                                 elem_id="job-pick", allow_custom_value=False)
            cancel_btn = gr.Button("Cancel job", variant="stop", scale=1, elem_id="job-cancel")
            resume_btn = gr.Button("Resume job", scale=1, elem_id="job-resume")
    timer = gr.Timer(REFRESH_S)
    shown_choices = gr.State([])

    def refresh(current, previous):
        # Re-sending unchanged choices would close a dropdown the user has open.
        choices = [list(c) for c in _choices(studio)]
        if choices == previous and current is not None:
            return jobs_html(studio), gr.update(), previous
        ids = [c[1] for c in choices]
        active = [j.id for j in jobs.list_jobs(studio.store, limit=SHOWN_JOBS) if j.active]
        # Follow the newest active job unless the user picked another active one.
        if current in active:
            value = current
        else:
            value = active[0] if active else (current if current in ids else None)
        return jobs_html(studio), gr.Dropdown(choices=[tuple(c) for c in choices], value=value), choices

    def act(action, done_message: str):
        @ui_errors
        def handler(job_id: int | None) -> str:
            if job_id is None:
                raise gr.Error("Pick a job first.")
            job = action(studio.store, int(job_id))
            gr.Info(done_message.format(id=job.id, message=job.message))
            return jobs_html(studio)
        return handler

    cancel_job = act(jobs.cancel, "Job #{id}: {message}")
    resume_job = act(jobs.resume, "Job #{id} queued again.")

    timer.tick(refresh, [picked, shown_choices], [panel, picked, shown_choices],
               api_visibility="private",
               show_progress="hidden", queue=False)
    cancel_btn.click(cancel_job, [picked], [panel], api_name="cancel_job")
    resume_btn.click(resume_job, [picked], [panel], api_name="resume_job")
