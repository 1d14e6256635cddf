"""The studio: one gr.Blocks with a tab per journey, a project picker and a jobs panel."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import gradio as gr

from projects import jobs
from projects.errors import BadInput
from projects.registry import Registry
from projects.store import Store
from projects.workspace import Workspace
from studio import dataset_tab, jobs_panel, models_tab, narrate_tab, projects_tab, review_tab
from studio import train_tab
from studio.common import Studio, coming_soon

TITLE = "Voice Studio"
LOCALHOST = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"
#: How often the main thread wakes while the server runs, in seconds.
WAIT_S = 0.5


def build_app(studio: Studio) -> gr.Blocks:
    """Assemble every tab around one shared project picker."""
    with gr.Blocks(title=TITLE) as app:
        with gr.Row(equal_height=True):
            gr.Markdown(f"# {TITLE}")
            current = gr.Dropdown(label="Open project", choices=projects_tab.project_names(studio),
                                  elem_id="current-project", scale=2, allow_custom_value=False)
        with gr.Tabs():
            with gr.Tab("Projects", id="projects"):
                projects_tab.build(studio, current)
            with gr.Tab("Dataset", id="dataset"):
                dataset_tab.build(studio, current)
            with gr.Tab("Review", id="review"):
                review_tab.build(studio, current)
            with gr.Tab("Train", id="train") as train:
                train_tab.build(studio, current, train)
            with gr.Tab("Narrate", id="narrate"):
                narrate_tab.build(studio, current)
            with gr.Tab("Convert", id="convert"):
                coming_soon("Convert", ["turn any recording or microphone take into an RVC voice"])
            with gr.Tab("Models", id="models") as models:
                models_tab.build(studio, models)
        jobs_panel.build(studio)

        def on_load():
            names = projects_tab.project_names(studio)
            return gr.Dropdown(choices=names, value=names[0] if names else None)

        app.load(on_load, None, [current], api_visibility="private")
        def list_jobs() -> list[dict]:
            """Recent jobs with their status and progress (for scripts)."""
            return [{"id": j.id, "kind": j.kind, "title": j.title, "status": j.status,
                     "progress": j.progress, "message": j.message, "error": j.error}
                    for j in jobs.list_jobs(studio.store)]

        gr.api(list_jobs, api_name="list_jobs")
    return app


def _parse_auth(auth: str | None) -> tuple[str, str] | None:
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise BadInput("--auth must look like USER:PASSWORD.")
    return user, password


def _setup_logging(ws: Workspace) -> None:
    handler = logging.FileHandler(ws.root / "logs" / "studio.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler, logging.StreamHandler()])
    logging.getLogger("httpx").setLevel(logging.WARNING)


def open_studio(workspace: Path | str) -> Studio:
    """Open the workspace, upgrade its database and mark orphaned jobs interrupted."""
    ws = Workspace.open(workspace)
    store = Store(ws.db_path)
    jobs.reap_orphans(store)
    return Studio(ws=ws, store=store, registry=Registry())


def serve(workspace: Path | str, port: int = 7860, listen: bool = False,
          auth: str | None = None, open_browser: bool = True, block: bool = True):
    """Start the job runner and the web server. Returns the exit code (or the app)."""
    try:
        credentials = _parse_auth(auth)
        if listen and not credentials:
            raise BadInput("--listen exposes the studio to your network; "
                           "add --auth USER:PASSWORD to protect it.")
        studio = open_studio(workspace)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _setup_logging(studio.ws)
    runner = jobs.JobRunner(studio.ws)
    runner.start()
    app = build_app(studio)
    host = ALL_INTERFACES if listen else LOCALHOST
    print(f"Voice Studio: http://{LOCALHOST if not listen else host}:{port}  "
          f"(workspace {studio.ws.root})", flush=True)
    app.queue(default_concurrency_limit=4)
    app.launch(server_name=host, server_port=port, auth=credentials,
               inbrowser=open_browser, prevent_thread_lock=True, quiet=True,
               allowed_paths=[str(studio.ws.root)], css=jobs_panel.CSS,
               theme=gr.themes.Soft(), footer_links=["api"])
    if not block:
        return app
    _wait_for_ctrl_c()
    runner.stop()
    app.close()
    print("Voice Studio stopped.", flush=True)
    return 0


def _wait_for_ctrl_c() -> None:
    """Block until Ctrl-C, which is how a user stops the studio: not an error to report."""
    try:
        while True:
            time.sleep(WAIT_S)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
