"""Projects: a named folder of recordings, clips, runs and exports, plus its rows."""
from __future__ import annotations

import shutil
import sqlite3

from projects.errors import Conflict, NotFound
from projects.records import Project, from_row
from projects.store import Store, now
from projects.workspace import Workspace, check_display_name, slugify

PROJECT_SUBDIRS = ("sources", "clips", "runs", "exports")


def list_projects(store: Store) -> list[Project]:
    """Every project, newest first."""
    rows = store.all("SELECT * FROM projects ORDER BY created_at DESC, id DESC")
    return [from_row(Project, r) for r in rows]


def get_project(store: Store, name_or_id: str | int) -> Project:
    """A project by id or by name (case-insensitive); NotFound otherwise."""
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        row = store.one("SELECT * FROM projects WHERE id = ?", [int(name_or_id)])
    else:
        row = None
    if row is None:
        row = store.one("SELECT * FROM projects WHERE name = ? COLLATE NOCASE",
                        [str(name_or_id).strip()])
    if row is None:
        raise NotFound(f"No project called '{name_or_id}'.")
    return from_row(Project, row)


def _free_slug(store: Store, name: str) -> str:
    base = slugify(name)
    slug, n = base, 2
    while store.one("SELECT 1 FROM projects WHERE slug = ?", [slug]):
        slug, n = f"{base}-{n}", n + 1
    return slug


def create_project(store: Store, ws: Workspace, name: str, sample_rate: int = 22050,
                   language: str = "en-us") -> Project:
    """Create a project row and its folder; Conflict if the name is taken."""
    name = check_display_name(name, "Project name")
    if store.one("SELECT 1 FROM projects WHERE name = ? COLLATE NOCASE", [name]):
        raise Conflict(f"A project called '{name}' already exists.")
    slug = _free_slug(store, name)
    try:
        pid = store.db["projects"].insert(
            {"name": name, "slug": slug, "sample_rate": sample_rate,
             "language": language, "created_at": now()}).last_pk
    except sqlite3.IntegrityError as err:  # a concurrent create won the race
        raise Conflict(f"A project called '{name}' already exists.") from err
    for sub in PROJECT_SUBDIRS:
        (ws.project_dir(slug) / sub).mkdir(parents=True, exist_ok=True)
    return get_project(store, pid)


def rename_project(store: Store, name_or_id: str | int, new_name: str) -> Project:
    """Rename a project; its folder keeps its slug so stored paths stay valid."""
    project = get_project(store, name_or_id)
    new_name = check_display_name(new_name, "Project name")
    clash = store.one("SELECT id FROM projects WHERE name = ? COLLATE NOCASE", [new_name])
    if clash and clash["id"] != project.id:
        raise Conflict(f"A project called '{new_name}' already exists.")
    store.db["projects"].update(project.id, {"name": new_name})
    return get_project(store, project.id)


def delete_project(store: Store, ws: Workspace, name_or_id: str | int) -> Project:
    """Delete a project's rows (cascading) and its folder. Refused while a job runs."""
    project = get_project(store, name_or_id)
    running = store.one("SELECT id FROM jobs WHERE project_id = ? AND status IN "
                        "('queued','running')", [project.id])
    if running:
        raise Conflict(f"Project '{project.name}' has job #{running['id']} running; "
                       "cancel it first.")
    store.db.execute("DELETE FROM projects WHERE id = ?", [project.id])
    shutil.rmtree(ws.project_dir(project.slug), ignore_errors=True)
    return project


def project_stats(store: Store, project_id: int) -> dict:
    """Counts shown on the Projects tab."""
    return store.one("""
        SELECT (SELECT COUNT(*) FROM sources WHERE project_id = :p) AS sources,
               (SELECT COALESCE(SUM(duration_s), 0) FROM sources WHERE project_id = :p) AS seconds,
               (SELECT COUNT(*) FROM clips WHERE project_id = :p) AS clips,
               (SELECT COUNT(*) FROM speakers WHERE project_id = :p) AS speakers
        """, {"p": project_id})
