"""Helpers for the bot tests: copying, fingerprinting and opening SQLite bot databases."""
from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

from bot.responder import BotSettings


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite database (WAL content included), via SQLite's backup API."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def table_digest(path: Path) -> tuple[dict[str, int], str]:
    """Row counts per table and a hash of every row of every table, in rowid order."""
    digest = hashlib.sha256()
    counts = {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            rows = connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
            counts[table] = len(rows)
            digest.update(table.encode() + repr(rows).encode())
    return counts, digest.hexdigest()


def settings_for(path: Path, **overrides) -> BotSettings:
    return BotSettings(database_url=f"sqlite:///{path}", show_progress=False, **overrides)
