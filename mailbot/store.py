"""SQLite state (sqlite-utils): messages, reports, progress with history, outbox.

Progress is keyed by (round, unit, task). ``progress`` holds the current text,
``progress_history`` every version with the report and message it came from.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .errors import MailbotError

if TYPE_CHECKING:  # imported where a database is opened: parse workers never load it
    import sqlite_utils

SCHEMA_VERSION = 5


class SchemaError(MailbotError):
    """The database was written by a newer mailbot, or a migration failed."""


_clock: Callable[[], dt.datetime] | None = None


def now_utc() -> dt.datetime:
    """The one clock every rule reads (DESIGN invariant 9: time is an input)."""
    return _clock() if _clock is not None else dt.datetime.now(dt.timezone.utc)


def set_clock(clock: Callable[[], dt.datetime] | None) -> None:
    """Replace the clock (tests, simulations); None restores the wall clock."""
    global _clock
    _clock = clock


def iso(t: dt.datetime) -> str:
    """UTC ISO-8601: stored times compare correctly as text."""
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def open_db(path: str | os.PathLike) -> sqlite_utils.Database:
    """Open (and create or migrate) the state database: WAL, foreign keys, busy timeout."""
    import sqlite_utils

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.conn.execute("PRAGMA busy_timeout = 30000")
    db.conn.execute("PRAGMA foreign_keys = ON")
    if db.journal_mode != "wal":
        db.enable_wal()
    db.conn.execute("PRAGMA synchronous = FULL")
    ensure_schema(db)
    return db


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create the schema, or bring an older database up to date one migration at a time.

    A new database gets version 1 and then every migration, so new and migrated
    databases are the same. Before migrating a database that holds data, a copy is
    taken beside it (``<name>.v<N>-backup``) with SQLite's online backup API.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"数据库 {db.conn.execute('PRAGMA database_list').fetchone()[2]} 由更新版本的 mailbot 创建（结构版本 {version}，"
            f"本程序为 {SCHEMA_VERSION}）：请升级 mailbot，或从备份恢复"
        )
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        _create_v1(db)
        version = 1
    else:
        _backup_before_migration(db, version)
    for target, migrate in MIGRATIONS:
        if target <= version:
            continue
        try:
            with write_transaction(db):  # BEGIN IMMEDIATE: a second process waits, then sees it done
                if db.execute("PRAGMA user_version").fetchone()[0] >= target:
                    continue
                migrate(db)
                db.execute(f"PRAGMA user_version = {target}")
        except Exception as err:
            raise SchemaError(f"数据库结构升级到版本 {target} 失败（{type(err).__name__}: {err}）：数据库未改动，请联系管理员") from err
        version = target


def _backup_before_migration(db: sqlite_utils.Database, version: int) -> None:
    path = db.conn.execute("PRAGMA database_list").fetchone()[2]
    if not path:  # in-memory
        return
    import sqlite3

    target = Path(f"{path}.v{version}-backup")
    if target.exists():
        return
    dest = sqlite3.connect(target)
    try:
        db.conn.backup(dest)
    finally:
        dest.close()


def _create_v1(db: sqlite_utils.Database) -> None:
    with write_transaction(db):
        if db.execute("PRAGMA user_version").fetchone()[0] != 0:
            return  # another process created it meanwhile (we read 0 before taking the lock)
        db["messages"].create(
            {
                "id": int,
                "sha256": str,
                "message_id": str,
                "source": str,
                "folder": str,
                "uidvalidity": int,
                "uid": int,
                "received_at": str,
                "from_addr": str,
                "from_name": str,
                "subject": str,
                "status": str,
                "reason": str,
                "reason_code": str,
                "unit": str,
                "verified": int,
                "round": str,
                "late": int,
                "archive_path": str,
                "duplicate_of": int,
                "warnings": str,
                "files": str,
                "processed_at": str,
            },
            pk="id",
            not_null={"sha256", "status", "received_at", "processed_at"},
            foreign_keys=[("duplicate_of", "messages", "id")],
            if_not_exists=True,
        )
        db["messages"].create_index(["sha256"], if_not_exists=True)
        db["messages"].create_index(["message_id"], if_not_exists=True)
        db["messages"].create_index(["folder", "uidvalidity", "uid"], if_not_exists=True)
        db["reports"].create(
            {
                "id": int,
                "message": int,
                "round": str,
                "unit": str,
                "verified": int,
                "late": int,
                "received_at": str,
                "filename": str,
                "file_sha256": str,
                "unit_as_written": str,
                "contact": str,
                "phone": str,
                "converted_from": str,
                "filled": int,
                "warnings": str,
            },
            pk="id",
            not_null={"message", "round", "unit", "received_at"},
            foreign_keys=[("message", "messages", "id")],
            if_not_exists=True,
        )
        db["reports"].create_index(["round", "unit"], if_not_exists=True)
        db["progress"].create(
            {"round": str, "unit": str, "task": int, "progress": str, "report": int, "received_at": str, "message_id": str},
            pk=("round", "unit", "task"),
            foreign_keys=[("report", "reports", "id")],
            if_not_exists=True,
        )
        db["progress_history"].create(
            {"id": int, "round": str, "unit": str, "task": int, "progress": str, "report": int, "received_at": str},
            pk="id",
            foreign_keys=[("report", "reports", "id")],
            if_not_exists=True,
        )
        db["progress_history"].create_index(["round", "unit", "task"], if_not_exists=True)
        db["outbox"].create(
            {
                "id": int,
                "dedupe_key": str,
                "kind": str,
                "unit": str,
                "round": str,
                "message": int,
                "to_addrs": str,
                "cc_addrs": str,
                "subject": str,
                "body_text": str,
                "body_html": str,
                "msgid": str,
                "in_reply_to": str,
                "references": str,
                "attachments": str,
                "status": str,
                "attempts": int,
                "next_attempt_at": str,
                "last_error": str,
                "created_at": str,
                "sent_at": str,
            },
            pk="id",
            not_null={"dedupe_key", "kind", "status", "created_at"},
            foreign_keys=[("message", "messages", "id")],
            defaults={"status": "pending", "attempts": 0},
            if_not_exists=True,
        )
        db["outbox"].create_index(["dedupe_key"], unique=True, if_not_exists=True)
        db["outbox"].create_index(["status", "next_attempt_at"], if_not_exists=True)
        db["mailbox_state"].create(
            {"folder": str, "uidvalidity": int, "last_uid": int, "updated_at": str}, pk="folder", if_not_exists=True
        )
        db["kv"].create({"key": str, "value": str, "updated_at": str}, pk="key", if_not_exists=True)
        db.execute("PRAGMA user_version = 1")


def _v2(db: sqlite_utils.Database) -> None:
    """Each message's size in bytes (from its archived copy); indexes for time-range queries:
    the digest and notices read messages by received_at, the reply rate limit reads outbox
    by sent_at. Without them both scan everything ever recorded."""
    if "size" not in {r[1] for r in db.execute("PRAGMA table_info(messages)")}:
        db.execute("ALTER TABLE messages ADD COLUMN size INTEGER")
    for row_id, archive_path in db.execute("SELECT id, archive_path FROM messages").fetchall():
        try:
            size = os.path.getsize(archive_path) if archive_path else None
        except OSError:
            size = None  # the archive moved or is elsewhere: unknown, not wrong
        db.execute("UPDATE messages SET size = ? WHERE id = ?", [size, row_id])
    db.execute("CREATE INDEX IF NOT EXISTS idx_messages_received_at ON messages (received_at)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_outbox_sent_at ON outbox (sent_at)")


def _v3(db: sqlite_utils.Database) -> None:
    """The audit trail: every action a person took (accept, reprocess …): who, when, what, why."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, "
        "unit TEXT, round TEXT, message INTEGER REFERENCES messages(id), reason TEXT, detail TEXT)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS idx_audit_message ON audit (message)")


def _v4(db: sqlite_utils.Database) -> None:
    """Whether the current text per (round, unit, task) came from a verified sender: an unverified
    report never replaces verified text (a stranger cannot overwrite a unit's report)."""
    if "verified" not in {r[1] for r in db.execute("PRAGMA table_info(progress)")}:
        db.execute("ALTER TABLE progress ADD COLUMN verified INTEGER NOT NULL DEFAULT 1")
    db.execute("UPDATE progress SET verified = COALESCE((SELECT r.verified FROM reports r WHERE r.id = progress.report), 1)")


def _v5(db: sqlite_utils.Database) -> None:
    """Supervision: per (round, unit) the sealed paper copy, an extension or an exemption; per
    (round, unit, task) a completion state a person set (kept until the text it judged changes)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS round_marks (round TEXT NOT NULL, unit TEXT NOT NULL, paper_on TEXT, "
        "extended_until TEXT, extension_reason TEXT, exempt_reason TEXT, PRIMARY KEY (round, unit))"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS completion_overrides (round TEXT NOT NULL, unit TEXT NOT NULL, task INTEGER NOT NULL, "
        "state TEXT NOT NULL, reason TEXT, actor TEXT, at TEXT, text_sha256 TEXT, PRIMARY KEY (round, unit, task))"
    )


MIGRATIONS = [(2, _v2), (3, _v3), (4, _v4), (5, _v5)]  # (version it produces, function); append, never edit a released one


# --- queries ----------------------------------------------------------------------------------


@contextlib.contextmanager
def write_transaction(db: sqlite_utils.Database):
    """BEGIN IMMEDIATE: take the write lock before reading, so check-then-insert cannot race
    (the service and a coordinator's `poll --once` or `ingest` recording the same mail)."""
    if db.conn.in_transaction:
        with db.atomic():  # nested: a savepoint inside the outer (immediate) transaction
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")


def find_duplicate(db: sqlite_utils.Database, sha256: str, message_id: str | None) -> dict | None:
    """The earlier message with the same bytes or the same Message-ID, if any."""
    cur = db.conn.execute("SELECT * FROM messages WHERE sha256 = ? AND duplicate_of IS NULL ORDER BY id LIMIT 1", [sha256])
    row = cur.fetchone()
    if row is None and message_id:
        cur = db.conn.execute("SELECT * FROM messages WHERE message_id = ? AND duplicate_of IS NULL ORDER BY id LIMIT 1", [message_id])
        row = cur.fetchone()
    return dict(zip([d[0] for d in cur.description], row)) if row is not None else None


def current_progress(db: sqlite_utils.Database, round_name: str, unit: str) -> dict[int, str]:
    return dict(db.conn.execute("SELECT task, progress FROM progress WHERE round = ? AND unit = ?", [round_name, unit]))


def unit_report_times(db: sqlite_utils.Database) -> dict[tuple[str, str], tuple[str, str, int]]:
    """(round, unit) → (first report time, latest report time, count) over accepted reports."""
    return {
        (r["round"], r["unit"]): (r["first"], r["latest"], r["n"])
        for r in db.query(
            "SELECT round, unit, MIN(received_at) AS first, MAX(received_at) AS latest, COUNT(*) AS n FROM reports GROUP BY round, unit"
        )
    }


def insert(db: sqlite_utils.Database, table: str, row: dict[str, Any]) -> int:
    """Insert one row with plain SQL (the hot path: no per-call schema introspection)."""
    cols = ", ".join(f'"{c}"' for c in row)
    marks = ", ".join("?" for _ in row)
    cur = db.conn.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({marks})', list(row.values()))
    return cur.lastrowid


def record_progress(
    db, round_name: str, unit: str, entries: Iterable[tuple[int, str]], report_id: int, received_at: str, message_id: str,
    verified: bool = True,
) -> None:
    """The current text per (round, unit, task) and every version in the history. Current is the
    newest received among the verified versions; unverified text is current only where no verified
    text exists (or until a person accepts it, which makes it verified)."""
    rows = [(round_name, unit, task, text, report_id, received_at, message_id, int(verified)) for task, text in entries]
    db.conn.executemany(
        "INSERT INTO progress (round, unit, task, progress, report, received_at, message_id, verified) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (round, unit, task) DO UPDATE SET progress = excluded.progress, report = excluded.report, "
        "received_at = excluded.received_at, message_id = excluded.message_id, verified = excluded.verified "
        # Verified beats unverified; then a report received before the one on record (moved in
        # from Junk later, an old mail ingested by hand) goes to the history only.
        "WHERE excluded.verified > progress.verified "
        "OR (excluded.verified = progress.verified AND excluded.received_at >= progress.received_at)",
        rows,
    )
    db.conn.executemany(
        "INSERT INTO progress_history (round, unit, task, progress, report, received_at) VALUES (?, ?, ?, ?, ?, ?)",
        [r[:6] for r in rows],
    )


def export_rows(db: sqlite_utils.Database) -> list[dict]:
    """The current text per (round, unit, task), the `export --format json` contract."""
    return list(
        db.query(
            "SELECT round, unit, task, progress, received_at, message_id FROM progress ORDER BY round, unit, task"
        )
    )


def audit(db, actor: str, action: str, *, unit=None, round_name=None, message=None, reason=None, detail=None) -> int:
    """One row of the audit trail (inside the caller's transaction)."""
    return insert(
        db, "audit",
        {"at": iso(now_utc()), "actor": actor, "action": action, "unit": unit, "round": round_name, "message": message,
         "reason": reason, "detail": dumps(detail) if detail is not None else None},
    )


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def kv_get(db: sqlite_utils.Database, key: str, default: str | None = None) -> str | None:
    rows = list(db.query("SELECT value FROM kv WHERE key = ?", [key]))
    return rows[0]["value"] if rows else default


def kv_set(db: sqlite_utils.Database, key: str, value: str | None) -> None:
    with write_transaction(db):
        if value is None:
            db.execute("DELETE FROM kv WHERE key = ?", [key])
        else:
            db["kv"].upsert({"key": key, "value": value, "updated_at": iso(now_utc())}, pk="key")


# --- the database's identity (appended: daemon start-up and each daemon job check it) -------------

DB_ID_KEY = "db_id"


class MissingDatabase(MailbotError):
    """The database file is not there (and must not be created silently)."""


def open_existing_db(path: str | os.PathLike) -> sqlite_utils.Database:
    """Like ``open_db``, but never creates the file: a database deleted under a running daemon
    must not come back empty (it would take the whole mailbox as new mail)."""
    import sqlite3
    from urllib.parse import quote

    import sqlite_utils

    if not Path(path).exists():
        raise MissingDatabase(f"数据库 {path} 不存在")
    try:
        conn = sqlite3.connect(f"file:{quote(os.fspath(Path(path).resolve()))}?mode=rw", uri=True)
    except sqlite3.OperationalError as err:
        if not Path(path).exists():
            raise MissingDatabase(f"数据库 {path} 不存在") from err
        raise
    db = sqlite_utils.Database(conn)
    try:
        db.conn.execute("PRAGMA busy_timeout = 30000")
        db.conn.execute("PRAGMA foreign_keys = ON")
        if db.journal_mode != "wal":
            db.enable_wal()
        db.conn.execute("PRAGMA synchronous = FULL")
        ensure_schema(db)
    except BaseException:
        db.close()
        raise
    return db


def database_id(db: sqlite_utils.Database) -> str | None:
    """This database's identity (a UUID given when a daemon first accepted it), None when it has none."""
    return kv_get(db, DB_ID_KEY)


def assign_database_id(db: sqlite_utils.Database) -> str:
    """Give the database an identity if it has none; return it."""
    import uuid

    with write_transaction(db):
        db.execute("INSERT OR IGNORE INTO kv (key, value, updated_at) VALUES (?, ?, ?)", [DB_ID_KEY, uuid.uuid4().hex, iso(now_utc())])
    return kv_get(db, DB_ID_KEY)


def message_count(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
