"""The real-server fixtures in tests/servers.py work with real clients."""

from __future__ import annotations

import imaplib
import os
import re
import smtplib
import ssl
import sys
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import (  # noqa: E402,F401  (fixtures are used by name)
    Dovecot,
    SmtpServer,
    client_ssl_context,
    dovecot,
    mailbox,
    smtp_server,
    smtp_server_tls_auth,
)

CST = timezone(timedelta(hours=8))


def raw_mail(subject: str, body: str = "正文", sender: str = "unit@example.test") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "mailbot@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.encode().hex()}@example.test>"
    msg["Date"] = "Tue, 02 Jan 2024 10:00:00 +0800"
    msg.set_content(body)
    return bytes(msg)


@pytest.fixture
def imaplib_commands():
    """imaplib.xatom() registers an unknown command for the *current state only*, globally;
    restore the table so this file does not change what other tests see."""
    saved = dict(imaplib.Commands)
    yield
    imaplib.Commands.clear()
    imaplib.Commands.update(saved)


# ------------------------------------------------------------------ IMAP


def test_plain_login_fetch_does_not_mark_seen(dovecot, mailbox):
    user, pw = mailbox
    when = datetime(2024, 1, 2, 10, 0, 0, tzinfo=CST)
    uids = [dovecot.append(user, pw, raw_mail(f"报告{i}"), date=when + timedelta(minutes=i)) for i in range(3)]
    assert uids == [1, 2, 3]

    with MailBoxUnencrypted(dovecot.host, dovecot.port).login(user, pw, initial_folder=None) as mb:
        mb.folder.set("INBOX")
        msgs = list(mb.fetch(mark_seen=False))
    assert [m.subject for m in msgs] == ["报告0", "报告1", "报告2"]
    assert [m.text.strip() for m in msgs] == ["正文"] * 3
    assert all("\\Seen" not in m.flags for m in msgs)

    stored = dovecot.messages(user, pw)
    assert [m["uid"] for m in stored] == [1, 2, 3]
    assert all("\\Seen" not in m["flags"] for m in stored)
    assert stored[1]["internaldate"] == when + timedelta(minutes=1)


def test_append_flags_folder_and_wrong_password(dovecot, mailbox):
    user, pw = mailbox
    dovecot.create_folder(user, pw, "Archive/2024")
    dovecot.append(user, pw, raw_mail("seen"), folder="Archive/2024", flags=("\\Seen", "\\Flagged"))
    assert {"INBOX", "Archive/2024"} <= set(dovecot.folders(user, pw))
    (msg,) = dovecot.messages(user, pw, "Archive/2024")
    assert {"\\Seen", "\\Flagged"} <= set(msg["flags"])
    with pytest.raises(MailboxLoginError):
        MailBoxUnencrypted(dovecot.host, dovecot.port).login(user, pw + "x")


def test_imaps_with_and_without_verification(dovecot, mailbox):
    user, pw = mailbox
    dovecot.append(user, pw, raw_mail("over tls"))
    for ctx in (client_ssl_context(), client_ssl_context(dovecot.cafile)):
        with MailBox(dovecot.host, dovecot.ssl_port, ssl_context=ctx).login(user, pw) as mb:
            assert isinstance(mb.client.sock, ssl.SSLSocket)
            assert [m.subject for m in mb.fetch(mark_seen=False)] == ["over tls"]
    # the default context (system CAs) must refuse the self-signed cert
    with pytest.raises(ssl.SSLError):
        MailBox(dovecot.host, dovecot.ssl_port, ssl_context=ssl.create_default_context())


def test_starttls_on_plain_port(dovecot, mailbox):
    user, pw = mailbox
    dovecot.append(user, pw, raw_mail("starttls"))
    probe = imaplib.IMAP4(dovecot.host, dovecot.port)
    assert "STARTTLS" in probe.capabilities
    probe.logout()
    ctx = client_ssl_context(dovecot.cafile)
    with MailBoxStartTls(dovecot.host, dovecot.port, ssl_context=ctx).login(user, pw) as mb:
        assert isinstance(mb.client.sock, ssl.SSLSocket)
        assert [m.subject for m in mb.fetch(mark_seen=False)] == ["starttls"]


def test_id_command_is_logged(dovecot, mailbox, imaplib_commands):
    user, pw = mailbox
    with MailBoxUnencrypted(dovecot.host, dovecot.port).login(user, pw, initial_folder=None) as mb:
        assert "ID" in mb.client.capabilities
        typ, data = mb.client.xatom("ID", '("name" "mailbot" "version" "0.1.0" "vendor" "example org")')
        assert typ == "OK", data
        assert mb.client.untagged_responses.get("ID") == [b'("name" "Dovecot")']
    text = dovecot.wait_for_log("ID sent: name=mailbot")
    # e.g. "Nov 27 00:26:32 imap(u@x)<17203><iP2lHDdhSo5/AAAB>: Info: ID sent: name=mailbot, version=0.1.0, vendor=example org"
    pattern = re.escape(f"imap({user})") + r"<\d+><[^>]+>: Info: ID sent: name=mailbot, version=0\.1\.0, vendor=(.*)$"
    found = [m for m in (re.search(pattern, line) for line in text.splitlines()) if m]
    assert found, text
    assert found[0].group(1) == "example org"


def test_id_before_login_is_logged_by_imap_login(dovecot, imaplib_commands):
    client = imaplib.IMAP4(dovecot.host, dovecot.port)
    try:
        assert client.xatom("ID", '("name" "prelogin")')[0] == "OK"
    finally:
        client.logout()
    text = dovecot.wait_for_log("ID sent: name=prelogin")
    assert re.search(r"imap-login: Info: ID sent: name=prelogin: user=<>, rip=127\.0\.0\.1", text), text


def test_uidvalidity_changes_after_delete_and_recreate(dovecot, mailbox):
    user, pw = mailbox
    dovecot.create_folder(user, pw, "Reports")
    dovecot.append(user, pw, raw_mail("old"), folder="Reports")
    before = dovecot.uidvalidity(user, pw, "Reports")
    dovecot.delete_folder(user, pw, "Reports")
    dovecot.create_folder(user, pw, "Reports")
    assert dovecot.uidvalidity(user, pw, "Reports") != before
    assert dovecot.messages(user, pw, "Reports") == []


def test_reset_uidvalidity_of_inbox_keeps_mail(dovecot, mailbox):
    user, pw = mailbox
    for i in range(2):
        dovecot.append(user, pw, raw_mail(f"m{i}"))
    before = dovecot.uidvalidity(user, pw)
    dovecot.reset_uidvalidity(user)
    assert dovecot.uidvalidity(user, pw) != before
    assert [m["uid"] for m in dovecot.messages(user, pw)] == [1, 2]


def test_restart_keeps_mail_and_drops_open_sessions(dovecot, mailbox):
    user, pw = mailbox
    dovecot.append(user, pw, raw_mail("survivor"))
    mb = MailBoxUnencrypted(dovecot.host, dovecot.port).login(user, pw)
    old_pid = dovecot.proc.pid
    dovecot.restart()
    assert dovecot.proc.pid != old_pid
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        mb.client.noop()
        mb.client.noop()
    with MailBoxUnencrypted(dovecot.host, dovecot.port).login(user, pw) as mb2:
        assert [m.subject for m in mb2.fetch(mark_seen=False)] == ["survivor"]


def _live_pids_with(needle: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            pids.append(int(entry))
    return pids


def test_stop_leaves_no_processes(tmp_path):
    server = Dovecot(tmp_path)
    server.start()
    server.add_user("u", "p")
    client = imaplib.IMAP4(server.host, server.port)
    client.login("u", "p")
    client.select()
    # child processes are titled "dovecot-<instance_name>/<service>"
    instance = f"mailbot-test-{server.port}"
    assert len(_live_pids_with(instance)) >= 3
    started = time.monotonic()
    server.cleanup()
    assert time.monotonic() - started < 2
    assert _live_pids_with(instance) == []
    assert _live_pids_with(str(server.conf_path)) == []
    assert not server.root.exists()
    assert (tmp_path / "dovecot.log").exists()


# ------------------------------------------------------------------ SMTP


def chinese_message(to: str = "unit@example.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "进度报告机器人 <mailbot@example.test>"
    msg["To"] = to
    msg["Subject"] = "【催报】请于本周五前报送第三季度进度"
    msg.set_content("各单位：\n\n请尽快报送进度报告。\n\n谢谢！\n")
    return msg


def test_smtp_captures_chinese_message(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as s:
        s.send_message(chinese_message())
    (got,) = smtp_server.wait_for(1)
    assert got.mail_from == "mailbot@example.test"
    assert got.rcpt_tos == ["unit@example.test"]
    assert got.message["Subject"] == "【催报】请于本周五前报送第三季度进度"
    assert got.message["From"].addresses[0].display_name == "进度报告机器人"
    assert "请尽快报送进度报告" in got.message.get_content()
    assert b"=?utf-8?" in got.data  # the header went over the wire RFC 2047-encoded
    assert not got.tls and got.auth_user is None


def test_smtp_requires_starttls_then_auth(smtp_server_tls_auth):
    srv = smtp_server_tls_auth
    user, password = srv.auth
    msg = chinese_message()

    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:  # no STARTTLS
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            s.send_message(msg)
        assert exc.value.smtp_code == 530

    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:  # STARTTLS, no AUTH
        s.starttls(context=client_ssl_context(srv.cafile))
        s.ehlo()
        assert s.has_extn("auth")
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            s.send_message(msg)
        assert exc.value.smtp_code == 530

    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:  # wrong password
        s.starttls(context=client_ssl_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login(user, "wrong")
        assert exc.value.smtp_code == 535

    assert srv.messages == []
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        s.starttls(context=client_ssl_context(srv.cafile))
        s.login(user, password)
        s.send_message(msg)
    (got,) = srv.wait_for(1)
    assert got.tls and got.auth_user == user
    assert got.message["Subject"] == msg["Subject"]
    assert (srv.auth_attempts[-1][1], srv.auth_attempts[-1][2]) == (user, True)


def test_smtp_login_mechanism(smtp_server_tls_auth):
    srv = smtp_server_tls_auth
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        s.starttls(context=client_ssl_context())
        s.ehlo()
        s.user, s.password = srv.auth
        code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert code == 235
        s.sendmail("mailbot@example.test", ["a@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    assert srv.wait_for(1)[0].rcpt_tos == ["a@example.test"]
    assert srv.auth_attempts[-1][0] == "LOGIN"


def test_smtp_fail_with_then_recover(smtp_server):
    srv = smtp_server
    srv.fail_with = (451, "4.3.0 try later")
    with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPResponseException) as exc:
            s.sendmail("mailbot@example.test", ["a@example.test"], b"Subject: 1\r\n\r\nx\r\n")
        assert isinstance(exc.value, smtplib.SMTPDataError)
        assert exc.value.smtp_code == 451
        assert b"try later" in exc.value.smtp_error
        srv.fail_with = (550, "5.7.1 no")
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail("mailbot@example.test", ["a@example.test"], b"Subject: 2\r\n\r\nx\r\n")
        assert exc.value.smtp_code == 550
        srv.fail_with = None
        s.sendmail("mailbot@example.test", ["a@example.test"], b"Subject: 3\r\n\r\nx\r\n")
    (got,) = srv.wait_for(1)
    assert got.message["Subject"] == "3"
    assert [r[2][0] for r in srv.refused] == [451, 550]
    assert srv.attempts == 3


def test_smtp_fail_times_clears_itself(smtp_server):
    srv = smtp_server
    srv.fail_with, srv.fail_times = (421, "4.7.0 busy"), 2
    codes = []
    for i in range(3):
        try:
            with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
                s.sendmail("m@example.test", ["a@example.test"], f"Subject: {i}\r\n\r\nx\r\n".encode())
            codes.append(250)
        except (smtplib.SMTPResponseException, smtplib.SMTPServerDisconnected) as exc:
            codes.append(getattr(exc, "smtp_code", "disconnected"))
    assert codes == [421, 421, 250]
    assert srv.fail_with is None


def test_smtp_drop_connection(smtp_server):
    srv = smtp_server
    srv.drop_connection = True
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
        with smtplib.SMTP(srv.host, srv.port, timeout=5) as s:
            s.sendmail("m@example.test", ["a@example.test"], b"Subject: x\r\n\r\nx\r\n")
    srv.drop_connection = "data"
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as s:
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            s.sendmail("m@example.test", ["a@example.test"], b"Subject: x\r\n\r\nx\r\n")
    assert srv.messages == []
    srv.drop_connection = False
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as s:
        s.sendmail("m@example.test", ["a@example.test"], b"Subject: ok\r\n\r\nx\r\n")
    assert srv.wait_for(1)[0].message["Subject"] == "ok"
