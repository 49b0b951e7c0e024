"""The outbox: every mail we will send is first a row (unique dedupe key, stable Message-ID).

Rows are written in the same transaction as the message that caused them; the
sender loop (daemon) delivers them later with retries.
"""

from __future__ import annotations

import hashlib
import json

import sqlite_utils

from .config import Config
from .store import iso, now_utc
from .templating import render


def make_msgid(cfg: Config, dedupe_key: str) -> str:
    """A Message-ID that is the same every time for the same row (so a retry is recognisably the same mail)."""
    domain = (cfg.smtp.from_addr or cfg.imap.user or "mailbot.invalid").rpartition("@")[2] or "mailbot.invalid"
    digest = hashlib.sha256(dedupe_key.encode("utf-8")).hexdigest()[:32]
    return f"<mailbot.{digest}@{domain}>"


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
        "msgid": make_msgid(cfg, dedupe_key),
        "in_reply_to": in_reply_to,
        "references": refs[-900:] or None,
        "attachments": json.dumps(attachments or [], ensure_ascii=False),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": iso(now_utc()),
        "created_at": iso(now_utc()),
    }
    return db["outbox"].insert(row).last_pk
