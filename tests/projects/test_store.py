"""The SQLite store: migrations, records, per-thread connections."""
import threading

import pytest
from sqlite_utils import Database

from projects import projects as project_store
from projects.errors import BadInput, Conflict, NotFound
from projects.migrations import migrations
from projects.store import Store


def test_migrations_create_every_table_on_a_fresh_database():
    db = Database(memory=True)
    migrations.apply(db)
    assert {"projects", "sources", "clips", "speakers", "jobs", "metrics", "voices"} <= set(
        db.table_names())
    assert migrations.pending(db) == []


def test_database_from_an_older_migration_upgrades_with_data_intact(tmp_path):
    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before="m002_project_settings")
    old["projects"].insert({"name": "Old", "slug": "old", "created_at": 1.0})
    old.close()

    store = Store(path)  # opening applies what is pending
    assert "m002_project_settings" in store.schema_version()
    assert migrations.pending(store.db) == []
    row = store.one("SELECT * FROM projects WHERE slug = 'old'")
    assert row["name"] == "Old" and row["settings"] == "{}"


def test_store_uses_wal_and_foreign_keys(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_each_thread_gets_its_own_connection(store):
    seen = []
    t = threading.Thread(target=lambda: seen.append(store.db))
    t.start()
    t.join()
    assert seen[0] is not store.db


def test_project_lifecycle_creates_renames_and_deletes_folder(store, ws):
    p = project_store.create_project(store, ws, "  Grandpa's   Stories ")
    assert p.name == "Grandpa's Stories"
    folder = ws.project_dir(p.slug)
    assert (folder / "sources").is_dir()
    with pytest.raises(Conflict):
        project_store.create_project(store, ws, "grandpa's stories")
    renamed = project_store.rename_project(store, p.id, "Stories")
    assert project_store.get_project(store, "stories").id == p.id == renamed.id
    project_store.delete_project(store, ws, "Stories")
    assert not folder.exists()
    with pytest.raises(NotFound):
        project_store.get_project(store, p.id)


def test_deleting_a_project_cascades_to_its_rows(store, ws, project):
    store.db["sources"].insert({"project_id": project.id, "name": "a", "path": "x",
                                "sha256": "00", "created_at": 0})
    store.db["jobs"].insert({"project_id": project.id, "kind": "analyse", "status": "done",
                             "created_at": 0})
    project_store.delete_project(store, ws, project.id)
    assert store.one("SELECT COUNT(*) AS n FROM sources")["n"] == 0
    assert store.one("SELECT COUNT(*) AS n FROM jobs")["n"] == 0


def test_project_with_a_running_job_cannot_be_deleted(store, ws, project):
    store.db["jobs"].insert({"project_id": project.id, "kind": "analyse",
                             "status": "running", "created_at": 0})
    with pytest.raises(Conflict):
        project_store.delete_project(store, ws, project.id)


@pytest.mark.parametrize("name", ["", "   ", "x" * 200])
def test_bad_project_names_are_refused(store, ws, name):
    with pytest.raises(BadInput):
        project_store.create_project(store, ws, name)
