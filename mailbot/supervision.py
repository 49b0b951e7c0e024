"""Supervision (督查) over the store: the sealed paper copy, extensions and exemptions per (round, unit),
completion states per (round, unit, task) with a person's overrides, and the overdue tasks.

The rules that read a deadline or a progress text live in `supervision_rules`; this module keeps
what people decided and combines the two. Every decision is an audit row (who, when, what, why).
"""

from __future__ import annotations

import datetime as dt
import hashlib

from . import store
from .config import Config, Round
from .errors import MailbotError
from .ledger import Unit
from .supervision_rules import DONE, NOT_REPORTED, STATE_LABELS, STATES, classify_task, task_due_date


def _unit(cfg: Config, name: str) -> Unit:
    unit = cfg.roster.get(name) or cfg.roster.match(name)
    if unit is None:
        raise MailbotError(f"名册中没有单位「{name}」：请用单位全称或别名（见 {cfg.path} 的 [[units]]）")
    return unit


def _date(text: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise MailbotError(f"{what}的日期格式不正确：「{text}」，应写作 2023-08-25") from None


def marks(db, round_name: str) -> dict[str, dict]:
    """unit → its paper copy date, extension and exemption in this round."""
    return {r["unit"]: r for r in db.query("SELECT * FROM round_marks WHERE round = ?", [round_name])}


def _set(db, rnd: Round, unit: Unit, **fields) -> None:
    db.execute("INSERT OR IGNORE INTO round_marks (round, unit) VALUES (?, ?)", [rnd.name, unit.name])
    cols = ", ".join(f"{k} = ?" for k in fields)
    db.execute(f"UPDATE round_marks SET {cols} WHERE round = ? AND unit = ?", [*fields.values(), rnd.name, unit.name])


def record_paper(cfg: Config, db, unit_name: str, round_name: str, *, on: str | None, undo: bool, actor: str, now: dt.datetime) -> str:
    """`mailbot paper`: the sealed paper copy arrived (or, with ``undo``, it did not after all)."""
    unit, rnd = _unit(cfg, unit_name), cfg.round_named(round_name)
    day = None if undo else (_date(on, "纸质版收到日期") if on else now.astimezone(cfg.tz).date())
    with store.write_transaction(db):
        _set(db, rnd, unit, paper_on=day.isoformat() if day else None)
        store.audit(db, actor, "paper_undo" if undo else "paper", unit=unit.name, round_name=rnd.name, detail={"on": day.isoformat() if day else None})
    if undo:
        return f"已撤销：{unit.name} {cfg.round_label(rnd)}纸质版改为未收到"
    return f"已记录：{unit.name} {cfg.round_label(rnd)}纸质版于 {day.year}年{day.month}月{day.day}日 收到"


def record_extension(cfg: Config, db, unit_name: str, round_name: str, *, until: str | None, reason: str | None, undo: bool, actor: str) -> str:
    """`mailbot extend`: the unit may report until ``until`` (inclusive) without being late."""
    unit, rnd = _unit(cfg, unit_name), cfg.round_named(round_name)
    if undo:
        day = None
    else:
        if not until or not reason:
            raise MailbotError("延期需要 --until 日期 和 --reason 理由，例如 --until 2023-08-25 --reason 主要负责人出差")
        day = _date(until, "延期")
        if day <= rnd.deadline:
            raise MailbotError(f"延期日期 {day} 不晚于{cfg.round_label(rnd)}的截止日期 {rnd.deadline}：无需延期")
    with store.write_transaction(db):
        _set(db, rnd, unit, extended_until=day.isoformat() if day else None, extension_reason=None if undo else reason)
        store.audit(db, actor, "extend_undo" if undo else "extend", unit=unit.name, round_name=rnd.name, reason=reason,
                    detail={"until": day.isoformat() if day else None})
    if undo:
        return f"已撤销：{unit.name} {cfg.round_label(rnd)}的延期"
    return f"已记录：{unit.name} {cfg.round_label(rnd)}延期至 {day.year}年{day.month}月{day.day}日（{reason}）"


def record_exemption(cfg: Config, db, unit_name: str, round_name: str, *, reason: str | None, undo: bool, actor: str) -> str:
    """`mailbot exempt`: the unit need not report in this round (no reminders, no deductions)."""
    unit, rnd = _unit(cfg, unit_name), cfg.round_named(round_name)
    if not undo and not reason:
        raise MailbotError("豁免需要 --reason 理由，例如 --reason 本节点无相关任务")
    with store.write_transaction(db):
        _set(db, rnd, unit, exempt_reason=None if undo else reason)
        store.audit(db, actor, "exempt_undo" if undo else "exempt", unit=unit.name, round_name=rnd.name, reason=reason)
    if undo:
        return f"已撤销：{unit.name} {cfg.round_label(rnd)}的豁免"
    return f"已记录：{unit.name} {cfg.round_label(rnd)}免于报送（{reason}）"


def paper_copy_line(cfg: Config, db=None, rnd: Round | None = None, unit: str | None = None) -> str | None:
    """What units are told about the sealed paper copy: None when paper copies are not tracked, or
    when this unit's copy for this round has arrived."""
    if not cfg.bot.get("paper_copy", True):
        return None
    if db is not None and rnd is not None and unit:
        if (marks(db, rnd.name).get(unit) or {}).get("paper_on"):
            return None
    return f"请同时将加盖本单位公章的纸质版报送至{cfg.bot.get('paper_copy_place') or '政府办公室'}。"


def effective_deadline(rnd: Round, mark: dict | None) -> dt.date:
    """The deadline that counts for a unit: the round's, or its extension."""
    if mark and mark.get("extended_until"):
        return max(rnd.deadline, dt.date.fromisoformat(mark["extended_until"]))
    return rnd.deadline


def deadline_end(cfg: Config, rnd: Round, mark: dict | None) -> dt.datetime:
    """The first instant that is late for this unit (midnight after its deadline, local time)."""
    return dt.datetime.combine(effective_deadline(rnd, mark) + dt.timedelta(days=1), dt.time(0), cfg.tz)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def override_completion(cfg: Config, db, unit_name: str, round_name: str, task: int, state: str, *, reason: str, actor: str) -> str:
    """A person sets a task's completion state; it holds until the unit's text for the task changes."""
    unit, rnd = _unit(cfg, unit_name), cfg.round_named(round_name)
    if state not in STATES:
        raise MailbotError(f"完成状态应是 {'、'.join(STATES)} 之一，而不是「{state}」")
    if task not in cfg.roster.tasks_of(unit, cfg.ledger):
        raise MailbotError(f"任务{task}不是{unit.name}负责的任务")
    text = (store.current_progress(db, rnd.name, unit.name).get(task) or "")
    with store.write_transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO completion_overrides (round, unit, task, state, reason, actor, at, text_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [rnd.name, unit.name, task, state, reason, actor, store.iso(store.now_utc()), _sha(text)],
        )
        store.audit(db, actor, "override", unit=unit.name, round_name=rnd.name, reason=reason, detail={"task": task, "state": state})
    return f"已记录：{unit.name} {cfg.round_label(rnd)}任务{task}的完成情况设为「{STATE_LABELS[state]}」（{reason}）"


def completion(cfg: Config, db, rnd: Round, now: dt.datetime) -> list[dict]:
    """Per (unit, task) of this round: due date, state (a person's override while the text is unchanged,
    else the system's reading), who set it, and whether it is overdue. The `completion --json` contract."""
    texts: dict[tuple[str, int], str] = {
        (r["unit"], r["task"]): r["progress"] for r in db.query("SELECT unit, task, progress FROM progress WHERE round = ?", [rnd.name])
    }
    overrides = {(r["unit"], r["task"]): r for r in db.query("SELECT * FROM completion_overrides WHERE round = ?", [rnd.name])}
    today = now.astimezone(cfg.tz).date()
    year = cfg.ledger.year or rnd.deadline.year
    dues = {t.number: task_due_date(t, year) for t in cfg.ledger.tasks}
    rows = []
    for unit in cfg.roster:
        for task in cfg.roster.tasks_of(unit, cfg.ledger):
            text = texts.get((unit.name, task)) or ""
            due = dues[task]
            seen = overrides.get((unit.name, task))
            if seen is not None and seen["text_sha256"] == _sha(text):
                state, set_by, basis = seen["state"], "coordinator", f"人工认定：{seen['reason'] or ''}"
            else:
                judged = classify_task(text or None, due)
                state, set_by, basis = judged.state, "system", judged.explanation
            rows.append({
                "unit": unit.name, "task": task, "due": due.date.isoformat() if due.date else None, "state": state,
                "set_by": set_by, "overdue": due.date is not None and today > due.date and state != DONE, "basis": basis,
            })
    return rows


def overdue_tasks(rows: list[dict]) -> dict[str, list[int]]:
    """unit → its tasks past their 完成时限 and not done."""
    out: dict[str, list[int]] = {}
    for r in rows:
        if r["overdue"]:
            out.setdefault(r["unit"], []).append(r["task"])
    return out


def _points(value: float) -> float:
    return round(float(value), 2)


def deductions(cfg: Config, db, rounds: list[Round], as_of: dt.date, now: dt.datetime) -> dict[str, list[dict]]:
    """unit → its deductions over these rounds as of ``as_of`` (local date): late and missing reports per
    round (after any extension; none when exempt), each task past its 完成时限 and not done (read from
    the latest of these rounds), a missing paper copy per round. Points from [bot] scoring."""
    scoring = cfg.bot.get("scoring", {})
    firsts = {key: first for key, (first, _latest, _n) in store.unit_report_times(db).items()}
    out: dict[str, list[dict]] = {u.name: [] for u in cfg.roster if cfg.roster.tasks_of(u, cfg.ledger)}
    paper = bool(cfg.bot.get("paper_copy", True))
    for rnd in rounds:
        round_marks = marks(db, rnd.name)
        for unit_name, items in out.items():
            mark = round_marks.get(unit_name) or {}
            if mark.get("exempt_reason"):
                continue
            end = deadline_end(cfg, rnd, mark)
            first = firsts.get((rnd.name, unit_name))
            reported = dt.datetime.fromisoformat(first) if first else None
            if reported is not None and reported.astimezone(cfg.tz).date() <= as_of:
                if reported >= end:
                    days = (reported.astimezone(cfg.tz).date() - effective_deadline(rnd, mark)).days
                    items.append({"reason": f"{rnd.name}逾期报送{days}天", "points": _points(scoring.get("late_points", 1.0))})
                if paper and not mark.get("paper_on"):
                    items.append({"reason": f"{rnd.name}未报送纸质版", "points": _points(scoring.get("paper_missing_points", 0.5))})
            elif as_of > effective_deadline(rnd, mark):
                items.append({"reason": f"{rnd.name}未报送", "points": _points(scoring.get("missing_points", 2.0))})
    opened = [r for r in rounds if r.opens.astimezone(cfg.tz).date() <= as_of]
    if opened:
        latest = opened[-1]
        at = dt.datetime.combine(as_of, dt.time(23, 59), cfg.tz)
        for unit_name, tasks in overdue_tasks(completion(cfg, db, latest, at)).items():
            if unit_name in out and not (marks(db, latest.name).get(unit_name) or {}).get("exempt_reason"):
                for task in tasks:
                    out[unit_name].append({"reason": f"任务{task}未按完成时限完成", "points": _points(scoring.get("overdue_task_points", 0.5))})
    return out


def annual_score(cfg: Config, db, year: int, now: dt.datetime) -> list[dict]:
    """`mailbot report annual --json`: per unit, its deductions and the total, for the rounds of ``year``."""
    rounds = [r for r in cfg.rounds if r.deadline.year == year]
    if not rounds:
        raise MailbotError(f"{year}年没有报送节点：已配置的节点为 {'、'.join(f'{r.name}（{r.deadline}）' for r in cfg.rounds)}")
    as_of = min(now.astimezone(cfg.tz).date(), dt.date(year, 12, 31))
    found = deductions(cfg, db, rounds, as_of, now)
    return [{"unit": unit, "deductions": items, "total": _points(sum(d["points"] for d in items))} for unit, items in found.items()]


__all__ = ["annual_score", "deductions", "DONE", "NOT_REPORTED", "completion", "deadline_end", "effective_deadline", "marks", "overdue_tasks",
           "override_completion", "record_exemption", "record_extension", "record_paper"]
