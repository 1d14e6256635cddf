"""Train tab: start VITS runs, watch their curves and samples live, promote a checkpoint, speak.

Handlers read inputs, call :mod:`projects.training` / :mod:`projects.synthesis`, and
format. The run itself is a background job (the jobs panel shows its bar); this tab
shows what only training has: curves, samples, checkpoints, and the run list.
A run has a kind, and plots and samples are generic, so RVC runs fit later.
"""
from __future__ import annotations

import logging

import gradio as gr
import numpy as np
import pandas as pd

from projects import synthesis, training, voices
from projects.errors import BadInput
from projects.projects import get_project
from studio.common import Studio, duration, esc, keeping, ui_errors
from studio import voices_panel

log = logging.getLogger("voice_studio.ui.train")
REFRESH_S = 3.0
RUN_HEADERS = ["Run", "Status", "Data", "Preset", "Steps", "Best val mel", "Best step"]
START_CHOICES = ["From scratch", "Fine-tune a library voice", "Continue from an earlier run"]
X_AXES = ["step", "time", "epoch"]
#: Plots: (title, metric names).
PLOTS = [("Mel reconstruction (train, ×45)", ["loss/mel"]),
         ("Validation mel L1", ["val/mel"]),
         ("Adversarial, duration, KL", ["loss/gen", "loss/disc", "loss/dur", "loss/kl"]),
         ("Learning rate", ["opt/lr"])]
CHECKPOINT_RUN_PREFIX = "run:"
HELP = {
    "steps": "Optimiser steps. Tiny: a few hundred to see it work; fine-tunes 2k–10k; "
             "from scratch 100k+.",
    "batch": "Clips per step. Lower it if the GPU runs out of memory.",
    "lr": "AdamW learning rate; 2e-4 from scratch, 1e-4 for fine-tunes.",
    "ckpt": "Every N steps: save, validate and render a sample.",
    "val": "Clips held out to measure validation loss (not trained on).",
}


def _project_id(studio: Studio, project: str | None) -> int:
    if not project:
        raise BadInput("Create or open a project first (Projects tab).")
    return get_project(studio.store, project).id


def speaker_choices(studio: Studio, project: str | None) -> list[tuple[str, int]]:
    """(label with counts, id) of the project's speakers."""
    if not project:
        return []
    return [(s.label, s.id) for s in training.speaker_data(studio.store, _project_id(studio, project))]


def run_choices(studio: Studio, project: str | None) -> list[tuple[str, int]]:
    """(label, id) of the project's runs, newest first."""
    if not project:
        return []
    return [(f"#{r.id} {r.name} · {r.preset} · {r.status}", r.id)
            for r in training.list_runs(studio.store, _project_id(studio, project))]


def run_rows(studio: Studio, project: str | None) -> list[list]:
    """The run list table."""
    if not project:
        return []
    rows = []
    for r in training.list_runs(studio.store, _project_id(studio, project)):
        best = f"{r.best_val:.3f}" if r.best_val is not None else ""
        rows.append([r.id, r.status, r.name, r.preset, f"{r.step}/{r.max_steps}", best,
                     r.best_step or ""])
    return rows


def voice_choices(studio: Studio, run_id=None) -> list[tuple[str, str]]:
    """Library voices, then the open run's best checkpoint (before promoting it)."""
    choices = [(v.label, v.key) for v in voices.list_tts_voices(studio.store, studio.ws,
                                                                 studio.registry)]
    if run_id:
        choices.append((f"Run #{run_id}: best checkpoint (not promoted)",
                        f"{CHECKPOINT_RUN_PREFIX}{run_id}"))
    return choices


def status_html(studio: Studio, run_id) -> str:
    """The status line of a run: step, epoch, speed, elapsed, ETA, GPU memory, checkpoint."""
    if not run_id:
        return '<div id="run-status-line" data-status="none">No run open.</div>'
    run = training.get_run(studio.store, int(run_id))
    st = training.run_status(studio.store, run)
    parts = [f"<b>Run #{run.id}</b> {esc(st['status'])}", f"step {st['step']}/{st['max_steps']}"]
    if st["epoch"] is not None:
        parts.append(f"epoch {int(st['epoch'])}")
    if st["steps_per_s"]:
        parts.append(f"{st['steps_per_s']:.2f} steps/s")
    parts.append(f"elapsed {duration(st['elapsed_s'])}")
    if st["eta_s"]:
        parts.append(f"ETA {duration(st['eta_s'])}")
    if st["gpu_gb"]:
        parts.append(f"GPU {st['gpu_gb']:.1f} GB")
    parts.append(f"last checkpoint: {esc(st['last_checkpoint'] or 'none yet')}")
    warning = training.overtraining_warning(studio.store, run)
    warn = f'<div class="vs-warn" id="overtraining-warning">⚠ {esc(warning)}</div>' if warning else ""
    msg = f'<div class="vs-job-msg">{esc(st["message"])}</div>' if st["message"] else ""
    return (f'<div id="run-status-line" data-status="{esc(st["status"])}" data-step="{st["step"]}">'
            f'{" · ".join(parts)}{msg}{warn}</div>')


def samples_html(studio: Studio, run_id) -> str:
    """Every checkpoint's sample as an audio player, side by side."""
    if not run_id:
        return ""
    run = training.get_run(studio.store, int(run_id))
    found = training.samples(studio.ws, run)
    if not found:
        return '<div class="vs-samples">No samples yet: one is rendered at each checkpoint.</div>'
    cells = "".join(
        f'<figure class="vs-sample" data-step="{step}"><figcaption>step {step}'
        f'{" (best)" if step == run.best_step else ""}</figcaption>'
        f'<audio controls preload="none" src="/gradio_api/file={esc(path)}"></audio></figure>'
        for step, path in found)
    return f'<div class="vs-samples">{cells}</div>'


def plot_frames(studio: Studio, run_id, x_axis: str = "step", smoothing: float = 0.0) -> list:
    """One DataFrame (x, value, series) per plot, downsampled for display."""
    frames = []
    job_id = training.get_run(studio.store, int(run_id)).job_id if run_id else None
    for _title, names in PLOTS:
        series = training.plot_series(studio.store, job_id, names, x_axis=x_axis,
                                      smoothing=smoothing) if job_id else {}
        # Explicit float columns: an empty frame must not make the axes categorical.
        frames.append(pd.DataFrame({
            "x": np.array([x for xs, _ys in series.values() for x in xs], dtype=float),
            "value": np.array([y for _xs, ys in series.values() for y in ys], dtype=float),
            "series": [name for name, (xs, _ys) in series.items() for _x in xs]}))
    return frames


def checkpoint_choices(studio: Studio, run_id) -> list[tuple[str, str]]:
    """(label, file name) of a run's checkpoints, best first."""
    if not run_id:
        return []
    run = training.get_run(studio.store, int(run_id))
    return [(label, path.name) for label, path in training.checkpoints(studio.ws, run)]


CSS = """
.vs-samples {display:flex; flex-wrap:wrap; gap:10px}
.vs-sample {margin:0; border:1px solid var(--border-color-primary); border-radius:6px; padding:4px 8px}
.vs-sample audio {width:220px; height:32px}
.vs-warn {color:#a65f00; font-weight:600; margin-top:4px}
"""


class _TrainTab:
    """The tab's components and event wiring."""

    def __init__(self, studio: Studio, current: gr.Dropdown):
        self.studio, self.current = studio, current

    # ----------------------------------------------------------------- layout
    def layout(self) -> None:
        gr.HTML(f"<style>{CSS}</style>")
        with gr.Accordion("Start a run", open=True):
            self._start_controls()
        with gr.Row():
            self.run_pick = gr.Dropdown(label="Run", choices=[], scale=3, elem_id="run-pick")
            self.resume_btn = gr.Button("Resume", scale=1, elem_id="run-resume")
            self.cancel_btn = gr.Button("Cancel", variant="stop", scale=1, elem_id="run-cancel")
            self.confirm = gr.Checkbox(label="Yes, delete", scale=1, elem_id="run-delete-confirm")
            self.delete_btn = gr.Button("Delete run", scale=1, elem_id="run-delete")
        self.runs = gr.Dataframe(headers=RUN_HEADERS, value=[], interactive=False,
                                 elem_id="runs-table", label="Runs in this project")
        self.status = gr.HTML(status_html(self.studio, None), elem_id="run-status")
        with gr.Row():
            self.x_axis = gr.Radio(X_AXES, value="step", label="x axis", elem_id="plot-x-axis")
            self.smoothing = gr.Slider(0, 0.95, value=0.6, step=0.05, label="Smoothing",
                                       elem_id="plot-smoothing")
        self.plots = []
        for row in (PLOTS[:2], PLOTS[2:]):
            with gr.Row():
                for title, _names in row:
                    self.plots.append(gr.LinePlot(x="x", y="value", color="series", title=title,
                                                  height=260, elem_id=f"plot-{len(self.plots)}"))
        gr.Markdown("**Checkpoint samples** (the same validation sentence at each checkpoint)")
        self.samples = gr.HTML("", elem_id="run-samples")
        self._promote_and_speak()
        self.timer = gr.Timer(REFRESH_S)
        self.seen = gr.State(None)
        self.shown_runs = gr.State(None)  # (rows, choices) last sent by the timer

    def _start_controls(self) -> None:
        d = training.default_options("tiny")
        with gr.Row():
            self.speaker = gr.Dropdown(label="Speaker (clips, minutes, transcripts)", choices=[],
                                       scale=3, elem_id="train-speaker")
            self.all_clips = gr.Checkbox(label="Use all clips with text (not only accepted)",
                                         elem_id="train-all-clips")
            self.preset = gr.Dropdown(["tiny", "medium", "mb-istft", "high"], value="tiny",
                                      label="Preset", elem_id="train-preset")
        with gr.Row():
            self.start_from = gr.Radio(START_CHOICES, value=START_CHOICES[0], label="Starting point",
                                       elem_id="train-start-from")
            self.base_voice = gr.Dropdown(label="Library voice", choices=voice_choices(self.studio),
                                          elem_id="train-base-voice")
            self.base_run = gr.Dropdown(label="Earlier run", choices=[], elem_id="train-base-run")
        with gr.Row():
            self.steps = gr.Number(d.max_steps, label="Steps", info=HELP["steps"], precision=0,
                                   elem_id="train-steps")
            self.batch = gr.Number(d.batch_size, label="Batch size", info=HELP["batch"],
                                   precision=0, elem_id="train-batch")
            self.lr = gr.Number(d.learning_rate, label="Learning rate", info=HELP["lr"],
                                elem_id="train-lr")
            self.ckpt_every = gr.Number(d.checkpoint_every, label="Checkpoint every",
                                        info=HELP["ckpt"], precision=0, elem_id="train-ckpt-every")
            self.val_items = gr.Number(d.val_items, label="Validation clips", info=HELP["val"],
                                       precision=0, elem_id="train-val")
        devices = training.list_devices()
        with gr.Row():
            self.device = gr.Dropdown(devices, value=devices[0][1], label="Device",
                                      elem_id="train-device")
            self.device_note = gr.Markdown(_device_note(devices[0][1]))
        with gr.Row():
            self.check_btn = gr.Button("Check data", elem_id="train-check")
            self.start_btn = gr.Button("Start training", variant="primary", elem_id="train-start")
        self.check_out = gr.Markdown("", elem_id="train-check-result")

    def _promote_and_speak(self) -> None:
        with gr.Row():
            self.ckpt_pick = gr.Dropdown(label="Checkpoint", choices=[], elem_id="promote-checkpoint")
            self.voice_name = gr.Textbox(label="Voice name", placeholder="e.g. Anna v1",
                                         elem_id="promote-name")
            self.promote_btn = gr.Button("Promote to voice", elem_id="promote-btn")
        with gr.Row():
            self.speak_voice = gr.Dropdown(label="Voice", choices=voice_choices(self.studio),
                                           elem_id="speak-voice", scale=2)
            self.speak_text = gr.Textbox(label="Speak this", value="Hello! This is my new voice.",
                                         elem_id="speak-text", scale=3)
            self.speak_btn = gr.Button("Speak", elem_id="speak-btn", scale=1)
        self.speak_audio = gr.Audio(label="Speech", type="numpy", interactive=False,
                                    elem_id="speak-audio")

    # ----------------------------------------------------------------- events
    def wire(self, library) -> None:
        """Connect the events; ``library`` is the Voice library panel rendered below the tab."""
        self._wire_start()
        self._wire_run_actions()
        self._wire_watch()
        self._wire_voices(library)

    def _options(self, preset, start_from, base_voice, base_run, steps, batch, lr, ckpt, val,
                 device, all_clips) -> training.RunOptions:
        opts = training.RunOptions(
            preset=preset, max_steps=int(steps or 1), batch_size=int(batch or 1),
            learning_rate=float(lr), checkpoint_every=int(ckpt or 1), val_items=int(val or 0),
            log_every=max(1, min(10, int(ckpt or 1) // 4)), all_clips=bool(all_clips),
            base_voice=base_voice if start_from == START_CHOICES[1] else None,
            base_run=int(base_run) if start_from == START_CHOICES[2] and base_run else None)
        return training.apply_device_choice(opts, device or "cpu")

    def _wire_start(self) -> None:
        s = self.studio
        inputs = [self.preset, self.start_from, self.base_voice, self.base_run, self.steps,
                  self.batch, self.lr, self.ckpt_every, self.val_items, self.device, self.all_clips]

        def check(project, speaker, *values):
            pf = training.preflight(s.store, s.ws, _need(project), speaker, self._options(*values))
            verdict = "**Ready to train.**" if not pf.problems else "**Fix these first:**"
            return verdict + "\n\n" + pf.summary().replace("\n", "  \n")

        def start(project, speaker, *values):
            run = training.start_run(s.store, s.ws, _need(project), speaker, self._options(*values))
            gr.Info(f"Run #{run.id} queued: it starts when the GPU slot is free.")
            return (gr.Dropdown(choices=run_choices(s, project), value=run.id),
                    run_rows(s, project), f"Started run #{run.id}.")

        def defaults(preset, start_from):
            d = training.default_options(preset, start_from != START_CHOICES[0])
            return d.max_steps, d.batch_size, d.learning_rate, d.checkpoint_every

        self.check_btn.click(ui_errors(check), [self.current, self.speaker, *inputs],
                             [self.check_out], api_name="check_training_data")
        self.start_btn.click(ui_errors(start), [self.current, self.speaker, *inputs],
                             [self.run_pick, self.runs, self.check_out], api_name="start_training")
        for trigger in (self.preset.change, self.start_from.change):
            trigger(ui_errors(defaults), [self.preset, self.start_from],
                    [self.steps, self.batch, self.lr, self.ckpt_every], api_visibility="private")
        self.device.change(_device_note, [self.device], [self.device_note], api_visibility="private")

        def on_project(project):
            runs = run_choices(s, project)
            return (gr.Dropdown(choices=speaker_choices(s, project), value=None),
                    gr.Dropdown(choices=runs, value=runs[0][1] if runs else None),
                    gr.Dropdown(choices=runs, value=None), run_rows(s, project))

        self.current.change(ui_errors(on_project), [self.current],
                            [self.speaker, self.run_pick, self.base_run, self.runs],
                            api_visibility="private")

    def _wire_run_actions(self) -> None:
        s = self.studio

        def act(action, message):
            def handler(project, run_id, *extra):
                if not run_id:
                    raise BadInput("Pick a run first.")
                action(int(run_id), *extra)
                gr.Info(message.format(id=run_id))
                runs = run_choices(s, project)
                keep = int(run_id) if any(v == int(run_id) for _l, v in runs) else None
                return gr.Dropdown(choices=runs, value=keep), run_rows(s, project)
            return ui_errors(handler)

        def delete(run_id, confirmed):
            if not confirmed:
                raise BadInput("Tick 'Yes, delete' to confirm: the run's checkpoints are deleted too.")
            training.delete_run(s.store, s.ws, run_id)

        out = [self.run_pick, self.runs]
        self.resume_btn.click(act(lambda r: training.resume_run(s.store, r), "Run #{id} queued again."),
                              [self.current, self.run_pick], out, api_name="resume_run")
        self.cancel_btn.click(act(lambda r: training.cancel_run(s.store, r),
                                  "Run #{id} stops after saving a checkpoint."),
                              [self.current, self.run_pick], out, api_name="cancel_run")
        self.delete_btn.click(act(delete, "Run #{id} deleted."),
                              [self.current, self.run_pick, self.confirm], out, api_name="delete_run")

    def _wire_watch(self) -> None:
        s = self.studio
        watch_out = [self.status, self.samples, *self.plots, self.ckpt_pick, self.seen]

        def refresh(run_id, x_axis, smoothing, seen, force=False):
            key = _watch_key(s, run_id, x_axis, smoothing)
            if key == seen and not force:
                return [gr.skip()] * (len(watch_out) - 1) + [seen]
            plots = [gr.LinePlot(value=f, x_title=x_axis) for f in plot_frames(s, run_id, x_axis,
                                                                              smoothing)]
            return [status_html(s, run_id), samples_html(s, run_id), *plots,
                    gr.Dropdown(choices=checkpoint_choices(s, run_id)), key]

        def refresh_runs(project, picked, shown):
            rows, choices = run_rows(s, project), run_choices(s, project)
            table, pickers = runs_update(choices, rows, picked, shown)
            return table, *pickers, (rows, choices)

        open_run = ui_errors(lambda r, x, sm, seen: refresh(r, x, sm, seen, force=True))
        for trigger in (self.run_pick.change, self.x_axis.change, self.smoothing.release):
            trigger(open_run, [self.run_pick, self.x_axis, self.smoothing, self.seen], watch_out,
                    api_visibility="private", show_progress="hidden")
        self.timer.tick(ui_errors(refresh), [self.run_pick, self.x_axis, self.smoothing, self.seen],
                        watch_out, api_visibility="private", show_progress="hidden")
        self.timer.tick(ui_errors(refresh_runs), [self.current, self.run_pick, self.shown_runs],
                        [self.runs, self.run_pick, self.base_run, self.shown_runs],
                        api_visibility="private", show_progress="hidden")

    def _wire_voices(self, library) -> None:
        s = self.studio

        def promote(run_id, checkpoint, name):
            if not run_id:
                raise BadInput("Open a run first.")
            voice = training.promote_checkpoint(s.store, s.ws, int(run_id), checkpoint or None,
                                                name or None)
            gr.Info(f"Voice '{voice.name}' is in the library.")
            return (gr.Dropdown(choices=voice_choices(s, run_id), value=voice.key),
                    gr.Dropdown(choices=voice_choices(s)), *library.refreshed(voice.key))

        def sync(run_id, speak_key, base_key):
            """The tab's voice pickers after a library change (a deleted pick is cleared)."""
            return keeping(voice_choices(s, run_id), speak_key), \
                keeping(voice_choices(s), base_key)

        def speak(voice_key, text, run_id):
            if not voice_key:
                raise BadInput("Pick a voice first.")
            if voice_key.startswith(CHECKPOINT_RUN_PREFIX):
                voice = synthesis.checkpoint_voice(s.store, s.ws, int(voice_key.split(":")[1]))
            else:
                voice = voices.get_voice(s.store, s.ws, voice_key, s.registry)
            audio, rate = synthesis.synthesize(text, voice)
            return rate, (np.clip(audio, -1, 1) * 32767).astype(np.int16)

        self.promote_btn.click(ui_errors(promote), [self.run_pick, self.ckpt_pick, self.voice_name],
                               [self.speak_voice, self.base_voice, library.table, library.pick],
                               api_name="promote_checkpoint")
        for change in library.changes:
            change.success(ui_errors(sync), [self.run_pick, self.speak_voice, self.base_voice],
                           [self.speak_voice, self.base_voice], api_visibility="private")
        self.speak_btn.click(ui_errors(speak), [self.speak_voice, self.speak_text, self.run_pick],
                             [self.speak_audio], api_name="speak")
        self.run_pick.change(lambda r: gr.Dropdown(choices=voice_choices(s, r)), [self.run_pick],
                             [self.speak_voice], api_visibility="private")


def runs_update(choices: list[tuple[str, int]], rows: list[list], picked, shown) -> tuple:
    """What the timer sends: (table, [run picker, earlier-run picker]), each ``gr.skip()``
    unless it changed since ``shown`` (the last ``(rows, choices)`` sent).

    The pickers get new choices only when runs came or went or changed status, so an open
    dropdown does not flicker; the user's pick stays unless its run is gone.
    """
    shown_rows, shown_choices = shown or (None, None)
    table = gr.skip() if rows == shown_rows else rows
    if choices == shown_choices:
        return table, [gr.skip(), gr.skip()]
    ids = [v for _l, v in choices]
    run_pick = gr.Dropdown(choices=choices) if picked is None or picked in ids \
        else gr.Dropdown(choices=choices, value=None)
    return table, [run_pick, gr.Dropdown(choices=choices)]


def _need(project: str | None) -> str:
    if not project:
        raise BadInput("Create or open a project first (Projects tab).")
    return project


def _device_note(device: str | None) -> str:
    if device and device.startswith(training.GPUS_PREFIX):
        return ("Each GPU trains on its own batch of the chosen size, in its own process; "
                "the progress and plots follow the first GPU.")
    if device and device.startswith("cuda"):
        return ""
    return ("⚠ **Training on the CPU is very slow** (hours per thousand steps for medium "
            "voices). Use it for `tiny` test runs; train real voices on a GPU.")


def _watch_key(studio: Studio, run_id, x_axis, smoothing) -> str | None:
    """Changes whenever something shown about the run changes (cheap: indexed lookups)."""
    if not run_id:
        return None
    run = training.get_run(studio.store, int(run_id))
    if run.job_id is None:
        return f"{run.id}:{run.status}"
    last = studio.store.one("SELECT step FROM metrics WHERE job_id = ? AND name = 'loss/mel' "
                            "ORDER BY step DESC LIMIT 1", [run.job_id])
    job = studio.store.one("SELECT message, progress FROM jobs WHERE id = ?", [run.job_id]) or {}
    return (f"{run.id}:{run.status}:{last and last['step']}:{run.step}:{job.get('message')}:"
            f"{x_axis}:{smoothing}")


def build(studio: Studio, current: gr.Dropdown, tab_el: gr.Tab | None = None) -> None:
    """Render the Train tab inside the current gr.Tab; opening the tab opens the newest run."""
    tab = _TrainTab(studio, current)
    tab.layout()
    library = voices_panel.build(studio)  # rendered below the tab's own sections
    tab.wire(library)
    if tab_el is not None:
        def open_newest(project, picked):
            runs = run_choices(studio, project)
            ids = [r[1] for r in runs]
            value = picked if picked in ids else (ids[0] if ids else None)
            return gr.Dropdown(choices=runs, value=value)

        tab_el.select(ui_errors(open_newest), [current, tab.run_pick], [tab.run_pick],
                      api_visibility="private")
