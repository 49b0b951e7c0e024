"""Keeping the state safe: online backup of the database, and rebuilding it from the raw-mail archive."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from . import store
from .config import Config
from .errors import MailbotError

log = logging.getLogger(__name__)


def backup(cfg: Config, target: Path) -> Path:
    """A consistent copy of the live database (SQLite online backup API; the daemon may keep running)."""
    if not cfg.db_path.exists():
        raise MailbotError(f"数据库 {cfg.db_path} 不存在：还没有处理过任何邮件")
    if target.exists():
        raise MailbotError(f"{target} 已存在：请换一个文件名，避免覆盖已有备份")
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(cfg.db_path, timeout=30)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise MailbotError(f"备份文件完整性检查失败：{check}")
    finally:
        dst.close()
        src.close()
    return target


def reindex(cfg: Config, target: Path, progress: Callable[[int, int], None] | None = None) -> dict:
    """Rebuild a database at ``target`` by ingesting every archived message again, in the order received.

    Replies are recorded but marked as already handled ("reindex"), so nothing is mailed twice.
    ``progress(done, total)``, when given, is called after each message (e.g. a line on a terminal).
    """
    from .intake import ingest, read_archive_meta, replay_decisions

    if target.exists():
        raise MailbotError(f"{target} 已存在：请指定一个新文件")
    archive_dir = cfg.state_dir / "archive"
    files = sorted(archive_dir.glob("*/*.eml"))
    if not files:
        raise MailbotError(f"归档目录 {archive_dir} 中没有邮件")
    entries = []
    for path in files:
        meta = read_archive_meta(path)
        received = dt.datetime.fromisoformat(meta["received_at"]) if meta.get("received_at") else None
        entries.append((received or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc), path, meta))
    entries.sort(key=lambda e: (e[0], e[1].name))
    db = store.open_db(target)
    counts: dict[str, int] = {}
    failed: list[str] = []
    try:
        for done, (received, path, meta) in enumerate(entries, 1):
            try:
                result = ingest(
                    cfg, db, path.read_bytes(), received_at=received if meta.get("received_at") else None,
                    source=meta.get("source") or "reindex", folder=meta.get("folder"), uidvalidity=meta.get("uidvalidity"), uid=meta.get("uid"),
                )
                status = result.status
            except (sqlite3.Error, OSError):
                raise  # the new database or the disk: nothing after this would be right either
            except Exception:  # noqa: BLE001 - one archived message must not stop the rebuild
                log.exception("reindex: could not process %s; carrying on", path)
                failed.append(path.name)
                status = "error"
            counts[status] = counts.get(status, 0) + 1
            if progress is not None:
                progress(done, len(entries))
        replay_decisions(cfg, db, _old_decisions(cfg))  # what people decided (accept …) is not in the archive
        with store.write_transaction(db):
            db.execute("UPDATE outbox SET status = 'skipped', last_error = 'reindex: historical reply, not sent again' WHERE status = 'pending'")
            _carry_notices(cfg, db)
    finally:
        db.close()
    return counts


def _old_decisions(cfg: Config) -> list[dict]:
    """The audit trail of the database being rebuilt, each row with its message's SHA-256."""
    if not cfg.db_path.exists():
        return []
    old = sqlite3.connect(cfg.db_path)
    old.row_factory = sqlite3.Row
    try:
        if not old.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit'").fetchone():
            return []
        return [dict(r) for r in old.execute(
            "SELECT a.*, m.sha256 FROM audit a LEFT JOIN messages m ON m.id = a.message ORDER BY a.id"
        )]
    finally:
        old.close()


def _carry_notices(cfg: Config, db) -> None:
    """Reminders, overdue notices, digests and alerts already sent come from the old database:
    they are not in the archive, and without them the rebuilt database would send them again."""
    if not cfg.db_path.exists():
        return
    old = sqlite3.connect(cfg.db_path)
    old.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in old.execute("SELECT * FROM outbox WHERE kind NOT IN ('ack', 'reject')")]
        salt = old.execute("SELECT value FROM kv WHERE key = 'msgid_salt'").fetchone()
    finally:
        old.close()
    for row in rows:
        row.pop("id", None)
        row["message"] = None
        db.execute(
            f"INSERT OR IGNORE INTO outbox ({', '.join(chr(34) + k + chr(34) for k in row)}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )
    if salt:
        db.execute("INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES ('msgid_salt', ?, '')", [salt[0]])
