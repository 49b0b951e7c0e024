"""Who has reported, on time or late, and what each unit still owes: units × rounds."""

from __future__ import annotations

import datetime as dt

from . import store
from .config import Config, Round


def status_table(cfg: Config, db, rounds: list[Round], now: dt.datetime) -> dict:
    from .supervision import completion, deadline_end, marks, overdue_tasks

    times = store.unit_report_times(db)
    round_marks = {rnd.name: marks(db, rnd.name) for rnd in rounds}
    overdue = {rnd.name: overdue_tasks(completion(cfg, db, rnd, now)) for rnd in rounds}
    paper = bool(cfg.bot.get("paper_copy", True))
    progress: dict[tuple[str, str], set[int]] = {}
    for round_name, unit_name, task in db.execute("SELECT round, unit, task FROM progress WHERE progress != ''"):
        progress.setdefault((round_name, unit_name), set()).add(task)
    units = []
    counts = {r.name: {"on_time": 0, "late": 0, "missing": 0, "pending": 0, "exempt": 0, "total": 0} for r in rounds}
    for unit in cfg.roster:
        tasks = cfg.roster.tasks_of(unit, cfg.ledger)
        per_round = {}
        for rnd in rounds:
            first, latest, n = times.get((rnd.name, unit.name), (None, None, 0))
            mark = round_marks[rnd.name].get(unit.name) or {}
            end = deadline_end(cfg, rnd, mark)
            if mark.get("exempt_reason"):
                state = "exempt"
            elif first:
                state = "late" if dt.datetime.fromisoformat(first) >= end else "on_time"
            else:
                state = "missing" if now >= end else "pending"
            done = progress.get((rnd.name, unit.name), set())
            per_round[rnd.name] = {
                "state": state,
                "first": _local(cfg, first),
                "latest": _local(cfg, latest),
                "reports": n,
                "missing_tasks": [t for t in tasks if t not in done],
                "reported_at": dt.datetime.fromisoformat(first).astimezone(cfg.tz).isoformat() if first else None,
                "extended_until": mark.get("extended_until"),
                "paper": bool(mark.get("paper_on")) if paper else None,
                "overdue_tasks": overdue[rnd.name].get(unit.name, []),
            }
            counts[rnd.name][state] += 1
            counts[rnd.name]["total"] += 1
        units.append({"unit": unit.name, "kind": unit.kind, "rounds": per_round})
    return {
        "now": store.iso(now),
        "rounds": [{"name": r.name, "deadline": r.deadline.isoformat(), "counts": counts[r.name]} for r in rounds],
        "units": units,
    }


def _local(cfg: Config, stamp: str | None) -> str | None:
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp).astimezone(cfg.tz).strftime("%m-%d %H:%M")


def task_completeness(cfg: Config, db, rnd: Round) -> list[dict]:
    """Per task: how many responsible units have written progress in this round."""
    done: dict[int, set[str]] = {}
    for row in db.query("SELECT unit, task FROM progress WHERE round = ? AND progress != ''", [rnd.name]):
        done.setdefault(row["task"], set()).add(row["unit"])
    out = []
    for task in cfg.ledger.tasks:
        responsible = [u.name for u in cfg.roster.responsible_units(task)]
        have = done.get(task.number, set())
        filled = [u for u in responsible if u in have]
        out.append({"task": task.number, "responsible": len(responsible), "filled": len(filled),
                    "missing_units": [u for u in responsible if u not in have]})
    return out
