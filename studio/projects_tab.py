"""Projects tab: create, open, rename and delete projects."""
from __future__ import annotations

import gradio as gr

from projects import projects as project_store
from studio.common import Studio, duration, ui_errors

HEADERS = ["Project", "Recordings", "Audio", "Clips", "Speakers", "Folder"]


def project_names(studio: Studio) -> list[str]:
    """Names for the project pickers, newest first."""
    return [p.name for p in project_store.list_projects(studio.store)]


def project_rows(studio: Studio) -> list[list]:
    """The projects table."""
    rows = []
    for p in project_store.list_projects(studio.store):
        st = project_store.project_stats(studio.store, p.id)
        rows.append([p.name, st["sources"], duration(st["seconds"]), st["clips"],
                     st["speakers"], str(studio.ws.project_dir(p.slug))])
    return rows


def build(studio: Studio, current: gr.Dropdown) -> None:
    """Render the tab and wire it to the header's project picker."""
    gr.Markdown("A project holds the recordings, clips, speakers and training runs of one "
                "voice dataset. Pick the open project at the top of the page.")
    table = gr.Dataframe(value=project_rows(studio), headers=HEADERS, interactive=False,
                         elem_id="projects-table", label="Projects")
    with gr.Row():
        new_name = gr.Textbox(label="New project name", placeholder="e.g. Grandpa's stories",
                              elem_id="new-project-name", scale=3)
        create_btn = gr.Button("Create project", variant="primary", elem_id="create-project",
                               scale=1)
    with gr.Row():
        rename_to = gr.Textbox(label="Rename the open project to", elem_id="rename-to", scale=3)
        rename_btn = gr.Button("Rename", elem_id="rename-project", scale=1)
    with gr.Row():
        delete_btn = gr.Button("Delete the open project...", variant="stop",
                               elem_id="delete-project")
    with gr.Row(visible=False) as confirm_row:
        confirm_text = gr.Markdown()
        confirm_btn = gr.Button("Yes, delete it and all its files", variant="stop",
                                elem_id="confirm-delete")
        keep_btn = gr.Button("Keep it", elem_id="keep-project")

    def picker(value: str | None) -> gr.Dropdown:
        return gr.Dropdown(choices=project_names(studio), value=value)

    @ui_errors
    def create(name: str):
        project = project_store.create_project(studio.store, studio.ws, name)
        gr.Info(f"Created project '{project.name}'.")
        return project_rows(studio), picker(project.name), ""

    @ui_errors
    def rename(project: str | None, new: str):
        if not project:
            raise gr.Error("Open a project first.")
        renamed = project_store.rename_project(studio.store, project, new)
        return project_rows(studio), picker(renamed.name), ""

    @ui_errors
    def ask_delete(project: str | None):
        if not project:
            raise gr.Error("Open a project first.")
        st = project_store.project_stats(studio.store, project_store.get_project(
            studio.store, project).id)
        text = (f"**Delete '{project}'?** Its {st['sources']} recordings, {st['clips']} clips "
                "and every file in its folder will be removed. This cannot be undone.")
        return gr.Row(visible=True), text

    @ui_errors
    def delete(project: str | None):
        if not project:
            raise gr.Error("Open a project first.")
        project_store.delete_project(studio.store, studio.ws, project)
        gr.Info(f"Deleted project '{project}'.")
        names = project_names(studio)
        return project_rows(studio), picker(names[0] if names else None), gr.Row(visible=False)

    create_btn.click(create, [new_name], [table, current, new_name], api_name="create_project")
    new_name.submit(create, [new_name], [table, current, new_name], api_visibility="private")
    rename_btn.click(rename, [current, rename_to], [table, current, rename_to],
                     api_name="rename_project")
    delete_btn.click(ask_delete, [current], [confirm_row, confirm_text], api_visibility="private")
    confirm_btn.click(delete, [current], [table, current, confirm_row], api_name="delete_project")
    keep_btn.click(lambda: gr.Row(visible=False), None, [confirm_row], api_visibility="private")
    current.change(lambda: project_rows(studio), None, [table], api_visibility="private")
