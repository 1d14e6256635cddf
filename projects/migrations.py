"""The database schema, as append-only numbered migrations.

Never edit a migration that has shipped: add a new one. A migration that
transforms a table referenced with ``ON DELETE CASCADE`` must be registered with
``transactional=False`` (SQLite rebuilds the table, and inside a transaction the
cascade would fire on the copy).
"""
from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("voice_studio")


@migrations(name="m001_initial")
def m001_initial(db: Database) -> None:
    db.execute("""
        CREATE TABLE projects (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            slug TEXT NOT NULL UNIQUE,
            sample_rate INTEGER NOT NULL DEFAULT 22050,
            language TEXT NOT NULL DEFAULT 'en-us',
            created_at REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size_bytes INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'new',
            error TEXT,
            duration_s REAL,
            sample_rate INTEGER,
            channels INTEGER,
            lufs REAL,
            peak_dbfs REAL,
            rms_dbfs REAL,
            clipped_fraction REAL,
            created_at REAL NOT NULL,
            UNIQUE (project_id, sha256)
        )""")
    db.execute("""
        CREATE TABLE speakers (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            cluster_label INTEGER,
            use_for_training INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE clips (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            source_id INTEGER REFERENCES sources(id) ON DELETE CASCADE,
            speaker_id INTEGER REFERENCES speakers(id) ON DELETE SET NULL,
            path TEXT NOT NULL,
            start_s REAL,
            end_s REAL,
            duration_s REAL NOT NULL,
            text TEXT NOT NULL DEFAULT '',
            words TEXT NOT NULL DEFAULT '[]',
            quality TEXT NOT NULL DEFAULT '{}',
            flags TEXT NOT NULL DEFAULT '[]',
            embedding BLOB,
            review TEXT NOT NULL DEFAULT 'unreviewed',
            created_at REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            project_id INTEGER REFERENCES projects(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT '{}',
            result TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'queued',
            heavy INTEGER NOT NULL DEFAULT 0,
            progress REAL NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT '',
            eta_s REAL,
            error TEXT,
            pid INTEGER,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            started_at REAL,
            heartbeat_at REAL,
            finished_at REAL
        )""")
    db.execute("""
        CREATE TABLE metrics (
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            t REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE voices (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            slug TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            language TEXT NOT NULL DEFAULT '',
            sample_rate INTEGER,
            origin TEXT NOT NULL DEFAULT '',
            path TEXT NOT NULL,
            size_bytes INTEGER NOT NULL DEFAULT 0,
            config TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        )""")
    db.execute("CREATE INDEX idx_sources_project ON sources(project_id)")
    db.execute("CREATE INDEX idx_clips_project_speaker ON clips(project_id, speaker_id)")
    db.execute("CREATE INDEX idx_jobs_status ON jobs(status, created_at)")
    db.execute("CREATE INDEX idx_metrics_job_name_step ON metrics(job_id, name, step)")


@migrations(name="m002_project_settings")
def m002_project_settings(db: Database) -> None:
    # Remembered per-project choices (dataset build parameters, narration defaults).
    db["projects"].add_column("settings", str, not_null_default="{}")


@migrations(name="m003_dataset")
def m003_dataset(db: Database) -> None:
    # 'cluster' speakers are rebuilt by re-clustering; 'user' ones (named, merged,
    # split or created by hand in Review) keep their clips.
    db["speakers"].add_column("origin", str, not_null_default="cluster")
    # A rebuild of the same source never duplicates a clip.
    db.execute("CREATE UNIQUE INDEX idx_clips_source_span ON clips(source_id, start_s, end_s) "
               "WHERE source_id IS NOT NULL")


@migrations(name="m004_books")
def m004_books(db: Database) -> None:
    # Books to narrate, per project; chapters keep their text so edits are saved at once.
    db.execute("""
        CREATE TABLE books (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            author TEXT NOT NULL DEFAULT '',
            language TEXT NOT NULL DEFAULT '',
            source_format TEXT NOT NULL DEFAULT '',
            source_path TEXT NOT NULL DEFAULT '',
            cover_path TEXT,
            cover_mime TEXT,
            settings TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE chapters (
            id INTEGER PRIMARY KEY,
            book_id INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            title TEXT NOT NULL,
            text TEXT NOT NULL,
            included INTEGER NOT NULL DEFAULT 1,
            voice TEXT,
            audio_path TEXT,
            audio_key TEXT,
            report TEXT NOT NULL DEFAULT '{}',
            updated_at REAL NOT NULL
        )""")
    # Sentences as last planned for narration; cache_key names the audio in the cache.
    db.execute("""
        CREATE TABLE sentences (
            id INTEGER PRIMARY KEY,
            chapter_id INTEGER NOT NULL REFERENCES chapters(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            paragraph INTEGER NOT NULL DEFAULT 0,
            text TEXT NOT NULL,
            normalized TEXT NOT NULL DEFAULT '',
            cache_key TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'new',
            wer REAL,
            heard TEXT
        )""")
    db.execute("""
        CREATE TABLE lexicon (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            word TEXT NOT NULL,
            replacement TEXT NOT NULL,
            UNIQUE (project_id, word)
        )""")
    db.execute("CREATE INDEX idx_books_project ON books(project_id)")
    db.execute("CREATE INDEX idx_chapters_book ON chapters(book_id, position)")
    db.execute("CREATE INDEX idx_sentences_chapter ON sentences(chapter_id, position)")


@migrations(name="m005_review")
def m005_review(db: Database) -> None:
    # Undo log of Review edits: payload holds the rows (or columns) to put back
    # and the rows and files the edit created.
    db.execute("""
        CREATE TABLE edits (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            action TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        )""")
    # A recording session: a prompt list read by one speaker, resumable.
    db.execute("""
        CREATE TABLE prompt_sessions (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            speaker_id INTEGER REFERENCES speakers(id) ON DELETE SET NULL,
            name TEXT NOT NULL,
            prompts TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""")
    # The saved take of each prompt; re-recording replaces it.
    db.execute("""
        CREATE TABLE prompt_takes (
            session_id INTEGER NOT NULL REFERENCES prompt_sessions(id) ON DELETE CASCADE,
            prompt_index INTEGER NOT NULL,
            clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            PRIMARY KEY (session_id, prompt_index)
        )""")
    db.execute("CREATE INDEX idx_edits_project ON edits(project_id, id)")


@migrations(name="m006_training")
def m006_training(db: Database) -> None:
    # A training run: its status is its job's; files live in out_dir (config.json,
    # checkpoints, samples). best_* follow the validation mel loss.
    db.execute("""
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            speaker_id INTEGER REFERENCES speakers(id) ON DELETE SET NULL,
            job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            kind TEXT NOT NULL DEFAULT 'vits',
            name TEXT NOT NULL DEFAULT '',
            preset TEXT NOT NULL DEFAULT '',
            base TEXT NOT NULL DEFAULT '{}',
            config TEXT NOT NULL DEFAULT '{}',
            out_dir TEXT NOT NULL DEFAULT '',
            max_steps INTEGER NOT NULL DEFAULT 0,
            step INTEGER NOT NULL DEFAULT 0,
            best_step INTEGER,
            best_val REAL,
            last_checkpoint TEXT,
            created_at REAL NOT NULL
        )""")
    db.execute("CREATE INDEX idx_runs_project ON runs(project_id, id)")


@migrations(name="m007_dataset_stages")
def m007_dataset_stages(db: Database) -> None:
    # The settings a source's clips were built with (a hash): a rebuild with the
    # same settings skips it, a rebuild with new ones replaces its untouched clips.
    db["sources"].add_column("build_key", str)
