"""The quarterly notice (季度通报) draft: late and missing units per round, and the score sheet.

Laid out as a Chinese official document (GB/T 9704-2012) by the docxtpl template
templates/forms/quarterly_notice.docx, so the office can edit and issue it.
"""

from __future__ import annotations

import datetime as dt
import io
import re

from docxtpl import DocxTemplate

from . import store
from .config import Config
from .errors import MailbotError
from .templating import templates_dir

DEFAULT_SCORING = {"late_points": 1.0, "missing_points": 2.0}


def quarter_bounds(text: str, tz) -> tuple[int, int, dt.date, dt.date]:
    m = re.fullmatch(r"\s*(\d{4})\s*[Qq]\s*([1-4])\s*", text or "")
    if not m:
        raise MailbotError(f"季度格式不正确：「{text}」，应为 年份Q季度，例如 2023Q3")
    year, q = int(m.group(1)), int(m.group(2))
    start = dt.date(year, 3 * q - 2, 1)
    end = (dt.date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1)) - dt.timedelta(days=1)
    return year, q, start, end


def _date(d: dt.date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def _short(d: dt.date) -> str:
    return f"{d.month}月{d.day}日"


def _points(value: float) -> str:
    return f"{value:g}"


def quarterly_context(cfg: Config, db, quarter: str, now: dt.datetime) -> dict:
    year, q, start, end = quarter_bounds(quarter, cfg.tz)
    scoring = dict(DEFAULT_SCORING, **cfg.bot.get("scoring", {}))
    rounds = [r for r in cfg.rounds if start <= r.deadline <= end]
    if not rounds:
        names = "、".join(f"{r.name}（{_date(r.deadline)}）" for r in cfg.rounds)
        raise MailbotError(f"{year}年第{q}季度内没有报送截止日：已配置的节点为 {names}")
    as_of = min(now.astimezone(cfg.tz).date(), end)
    firsts = {key: first for key, (first, _latest, _n) in store.unit_report_times(db).items()}
    late, missing, scores = [], [], []
    totals: dict[str, list[tuple[str, float]]] = {}
    for rnd in rounds:
        for unit in cfg.roster:
            if not cfg.roster.tasks_of(unit, cfg.ledger):
                continue
            first = firsts.get((rnd.name, unit.name))
            reported = dt.datetime.fromisoformat(first).astimezone(cfg.tz) if first else None
            if reported is not None and reported.date() <= as_of:
                if rnd.is_late(reported):
                    days = (reported.date() - rnd.deadline).days
                    late.append({"unit": unit.name, "round": rnd.name, "deadline": _short(rnd.deadline), "reported": _short(reported.date()), "days": days})
                    totals.setdefault(unit.name, []).append((f"{rnd.name}逾期报送{days}天", scoring["late_points"]))
            elif as_of > rnd.deadline:
                missing.append({"unit": unit.name, "round": rnd.name, "deadline": _short(rnd.deadline), "as_of": _short(as_of)})
                totals.setdefault(unit.name, []).append((f"{rnd.name}未报送", scoring["missing_points"]))
    for i, row in enumerate(late, 1):
        row["no"] = i
    for i, row in enumerate(missing, 1):
        row["no"] = i
    order = {u.name: i for i, u in enumerate(cfg.roster)}
    for i, unit in enumerate(sorted(totals, key=order.get), 1):
        items = totals[unit]
        scores.append({"no": i, "unit": unit, "reason": "；".join(r for r, _p in items), "points": _points(sum(p for _r, p in items))})
    round_names = "、".join(f"{r.name}（截止{_date(r.deadline)}）" for r in rounds)
    total_units = sum(1 for u in cfg.roster if cfg.roster.tasks_of(u, cfg.ledger))
    local = now.astimezone(cfg.tz).date()
    return {
        "title": f"关于{year}年第{'一二三四'[q - 1]}季度政务公开工作要点落实情况报送情况的通报",
        "addressee": "各部门、各镇街",
        "intro": [
            f"按照《{cfg.ledger.title}》要求，各单位应于规定时间前将落实进展情况报送政府办公室。本季度报送节点为{round_names}，应报送单位 {total_units} 个。",
            f"截至{_date(as_of)}，逾期报送 {len(late)} 家次，未报送 {len(missing)} 家次。现将有关情况通报如下：",
        ],
        "late_summary": "以下单位未在截止时间前报送：" if late else "本季度无逾期报送单位。",
        "missing_summary": "以下单位截至统计日仍未报送：" if missing else "本季度无未报送单位。",
        "score_rule": f"按照年度考核办法，逾期报送每次扣{_points(scoring['late_points'])}分，未报送每次扣{_points(scoring['missing_points'])}分。",
        "late": late,
        "missing": missing,
        "scores": scores,
        "closing": "请上述单位高度重视，认真分析原因，立即补报，确保后续工作按时保质完成。",
        "office": cfg.bot.get("office_name", ""),
        "date": _date(local),
    }


def quarterly_docx(cfg: Config, db, quarter: str, now: dt.datetime | None = None) -> bytes:
    context = quarterly_context(cfg, db, quarter, now or store.now_utc())
    tpl = DocxTemplate(str(templates_dir() / "forms" / "quarterly_notice.docx"))
    tpl.render(context, autoescape=True)
    buf = io.BytesIO()
    tpl.save(buf)
    return buf.getvalue()
