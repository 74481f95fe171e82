"""The project store: one SQLite file per project (``ProjectStore`` in ``project.py``), its schema, rows,
queries, import, edit history and single-writer lock."""
