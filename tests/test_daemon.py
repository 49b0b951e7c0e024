"""The daemon against real servers: Dovecot (IMAP) and aiosmtpd (SMTP), started by fixtures."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mailbuilder as mb
from mailbot import mailbox as mailbox_mod
from mailbot import store
from mailbot.config import load_config
from mailbot.daemon import run_cycle
from conftest import SHANGHAI
from servers import *  # noqa: F401,F403 - fixtures: dovecot, mailbox, smtp_server, smtp_server_tls_auth

import shutil  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("dovecot") is None and not os.path.exists("/usr/sbin/dovecot"), reason="dovecot is not installed")

ROOT = Path(__file__).resolve().parent.parent
LATER = lambda hours: store.now_utc() + dt.timedelta(hours=hours)  # noqa: E731 - reads the `clock` fixture


@pytest.fixture(autouse=True)
def _office_hours(clock):
    """Every test here runs at 10:00 Beijing time (quiet hours would hold alerts at night)."""
    return clock


def write_config(tmp_path, dovecot, user, smtp, *, imap_security="plain", smtp_security="plain", smtp_user="", folders=("INBOX",), extra=""):
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    rounds = text[text.index("[[rounds]]"):]
    imap_port = dovecot.ssl_port if imap_security == "ssl" else dovecot.port
    cfg = f"""
[bot]
state_dir = "{tmp_path / 'state'}"
timezone = "Asia/Shanghai"
reply_max_age_days = 100000
{extra}

[imap]
host = "127.0.0.1"
port = {imap_port}
security = "{imap_security}"
user = "{user}"
password_env = "TEST_IMAP_PASSWORD"
folders = {json.dumps(list(folders), ensure_ascii=False)}

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "{smtp_security}"
user = "{smtp_user}"
password_env = "TEST_SMTP_PASSWORD"
from = "{user}"

[coordinator]
emails = ["duchashi@xixia.example"]

{rounds}"""
    path = tmp_path / "live.toml"
    path.write_text(cfg, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def live(tmp_path, dovecot, mailbox, smtp_server, monkeypatch):
    user, password = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", password)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "unused")
    cfg = write_config(tmp_path, dovecot, user, smtp_server)
    return cfg, dovecot, user, password, smtp_server


def report(make_report, progress=None, **kw) -> bytes:
    return make_report(progress or {t: f"任务{t}进展" for t in range(1, 31)}, **kw).read_bytes()


def db_of(cfg):
    return store.open_db(cfg.db_path)


def test_end_to_end_poll_reply_threading_and_id(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    good = mb.simple(attachments=[("民政局台账.docx", report(make_report))], message_id="<good-1@xixia.example>")
    partial = mb.simple(sender="xjz@xixia.example", subject="兴泾镇台账", attachments=[("x.docx", report(make_report, {1: "已完成"}, unit="兴泾镇"))])
    pdf = mb.simple(sender="jyj@xixia.example", subject="教育局", attachments=[("a.pdf", b"%PDF-1.4\n")])
    auto = mb.simple(subject="自动回复：休假", headers={"Auto-Submitted": "auto-replied"})
    for raw, day in ((good, "2023-08-10"), (partial, "2023-08-11"), (pdf, "2023-08-12"), (auto, "2023-08-12")):
        dovecot.append(user, pw, raw, date=mb.when(day))

    rep = run_cycle(cfg)
    assert rep.poll_error is None and rep.poll.fetched == 4
    assert rep.poll.statuses == {"accepted": 2, "rejected": 1, "ignored": 1}
    assert rep.delivery.sent == 3
    got = smtp.wait_for(3)
    by_rcpt = {m.rcpt_tos[0]: m for m in got}
    assert set(by_rcpt) == {"mzj@xixia.example", "xjz@xixia.example", "jyj@xixia.example"}
    ack = by_rcpt["mzj@xixia.example"].message
    assert ack["In-Reply-To"] == "<good-1@xixia.example>" and "<good-1@xixia.example>" in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied" and ack["X-Mailbot-Loop"] == user
    assert "民政局" in ack["Subject"] and "已收到并登记" in ack.get_body(("plain",)).get_content()
    assert "<html" not in ack.get_body(("plain",)).get_content() and ack.get_body(("html",)) is not None
    partial_ack = by_rcpt["xjz@xixia.example"].message.get_body(("plain",)).get_content()
    assert "尚未填写进展落实情况" in partial_ack
    assert "PDF" in by_rcpt["jyj@xixia.example"].message.get_body(("plain",)).get_content()
    # received time is Dovecot's INTERNALDATE, not the Date header
    db = db_of(cfg)
    assert [r["received_at"][:10] for r in db.query("SELECT received_at FROM messages ORDER BY uid")] == [
        "2023-08-10", "2023-08-11", "2023-08-12", "2023-08-12"]
    # the ID command reached the server, and nobody's mailbox view changed (no \Seen)
    assert "ID sent: name=mailbot" in dovecot.wait_for_log("ID sent")
    assert all("\\Seen" not in m["flags"] for m in dovecot.messages(user, pw))


def test_poll_twice_processes_nothing_twice(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))
    run_cycle(cfg)
    second = run_cycle(cfg)
    assert second.poll.fetched == 0 and second.delivery.sent == 0
    assert len(smtp.messages) == 1
    assert db_of(cfg).execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 1


def test_crash_between_commit_and_cursor_update(live, make_report, monkeypatch):
    cfg, dovecot, user, pw, smtp = live
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))], message_id="<c1@x.example>"))
    dovecot.append(user, pw, mb.simple(sender="sfj@xixia.example", subject="司法局", attachments=[("b.docx", report(make_report, unit="司法局"))], message_id="<c2@x.example>"))
    real = mailbox_mod.advance_cursor

    def crash(db, folder, validity, uid):
        if uid > 0:
            raise KeyboardInterrupt("killed after commit, before the cursor moved")
        real(db, folder, validity, uid)

    monkeypatch.setattr(mailbox_mod, "CURSOR_EVERY", 1)  # the cursor follows every commit
    monkeypatch.setattr(mailbox_mod, "advance_cursor", crash)
    with pytest.raises(KeyboardInterrupt):
        run_cycle(cfg)
    monkeypatch.setattr(mailbox_mod, "advance_cursor", real)
    rep = run_cycle(cfg)
    db = db_of(cfg)
    rows = list(db.query("SELECT uid, status FROM messages ORDER BY id"))
    assert [(r["uid"], r["status"]) for r in rows] == [(1, "accepted"), (2, "accepted")]
    assert rep.poll.skipped == 1 and rep.poll.fetched == 1
    smtp.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["mzj@xixia.example", "sfj@xixia.example"]


def test_uidvalidity_change_rescans_without_duplicates(tmp_path, dovecot, mailbox, smtp_server, monkeypatch, make_report):
    user, pw = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", pw)
    dovecot.create_folder(user, pw, "Reports")
    cfg = write_config(tmp_path, dovecot, user, smtp_server, folders=("Reports",))
    first = mb.simple(attachments=[("a.docx", report(make_report))], message_id="<v1@x.example>")
    dovecot.append(user, pw, first, folder="Reports")
    assert run_cycle(cfg).poll.statuses == {"accepted": 1}
    before = dovecot.uidvalidity(user, pw, "Reports")
    dovecot.delete_folder(user, pw, "Reports")
    dovecot.create_folder(user, pw, "Reports")
    assert dovecot.uidvalidity(user, pw, "Reports") != before
    dovecot.append(user, pw, first, folder="Reports")
    dovecot.append(user, pw, mb.simple(sender="sfj@xixia.example", subject="司法局", attachments=[("b.docx", report(make_report, unit="司法局"))]), folder="Reports")
    rep = run_cycle(cfg)
    assert rep.poll.rescans == ["Reports"] and rep.poll.statuses == {"duplicate": 1, "accepted": 1}
    assert len(smtp_server.wait_for(2)) == 2  # one ack each, none twice


def test_dovecot_down_then_back(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))
    dovecot.stop()
    rep = run_cycle(cfg)
    assert rep.poll_error and "IMAP" in rep.poll_error
    db = db_of(cfg)
    assert store.kv_get(db, "imap_failures") == "1"
    skipped = run_cycle(cfg)  # within the back-off: the server is not hammered
    assert skipped.skipped_poll and skipped.poll_error is None
    dovecot.start()
    rep = run_cycle(cfg, now=LATER(1))
    assert rep.poll.statuses == {"accepted": 1} and store.kv_get(db, "imap_failures") is None
    assert len(smtp.wait_for(1)) == 1


def test_outage_alerts_coordinator_once(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    dovecot.stop()
    for hours in (0, 1, 2, 3, 4):
        run_cycle(cfg, now=LATER(hours))
    db = db_of(cfg)
    alerts = list(db.query("SELECT * FROM outbox WHERE kind = 'alert'"))
    assert len(alerts) == 1 and json.loads(alerts[0]["to_addrs"]) == ["duchashi@xixia.example"]
    assert "无法收取邮箱" in alerts[0]["body_text"]
    dovecot.start()


def test_login_refused_is_config_error_with_backoff_and_one_alert(live, monkeypatch):
    cfg, dovecot, user, pw, smtp = live
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "wrong-password")
    rep = run_cycle(cfg)
    assert "登录" in rep.poll_error and "被拒绝" in rep.poll_error
    again = run_cycle(cfg, now=LATER(0.2))
    assert again.skipped_poll  # no retry for half an hour: do not hammer the server
    run_cycle(cfg, now=LATER(1))
    db = db_of(cfg)
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'alert'").fetchone()[0] == 1
    assert len(smtp.wait_for(1)) >= 1 and smtp.messages[0].rcpt_tos == ["duchashi@xixia.example"]


def test_backoff_cleared_by_restart_check_and_manual_poll(live, monkeypatch, caplog):
    """A fixed password works at once: `run` starting, a successful `check` and `poll` all retry now."""
    from mailbot.daemon import clear_backoff

    cfg, dovecot, user, pw, smtp = live
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "wrong-password")
    with caplog.at_level("ERROR", logger="mailbot"):
        run_cycle(cfg)
    local_next = (store.now_utc() + dt.timedelta(minutes=30)).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S+0800")
    assert f"next try at {local_next}" in caplog.text  # the log says when, in local time
    monkeypatch.setenv("TEST_IMAP_PASSWORD", pw)  # the IT person fixes the password
    assert run_cycle(cfg).skipped_poll  # the scheduled poll still waits …
    assert run_cycle(cfg, retry_now=True).poll_error is None  # … a manual `poll` does not
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "wrong-password")
    run_cycle(cfg)
    assert run_cycle(cfg).skipped_poll
    assert clear_backoff(cfg) is True and clear_backoff(cfg) is False  # what `run` and `check` call
    monkeypatch.setenv("TEST_IMAP_PASSWORD", pw)
    assert run_cycle(cfg).poll_error is None


def test_login_refused_at_night_alert_held_until_morning(live, monkeypatch, clock):
    """The same failure at 23:30 Beijing time: the alert is queued at once, held by quiet hours, sent at 08:00."""
    cfg, dovecot, user, pw, smtp = live
    night = dt.datetime.combine(clock.t.astimezone(SHANGHAI).date(), dt.time(23, 30), SHANGHAI)
    clock.set(night.astimezone(dt.timezone.utc))
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "wrong-password")
    rep = run_cycle(cfg)
    assert "被拒绝" in rep.poll_error and rep.delivery.sent == 0
    db = db_of(cfg)
    assert db.execute("SELECT status FROM outbox WHERE kind = 'alert'").fetchall() == [("pending",)]
    clock.set((night + dt.timedelta(hours=8, minutes=31)).astimezone(dt.timezone.utc))  # 08:01 next morning
    assert run_cycle(cfg).delivery.sent == 1
    assert smtp.wait_for(1)[0].rcpt_tos == ["duchashi@xixia.example"]


def test_smtp_refusing_then_recovering_delivers_each_once(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    for i, (sender, unit) in enumerate((("mzj@xixia.example", "民政局"), ("sfj@xixia.example", "司法局"))):
        dovecot.append(user, pw, mb.simple(sender=sender, subject=unit, attachments=[(f"{i}.docx", report(make_report, unit=unit))]))
    smtp.fail_with = (451, "4.3.0 try again later")
    rep = run_cycle(cfg)
    assert rep.delivery.sent == 0 and rep.delivery.retried >= 1
    db = db_of(cfg)
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0] == 2
    smtp.fail_with = None
    smtp.drop_connection = True
    run_cycle(cfg, now=LATER(1))
    smtp.drop_connection = False
    rep = run_cycle(cfg, now=LATER(24))
    assert rep.delivery.sent + len(smtp.messages) >= 2
    run_cycle(cfg, now=LATER(48))
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["mzj@xixia.example", "sfj@xixia.example"]
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").fetchone()[0] == 2


def test_our_ack_mailed_back_auto_reply_and_bounce_cause_no_mail(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))
    run_cycle(cfg)
    [ack] = smtp.wait_for(1)
    ack_id = ack.message["Message-ID"]
    dovecot.append(user, pw, ack.data)  # our own acknowledgement comes back
    dovecot.append(user, pw, mb.simple(subject="自动回复: 回执", body="我正在休假", headers={"In-Reply-To": ack_id}))
    bounce = (
        "From: MAILER-DAEMON@xixia.example\r\nTo: {u}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce1@xixia.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain\r\n\r\ndelivery failed\r\n--b--\r\n"
    ).format(u=user).encode()
    dovecot.append(user, pw, bounce)
    rep = run_cycle(cfg, now=LATER(1))
    assert rep.poll.statuses == {"ignored": 3}
    run_cycle(cfg, now=LATER(2))
    assert len(smtp.messages) == 1


def test_imaps_and_smtp_starttls_auth(tmp_path, dovecot, mailbox, smtp_server_tls_auth, monkeypatch, make_report):
    user, pw = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", pw)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "smtp-secret")
    cfg = write_config(tmp_path, dovecot, user, smtp_server_tls_auth, imap_security="ssl", smtp_security="starttls",
                       smtp_user="mailbot@example.test")
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))
    rep = run_cycle(cfg)
    assert rep.poll.statuses == {"accepted": 1} and rep.delivery.sent == 1
    [got] = smtp_server_tls_auth.wait_for(1)
    assert got.tls
    assert any(login == "mailbot@example.test" and ok for _mech, login, ok in smtp_server_tls_auth.auth_attempts)


def test_check_command_reports_each_server(live, tmp_path):
    cfg, dovecot, user, pw, smtp = live
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg.path), "check"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "IMAP 127.0.0.1" in out.stdout and "登录成功" in out.stdout and "SMTP 127.0.0.1" in out.stdout
    env["TEST_IMAP_PASSWORD"] = "wrong"
    out = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg.path), "check"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1 and "被拒绝" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_run_daemon_stops_cleanly_on_sigterm(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))
    proc = subprocess.Popen([sys.executable, "-m", "mailbot.cli", "--config", str(cfg.path), "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        smtp.wait_for(1, timeout=30)
    finally:
        proc.send_signal(15)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "stopping after the current message" in out and "mailbot stopped" in out
    assert "Traceback" not in out
    # the password is in no log line, no database page, no archived file
    assert pw not in out
    assert cfg.db_path.exists()
    for f in cfg.state_dir.rglob("*"):
        if f.is_file():
            assert pw.encode() not in f.read_bytes(), f


def test_junk_folder_by_special_use_and_post_action_flag(tmp_path, dovecot, mailbox, smtp_server, monkeypatch, make_report):
    user, pw = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", pw)
    cfg = write_config(tmp_path, dovecot, user, smtp_server, folders=("INBOX", "\\Junk"))
    text = cfg.path.read_text(encoding="utf-8").replace('folders = ["INBOX", "\\\\Junk"]', 'folders = ["INBOX", "\\\\Junk"]\npost_action = "flag"')
    cfg.path.write_text(text, encoding="utf-8")
    cfg = load_config(cfg.path)
    assert cfg.imap_post_action == "flag"
    dovecot.create_folder(user, pw, "Junk")  # special-use \Junk in the test server's namespace
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]), folder="Junk")
    rep = run_cycle(cfg)
    assert rep.poll.statuses == {"accepted": 1}
    [msg] = dovecot.messages(user, pw, "Junk")
    assert "\\Flagged" in msg["flags"] and "\\Seen" not in msg["flags"]
    assert db_of(cfg).execute("SELECT folder FROM messages").fetchone()[0] == "Junk"


def test_post_action_copy_never_deletes_and_sent_copy(tmp_path, dovecot, mailbox, smtp_server, monkeypatch, make_report):
    user, pw = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", pw)
    from imap_tools.imap_utf7 import utf7_encode

    done_folder = utf7_encode("已处理").decode()
    dovecot.create_folder(user, pw, done_folder)
    dovecot.create_folder(user, pw, "Sent")
    cfg = write_config(tmp_path, dovecot, user, smtp_server)
    text = cfg.path.read_text(encoding="utf-8")
    text = text.replace('folders = ["INBOX"]', 'folders = ["INBOX"]\npost_action = "copy:已处理"')
    text = text.replace(f'from = "{user}"', f'from = "{user}"\nsave_to_sent = "\\\\Sent"')
    cfg.path.write_text(text, encoding="utf-8")
    cfg = load_config(cfg.path)
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))
    rep = run_cycle(cfg)
    assert rep.delivery.sent == 1
    assert len(dovecot.messages(user, pw, "INBOX")) == 1  # never deleted
    assert len(dovecot.messages(user, pw, done_folder)) == 1  # copied to 已处理
    [sent] = dovecot.messages(user, pw, "Sent")
    assert b"X-Mailbot-Loop" in sent["raw"] and "\\Seen" in sent["flags"]


def test_flood_from_one_address_is_rate_limited(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    for i in range(25):
        dovecot.append(user, pw, mb.simple(subject=f"无附件 {i}", body=f"第{i}封", message_id=f"<flood{i}@x.example>"))
    rep = run_cycle(cfg)
    assert rep.poll.statuses == {"rejected": 25}
    limit = cfg.smtp.options["max_replies_per_address_per_day"]
    assert rep.delivery.sent == limit and rep.delivery.suppressed == 25 - limit
    assert len(smtp.messages) == limit
    db = db_of(cfg)
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'suppressed'").fetchone()[0] == 25 - limit


def test_dovecot_stopped_mid_fetch_then_restarted(live, make_report, monkeypatch):
    cfg, dovecot, user, pw, smtp = live
    for i, (sender, unit) in enumerate((("mzj@xixia.example", "民政局"), ("sfj@xixia.example", "司法局"), ("xjz@xixia.example", "兴泾镇"))):
        dovecot.append(user, pw, mb.simple(sender=sender, subject=unit, attachments=[(f"{i}.docx", report(make_report, unit=unit))]))
    real_fetch = mailbox_mod.Mailbox.fetch_many
    calls = []

    def fetch_then_server_dies(self, uids):
        if calls:
            dovecot.stop()  # the server goes away between two fetches of one cycle
        calls.extend(uids)
        return real_fetch(self, uids)

    monkeypatch.setattr(mailbox_mod, "FETCH_BATCH", 1)
    monkeypatch.setattr(mailbox_mod.Mailbox, "fetch_many", fetch_then_server_dies)
    rep = run_cycle(cfg)
    assert rep.poll_error and calls == [1, 2]
    db = db_of(cfg)
    assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 1
    dovecot.start()
    monkeypatch.setattr(mailbox_mod.Mailbox, "fetch_many", real_fetch)
    rep = run_cycle(cfg, now=LATER(1))
    assert rep.poll.statuses == {"accepted": 2} and rep.poll.skipped == 0
    assert [r["uid"] for r in db.query("SELECT uid FROM messages ORDER BY uid")] == [1, 2, 3]
    smtp.wait_for(3)
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["mzj@xixia.example", "sfj@xixia.example", "xjz@xixia.example"]


def test_database_locked_by_a_reader_during_poll_loses_nothing(live, make_report, monkeypatch):
    cfg, dovecot, user, pw, smtp = live
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))
    run_cycle(cfg)  # creates the database
    dovecot.append(user, pw, mb.simple(sender="sfj@xixia.example", subject="司法局", attachments=[("b.docx", report(make_report, unit="司法局"))]))
    import sqlite3 as sq

    monkeypatch.setattr(store, "open_db", _short_timeout_open(store.open_db))
    holder = sq.connect(cfg.db_path)
    holder.execute("BEGIN EXCLUSIVE")  # someone holds a write lock for longer than our timeout
    try:
        rep = run_cycle(cfg)
    finally:
        holder.rollback()
        holder.close()
    assert rep.poll_error and "数据库" in rep.poll_error
    rep = run_cycle(cfg, now=LATER(1))
    assert rep.poll.statuses == {"accepted": 1}
    db = db_of(cfg)
    assert [r["status"] for r in db.query("SELECT status FROM messages ORDER BY uid")] == ["accepted", "accepted"]


def _short_timeout_open(real):
    def open_db(path):
        db = real(path)
        db.conn.execute("PRAGMA busy_timeout = 200")
        return db

    return open_db


def test_state_directory_full_is_reported_and_caught_up(live, make_report, monkeypatch):
    import errno as errno_mod

    cfg, dovecot, user, pw, smtp = live
    cfg.bot["parse_processes"] = 0  # the fault is injected in this process (in a worker: test_bounded.py)
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))
    import mailbot.intake as intake_mod

    real = intake_mod._write_durably

    def disk_full(target, data):
        raise OSError(errno_mod.ENOSPC, "No space left on device")

    monkeypatch.setattr(intake_mod, "_write_durably", disk_full)
    rep = run_cycle(cfg)
    assert rep.poll_error and "无法写入状态目录" in rep.poll_error
    db = db_of(cfg)
    assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'alert'").fetchone()[0] == 1
    monkeypatch.setattr(intake_mod, "_write_durably", real)
    rep = run_cycle(cfg)  # no mailbox back-off for a local problem
    assert rep.poll.statuses == {"accepted": 1}


def test_long_smtp_outage_never_drops_mail(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))
    smtp.stop()
    for hours in range(0, 72, 2):  # three days of a dead SMTP server
        run_cycle(cfg, now=LATER(hours))
    db = db_of(cfg)
    [row] = db.query("SELECT status, attempts FROM outbox")
    assert row["status"] == "pending" and row["attempts"] > 12
    smtp.start()
    write_config(cfg.path.parent, dovecot, user, smtp)  # the server came back on a new port
    cfg2 = load_config(cfg.path)
    run_cycle(cfg2, now=LATER(80))
    assert len(smtp.wait_for(1)) == 1


def test_missing_folder_does_not_stop_inbox_and_copy_failure_is_not_an_outage(tmp_path, dovecot, mailbox, smtp_server, monkeypatch, make_report):
    user, pw = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", pw)
    cfg = write_config(tmp_path, dovecot, user, smtp_server, folders=("垃圾邮件", "INBOX"))
    text = cfg.path.read_text(encoding="utf-8").replace('folders = ["垃圾邮件", "INBOX"]', 'folders = ["垃圾邮件", "INBOX"]\npost_action = "copy:不存在"')
    cfg.path.write_text(text, encoding="utf-8")
    cfg = load_config(cfg.path)
    for i in range(2):
        dovecot.append(user, pw, mb.simple(subject=f"无附件{i}", message_id=f"<nf{i}@x.example>"))
    rep = run_cycle(cfg)
    assert rep.poll_error is None and rep.poll.statuses == {"rejected": 2}
    assert any("垃圾邮件" in e for e in rep.poll.errors) and "b'" not in " ".join(rep.poll.errors)
    db = db_of(cfg)
    assert store.kv_get(db, "imap_failures") is None
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'alert'").fetchone()[0] == 1


def test_cc_copies_count_toward_the_reply_limit(live, make_report):
    cfg, dovecot, user, pw, smtp = live
    for i in range(25):
        dovecot.append(user, pw, mb.simple(sender=f"x{i}@spam.example", subject="民政局台账", attachments=[("a.docx", report(make_report))]))
    run_cycle(cfg)
    # issue 11: strangers writing in a unit's name reach the unit at most this often a day (they can
    # no longer use up the unit's own reply budget), and each stranger gets one fixed notice
    limit = cfg.bot["max_unverified_receipts_per_unit_per_day"]
    copies = sum("mzj@xixia.example" in m.rcpt_tos for m in smtp.messages)
    assert copies == limit
    assert sorted(r for m in smtp.messages for r in m.rcpt_tos if r != "mzj@xixia.example") == sorted(f"x{i}@spam.example" for i in range(25))


def test_notices_wait_for_the_morning_at_delivery(live):
    cfg, dovecot, user, pw, smtp = live
    from mailbot.notices import queue_notices
    from mailbot.outbox import deliver
    import datetime as dtm

    tz8 = dtm.timezone(dtm.timedelta(hours=8))
    db = db_of(cfg)
    smtp.fail_with = (451, "4.3.0 later")
    queue_notices(cfg, db, dtm.datetime(2023, 8, 8, 9, 0, tzinfo=tz8))
    deliver(cfg, db, now=dtm.datetime(2023, 8, 8, 9, 1, tzinfo=tz8))
    smtp.fail_with = None
    stats = deliver(cfg, db, now=dtm.datetime(2023, 8, 8, 23, 30, tzinfo=tz8))
    assert stats.sent == 0 and smtp.messages == []
    stats = deliver(cfg, db, now=dtm.datetime(2023, 8, 9, 8, 30, tzinfo=tz8))
    assert stats.sent > 0
