"""Schema migrations, applied to a database that the previous version really wrote."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailbot import store
from mailbot.store import SCHEMA_VERSION, SchemaError

V1_DUMP = Path(__file__).parent / "data" / "state_v1.sql"


def _schema(path) -> dict:
    """Tables with their columns and indexes with their columns: what a migration must reproduce."""
    con = sqlite3.connect(path)
    try:
        out = {}
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"):
            cols = sorted((r[1], r[2].upper(), r[3], r[5]) for r in con.execute(f"PRAGMA table_info([{name}])"))
            idx = sorted(
                (tuple(c[2] for c in con.execute(f"PRAGMA index_info([{i[1]}])")), i[2])
                for i in con.execute(f"PRAGMA index_list([{name}])")
            )
            fks = sorted(tuple(r[2:5]) for r in con.execute(f"PRAGMA foreign_key_list([{name}])"))
            out[name] = (cols, idx, fks)
        return out
    finally:
        con.close()


@pytest.fixture
def v1_db(tmp_path) -> Path:
    path = tmp_path / "state" / "mailbot.db"
    path.parent.mkdir()
    con = sqlite3.connect(path)
    con.executescript(V1_DUMP.read_text(encoding="utf-8"))
    # the archive paths of the machine that made the dump: absent here, as after moving a server
    con.execute("UPDATE messages SET archive_path = ? || id || '.eml'", [str(tmp_path / "gone") + "/"])
    con.commit()
    con.close()
    return path


def test_v1_database_is_migrated_with_its_data(v1_db):
    before = sqlite3.connect(v1_db)
    assert before.execute("PRAGMA user_version").fetchone()[0] == 1
    progress = before.execute("SELECT round, unit, task, progress FROM progress ORDER BY 1, 2, 3").fetchall()
    history = before.execute("SELECT COUNT(*) FROM progress_history").fetchone()[0]
    messages = before.execute("SELECT id, sha256, status, reason FROM messages ORDER BY id").fetchall()
    outbox = before.execute("SELECT dedupe_key, msgid, status FROM outbox ORDER BY id").fetchall()
    before.close()
    assert progress and messages and outbox  # the fixture holds real rows

    db = store.open_db(v1_db)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # every row kept, byte for byte
    assert db.execute("SELECT round, unit, task, progress FROM progress ORDER BY 1, 2, 3").fetchall() == progress
    assert db.execute("SELECT COUNT(*) FROM progress_history").fetchone()[0] == history
    assert db.execute("SELECT id, sha256, status, reason FROM messages ORDER BY id").fetchall() == messages
    assert db.execute("SELECT dedupe_key, msgid, status FROM outbox ORDER BY id").fetchall() == outbox
    assert db.execute("SELECT cursor FROM (SELECT last_uid AS cursor FROM mailbox_state WHERE folder = 'INBOX')").fetchone()[0] == 3
    # v2: the size column exists (unknown for these: their archive is not on this machine)
    assert [r[0] for r in db.execute("SELECT size FROM messages")] == [None] * len(messages)
    # the queries the indexes are for use them
    plan = " ".join(str(r) for r in db.execute("EXPLAIN QUERY PLAN SELECT id FROM messages WHERE received_at >= ?", ["2023"]))
    assert "idx_messages_received_at" in plan
    plan = " ".join(str(r) for r in db.execute("EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE sent_at >= ?", ["2023"]))
    assert "idx_outbox_sent_at" in plan
    # a copy of the v1 database was taken first, and it still reads as v1
    backup = Path(f"{v1_db}.v1-backup")
    con = sqlite3.connect(backup)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    assert con.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == len(messages)
    con.close()
    db.close()


def test_migrated_database_equals_a_new_one(v1_db, tmp_path):
    store.open_db(v1_db).close()
    fresh = tmp_path / "fresh.db"
    store.open_db(fresh).close()
    assert _schema(v1_db) == _schema(fresh)


def test_size_is_filled_from_the_archive_and_for_new_mail(v1_db, cfg, make_report):
    import mailbuilder as mb
    from mailbot import intake

    con = sqlite3.connect(v1_db)
    archived = v1_db.parent / "one.eml"
    archived.write_bytes(b"x" * 1234)
    con.execute("UPDATE messages SET archive_path = ? WHERE id = 1", [str(archived)])
    con.commit()
    con.close()
    db = store.open_db(v1_db)
    assert db.execute("SELECT size FROM messages WHERE id = 1").fetchone()[0] == 1234
    raw = mb.simple(attachments=[("a.docx", make_report({1: "进展"}).read_bytes())], message_id="<new-after-v2@x.example>")
    result = intake.ingest(cfg, db, raw)
    assert db.execute("SELECT size FROM messages WHERE id = ?", [result.message_row]).fetchone()[0] == len(raw)


def test_a_database_from_a_newer_mailbot_is_refused(tmp_path):
    path = tmp_path / "new.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(SchemaError, match="更新版本"):
        store.open_db(path)


def test_migrating_twice_or_from_two_processes_is_harmless(v1_db):
    a = store.open_db(v1_db)
    b = store.open_db(v1_db)  # the second sees version 2 and does nothing
    assert b.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [r[1] for r in a.execute("PRAGMA table_info(messages)")].count("size") == 1
    a.close()
    b.close()


def test_a_second_process_that_read_version_0_does_not_undo_the_first(tmp_path):
    """Two processes open a new database at once: B read user_version 0 before A created and
    migrated it; when B gets the lock it must see A's work and leave it alone."""
    path = tmp_path / "race.db"
    a = store.open_db(path)  # A: created, migrated to the latest version
    b = sqlite3.connect(path)
    import sqlite_utils

    late = sqlite_utils.Database(b)
    store._create_v1(late)  # B, as if it had read version 0 just before A committed
    for target, migrate in store.MIGRATIONS:  # … and then tried the migrations too
        with store.write_transaction(late):
            migrate(late)
    b.close()
    assert a.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    a.close()
    store.open_db(path).close()  # still opens
