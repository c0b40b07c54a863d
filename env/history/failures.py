"""What is wrong with a run-history file, in one sentence.

SQLite's result codes tell a lock held by another writer (the writer waits and retries)
apart from storage gone bad: a corrupt file, a read-only or full one, one that cannot be
opened. :func:`describe` is what the store tells the user, once, when it gives a file up.
"""

from __future__ import annotations

import os

from cartpole_tui.env.history.schema import UnusableSchema
from cartpole_tui.env.paths import NotRegularFile

# SQLite primary result codes (sqlite3.h), for telling bad storage apart.
_BUSY, _LOCKED, _READONLY, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 11, 13, 14, 26


def _primary_code(error: BaseException) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF if isinstance(code, int) else None


def is_locked(error: BaseException) -> bool:
    """Whether ``error`` says another writer holds the lock (waiting may help)."""
    return _primary_code(error) in (_BUSY, _LOCKED)


def writable(path: str) -> bool:
    """Whether ``path`` (or, before it exists, its folder) may be written: false on a read-only
    filesystem or an immutable file, even for root."""
    return os.access(path if os.path.exists(path) else os.path.dirname(os.path.abspath(path)), os.W_OK)


def describe(error: BaseException, path: str, *, in_memory: bool = True) -> str:
    """One clear sentence about what is wrong with the database at ``path``; ``in_memory``: and that
    the session carries on in memory (a store opened for writing; a read, the export, just fails)."""
    text = str(error)
    primary = _primary_code(error)
    detail = f" ({text})"
    if isinstance(error, UnusableSchema):
        what, detail = text, ""
    elif isinstance(error, NotRegularFile):
        what, detail = "is not a regular file (a FIFO, device or folder)", ""
    elif isinstance(error, OSError):
        what = "cannot be created"
    elif primary in (_CORRUPT, _NOTADB) or "not a database" in text or "malformed" in text:
        what = "is corrupt or not a database"
    elif primary in (_BUSY, _LOCKED) or "locked" in text:
        what = "is locked by another writer"
    elif primary == _READONLY or "readonly" in text or not writable(path):
        what = "is read-only"
    elif primary == _FULL or "full" in text:
        what = "is full"
    elif primary == _CANTOPEN or "unable to open" in text:
        what = "cannot be opened"
    else:
        what = "failed"
    if not in_memory:
        return f"Run history {path} {what}{detail}."
    return (
        f"Run history {path} {what}{detail}: this session's runs are kept in memory "
        "only; runs already saved there are left as they are."
    )
