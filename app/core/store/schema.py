"""The project file's SQLite schema and the pragmas every connection uses.

One file per dataset. Masks are kept as compressed COCO RLE counts (ASCII text) with their image size;
area and bbox are stored beside them so listings can filter and sort in SQL without decoding anything:
the annotation's own values while it is unedited and carries them (what export writes back, and what
COCO's size classes are computed from), the mask's pixel count and tight box otherwise.
``seq`` keeps the order records had in the imported file so export writes them back in that order; for
instances it is the rowid, so export reads the table front to back and ``id`` lookups use a unique index.
The bulky part of an instance (its RLE counts and imported polygons, about 1 kB for LVIS) lives in
``instance_masks``, keyed by instance id, so that filtering, sorting and counting scan a narrow table.
Imported polygons are stored as the file's text without counts (NULL) until the instance's mask is first
changed: rasterising every polygon at import would cost as much as parsing the file (format 2; format 1
files always have counts and open unchanged, docs/decisions/0011).
"""
from __future__ import annotations

import sqlite3

FORMAT_VERSION = 2
PROJECT_SUFFIX = ".srproj"
BUSY_TIMEOUT_S = 5.0
"""How long a connection waits for another program's write to finish before it gives up with a message."""

SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    file_name TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    neg_category_ids TEXT,
    not_exhaustive_category_ids TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE categories (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    supercategory TEXT,
    frequency TEXT,
    synset TEXT,
    synonyms TEXT,
    definition TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE instances (
    seq INTEGER PRIMARY KEY,
    id INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id),
    category_id INTEGER NOT NULL REFERENCES categories(id),
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    score REAL,
    iscrowd INTEGER NOT NULL DEFAULT 0,
    area REAL NOT NULL,
    bbox_x REAL NOT NULL,
    bbox_y REAL NOT NULL,
    bbox_w REAL NOT NULL,
    bbox_h REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'unreviewed',
    prov_kind TEXT NOT NULL DEFAULT 'imported',
    prov_weights TEXT,
    prov_mode TEXT,
    prov_steps INTEGER,
    prov_time REAL NOT NULL,
    z_order INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0,
    hidden INTEGER NOT NULL DEFAULT 0,
    changed_pixels INTEGER,
    mean_confidence REAL,
    source_format TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE instance_masks (
    instance_id INTEGER PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
    counts TEXT,
    original_segmentation BLOB
);
CREATE TABLE edits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    action TEXT NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    before_counts TEXT,
    after_counts TEXT,
    before_state TEXT,
    after_state TEXT,
    params TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE session_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Built after a bulk import: filling indexed tables row by row is slower than indexing once. Category and
# status together cover ``stats``' per-category counts (no table row is read); area serves its histogram as
# range counts, and the instance list's sort and filter by area. Projects made before the last two keep
# instances_by_category(category_id) and are counted by scanning the table (query.count_areas).
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS instances_by_id ON instances(id);
CREATE INDEX IF NOT EXISTS instances_by_image ON instances(image_id, z_order);
CREATE INDEX IF NOT EXISTS instances_by_category_status ON instances(category_id, status);
CREATE INDEX IF NOT EXISTS instances_by_area ON instances(area);
CREATE INDEX IF NOT EXISTS edits_by_instance ON edits(instance_id);
"""


def configure(conn: sqlite3.Connection, *, read_only: bool) -> None:
    """Pragmas for every connection: foreign keys on, waits ``BUSY_TIMEOUT_S`` for another writer; writers
    use WAL with a full fsync per commit.

    ``synchronous=FULL`` makes a committed edit survive a power cut, not just a killed process; one fsync
    per accepted edit is far below what an annotator can notice.
    """
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {round(BUSY_TIMEOUT_S * 1000)}")
    if not read_only:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
