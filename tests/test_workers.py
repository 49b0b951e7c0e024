"""A backlog is parsed in worker processes; a worker that dies loses nothing (real Dovecot)."""

from __future__ import annotations

import os
from pathlib import Path



import mailbuilder as mb
from mailbot import mailbox as mailbox_mod
from mailbot import store
from mailbot.daemon import run_cycle
from servers import *  # noqa: F401,F403 - fixtures: dovecot, mailbox, smtp_server
from test_daemon import live, pytestmark, report  # noqa: F401 - the same live-server setup

HOOK = Path(__file__).parent / "workerhook"


def _units(cfg, n):
    units = [u for u in cfg.roster if u.emails]
    return [units[i % len(units)] for i in range(n)]


def _load(cfg, dovecot, user, pw, make_report, n, *, kill=()):
    for i, unit in enumerate(_units(cfg, n)):
        extra = {"X-Test-Kill": "1"} if i in kill else {}
        raw = mb.simple(
            sender=unit.emails[0], subject=f"{unit.name}台账 {i}", headers=extra, message_id=f"<w{i}@x.example>",
            attachments=[(f"{unit.name}.docx", report(make_report, {1: f"{unit.name}第{i}次"}, unit=unit.name))],
        )
        dovecot.append(user, pw, raw, date=mb.when("2023-08-10"))


def test_backlog_goes_to_worker_processes_in_uid_order(live, make_report, monkeypatch, caplog):
    cfg, dovecot, user, pw, smtp = live
    monkeypatch.setattr(mailbox_mod, "PROCESS_BACKLOG", 5)
    _load(cfg, dovecot, user, pw, make_report, 12)
    caplog.set_level("INFO", logger="mailbot.mailbox")
    rep = run_cycle(cfg)
    assert "12 new messages: parsing them in" in caplog.text
    assert rep.poll.fetched == 12 and rep.poll.statuses == {"accepted": 12}
    db = store.open_db(cfg.db_path)
    rows = list(db.query("SELECT id, uid, status FROM messages ORDER BY id"))
    assert [r["uid"] for r in rows] == list(range(1, 13))  # committed strictly in UID order
    # every message archived by the worker that parsed it, and the cursor at the end
    for r in db.query("SELECT archive_path, sha256 FROM messages"):
        assert Path(r["archive_path"]).is_file()
    assert mailbox_mod.cursor(db, "INBOX")[1] == 12
    # the latest report of each unit holds, as with the thread path
    last = {}
    for i, unit in enumerate(_units(cfg, 12)):
        last[unit.name] = f"{unit.name}第{i}次"
    got = {r["unit"]: r["progress"] for r in db.query("SELECT unit, progress FROM progress WHERE task = 1")}
    assert got == last


def test_threads_only_when_configured(live, make_report, monkeypatch, caplog):
    cfg, dovecot, user, pw, smtp = live
    monkeypatch.setattr(mailbox_mod, "PROCESS_BACKLOG", 2)
    cfg.bot["parse_processes"] = 0
    _load(cfg, dovecot, user, pw, make_report, 4)
    caplog.set_level("INFO", logger="mailbot.mailbox")
    rep = run_cycle(cfg)
    assert rep.poll.statuses == {"accepted": 4}
    assert "worker processes" not in caplog.text


def test_a_worker_that_dies_quarantines_only_its_message(live, make_report, monkeypatch):
    cfg, dovecot, user, pw, smtp = live
    monkeypatch.setattr(mailbox_mod, "PROCESS_BACKLOG", 3)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HOOK), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MAILBOT_TEST_KILL_WORKER_ON", "X-Test-Kill")
    _load(cfg, dovecot, user, pw, make_report, 8, kill={3})
    rep = run_cycle(cfg)
    assert rep.poll_error is None and rep.poll.fetched == 8
    db = store.open_db(cfg.db_path)
    rows = {r["uid"]: r for r in db.query("SELECT uid, status, reason, archive_path FROM messages")}
    assert sorted(rows) == list(range(1, 9))
    assert rows[4]["status"] == "quarantined" and "解析进程异常退出" in rows[4]["reason"]
    assert Path(rows[4]["archive_path"]).is_file()  # archived, never lost
    assert all(rows[u]["status"] == "accepted" for u in rows if u != 4)
    assert mailbox_mod.cursor(db, "INBOX")[1] == 8
    # the broken pool was torn down completely: no manager thread or worker left waiting
    # (workers that ignored SIGTERM once deadlocked a broken pool's teardown at exit)
    import multiprocessing
    import threading
    import time
    from concurrent.futures.process import _ExecutorManagerThread

    deadline = time.time() + 20
    while time.time() < deadline and (
        any(isinstance(t, _ExecutorManagerThread) and t.is_alive() for t in threading.enumerate()) or multiprocessing.active_children()
    ):
        time.sleep(0.2)
    assert not [t for t in threading.enumerate() if isinstance(t, _ExecutorManagerThread) and t.is_alive()]
    assert not multiprocessing.active_children()


def test_oversize_message_is_streamed_to_the_archive_not_loaded(tmp_path, dovecot, mailbox, smtp_server, monkeypatch, make_report):
    import hashlib

    from test_daemon import write_config

    user, pw = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", pw)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "unused")
    cfg = write_config(tmp_path, dovecot, user, smtp_server, extra="max_message_bytes = 300000")
    small = mb.simple(attachments=[("a.docx", report(make_report))], message_id="<before@x.example>")
    big = mb.simple(sender="sfj@xixia.example", subject="司法局台账（含扫描件）", message_id="<big@x.example>",
                    attachments=[("司法局.docx", report(make_report, unit="司法局")), ("扫描件.jpg", os.urandom(900_000))])
    after = mb.simple(sender="jyj@xixia.example", subject="教育局", message_id="<after@x.example>",
                      attachments=[("c.docx", report(make_report, unit="教育局"))])
    for raw in (small, big, after):
        dovecot.append(user, pw, raw, date=mb.when("2023-08-10"))
    chunks = []
    real = mailbox_mod.Mailbox.fetch_to_file

    def fetch_to_file(self, uid, fh, chunk=4 * 1024 * 1024):
        chunks.append(uid)
        return real(self, uid, fh, chunk=256 * 1024)  # several partial fetches

    fetched_whole = []
    real_many = mailbox_mod.Mailbox.fetch_many
    monkeypatch.setattr(mailbox_mod.Mailbox, "fetch_to_file", fetch_to_file)
    monkeypatch.setattr(mailbox_mod.Mailbox, "fetch_many", lambda self, uids: fetched_whole.extend(uids) or real_many(self, uids))
    rep = run_cycle(cfg)
    assert rep.poll_error is None and rep.poll.fetched == 3
    assert chunks == [2] and 2 not in fetched_whole  # the big one was never fetched in one piece
    db = store.open_db(cfg.db_path)
    rows = {r["uid"]: r for r in db.query("SELECT * FROM messages")}
    assert [rows[u]["status"] for u in (1, 2, 3)] == ["accepted", "rejected", "accepted"]  # in UID order, neighbours unaffected
    assert rows[2]["reason_code"] == "too_large" and rows[2]["unit"] == "司法局" and "邮件过大" in rows[2]["reason"]
    archived = Path(rows[2]["archive_path"]).read_bytes()
    assert archived == dovecot.messages(user, pw)[1]["raw"]  # the exact bytes, nothing lost
    assert rows[2]["sha256"] == hashlib.sha256(archived).hexdigest() and rows[2]["size"] == len(archived)
    assert not list((cfg.state_dir / "archive").glob(".tmp-*"))
    reply = next(db.query("SELECT to_addrs, subject, body_text, attachments FROM outbox WHERE kind = 'reject'"))
    assert "sfj@xixia.example" in reply["to_addrs"] and "邮件过大" in reply["body_text"]  # the subject is short; the reason is in the body (issue 10.12)


def test_a_future_cancelled_with_its_broken_pool_is_retried_not_an_error(cfg):
    """The pool a failed future came from is shut down with cancel_futures: a neighbour that
    had not started yet is cancelled, and must be prepared again like the others."""
    from concurrent.futures import Future

    raw = mb.simple(subject="取消后重试")
    workers = mailbox_mod.Preparers(cfg)
    try:
        cancelled = Future()
        cancelled.cancel()
        prepared = workers.result(cancelled, raw, {"uid": 7, "source": "imap", "folder": "INBOX", "uidvalidity": 1})
        assert prepared.base["uid"] == 7 and prepared.analysis is not None
    finally:
        workers.close()
