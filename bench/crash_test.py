"""Crash safety under fault injection: SIGKILL the real daemon at random moments during a backfill.

    .venv/bin/python bench/crash_test.py [-n 600] [--kills 25] [--seed S] [--kill-mode group|main] [--keep]

Starts a private Dovecot and the SMTP test sink (tests/servers.py), loads the
mailbox with a seeded mix of report mails (good, late, resubmitted, exact and
Message-ID duplicates, broken, non-roster, auto-replies), then runs the daemon
exactly as the service does (`.venv/bin/mailbot --config CFG run`) and SIGKILLs
its process group at random moments drawn from the seed (some during start-up,
most while the backlog is being fetched/parsed/recorded and acknowledgements are
being sent), restarting it each time, until the mailbox is fully processed and
the outbox is empty; then stops it with SIGTERM and checks, from the SQLite state
and the SMTP sink's record:

(a) one final status per IMAP message: each (folder, UIDVALIDITY, UID) has exactly
    one `messages` row, with a reason unless accepted, and the status the corpus
    says it must have; per Message-ID exactly one non-duplicate row (the lowest
    UID), every other copy is `duplicate` pointing at it; no other rows;
(b) every (round, unit, task) holds the text of the latest (by INTERNALDATE)
    accepted report that had non-empty text for it, computed from the corpus;
    one `reports` row per accepted message and one history row per filled task;
(c) every message that must be answered has exactly one ack/reject outbox row,
    and it is `sent`; no reply rows for the others;
(d) how many times each reply reached the SMTP sink; every extra delivery must be
    explained by a kill that landed after the sink had the mail and before the row
    was marked sent (the mail is the last one the sink got before that kill), so
    duplicates <= kills.

Options beyond the brief: ``--kill-mode main`` SIGKILLs only the main process (as the OOM
killer would) and reports the worker processes it leaves behind; ``--moved-in K`` appends K
resubmissions last with their earlier INTERNALDATE (mail moved in from Junk), so UID order
differs from received-time order.

Needs Dovecot (Debian dovecot-imapd). Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import email.policy
import hashlib
import imaplib
import json
import logging
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mailbot.config import Config, load_config  # noqa: E402
from mailbot.forms import render_form  # noqa: E402
from servers import Dovecot, SmtpServer  # noqa: E402

MAILBOT = ROOT / ".venv" / "bin" / "mailbot"
FINAL_STATUSES = {"accepted", "duplicate", "quarantined", "rejected", "ignored"}
DOCX = ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document")
USER, PASSWORD = "xxqzwgk001@example.test", "crash-test-pw"

# Share of each kind of original mail (duplicates are added on top, see build_corpus).
WEIGHTS = {
    "report": 0.62,  # a roster unit's filled form: on time or late, first or resubmission (split by time below)
    "unverified": 0.03,  # unknown sender, the form names a roster unit: accepted unverified, ack to the unit, a notice to the sender
    "bulk": 0.02,  # roster report with Precedence: bulk: accepted, recorded without a reply
    "pdf": 0.03,  # roster sender, a PDF: rejected
    "corrupt": 0.03,  # roster sender, a truncated .docx: rejected
    "empty": 0.02,  # roster sender, no body, no attachment: rejected
    "blankform": 0.02,  # roster sender, the form with every progress cell blank: rejected
    "stranger": 0.03,  # unknown sender naming no unit: quarantined, no reply
    "autoreply": 0.03,  # an auto-reply from a roster address: ignored, no reply
}
DUP_SHARE = 0.15  # duplicates of earlier mails: 2/3 the same bytes, 1/3 the same Message-ID with other bytes
EXPECT = {  # kind → (status, reply kind)
    "report": ("accepted", "ack"),
    "unverified": ("accepted", "ack"),
    "bulk": ("accepted", None),
    "pdf": ("rejected", "reject"),
    "corrupt": ("rejected", "reject"),
    "empty": ("rejected", "reject"),
    "blankform": ("rejected", "reject"),
    "stranger": ("quarantined", None),
    "autoreply": ("ignored", None),
    "dup_exact": ("duplicate", None),
    "dup_msgid": ("duplicate", None),
}


# --- the corpus ---------------------------------------------------------------------------------


@dataclass
class Mail:
    idx: int
    kind: str
    when: dt.datetime  # the INTERNALDATE it is appended with: the daemon's received time
    message_id: str
    sender: str
    raw: bytes = b""
    unit: str | None = None  # expected unit (None: none identified)
    verified: bool = True
    texts: dict[int, str] = field(default_factory=dict)  # non-empty progress cells of the form
    dup_of: "Mail | None" = None
    uid: int = 0
    label: str = ""  # report: good / resubmission / late (+ boundary)

    @property
    def status(self) -> str:
        return EXPECT[self.kind][0]

    @property
    def reply(self) -> str | None:
        return EXPECT[self.kind][1]


def expected_round(cfg: Config, t: dt.datetime):
    """DESIGN.md: the latest round whose opens <= t (before the first opens: the first); late from
    midnight after the deadline day, local time. Re-implemented here from the config's dates."""
    rounds = sorted(cfg.rounds, key=lambda r: r.opens)
    chosen = rounds[0]
    for r in rounds:
        if r.opens <= t:
            chosen = r
    late_from = dt.datetime.combine(chosen.deadline + dt.timedelta(days=1), dt.time(0), cfg.tz)
    return chosen.name, t >= late_from


def _message(sender_name: str, sender: str, subject: str | None, date: dt.datetime, mid: str, body: str | None,
             attachments=(), headers: dict | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{sender_name} <{sender}>"
    msg["To"] = USER
    if subject is not None:
        msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = mid
    for k, v in (headers or {}).items():
        msg[k] = v
    if body is not None:
        msg.set_content(body)
    for name, data, (maintype, subtype) in attachments:
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=email.policy.SMTP)


def build_corpus(cfg: Config, n: int, rng: random.Random, moved_in: int = 0) -> list[Mail]:
    """n mails in INTERNALDATE order (the order they are appended, so UID order = time order).

    ``moved_in``: that many of the reports are appended last instead (the highest UIDs) while
    keeping their earlier INTERNALDATE, as when someone moves a report from Junk to the INBOX
    (IMAP COPY/MOVE keeps INTERNALDATE): the latest by received time must still win."""
    units = list(cfg.roster)
    rounds = sorted(cfg.rounds, key=lambda r: r.opens)
    tz = cfg.tz
    n_dup = max(2, round(n * DUP_SHARE))
    n_orig = n - n_dup
    kinds = list(WEIGHTS)
    if n_orig < len(kinds) + 3:
        raise SystemExit(f"-n {n} is too small: need at least {len(kinds) + 3 + n_dup} mails")
    plan = kinds + ["report"] * 3 + rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds], k=n_orig - len(kinds) - 3)
    rng.shuffle(plan)

    def local(y, m, d, hh=0, mm=0, ss=0):
        return dt.datetime(y, m, d, hh, mm, ss, tzinfo=tz)

    year_start, year_end = rounds[0].opens, local(2023, 12, 31, 23, 59, 59)
    used: set[int] = set()

    def unique(t: dt.datetime) -> dt.datetime:
        t = t.replace(microsecond=0)
        while int(t.timestamp()) in used:
            t += dt.timedelta(seconds=1)
        used.add(int(t.timestamp()))
        return t

    def between(a: dt.datetime, b: dt.datetime) -> dt.datetime:
        return a + dt.timedelta(seconds=rng.randrange(int((b - a).total_seconds())))

    def report_time() -> dt.datetime:
        i = rng.randrange(len(rounds))
        r = rounds[i]
        late_from = dt.datetime.combine(r.deadline + dt.timedelta(days=1), dt.time(0), tz)
        end = rounds[i + 1].opens if i + 1 < len(rounds) else year_end
        if rng.random() < 0.18:
            return between(late_from, end)
        return between(r.opens, late_from)

    mails: list[Mail] = []
    # Boundary times: the last on-time second, the first late second, before the first round opens.
    first = rounds[0]
    first_late = dt.datetime.combine(first.deadline + dt.timedelta(days=1), dt.time(0), tz)
    boundary = [first_late - dt.timedelta(seconds=1), first_late, first.opens - dt.timedelta(days=3)]
    for i, kind in enumerate(plan):
        if kind == "report" and boundary:
            when, label = unique(boundary.pop(0)), "boundary"
        elif kind in ("report", "bulk", "unverified"):
            when, label = unique(report_time()), ""
        else:
            when, label = unique(between(year_start, year_end)), ""
        mails.append(Mail(i, kind, when, f"<crash-{i}-{rng.getrandbits(40):x}@units.example>", "", label=label))

    blank_forms: dict[str, bytes] = {}
    for m in mails:
        unit = rng.choice(units)
        # The Date: header is the sender's clock: up to three days off, so using it instead of
        # INTERNALDATE would put some mails in the wrong round or lateness.
        date_hdr = m.when - dt.timedelta(seconds=rng.randrange(3 * 86400))
        if m.kind in ("report", "bulk", "unverified"):
            tasks = cfg.roster.tasks_of(unit, cfg.ledger)
            if rng.random() < 0.4:  # a partial form: the blank cells must keep the earlier text
                tasks = sorted(rng.sample(tasks, rng.randint(1, max(1, len(tasks) * 9 // 10))))
            token = f"{rng.getrandbits(32):08x}"
            m.texts = {t: f"{unit.name}第{t}项进展：邮件{m.idx}的版本 {token}，已完成 & <核查>" for t in tasks}
            form = render_form(cfg, unit.name, progress=m.texts, contact="张三", phone="0951-1234567")
            m.unit = unit.name
            headers = {"Precedence": "bulk"} if m.kind == "bulk" else None
            if m.kind == "unverified":
                m.sender, m.verified = f"staff{m.idx}@personal.example", False
                m.raw = _message("张三", m.sender, "报送台账", date_hdr, m.message_id, "附件是台账。",
                                 [("台账.docx", form, DOCX)])
            else:
                m.sender = unit.emails[0]
                m.raw = _message(unit.name, m.sender, f"{unit.name}报送台账（邮件{m.idx}）", date_hdr, m.message_id,
                                 "附件是我单位的台账，请查收。", [(f"{unit.name}台账.docx", form, DOCX)], headers)
        elif m.kind in ("pdf", "corrupt", "empty", "blankform"):
            m.sender, m.unit = unit.emails[0], unit.name
            if unit.name not in blank_forms:
                blank_forms[unit.name] = render_form(cfg, unit.name)
            blank = blank_forms[unit.name]
            att = {
                "pdf": [(f"{unit.name}台账.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", ("application", "pdf"))],
                "corrupt": [(f"{unit.name}台账.docx", blank[: len(blank) // 2], DOCX)],
                "empty": [],
                "blankform": [(f"{unit.name}台账.docx", blank, DOCX)],
            }[m.kind]
            if m.kind == "empty":
                m.raw = _message(unit.name, m.sender, None, date_hdr, m.message_id, None)
            else:
                m.raw = _message(unit.name, m.sender, f"{unit.name}台账（邮件{m.idx}）", date_hdr, m.message_id, "请查收。", att)
        elif m.kind == "stranger":
            m.sender, m.verified = f"someone{m.idx}@elsewhere.example", False
            subject = "请问这个表格怎么填写"
            assert cfg.roster.match(subject) is None
            m.raw = _message("路人", m.sender, subject, date_hdr, m.message_id, "你好，请问在哪里下载表格？")
        elif m.kind == "autoreply":
            m.sender, m.unit = unit.emails[0], None
            m.raw = _message(unit.name, m.sender, "自动回复：我正在休假", date_hdr, m.message_id, "我正在休假，回来后回复。",
                             headers={"Auto-Submitted": "auto-replied"})

    # Duplicates: a later copy of an earlier original (never of another copy).
    originals = list(mails)
    for j in range(n_dup):
        orig = rng.choice(originals)
        kind = "dup_exact" if j % 3 != 2 else "dup_msgid"
        when = unique(orig.when + dt.timedelta(seconds=rng.randrange(60, 10 * 86400)))
        raw = orig.raw
        if kind == "dup_msgid":  # delivered again by another relay: one more Received line, same Message-ID
            raw = f"Received: from relay{j}.example by mx.example; {format_datetime(when)}\r\n".encode() + raw
        mails.append(Mail(len(mails), kind, when, orig.message_id, orig.sender, raw, orig.unit, orig.verified, {}, orig))

    mails.sort(key=lambda m: m.when)
    seen: set[tuple[str, str]] = set()
    for m in sorted(mails, key=lambda m: m.when):
        if m.kind in ("report", "bulk", "unverified"):
            rnd, late = expected_round(cfg, m.when)
            key = (rnd, m.unit)
            tag = "late" if late else ("resubmission" if key in seen else "good")
            m.label = f"{tag}+boundary" if m.label == "boundary" else tag
            seen.add(key)
    if moved_in:
        # Reports with an earlier report of the same unit and round after them, so order matters.
        later = collections.Counter()
        candidates = []
        copied = {id(m.dup_of) for m in mails if m.dup_of is not None}
        for m in reversed(mails):
            if m.kind == "report" and id(m) not in copied:
                key = (expected_round(cfg, m.when)[0], m.unit)
                if later[key]:
                    candidates.append(m)
                later[key] += 1
        moved = rng.sample(candidates, min(moved_in, len(candidates)))
        for m in moved:
            m.label += "+moved-in"
        mails = [m for m in mails if m not in moved] + sorted(moved, key=lambda m: m.when)
    return mails


def corpus_summary(mails: list[Mail]) -> dict[str, int]:
    out = collections.Counter()
    for m in mails:
        out[f"{m.kind}:{m.label}" if m.kind == "report" else m.kind] += 1
    return dict(sorted(out.items()))


def expected_progress(cfg: Config, mails: list[Mail]) -> dict[tuple[str, str, int], tuple[str, str]]:
    """(round, unit, task) → (text, Message-ID) of the latest accepted report with text for it; a verified
    sender's text is never replaced by an unverified one (docs/RELIABILITY.md, issue 11)."""
    expected: dict[tuple[str, str, int], tuple[str, str, bool]] = {}
    for m in sorted(mails, key=lambda m: m.when):
        if m.status != "accepted":
            continue
        rnd, _late = expected_round(cfg, m.when)
        for task, text in m.texts.items():
            key = (rnd, m.unit, task)
            if text and (key not in expected or m.verified or not expected[key][2]):
                expected[key] = (text, m.message_id, m.verified)
    return {k: v[:2] for k, v in expected.items()}


def load_mailbox(dovecot: Dovecot, mails: list[Mail]) -> int:
    """APPEND every mail with its INTERNALDATE; returns the UIDVALIDITY and sets each mail's UID."""
    validity = None
    with dovecot.imap(USER, PASSWORD) as c:
        for m in mails:
            typ, data = c.append("INBOX", None, imaplib.Time2Internaldate(m.when), m.raw)
            text = data[0].decode() if data and isinstance(data[0], bytes) else str(data)
            found = re.search(r"APPENDUID (\d+) (\d+)", text)
            if typ != "OK" or not found:
                raise RuntimeError(f"APPEND failed: {typ} {data!r}")
            validity, m.uid = int(found.group(1)), int(found.group(2))
        # The server's INTERNALDATE is what the daemon will use: make sure it is what we meant.
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(UID INTERNALDATE)")
        got = {}
        for line in data:
            if isinstance(line, bytes):
                uid = int(re.search(rb"UID (\d+)", line).group(1))
                got[uid] = dt.datetime.strptime(re.search(rb'INTERNALDATE "([^"]+)"', line).group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
    for m in mails:
        if got.get(m.uid) != m.when:
            raise RuntimeError(f"UID {m.uid}: INTERNALDATE {got.get(m.uid)} != {m.when}")
    return validity


# --- the daemon under fault injection --------------------------------------------------------------


def write_config(work: Path, dovecot: Dovecot, smtp: SmtpServer) -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    rounds_and_units = text[text.index("[[rounds]]"):]
    path = work / "crash.toml"
    path.write_text(
        f"""# written by bench/crash_test.py
[bot]
state_dir = "{work / 'state'}"
timezone = "Asia/Shanghai"
poll_interval_seconds = 1
outbox_interval_seconds = 1
# a backfill of 2023 mail: answer it all (the default recorded old mail without a reply)
reply_max_age_days = 1000000
max_unverified_receipts_per_unit_per_day = 1000000  # every unverified report gets its receipt: the check expects one per report

[imap]
host = "127.0.0.1"
port = {dovecot.port}
security = "plain"
user = "{USER}"
password_env = "CRASH_IMAP_PASSWORD"
folders = ["INBOX"]

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "plain"
user = ""
password_env = "CRASH_SMTP_PASSWORD"
from = "{USER}"
# one unit may resubmit many times: no per-address cap here (the cap is tested elsewhere)
max_replies_per_address_per_day = 1000000

[coordinator]
emails = ["duchashi@xixia.example"]

[notices]
quiet_hours = ""
interval_seconds = 5

{rounds_and_units}""",
        encoding="utf-8",
    )
    return path


def _proc_stat(pid: int):
    """(state, ppid, pgrp, starttime) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[19])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def descendants(root: int) -> dict[int, int]:
    """pid → starttime of every live process below ``root``."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    starts = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st and st[0] != b"Z":
                children[st[1]].append(int(entry))
                starts[int(entry)] = st[3]
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = starts[child]
            todo.append(child)
    return out


def _alive(pid: int, start: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[0] != b"Z" and st[3] == start


def group_members(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st and st[2] == pgid and st[0] != b"Z":
                found.append(int(entry))
    return found


@dataclass
class Kill:
    n: int
    life: int
    at: float  # seconds since that life started
    phase: str  # startup / backfill / sending / idle
    trigger: str
    messages: int | None
    sent: int | None
    smtp_count: int  # messages the sink had when the daemon was dead (after a short settle)
    children: int  # descendants of the daemon just before the kill
    orphans: list[str] = field(default_factory=list)


@dataclass
class Result:
    mails: int = 0
    corpus: dict = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    lives: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    final_rc: int | None = None
    final_leftovers: list[str] = field(default_factory=list)
    one_status: int = 0
    status_problems: list[str] = field(default_factory=list)
    progress_cells: int = 0
    progress_mismatches: list[str] = field(default_factory=list)
    report_problems: list[str] = field(default_factory=list)
    replies_expected: int = 0
    lost_ack_rows: list[str] = field(default_factory=list)
    unsent_rows: list[str] = field(default_factory=list)
    extra_reply_rows: list[str] = field(default_factory=list)
    other_outbox: dict = field(default_factory=dict)
    histogram: dict = field(default_factory=dict)
    no_reply_histogram: dict = field(default_factory=dict)
    other_deliveries: dict = field(default_factory=dict)  # kind → {deliveries per row: rows} for notices/alerts
    duplicates: list[str] = field(default_factory=list)  # explained extra deliveries
    unexplained: list[str] = field(default_factory=list)
    smtp_problems: list[str] = field(default_factory=list)
    export_problems: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    tracebacks: int = 0
    archive_tmp_files: int = 0  # .tmp-* files left in state/archive by kills during a write
    notices_due: list = field(default_factory=list)  # `notices --json` after the run: due and never queued
    error_lines: int = 0
    finish_locked: int = 0
    locked_by_life: dict = field(default_factory=dict)
    life_smtp_start: dict = field(default_factory=dict)  # life → sink count when it started  # outbox jobs that died marking a delivered row sent ("database is locked" in _finish)
    timed_out: bool = False
    wall: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.status_problems or self.progress_mismatches or self.report_problems or self.lost_ack_rows
            or self.unsent_rows or self.extra_reply_rows or self.unexplained or self.smtp_problems
            or self.export_problems or self.orphans or self.final_leftovers or self.unexpected_exits
            or self.timed_out or self.final_rc != 0 or len(self.duplicates) > len(self.kills)
        )


class Harness:
    def __init__(self, cfg_path: Path, db_path: Path, log_path: Path, smtp: SmtpServer, total_mail: int,
                 kill_mode: str, say):
        self.cfg_path, self.db_path, self.log_path = cfg_path, db_path, log_path
        self.smtp, self.total_mail, self.kill_mode, self.say = smtp, total_mail, kill_mode, say
        self.env = dict(os.environ, CRASH_IMAP_PASSWORD=PASSWORD, CRASH_SMTP_PASSWORD="unused", PYTHONUNBUFFERED="1")
        self.env.pop("MAILBOT_CONFIG", None)
        self.proc: subprocess.Popen | None = None
        self.life = 0
        self.smtp_at_start: dict[int, int] = {}
        self.started = 0.0
        self.log_offset = 0

    def start(self) -> None:
        self.life += 1
        self.smtp_at_start[self.life] = len(self.smtp.messages)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== life {self.life} =====\n".encode())
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(
                [str(MAILBOT), "--config", str(self.cfg_path), "run"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=str(self.cfg_path.parent),
                start_new_session=True,  # its own process group, like a systemd unit's cgroup
            )
        self.started = time.monotonic()

    def running_logged(self) -> bool:
        """The daemon has opened the database and logged "mailbot running" (its own recovery is done)."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return b"mailbot running" in f.read()

    def progress(self):
        """(messages rows, sent rows, pending rows) read without writing, or None."""
        try:
            con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=2)
            try:
                m = con.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
                s = con.execute("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").fetchone()[0]
                p = con.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
                return m, s, p
            finally:
                con.close()
        except sqlite3.Error:
            return None

    def kill(self) -> tuple[int, list[str]]:
        """SIGKILL the daemon (its whole process group, or only the main process); returns
        (children it had, orphans that were still alive 2 s later, which are then killed)."""
        proc = self.proc
        before = descendants(proc.pid)
        if self.kill_mode == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.proc = None
        deadline = time.monotonic() + 2.0
        while True:
            alive = [pid for pid, start in before.items() if _alive(pid, start)] + group_members(proc.pid)
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        orphans = []
        for pid in sorted(set(alive)):
            orphans.append(f"pid {pid}: {_cmdline(pid)[:120]}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(before), orphans

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def terminate(self, timeout: float = 120) -> tuple[int | None, list[str]]:
        proc = self.proc
        kids = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        time.sleep(0.5)
        left = [f"pid {pid}: {_cmdline(pid)[:120]}" for pid, start in kids.items() if _alive(pid, start)]
        left += [f"pid {pid}: {_cmdline(pid)[:120]}" for pid in group_members(proc.pid)]
        for entry in left:
            try:
                os.kill(int(entry.split()[1].rstrip(":")), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        self.proc = None
        return rc, sorted(set(left))


def drive(h: Harness, rng: random.Random, kills: int, total_replies: int, result: Result, timeout: float) -> None:
    """Start, kill at seeded moments, restart … until all mail is recorded and the outbox is empty.

    Each life draws one trigger: a time after start (start-up: imports, schema, login, first
    fetch), a number of further messages recorded (the backfill), or a number of further
    outbox rows sent (sending, which runs beside the backfill); then a few ms of jitter.
    """
    deadline = time.monotonic() + timeout
    done_since = None
    while True:
        h.start()
        mode = trigger = None
        remaining = kills - len(result.kills)
        r = rng.random()
        if remaining > 0:
            if r < 0.15:
                mode, at = "time", rng.uniform(0.0, 1.5)
                trigger = f"{at:.2f}s after start"
            else:
                mode, r = "messages", rng.random()  # or "sent": decided once the daemon's progress is known
        jitter = rng.uniform(0.0, 0.03)
        base = last = delta = None
        if mode != "time":
            at = None
        ready = False
        smtp_seen, smtp_changed = len(h.smtp.messages), 0.0
        while True:
            if time.monotonic() > deadline:
                result.timed_out = True
                return
            rc = h.exited()
            if rc is not None:
                tail = h.log_path.read_text(errors="replace")[-1500:]
                result.unexpected_exits.append(f"life {h.life}: exit code {rc}; log tail:\n{tail}")
                h.say(f"  daemon exited by itself (code {rc}), restarting")
                h.proc = None
                if len(result.unexpected_exits) > 5:
                    result.timed_out = True
                    return
                break
            elapsed = time.monotonic() - h.started
            if len(h.smtp.messages) != smtp_seen:
                smtp_seen, smtp_changed = len(h.smtp.messages), time.monotonic()
            if not ready:
                ready = h.running_logged()
            if ready:
                got = h.progress()
                if got is not None:
                    last = got
                    if base is None:
                        base = got
                        if mode in ("messages", "sent"):
                            # While mail is left, most lives end during the backfill (about 40 % of
                            # the kills in all); the rest end after some rows were sent.
                            mode = "messages" if got[0] < h.total_mail and r < 0.9 else "sent"
                        if mode == "messages":
                            backfill_left = max(1, round(0.4 * kills) - sum(k.phase.startswith("backfill") for k in result.kills))
                            delta = rng.randint(1, max(1, 2 * (h.total_mail - got[0]) // (backfill_left + 1)))
                            trigger = f"+{delta} messages recorded"
                        elif mode == "sent" and got[0] < h.total_mail:
                            delta = rng.randint(1, 5)  # sending beside the backfill: a few rows …
                            at = elapsed + rng.uniform(1.0, 4.0)  # … or, if sending is stuck, a time
                            trigger = f"+{delta} rows sent or {at:.1f}s after start"
                        elif mode == "sent":
                            delta = rng.randint(1, max(1, 2 * max(1, total_replies - got[1]) // (remaining + 1)))
                            trigger = f"+{delta} rows sent"
            done = last is not None and last[0] >= h.total_mail and last[2] == 0
            fire = False
            if mode == "time" and elapsed >= at:
                fire = True
            elif mode == "sent" and at is not None and elapsed >= at:
                fire = True
            elif mode in ("messages", "sent") and base is not None and last is not None:
                i = 0 if mode == "messages" else 1
                if last[i] - base[i] >= delta:
                    fire = True
                elif done:
                    fire, trigger = True, f"idle ({trigger}: nothing left)"
            if fire:
                time.sleep(jitter)
                sending = time.monotonic() - smtp_changed < 0.25
                if last is None or (last == base and not sending):
                    phase = "startup"
                elif last[0] < h.total_mail:
                    phase = "backfill+sending" if sending else "backfill"
                elif last[2] > 0 or sending:
                    phase = "sending"
                else:
                    phase = "idle"
                children, orphans = h.kill()
                time.sleep(0.3)  # let the sink finish any DATA that was fully transmitted
                k = Kill(len(result.kills) + 1, h.life, round(elapsed + jitter, 3), phase, trigger,
                         last[0] if last else None, last[1] if last else None, len(h.smtp.messages), children, orphans)
                result.kills.append(k)
                result.orphans.extend(orphans)
                h.say(f"  kill {k.n:>2} life {k.life:>2} at {k.at:6.2f}s [{phase:16}] {trigger}: messages {k.messages}, "
                      f"sent {k.sent}, smtp {k.smtp_count}, children {children}" + (f", ORPHANS {orphans}" if orphans else ""))
                break
            if done and len(result.kills) >= kills:
                # Done: keep running for two notices runs (every 5 s) so that what they queue is
                # sent too, then stop as the service is stopped.
                done_since = done_since or time.monotonic()
                if time.monotonic() - done_since > 12.0:
                    rc, left = h.terminate()
                    result.final_rc, result.final_leftovers = rc, left
                    return
            else:
                done_since = None
            time.sleep(0.01)


# --- the checks -------------------------------------------------------------------------------------


def check(cfg: Config, cfg_path: Path, mails: list[Mail], validity: int, captured, kills: list[Kill], result: Result) -> None:
    con = sqlite3.connect(cfg.db_path)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM messages")]

    # (a) one final status per IMAP message, and per Message-ID one original.
    by_key = collections.defaultdict(list)
    for r in rows:
        by_key[(r["folder"], r["uidvalidity"], r["uid"])].append(r)
    row_of: dict[int, dict] = {}  # mail idx → its row
    known = set()
    bad_uids = set()
    for m in mails:
        key = ("INBOX", validity, m.uid)
        known.add(key)
        found = by_key.get(key, [])
        if len(found) != 1:
            result.status_problems.append(f"UID {m.uid} ({m.kind}): {len(found)} messages rows")
            continue
        r = found[0]
        row_of[m.idx] = r
        bad = []
        if r["status"] not in FINAL_STATUSES:
            bad.append(f"status {r['status']!r} is not final")
        if r["status"] != m.status:
            bad.append(f"status {r['status']} (reason {r['reason']}), expected {m.status}")
        if r["status"] != "accepted" and not r["reason"]:
            bad.append("no reason")
        if r["message_id"] != m.message_id:
            bad.append(f"Message-ID {r['message_id']} != {m.message_id}")
        archived = Path(r["archive_path"] or "/nonexistent")
        if not archived.is_file() or hashlib.sha256(archived.read_bytes()).hexdigest() != r["sha256"]:
            bad.append(f"archive {archived} missing or not the message's bytes (invariant 1)")
        if m.status == "accepted":
            rnd, late = expected_round(cfg, m.when)
            if (r["unit"], r["round"], bool(r["late"]), bool(r["verified"])) != (m.unit, rnd, late, m.verified):
                bad.append(f"unit/round/late/verified {r['unit']}/{r['round']}/{r['late']}/{r['verified']}, expected {m.unit}/{rnd}/{int(late)}/{int(m.verified)}")
            if dt.datetime.fromisoformat(r["received_at"]) != m.when:
                bad.append(f"received_at {r['received_at']} != INTERNALDATE {m.when.isoformat()}")
        if bad:
            bad_uids.add(m.uid)
            result.status_problems.append(f"UID {m.uid} ({m.kind}): " + "; ".join(bad))
    for key, found in by_key.items():
        if key not in known:
            result.status_problems.append(f"messages row(s) for no mailbox message: {key} x{len(found)}")
    for m in mails:
        if m.dup_of is not None and m.idx in row_of and m.dup_of.idx in row_of:
            if row_of[m.idx]["duplicate_of"] != row_of[m.dup_of.idx]["id"]:
                bad_uids.add(m.uid)
                result.status_problems.append(
                    f"UID {m.uid} ({m.kind}) duplicate_of {row_of[m.idx]['duplicate_of']}, expected row {row_of[m.dup_of.idx]['id']} (UID {m.dup_of.uid})")
    by_mid = collections.defaultdict(list)
    for r in rows:
        by_mid[r["message_id"]].append(r)
    for mid, group in by_mid.items():
        originals = [r for r in group if r["duplicate_of"] is None]
        if len(originals) != 1 or any(r["status"] != "duplicate" for r in group if r["duplicate_of"] is not None):
            result.status_problems.append(f"Message-ID {mid}: {len(originals)} non-duplicate rows among {len(group)}")
        elif originals[0]["uid"] != min(r["uid"] for r in group):
            result.status_problems.append(f"Message-ID {mid}: the original is UID {originals[0]['uid']}, not the lowest UID")
    result.one_status = sum(1 for m in mails if m.idx in row_of and m.uid not in bad_uids)

    # (b) progress = the latest accepted text per (round, unit, task), computed from the corpus.
    expected = expected_progress(cfg, mails)
    actual = {(r["round"], r["unit"], r["task"]): (r["progress"], r["message_id"]) for r in con.execute("SELECT * FROM progress")}
    result.progress_cells = len(expected)
    for key in sorted(set(expected) | set(actual), key=str):
        if expected.get(key) != actual.get(key):
            result.progress_mismatches.append(f"{key}: db {actual.get(key)!r}, expected {expected.get(key)!r}")
    reports = collections.defaultdict(list)
    for r in con.execute("SELECT id, message, filled FROM reports"):
        reports[r["message"]].append(dict(r))
    history = dict(con.execute("SELECT report, COUNT(*) FROM progress_history GROUP BY report").fetchall())
    for m in mails:
        r = row_of.get(m.idx)
        if r is None:
            continue
        got = reports.get(r["id"], [])
        want = 1 if m.status == "accepted" else 0
        if len(got) != want:
            result.report_problems.append(f"UID {m.uid} ({m.kind}): {len(got)} reports rows, expected {want}")
        for rep in got:
            if rep["filled"] != len(m.texts) or history.get(rep["id"], 0) != len(m.texts):
                result.report_problems.append(
                    f"UID {m.uid}: report {rep['id']} filled {rep['filled']}, history rows {history.get(rep['id'], 0)}, expected {len(m.texts)}")
    result.archive_tmp_files = sum(1 for _ in (cfg.state_dir / "archive").glob("*/.tmp-*"))
    due = subprocess.run([str(MAILBOT), "--config", str(cfg_path), "notices", "--json"], capture_output=True, text=True)
    result.notices_due = json.loads(due.stdout) if due.returncode == 0 else [f"notices failed: {due.stderr.strip()[:200]}"]
    exported = subprocess.run([str(MAILBOT), "--config", str(cfg_path), "export", "--format", "json"],
                              capture_output=True, text=True, env=dict(os.environ, CRASH_IMAP_PASSWORD=PASSWORD))
    if exported.returncode != 0:
        result.export_problems.append(f"export failed: {exported.stderr.strip()[:300]}")
    else:
        exp = {(e["round"], e["unit"], e["task"]): (e["progress"], e["message_id"]) for e in json.loads(exported.stdout)}
        if exp != expected:
            diff = sorted(set(exp.items()) ^ set(expected.items()), key=str)[:5]
            result.export_problems.append(f"`export --format json` differs from the expected progress: {diff}")

    # (c) reply rows.
    outbox = [dict(r) for r in con.execute("SELECT * FROM outbox")]
    replies = collections.defaultdict(list)
    for o in outbox:
        if o["kind"] in ("ack", "reject"):
            replies[o["message"]].append(o)
        else:
            result.other_outbox[f"{o['kind']}:{o['status']}"] = result.other_outbox.get(f"{o['kind']}:{o['status']}", 0) + 1
    reply_row_ids = set()
    for m in mails:
        r = row_of.get(m.idx)
        if r is None:
            continue
        got = replies.get(r["id"], [])
        reply_row_ids.add(r["id"])
        if m.reply is None:
            if got:
                result.extra_reply_rows.append(f"UID {m.uid} ({m.kind}): {[o['dedupe_key'] for o in got]}")
            continue
        result.replies_expected += 1
        mine = [o for o in got if o["kind"] == m.reply]
        if not mine:
            result.lost_ack_rows.append(f"UID {m.uid} ({m.kind}, {m.status}): no {m.reply} row")
        if len(got) != len(mine) or len(mine) > 1:
            result.extra_reply_rows.append(f"UID {m.uid} ({m.kind}): {[(o['kind'], o['dedupe_key']) for o in got]}")
        for o in mine:
            if o["status"] != "sent":
                result.unsent_rows.append(f"UID {m.uid} {o['dedupe_key']}: {o['status']} ({o['last_error']})")
    for mid in set(replies) - reply_row_ids:
        result.extra_reply_rows.append(f"reply rows for messages row {mid}, which is no mailbox message")
    for o in outbox:
        if o["status"] != "sent" and o["kind"] not in ("ack", "reject"):
            result.unsent_rows.append(f"{o['kind']} {o['dedupe_key']}: {o['status']} ({o['last_error']})")

    # (d) deliveries per reply, from the sink's record (in arrival order).
    deliveries = collections.defaultdict(list)
    for i, c in enumerate(captured):
        deliveries[c.message["Message-ID"]].append(i)
    by_msgid = {o["msgid"]: o for o in outbox}
    for msgid in deliveries:
        if msgid not in by_msgid:
            result.smtp_problems.append(f"the sink got {msgid}, which is no outbox row")
    hist, quiet_hist = collections.Counter(), collections.Counter()
    mail_of_row = {row_of[m.idx]["id"]: m for m in mails if m.idx in row_of}
    pairs = []  # (first delivery, next delivery of the same row, row, mail)
    last_before_kill = collections.defaultdict(list)  # sink index of the last mail before a kill → those kills
    for k in kills:
        if k.smtp_count > 0:
            last_before_kill[k.smtp_count - 1].append(k)
    for m in mails:
        r = row_of.get(m.idx)
        if r is None:
            continue
        rows_ = replies.get(r["id"], [])
        count = sum(len(deliveries.get(o["msgid"], [])) for o in rows_)
        (hist if m.reply else quiet_hist)[count] += 1
    for o in outbox:
        got = deliveries.get(o["msgid"], [])
        m = mail_of_row.get(o["message"])
        for i in got:
            c = captured[i]
            if m is not None and not m.verified:
                # An unverified sender: the receipt goes to the unit's registered address (not threaded
                # to a mail the unit never saw), the sender gets a fixed notice.
                unit_addr = cfg.roster.get(m.unit).emails[0]
                want = [m.sender] if o["kind"] == "stranger" else [unit_addr]
                if c.rcpt_tos != want:
                    result.smtp_problems.append(f"{o['dedupe_key']}: rcpt {c.rcpt_tos}; expected {want}")
            elif m is not None and (c.message["In-Reply-To"] != m.message_id or m.sender not in c.rcpt_tos):
                result.smtp_problems.append(f"{o['dedupe_key']}: In-Reply-To {c.message['In-Reply-To']}, rcpt {c.rcpt_tos}; expected {m.message_id} to {m.sender}")
        for a, b in zip(got, got[1:]):
            pairs.append((a, b, o, m))
    # A repeat is the kill's doing when the kill fell between the sink's 250 for #a and the row being
    # marked sent: #a is then the last mail the sink got before that kill, #b comes after it. But an
    # outbox job that died marking #a sent ("database is locked", a bug) also leaves the row pending:
    # when the life that sent #a logged more such deaths than it re-sent within itself, the last
    # one was #a's, and the kill only came before the retry.
    def life_of(i: int) -> int:
        return max((life for life, start in result.life_smtp_start.items() if start <= i), default=1)

    in_life = collections.Counter(life_of(a) for a, b, _o, _m in pairs if life_of(a) == life_of(b))
    for a, b, o, m in pairs:
        k = next((k for k in last_before_kill.get(a, []) if k.smtp_count <= b), None)
        what = f"{o['dedupe_key']} ({o['kind']} for UID {m.uid if m else '?'}) delivered as sink mail #{a} and again as #{b}"
        life = life_of(a)
        if k is not None and result.locked_by_life.get(life, 0) <= in_life[life]:
            result.duplicates.append(f"{what}: kill {k.n} (life {k.life}, {k.phase}) came after the sink had #{a} "
                                     f"(the last mail before the kill) and before the row was marked sent")
        elif result.locked_by_life.get(life, 0):
            result.unexplained.append(f"{what}: the outbox job died marking #{a} sent (database is locked) in life {life}"
                                      + (f"; kill {k.n} came before the retry" if k is not None else "; the next run sent it again"))
        else:
            result.unexplained.append(f"{what}: no kill came between the first delivery and marking the row sent")
    other = collections.defaultdict(collections.Counter)
    for o in outbox:
        if o["kind"] not in ("ack", "reject"):
            other[o["kind"]][len(deliveries.get(o["msgid"], []))] += 1
    result.other_deliveries = {k: dict(sorted(v.items())) for k, v in other.items()}
    result.histogram = dict(sorted(hist.items()))
    result.no_reply_histogram = dict(sorted(quiet_hist.items()))


def scan_log(log_path: Path, result: Result) -> None:
    text = log_path.read_text(errors="replace")
    result.tracebacks = text.count("Traceback (most recent call last)")
    for life, section in re.findall(r"===== life (\d+) =====\n(.*?)(?=\n===== life |\Z)", text, re.S):
        for tb in section.split("Traceback (most recent call last)")[1:]:
            tb = tb.split("\n20", 1)[0]  # up to the next log line
            if "in _finish" in tb and 'status="sent"' in tb and "database is locked" in tb:
                result.finish_locked += 1
                result.locked_by_life[int(life)] = result.locked_by_life.get(int(life), 0) + 1
    seen = collections.Counter()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " ERROR " in line or " CRITICAL " in line:
            line = re.sub(r"^\S+ \S+ ", "", line)
            line = re.sub(r", next run at: [^)]*", "", line)[:200]
            # the exception that follows the traceback, if any
            exc = next((x for x in lines[i + 1:i + 60] if re.match(r"^[A-Za-z0-9_.]+(Error|Exception|Exit)\b", x)), "")
            seen[f"{line} -> {exc}" if exc else line] += 1
    result.log_errors = [f"{n}x {line}" for line, n in seen.most_common(10)]
    result.error_lines = sum(seen.values())


# --- the run -------------------------------------------------------------------------------------------


def run(n: int = 600, kills: int = 25, seed: int | None = None, *, workdir: Path | None = None, kill_mode: str = "group",
        moved_in: int = 0,
        dovecot: Dovecot | None = None, smtp: SmtpServer | None = None, timeout: float = 1800, verbose: bool = True) -> Result:
    say = print if verbose else (lambda *a, **k: None)
    seed = seed if seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    t0 = time.monotonic()
    result = Result(mails=n)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mailbot-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    own_dovecot, own_smtp = dovecot is None, smtp is None
    if own_dovecot:
        dovecot = Dovecot(work / "dovecot")
        dovecot.start()
    if own_smtp:
        smtp = SmtpServer()
        smtp.start()
    h = None
    try:
        dovecot.add_user(USER, PASSWORD)
        cfg_path = write_config(work, dovecot, smtp)
        cfg = load_config(cfg_path)
        say(f"seed {seed}; work dir {work}")
        t = time.monotonic()
        mails = build_corpus(cfg, n, rng, moved_in)
        result.corpus = corpus_summary(mails)
        validity = load_mailbox(dovecot, mails)
        say(f"corpus: {n} mails built and appended in {time.monotonic() - t:.1f} s: {result.corpus}")
        replies = sum(1 for m in mails if m.reply)
        h = Harness(cfg_path, cfg.db_path, work / "daemon.log", smtp, n, kill_mode, say)
        drive(h, rng, kills, replies, result, timeout)
        result.lives = h.life
        result.life_smtp_start = dict(h.smtp_at_start)
        if h.proc is not None:  # timed out
            h.terminate(10)
        scan_log(h.log_path, result)
        captured = list(smtp.messages)
        check(cfg, cfg_path, mails, validity, captured, result.kills, result)
    finally:
        if h is not None and h.proc is not None:
            try:
                os.killpg(h.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if own_smtp:
            smtp.stop()
        if own_dovecot:
            dovecot.cleanup()
    result.wall = time.monotonic() - t0
    return result


def report(result: Result, out=print) -> None:
    phases = collections.Counter(k.phase for k in result.kills)

    def line(label, value):
        out(f"  {label:<44} {value}")

    out("")
    out("crash test results")
    line("mails in the mailbox", result.mails)
    line("  of which", ", ".join(f"{k} {v}" for k, v in result.corpus.items()))
    line("SIGKILLs", f"{len(result.kills)} ({', '.join(f'{p} {c}' for p, c in sorted(phases.items()))})")
    line("daemon starts (lives)", result.lives)
    line("unexpected daemon exits", len(result.unexpected_exits))
    line("orphaned processes after kills", len(result.orphans))
    line("max children seen at a kill", max((k.children for k in result.kills), default=0))
    line("final SIGTERM exit code / leftovers", f"{result.final_rc} / {len(result.final_leftovers)}")
    line("messages with exactly one final status", f"{result.one_status} / {result.mails}")
    line("status problems", len(result.status_problems))
    line("progress cells checked / mismatched", f"{result.progress_cells} / {len(result.progress_mismatches)}")
    line("report/history row problems", len(result.report_problems))
    line("export --format json problems", len(result.export_problems))
    line("messages owed a reply", result.replies_expected)
    line("lost ack/reject rows", len(result.lost_ack_rows))
    line("reply rows not sent", len(result.unsent_rows))
    line("unexpected reply rows", len(result.extra_reply_rows))
    line("other outbox rows (kind:status)", result.other_outbox or "none")
    line("notices due but never queued (after the run)", [f"{d['kind']}" if isinstance(d, dict) else d for d in result.notices_due] or "none")
    line("deliveries per owed reply (histogram)", result.histogram)
    line("deliveries to messages owed none", result.no_reply_histogram)
    line("deliveries per notice/alert row (by kind)", result.other_deliveries or "none")
    line("duplicate deliveries caused by kills (<= kills)", f"{len(result.duplicates)} (kills {len(result.kills)})")
    line("duplicate deliveries NOT caused by a kill", len(result.unexplained))
    line("  outbox jobs that died marking a sent row", f"{result.finish_locked} (\"database is locked\" in outbox._finish after the 250)")
    line("SMTP threading/unknown-mail problems", len(result.smtp_problems))
    line("temp files left in state/archive by kills", result.archive_tmp_files)
    line("daemon log: tracebacks / ERROR lines", f"{result.tracebacks} / {result.error_lines}")
    line("timed out", result.timed_out)
    line("wall time", f"{result.wall:.1f} s")
    line("RESULT", "PASS" if result.ok else "FAIL")
    for title, items in (
        ("duplicates and their cause", result.duplicates), ("duplicates NOT caused by a kill", result.unexplained),
        ("status problems", result.status_problems), ("progress mismatches", result.progress_mismatches),
        ("report/history problems", result.report_problems), ("export problems", result.export_problems),
        ("lost ack rows", result.lost_ack_rows), ("unsent rows", result.unsent_rows),
        ("unexpected reply rows", result.extra_reply_rows), ("SMTP problems", result.smtp_problems),
        ("orphans", result.orphans), ("leftovers after SIGTERM", result.final_leftovers),
        ("unexpected exits", result.unexpected_exits), ("daemon log errors", result.log_errors),
    ):
        if items:
            out(f"\n{title} ({len(items)}):")
            for item in items[:20]:
                out(f"  - {item}")
            if len(items) > 20:
                out(f"  … {len(items) - 20} more")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=600, help="mails in the mailbox (default 600)")
    ap.add_argument("--kills", type=int, default=25, help="SIGKILLs at least (default 25)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    ap.add_argument("--kill-mode", choices=("group", "main"), default="group",
                    help="SIGKILL the daemon's whole process group (default, like systemd) or only its main process")
    ap.add_argument("--moved-in", type=int, default=0,
                    help="append this many resubmissions last, keeping their earlier INTERNALDATE (mail moved in from Junk)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep state, config and daemon.log here")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # the sink complains about every killed session
    result = run(args.n, args.kills, args.seed, workdir=args.workdir, kill_mode=args.kill_mode, moved_in=args.moved_in,
                 timeout=args.timeout)
    report(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
