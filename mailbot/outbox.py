"""The outbox: every mail we will send is first a row (unique dedupe key, stable Message-ID).

Rows are written in the same transaction as the message that caused them; the
sender loop (daemon) delivers them later with retries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import mimetypes
import smtplib
import socket
import sqlite3
import time
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path

import sqlite_utils

from . import store
from .config import Config
from .errors import ConfigError, MailbotError
from .mime import safe_filename
from .store import iso, now_utc
from .templating import render


def make_msgid(cfg: Config, dedupe_key: str, salt: str = "") -> str:
    """A Message-ID that is the same every time for the same row (so a retry is recognisably the same mail).

    The per-database salt keeps next year's "reminder:年中:民政局:d-7" from reusing this year's ID.
    """
    domain = (cfg.smtp.from_addr or cfg.imap.user or "mailbot.invalid").rpartition("@")[2] or "mailbot.invalid"
    digest = hashlib.sha256(f"{salt}:{dedupe_key}".encode("utf-8")).hexdigest()[:32]
    return f"<mailbot.{digest}@{domain}>"


def _msgid_salt(db) -> str:
    salt = store.kv_get(db, "msgid_salt")
    if salt is None:
        import secrets

        salt = secrets.token_hex(8)
        db.execute("INSERT OR IGNORE INTO kv (key, value, updated_at) VALUES ('msgid_salt', ?, ?)", [salt, iso(now_utc())])
        salt = store.kv_get(db, "msgid_salt")
    return salt


def queue_mail(
    db: sqlite_utils.Database,
    cfg: Config,
    *,
    dedupe_key: str,
    kind: str,
    to: list[str],
    subject: str,
    template: str,
    context: dict,
    cc: list[str] | None = None,
    unit: str | None = None,
    round_name: str | None = None,
    message_row: int | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    attachments: list[dict] | None = None,
) -> int | None:
    """Render the text and HTML bodies and insert an outbox row; None when the key was already queued."""
    existing = list(db.query("SELECT id FROM outbox WHERE dedupe_key = ?", [dedupe_key]))
    if existing:
        return None
    ctx = dict(context, office=cfg.bot.get("office_name", ""))
    refs = " ".join(x for x in ((references or "").split() + ([in_reply_to] if in_reply_to else [])) if x)
    row = {
        "dedupe_key": dedupe_key,
        "kind": kind,
        "unit": unit,
        "round": round_name,
        "message": message_row,
        "to_addrs": json.dumps(sorted(set(to)), ensure_ascii=False),
        "cc_addrs": json.dumps(sorted(set(cc or []) - set(to)), ensure_ascii=False),
        "subject": subject.replace("\r", " ").replace("\n", " "),
        "body_text": render(f"mail/{template}.txt.j2", **ctx),
        "body_html": render(f"mail/{template}.html.j2", **ctx),
        "msgid": make_msgid(cfg, dedupe_key, _msgid_salt(db)),
        "in_reply_to": in_reply_to,
        "references": refs[-900:] or None,
        "attachments": json.dumps(attachments or [], ensure_ascii=False),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": None,  # due at once
        "created_at": iso(now_utc()),
    }
    return store.insert(db, "outbox", row)


# --- delivery ---------------------------------------------------------------------------------

log = logging.getLogger(__name__)

REPLY_KINDS = ("ack", "reject", "stranger")  # answers to a message: rate-limited per sender, not sent for old mail


class SmtpError(MailbotError):
    """The SMTP server could not be reached or refused us."""


class SmtpLoginRefused(SmtpError):
    pass


@dataclass
class DeliveryStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    suppressed: int = 0


def from_header(name: str, addr: str) -> Address | str:
    """The From value: a structured address, so the display name is quoted when it needs it and
    RFC 2047-encoded (UTF-8) when it is Chinese. A value Address refuses (an [smtp] user that is
    a login name rather than an address, used as the sender) falls back to formataddr, as before."""
    name = " ".join((name or "").split())
    try:
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, HeaderParseError):
        return formataddr((name, addr), charset="utf-8")


def build_email(cfg: Config, row: dict) -> EmailMessage:
    """The MIME message for an outbox row: text + HTML, threading and anti-loop headers."""
    msg = EmailMessage()
    from_addr = cfg.smtp.from_addr or cfg.smtp.user
    msg["From"] = from_header(cfg.smtp.from_name or cfg.bot.get("office_name", ""), from_addr)
    msg["To"] = ", ".join(json.loads(row["to_addrs"]))
    cc = json.loads(row["cc_addrs"] or "[]")
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = row["subject"]
    msg["Date"] = format_datetime(dt.datetime.now(dt.timezone.utc).astimezone(cfg.tz))
    msg["Message-ID"] = row["msgid"]
    if row["in_reply_to"]:
        msg["In-Reply-To"] = row["in_reply_to"]
    if row["references"]:
        msg["References"] = row["references"]
    # RFC 3834: mark what we send as automatic, and ask Exchange not to auto-reply to it.
    msg["Auto-Submitted"] = "auto-replied" if row["kind"] in REPLY_KINDS else "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[cfg.bot["loop_header"]] = from_addr or "mailbot"
    msg.set_content(row["body_text"])
    if row["body_html"]:
        msg.add_alternative(row["body_html"], subtype="html")
    for att in json.loads(row["attachments"] or "[]"):
        path = Path(att["path"])
        data = path.read_bytes()
        ctype = att.get("content_type") or mimetypes.guess_type(att.get("name") or path.name)[0] or "application/octet-stream"
        maintype, _, subtype = ctype.partition("/")
        # The name may carry a unit's name: no line breaks or path parts in what the recipient saves.
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=safe_filename(att.get("name"), path.name))
    return msg


def _connect_smtp(cfg: Config) -> smtplib.SMTP:
    s = cfg.smtp
    timeout = s.options.get("timeout_seconds", 60)
    from .mailbox import tls_context

    ctx = tls_context(s)
    try:
        if s.security == "ssl":
            conn = smtplib.SMTP_SSL(s.host, s.port, timeout=timeout, context=ctx)
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=timeout)
            if s.security == "starttls":
                conn.starttls(context=ctx)
        if s.user:
            try:
                conn.login(s.user, s.password())
            except smtplib.SMTPAuthenticationError:
                conn.close()
                from .mailbox import login_hint

                raise SmtpLoginRefused(f"SMTP 登录 {s.host} 被拒绝（用户 {s.user}）：{login_hint(s.host)}") from None
        return conn
    except (OSError, smtplib.SMTPException) as err:
        raise SmtpError(f"无法连接 SMTP 服务器 {s.host}:{s.port}（{s.security}）：{str(err)[:200] or type(err).__name__}") from err


def _quiet(cfg: Config, now: dt.datetime) -> bool:
    from .notices import quiet

    return quiet(cfg, now)


def _backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 6 * 3600))


def _over_rate_limit(db, cfg: Config, row: dict, now: dt.datetime) -> bool:
    """Replies are capped per day (QUIRKS 20), counted per sender of the mail answered: strangers
    writing in a unit's name use up their own budget, never the unit's; reminders are not replies."""
    if row["kind"] not in REPLY_KINDS:
        return False
    limit = int(cfg.smtp.options.get("max_replies_per_address_per_day", 20))
    since = store.iso(now - dt.timedelta(days=1))
    sender = db.execute("SELECT from_addr FROM messages WHERE id = ?", [row["message"]]).fetchone() if row["message"] else None
    if sender and sender[0]:
        sent = db.execute(
            "SELECT COUNT(*) FROM outbox o JOIN messages m ON m.id = o.message WHERE o.status = 'sent' "
            f"AND o.kind IN ({', '.join('?' for _ in REPLY_KINDS)}) AND o.sent_at >= ? AND m.from_addr = ?",
            [*REPLY_KINDS, since, sender[0]],
        ).fetchone()[0]
        return sent >= limit
    for addr in json.loads(row["to_addrs"]) + json.loads(row["cc_addrs"] or "[]"):
        sent = db.execute(
            f"SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND kind IN ({', '.join('?' for _ in REPLY_KINDS)}) AND sent_at >= ? "
            "AND (EXISTS (SELECT 1 FROM json_each(outbox.to_addrs) WHERE value = ?) "
            "OR EXISTS (SELECT 1 FROM json_each(outbox.cc_addrs) WHERE value = ?))",
            [*REPLY_KINDS, since, addr, addr],
        ).fetchone()[0]
        if sent >= limit:
            return True
    return False


def _too_old(db, cfg: Config, row: dict, now: dt.datetime) -> bool:
    if row["kind"] not in REPLY_KINDS or not row["message"]:
        return False
    if ":by-" in (row.get("dedupe_key") or ""):
        since = row["created_at"]  # a person accepted an old mail just now: its receipt is news
    else:
        since = db["messages"].get(row["message"])["received_at"]
    return now - dt.datetime.fromisoformat(since) > dt.timedelta(days=int(cfg.bot.get("reply_max_age_days", 14)))


def _finish(db, row_id: int, **fields) -> None:
    """One plain UPDATE under BEGIN IMMEDIATE: a read-then-write in a deferred transaction
    fails at once ("database is locked") when the poll commits in between, and a row whose
    sending is not recorded is sent again."""
    cols = ", ".join(f"{k} = ?" for k in fields)
    with store.write_transaction(db):
        db.execute(f"UPDATE outbox SET {cols} WHERE id = ?", [*fields.values(), row_id])


def _record_sent(db, row_id: int, **fields) -> None:
    """The only record that a mail went out: retried rather than lost to a busy database."""
    for attempt in range(5):
        try:
            return _finish(db, row_id, **fields)
        except sqlite3.OperationalError as err:
            if attempt == 4:
                raise
            log.warning("could not record outbox row %s as sent (%s); retrying", row_id, err)
            time.sleep(1 + attempt)


def deliver(cfg: Config, db, *, now: dt.datetime | None = None, limit: int = 200, stop=None, sent_copy=None) -> DeliveryStats:
    """Send due outbox rows; each row's result is committed on its own. Never raises for SMTP trouble."""
    stats = DeliveryStats()
    now = now or now_utc()
    rows = list(
        db.query(
            "SELECT * FROM outbox WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
            [iso(now), limit],
        )
    )
    if not rows:
        return stats
    conn = None
    try:
        for row in rows:
            if stop is not None and stop.is_set():
                break
            if _too_old(db, cfg, row, now):
                _finish(db, row["id"], status="skipped", last_error="邮件收到时间超过回复期限（首次导入的旧邮件），不再回复")
                stats.suppressed += 1
                continue
            if _over_rate_limit(db, cfg, row, now):
                _finish(db, row["id"], status="suppressed", last_error="超过同一地址每日回复上限，未发送")
                stats.suppressed += 1
                continue
            if row["kind"] not in REPLY_KINDS and _quiet(cfg, now):
                continue  # reminders and digests wait for the morning; replies to a mail do not
            try:
                message = build_email(cfg, row)
            except Exception as err:  # noqa: BLE001 - one bad row (vanished attachment, odd header) must not block the rest
                _finish(db, row["id"], status="failed", last_error=f"无法生成邮件：{type(err).__name__}: {err}"[:300])
                log.error("outbox %s could not be built: %s", row["id"], err)
                stats.failed += 1
                continue
            recipients = json.loads(row["to_addrs"]) + json.loads(row["cc_addrs"] or "[]")
            try:
                if conn is None:
                    conn = _connect_smtp(cfg)
                refused = conn.send_message(message, from_addr=cfg.smtp.from_addr or cfg.smtp.user, to_addrs=recipients)
            except (SmtpError, ConfigError, smtplib.SMTPException, OSError, socket.timeout) as err:
                attempts = (row["attempts"] or 0) + 1
                # The server being down or refusing us is not this mail's fault: it waits, however long.
                server_level = isinstance(err, (SmtpError, ConfigError, OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError))
                permanent = isinstance(err, smtplib.SMTPRecipientsRefused) or (
                    isinstance(err, smtplib.SMTPResponseException) and 500 <= err.smtp_code < 600 and attempts >= 3
                )
                text = str(err)[:300] or type(err).__name__
                if not server_level and permanent:  # 4xx and outages wait (6 h at most between tries); never dropped
                    _finish(db, row["id"], status="failed", attempts=attempts, last_error=text)
                    stats.failed += 1
                else:
                    _finish(db, row["id"], attempts=attempts, last_error=text, next_attempt_at=iso(now + _backoff(attempts)))
                    stats.retried += 1
                log.warning("outbox %s (%s to %s): %s", row["id"], row["kind"], ",".join(recipients), text)
                if conn is not None and not isinstance(err, (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)):
                    _close(conn)
                    conn = None
                if server_level:
                    break  # the server is unreachable: the rest wait for the next run
                continue
            note = f"部分收件人被拒收：{', '.join(refused)}" if refused else None
            _record_sent(db, row["id"], status="sent", attempts=(row["attempts"] or 0) + 1, sent_at=iso(now), last_error=note)
            stats.sent += 1
            if sent_copy is not None:
                try:
                    sent_copy(message)
                except Exception as err:  # noqa: BLE001 - the copy is a courtesy; the mail went out
                    log.warning("could not save a copy of outbox %s to the Sent folder: %s", row["id"], err)
    finally:
        if conn is not None:
            _close(conn)
    return stats


def _close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except Exception:  # noqa: BLE001
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
