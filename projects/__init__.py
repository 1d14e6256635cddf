"""The application: the SQLite store, workspace files, background jobs and the
workflows that run engines and keep their results."""
