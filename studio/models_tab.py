"""Models tab: the machine check (doctor) and the pretrained model registry."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from projects import jobs
from projects.doctor import run_doctor
from studio.common import Studio, ui_errors

DOCTOR_HEADERS = ["Check", "Status", "Detail", "Fix"]
MODEL_HEADERS = ["Model", "Task", "Installed", "Size (MB)", "Licence", "Source"]


def doctor_rows(studio: Studio) -> list[list]:
    """The doctor report as table rows."""
    return [[c.name, c.level, c.detail, c.fix] for c in run_doctor(studio.ws, studio.registry)]


def model_rows(studio: Studio) -> list[list]:
    """The registry as table rows."""
    return [[r["id"], r["task"], "yes" if r["installed"] else "no",
             r["size_mb"] or "", r["licence"], r["source"]] for r in studio.registry.status()]


def _missing(studio: Studio) -> list[str]:
    return [r["id"] for r in studio.registry.status() if not r["installed"]]


def build(studio: Studio, tab: gr.Tab) -> None:
    """Render the tab; the machine check runs when the tab is opened (it imports torch)."""
    gr.Markdown("### This machine\nChecked without any network access.")
    doctor = gr.Dataframe(headers=DOCTOR_HEADERS, interactive=False, elem_id="doctor-table",
                          wrap=True)
    recheck = gr.Button("Check again", elem_id="doctor-recheck")
    gr.Markdown("### Pretrained models\nThe defaults come with the install. Larger models "
                "download on demand (checksum verified) or import from files you already have.")
    table = gr.Dataframe(value=model_rows(studio), headers=MODEL_HEADERS, interactive=False,
                         elem_id="models-table", wrap=True)
    with gr.Row():
        pick = gr.Dropdown(label="Model", choices=_missing(studio), elem_id="model-pick", scale=3)
        download_btn = gr.Button("Download", variant="primary", elem_id="model-download", scale=1)
    with gr.Row():
        upload = gr.File(label="Model files to import", file_count="multiple", type="filepath",
                         elem_id="model-import-files", scale=3)
        import_btn = gr.Button("Import files", elem_id="model-import", scale=1)

    @ui_errors
    def download(model_id: str | None):
        if not model_id:
            raise gr.Error("Pick a model to download.")
        studio.registry.get(model_id)
        job = jobs.submit(studio.store, "model_download", {"model_id": model_id},
                          title=f"Download {model_id}")
        gr.Info(f"Downloading {model_id} as job #{job.id}; see the Jobs panel.")

    @ui_errors
    def import_files(model_id: str | None, paths: list[str] | None):
        if not model_id or not paths:
            raise gr.Error("Pick a model and choose its files.")
        studio.registry.import_files(model_id, [Path(p) for p in paths])
        gr.Info(f"Imported {model_id}.")
        return model_rows(studio), gr.Dropdown(choices=_missing(studio), value=None), None

    check = ui_errors(lambda: (doctor_rows(studio), model_rows(studio)))
    recheck.click(check, None, [doctor, table], api_name="doctor")
    tab.select(check, None, [doctor, table], api_visibility="private")
    download_btn.click(download, [pick], None, api_name="download_model")
    import_btn.click(import_files, [pick, upload], [table, pick, upload], api_name="import_model")
