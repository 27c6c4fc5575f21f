"""Evaluation cache: a rank vector is never evaluated twice.

Keys are ``(target fingerprint, evaluation-data fingerprint, ranks)``. Every cache keeps an
in-memory dictionary; given a path it also keeps an SQLite file in WAL mode that several
processes (a ``SubprocVecEnv``, parallel searches) can share: writes are single ``INSERT OR
IGNORE`` statements in their own transactions, so concurrent writers never lose or corrupt
a record, and the first value written for a key wins.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

__all__ = ["EvaluationCache", "cache_key"]


def cache_key(target_fingerprint: str, data_fingerprint: str, ranks: Sequence[int]) -> str:
    return f"{target_fingerprint}|{data_fingerprint}|{','.join(str(int(r)) for r in ranks)}"


class EvaluationCache:
    """Error of each evaluated rank vector, in memory and optionally in SQLite.

    Args:
        path: SQLite file to share between processes and runs, or None for memory only.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._memory: dict[str, float] = {}
        self._connection: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> dict:
        # Connections do not cross process boundaries; each process opens its own.
        return {**self.__dict__, "_connection": None}

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS evaluations ("
                "key TEXT PRIMARY KEY, error REAL NOT NULL, ranks TEXT NOT NULL)"
            )
            self._connection = connection
        return self._connection

    def get(self, key: str) -> float | None:
        """The cached error for ``key``, counting a hit or a miss."""
        value = self._memory.get(key)
        if value is None and self.path is not None:
            row = self._db().execute("SELECT error FROM evaluations WHERE key = ?", (key,)).fetchone()
            if row is not None:
                value = float(row[0])
                self._memory[key] = value
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def peek(self, key: str) -> float | None:
        """The cached error for ``key`` without counting a hit or a miss."""
        hits, misses = self.hits, self.misses
        value = self.get(key)
        self.hits, self.misses = hits, misses
        return value

    def put(self, key: str, error: float) -> float:
        """Store ``error`` for ``key``; returns the stored value (an earlier one wins)."""
        if self.path is not None:
            db = self._db()
            ranks = json.dumps([int(r) for r in key.rsplit("|", 1)[1].split(",") if r])
            db.execute(
                "INSERT OR IGNORE INTO evaluations (key, error, ranks) VALUES (?, ?, ?)",
                (key, float(error), ranks),
            )
            error = float(db.execute("SELECT error FROM evaluations WHERE key = ?", (key,)).fetchone()[0])
        self._memory[key] = float(error)
        return float(error)

    def __len__(self) -> int:
        if self.path is not None:
            return int(self._db().execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
        return len(self._memory)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
