"""Backup and the rebuild of the database from the raw-mail archive."""

from __future__ import annotations

import sqlite3

import mailbuilder as mb
from servers import *  # noqa: F401,F403 - fixtures: dovecot, mailbox, smtp_server
from mailbot import store
from mailbot.intake import ingest
from mailbot.maintenance import backup, reindex


def _fill(cfg, db, make_report):
    ingest(cfg, db, mb.simple(attachments=[("a.docx", make_report({1: "初稿", 3: "乙"}).read_bytes())], date=mb.when("2023-08-10")))
    ingest(cfg, db, mb.simple(subject="更正", attachments=[("b.docx", make_report({1: "终稿"}).read_bytes())], date=mb.when("2023-08-12")))
    ingest(cfg, db, mb.simple(sender="sfj@xixia.example", subject="司法局", attachments=[("c.docx", make_report({5: "丙"}, unit="司法局").read_bytes())], date=mb.when("2023-08-20")))
    ingest(cfg, db, mb.simple(sender="jyj@xixia.example", subject="教育局", attachments=[("d.pdf", b"%PDF-1.4")], date=mb.when("2023-08-11")))
    ingest(cfg, db, mb.simple(sender="spam@x.example", subject="广告"), received_at=mb.when("2023-08-13"))


def test_backup_is_a_consistent_copy(cfg, db, make_report, tmp_path):
    _fill(cfg, db, make_report)
    out = backup(cfg, tmp_path / "b.db")
    copy = sqlite3.connect(out)
    assert copy.execute("SELECT COUNT(*) FROM progress").fetchone()[0] == 3
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_reindex_rebuilds_the_same_state_without_resending(cfg, db, make_report, tmp_path):
    _fill(cfg, db, make_report)
    counts = reindex(cfg, tmp_path / "re.db")
    assert counts == {"accepted": 3, "rejected": 1, "quarantined": 1}
    new = store.open_db(tmp_path / "re.db")
    assert store.export_rows(new) == store.export_rows(db)
    cols = "round, unit, task, progress, received_at"
    assert list(new.query(f"SELECT {cols} FROM progress_history ORDER BY id")) == list(db.query(f"SELECT {cols} FROM progress_history ORDER BY id"))
    q = "SELECT sha256, status, unit, round, late, received_at FROM messages ORDER BY received_at"
    assert list(new.query(q)) == list(db.query(q))
    assert {r["status"] for r in new.query("SELECT status FROM outbox")} == {"skipped"}


def test_reindex_keeps_the_record_of_sent_notices(cfg, db, make_report, tmp_path):
    import datetime as dt

    from mailbot.notices import due_notices, queue_notices

    _fill(cfg, db, make_report)
    now = dt.datetime(2023, 8, 16, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert queue_notices(cfg, db, now)
    reindex(cfg, tmp_path / "re.db")
    new = store.open_db(tmp_path / "re.db")
    assert due_notices(cfg, new, now) == []  # swapping the rebuilt database in sends nothing again
    assert store.kv_get(new, "msgid_salt") == store.kv_get(db, "msgid_salt")


def test_restore_as_the_readme_says_then_poll_catches_up(tmp_path, dovecot, mailbox, smtp_server, monkeypatch, make_report):
    """README "Backup, restore": copy the backup over the database, drop -wal/-shm, start again;
    mail that arrived after the backup is fetched again and recorded, none lost."""
    import shutil

    from mailbot.daemon import run_cycle
    from test_daemon import write_config

    user, password = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", password)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "unused")
    cfg = write_config(tmp_path, dovecot, user, smtp_server)
    dovecot.append(user, password, mb.simple(attachments=[("a.docx", make_report({1: "备份前"}).read_bytes())], message_id="<r1@x.example>"))
    assert run_cycle(cfg).poll.statuses == {"accepted": 1}
    saved = backup(cfg, tmp_path / "nightly.db")
    dovecot.append(user, password, mb.simple(sender="sfj@xixia.example", subject="司法局", message_id="<r2@x.example>",
                                             attachments=[("b.docx", make_report({5: "备份后"}, unit="司法局").read_bytes())]))
    assert run_cycle(cfg).poll.statuses == {"accepted": 1}
    # the disk dies; restore
    shutil.copyfile(saved, cfg.db_path)
    for suffix in ("-wal", "-shm"):
        cfg.db_path.with_name(cfg.db_path.name + suffix).unlink(missing_ok=True)
    rep = run_cycle(cfg)
    assert rep.poll.fetched == 1 and rep.poll.statuses == {"accepted": 1}
    db = store.open_db(cfg.db_path)
    got = {(r["unit"], r["task"]): r["progress"] for r in db.query("SELECT unit, task, progress FROM progress")}
    assert got == {("民政局", 1): "备份前", ("司法局", 5): "备份后"}
    assert [r["message_id"] for r in db.query("SELECT message_id FROM messages ORDER BY uid")] == ["<r1@x.example>", "<r2@x.example>"]
