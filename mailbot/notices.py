"""What is due now: reminders, overdue notices and coordinator digests, derived from state.

Nothing is pre-scheduled (DESIGN.md invariant 5). Each run asks, for the moment
``now``, which notices are due and not yet in the outbox; the dedupe key
(kind, round, unit, step) makes each happen at most once. After downtime only
the latest step that is still relevant is sent (a reminder for a deadline that
has passed is not), so a three-day outage yields one catch-up mail, not three.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import store
from .config import Config, Round
from .supervision import deadline_end, marks, paper_copy_line
from .outbox import queue_mail

@dataclass
class Notice:
    kind: str  # reminder | overdue | digest
    round: str | None
    unit: str | None
    to: list[str]
    step: str
    cc: list[str] = field(default_factory=list)

    @property
    def dedupe_key(self) -> str:
        return f"{self.kind}:{self.round or '-'}:{self.unit or '-'}:{self.step}"

    def as_dict(self) -> dict:
        """The `notices --json` contract."""
        return {"kind": self.kind, "round": self.round, "unit": self.unit, "to": self.to}


def _hm(text: str) -> dt.time:
    h, _, m = text.partition(":")
    return dt.time(int(h), int(m or 0))


def _at(day: dt.date, hour: str, tz) -> dt.datetime:
    return dt.datetime.combine(day, _hm(hour), tz)


def quiet(cfg: Config, now: dt.datetime) -> bool:
    """Inside quiet hours, or a weekend when weekends are skipped."""
    s = cfg.notices
    local = now.astimezone(cfg.tz)
    if s["skip_weekends"] and local.weekday() >= 5:
        return True
    window = s["quiet_hours"]
    if not window:
        return False
    start, _, end = window.partition("-")
    t, a, b = local.time(), _hm(start), _hm(end)
    return (a <= t or t < b) if a > b else (a <= t < b)


def reported_units(db, round_name: str) -> set[str]:
    return {r["unit"] for r in db.query("SELECT DISTINCT unit FROM reports WHERE round = ?", [round_name])}


def _queued(db, keys: list[str]) -> set[str]:
    """Which of these dedupe keys are already in the outbox.

    One lookup per key in the outbox's unique dedupe_key index: the cost follows the
    notices asked about, not the notices already sent (a LIKE prefix scan read them all).
    """
    if not keys:
        return set()
    return {
        r[0]
        for r in db.execute("SELECT dedupe_key FROM outbox WHERE dedupe_key IN (SELECT value FROM json_each(?))", [json.dumps(keys)])
    }


def _next_round(cfg: Config, rnd: Round) -> Round | None:
    later = [r for r in cfg.rounds if r.opens > rnd.opens]
    return later[0] if later else None


def reminder_step(cfg: Config, rnd: Round, now: dt.datetime) -> str | None:
    """The latest reminder step whose time has come, while the deadline is still ahead."""
    if now >= rnd.deadline_end:
        return None
    hour = cfg.notices["hour"]
    due = [d for d in rnd.remind_days_before if _at(rnd.deadline - dt.timedelta(days=d), hour, cfg.tz) <= now]
    return f"d-{min(due)}" if due else None


def overdue_step(cfg: Config, rnd: Round, now: dt.datetime) -> str | None:
    """The latest overdue step (day after the deadline, then every N days) until the next round opens."""
    nxt = _next_round(cfg, rnd)
    if nxt is not None and now >= nxt.opens:
        return None
    # The last round has no next one: chase for a bounded time, not forever.
    if now >= rnd.deadline_end + dt.timedelta(days=cfg.notices["overdue_for_days"]):
        return None
    first = _at(rnd.deadline + dt.timedelta(days=1), cfg.notices["hour"], cfg.tz)
    if now < first:
        return None
    k = (now - first).days // rnd.overdue_every_days
    return f"o{k}-{(rnd.deadline + dt.timedelta(days=1 + k * rnd.overdue_every_days)).isoformat()}"


def due_notices(cfg: Config, db, now: dt.datetime) -> list[Notice]:
    """Every notice due at ``now`` and not yet queued, in a stable order."""
    if quiet(cfg, now):
        return []
    s = cfg.notices
    notices: list[Notice] = []
    for rnd in cfg.rounds:
        reported = None
        for kind, step in (("reminder", reminder_step(cfg, rnd, now)), ("overdue", overdue_step(cfg, rnd, now))):
            if step is None:
                continue
            if reported is None:
                reported = reported_units(db, rnd.name)
                round_marks = marks(db, rnd.name)
            candidates = []
            for unit in cfg.roster:
                if unit.name in reported or not unit.emails or not cfg.roster.tasks_of(unit, cfg.ledger):
                    continue
                mark = round_marks.get(unit.name) or {}
                if mark.get("exempt_reason"):
                    continue  # exempted from this round: nothing to chase
                if mark.get("extended_until") and now < deadline_end(cfg, rnd, mark):
                    continue  # granted more time: neither reminded of nor chased for the round's deadline
                cc = list(cfg.coordinator_emails) if kind == "overdue" and s["overdue_cc_coordinator"] else []
                candidates.append(Notice(kind, rnd.name, unit.name, list(unit.emails), step, cc))
            sent = _queued(db, [n.dedupe_key for n in candidates])
            notices.extend(n for n in candidates if n.dedupe_key not in sent)
    digest = _digest_due(cfg, db, now)
    if digest is not None:
        notices.append(digest)
    return notices


def _digest_due(cfg: Config, db, now: dt.datetime) -> Notice | None:
    if not cfg.coordinator_emails:
        return None
    s = cfg.notices
    local = now.astimezone(cfg.tz)
    slot = _at(local.date(), s["digest_hour"], cfg.tz)
    if local < slot:
        return None
    notice = Notice("digest", None, None, list(cfg.coordinator_emails), local.date().isoformat())
    if _queued(db, [notice.dedupe_key]):
        return None
    day_after_deadline = any(local.date() == r.deadline + dt.timedelta(days=1) for r in cfg.rounds)
    near = any(
        dt.timedelta(0) <= r.deadline_end - now <= dt.timedelta(days=s["digest_days_before_deadline"] + 1) for r in cfg.rounds
    )
    if day_after_deadline or near or _activity_before(cfg, db, slot):
        return notice
    return None


def last_digest_slot(cfg: Config, db) -> dt.datetime | None:
    """When the latest scheduled digest was due (its day at digest_hour); None before the first."""
    # Digest keys all start with "digest:" (Notice.dedupe_key, queue_digest): a backward walk of
    # that range of the dedupe_key index, not of every reminder and overdue notice ever sent.
    row = db.execute(
        "SELECT dedupe_key FROM outbox WHERE dedupe_key >= 'digest:' AND dedupe_key < 'digest;' "
        "AND kind = 'digest' AND dedupe_key NOT LIKE 'digest:-:-:manual-%' ORDER BY dedupe_key DESC LIMIT 1"
    ).fetchone()
    if not row or not row[0]:
        return None
    day = dt.date.fromisoformat(row[0].rsplit(":", 1)[1])
    return _at(day, cfg.notices["digest_hour"], cfg.tz)


def _activity_before(cfg: Config, db, slot: dt.datetime) -> bool:
    """Mail received since the last digest's slot and before this one (later mail waits for tomorrow)."""
    since = last_digest_slot(cfg, db)
    params = [store.iso(slot)] + ([store.iso(since)] if since else [])
    query = "SELECT COUNT(*) FROM messages WHERE received_at < ?" + (" AND received_at >= ?" if since else "")
    return db.execute(query, params).fetchone()[0] > 0


# --- queueing -------------------------------------------------------------------------------------


def queue_notices(cfg: Config, db, now: dt.datetime) -> list[Notice]:
    """Turn due notices into outbox rows (each in its own transaction); returns what was queued."""
    from .digest import digest_context, digest_attachments

    queued = []
    for notice in due_notices(cfg, db, now):
        rnd = cfg.round_named(notice.round) if notice.round else None
        attachments: list[dict] = []
        if notice.kind in ("reminder", "overdue"):
            unit = cfg.roster.get(notice.unit)
            path = blank_form_path(cfg, rnd, unit.name)
            attachments = [{"path": str(path), "name": f"{unit.name}-{cfg.round_label(rnd)}任务落实台账（填报版）.docx"}]
            context = _unit_context(cfg, db, rnd, unit.name, now)
            template = notice.kind
            subject = (
                f"【提醒】请于{rnd.deadline.month}月{rnd.deadline.day}日前报送{context['round_label']}任务落实台账（{unit.name}）"
                if notice.kind == "reminder"
                else f"【逾期未报】{unit.name}尚未报送{context['round_label']}任务落实台账，请尽快报送"
            )
        else:
            context = digest_context(cfg, db, now)
            attachments = digest_attachments(cfg, db, now)
            template, subject = "digest", f"【台账报送日报】{now.astimezone(cfg.tz):%Y-%m-%d}：{context['headline']}"
            context["coordinator"] = True
        with store.write_transaction(db):
            row = queue_mail(
                db, cfg, dedupe_key=notice.dedupe_key, kind=notice.kind, to=notice.to, cc=notice.cc, subject=subject,
                template=template, context=context, unit=notice.unit, round_name=notice.round, attachments=attachments,
            )
        if row is not None:
            queued.append(notice)
    return queued


def queue_digest(cfg: Config, db, now: dt.datetime, force: bool = False) -> bool:
    """Queue today's digest now (the coordinator asked for it), unless one is already queued for this minute."""
    from .digest import digest_attachments, digest_context

    local = now.astimezone(cfg.tz)
    step = f"{local.date().isoformat()}" if not force else f"manual-{local:%Y%m%dT%H%M%S}"
    context = digest_context(cfg, db, now)
    context["coordinator"] = True
    with store.write_transaction(db):
        return queue_mail(
            db, cfg, dedupe_key=f"digest:-:-:{step}", kind="digest", to=list(cfg.coordinator_emails),
            subject=f"【台账报送日报】{local:%Y-%m-%d}：{context['headline']}", template="digest", context=context,
            attachments=digest_attachments(cfg, db, now),
        ) is not None


def blank_form_path(cfg: Config, rnd: Round, unit_name: str) -> Path:
    """The unit's own pre-filled blank form (its name, only its tasks), rendered once per round."""
    from .forms import configured_intro, write_form
    from .mime import safe_filename

    import hashlib
    import json as _json

    from .templating import templates_dir

    # Keyed by what the form is made of, so a new ledger, roster entry, deadline, mailbox or template makes a new file.
    unit = cfg.roster.get(unit_name)
    stamp = hashlib.sha256(
        _json.dumps(
            [cfg.ledger.to_dict(), unit.name, cfg.roster.tasks_of(unit, cfg.ledger), configured_intro(cfg)], ensure_ascii=False
        ).encode()
        + (templates_dir() / "forms" / "ledger_form.docx").read_bytes()
    ).hexdigest()[:12]
    folder = cfg.state_dir / "forms" / rnd.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe_filename(unit_name, 'unit')}-{stamp}.docx"  # a name is not always a file name
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        write_form(tmp, cfg, unit_name)
        tmp.replace(path)
    return path


def _unit_context(cfg: Config, db, rnd: Round, unit_name: str, now: dt.datetime) -> dict:
    tasks = cfg.roster.tasks_of(unit_name, cfg.ledger)
    late_days = (now.astimezone(cfg.tz).date() - rnd.deadline).days
    return {
        "unit": unit_name,
        "round_label": cfg.round_label(rnd),
        "deadline": f"{rnd.deadline.year}年{rnd.deadline.month}月{rnd.deadline.day}日",
        "days_left": (rnd.deadline - now.astimezone(cfg.tz).date()).days,
        "late_days": late_days,
        "task_count": len(tasks),
        "tasks": "、".join(str(t) for t in tasks),
        "ledger_title": cfg.ledger.title,
        "mailbox": cfg.smtp.from_addr or cfg.imap.user,
        "paper_copy": paper_copy_line(cfg),
    }


def notices_json(cfg: Config, db, now: dt.datetime) -> str:
    return json.dumps([n.as_dict() for n in due_notices(cfg, db, now)], ensure_ascii=False, indent=2)
