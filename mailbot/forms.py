"""Word forms with docxtpl: the blank ledger form (填报版), whole or for one unit.

The template is templates/forms/ledger_form.docx (built by scripts/make_templates.py).
Every form rendered here must parse back with mailbot.reports (tested per unit).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from email.utils import parseaddr
from pathlib import Path
from typing import Iterable

from docxtpl import DocxTemplate, RichText

from .config import Config
from .ledger import Ledger, Roster, Unit
from .templating import templates_dir


def form_context(
    ledger: Ledger,
    roster: Roster | None = None,
    unit: Unit | None = None,
    progress: dict[int, str] | None = None,
    contact: str = "",
    phone: str = "",
    intro: str | None = None,
) -> dict:
    """The template context: sections → item groups → tasks (only the unit's tasks when a unit is given).

    ``intro``: the note under the title; None: the ledger's own (see ``configured_intro``).
    """
    mine = set(roster.tasks_of(unit, ledger)) if unit is not None and roster is not None else None
    progress = progress or {}
    sections = []
    for section in ledger.sections:
        groups: list[dict] = []
        for task in ledger.tasks:
            if task.section != section.number or (mine is not None and task.number not in mine):
                continue
            if not groups or groups[-1]["item"] != task.item:
                groups.append({"item": task.item, "tasks": []})
            groups[-1]["tasks"].append(
                {
                    "number": task.number,
                    "content": task.content,
                    "indicator": task.indicator,
                    "units": task.units,
                    "deadline": task.deadline,
                    "progress": RichText(progress.get(task.number, "")),
                }
            )
        if groups:
            sections.append({"label": section.label, "groups": groups})
    return {
        "title": ledger.title,
        "intro": ledger.intro if intro is None else intro,
        "unit_name": unit.name if unit is not None else "",
        "contact": contact,
        "phone": phone,
        "sections": sections,
    }


def render_form(
    cfg_or_ledger: Config | Ledger,
    unit: Unit | str | None = None,
    *,
    progress: dict[int, str] | None = None,
    contact: str = "",
    phone: str = "",
    roster: Roster | None = None,
) -> bytes:
    """The ledger form as .docx bytes: blank (填报版) or, with ``progress``, filled in."""
    intro = None
    if isinstance(cfg_or_ledger, Config):
        ledger, roster = cfg_or_ledger.ledger, roster or cfg_or_ledger.roster
        intro = configured_intro(cfg_or_ledger)
    else:
        ledger = cfg_or_ledger
    if isinstance(unit, str):
        unit = roster.get(unit) if roster else None
    tpl = DocxTemplate(str(templates_dir() / "forms" / "ledger_form.docx"))
    tpl.render(form_context(ledger, roster, unit, progress, contact, phone, intro), autoescape=True)
    buf = io.BytesIO()
    tpl.save(buf)
    return buf.getvalue()


# The ledger's note names the deadlines ("分别于2023年8月15日、12月5日前报送") and the mailbox
# ("政务公开邮箱:xxqzwgk001@163.com") as they were when the ledger was issued; the form says what
# the config says now.
_CN_DATE = r"(?:\d{4}\s*年\s*)?\d{1,2}\s*月\s*\d{1,2}\s*日"
_DEADLINES = re.compile(rf"(?:分别)?于\s*{_CN_DATE}(?:\s*[、，,和及与]\s*{_CN_DATE})*")
_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def chinese_dates(dates: Iterable[dt.date]) -> str:
    """2023年8月25日、12月5日: the year only where it changes."""
    out, year = [], None
    for d in dates:
        out.append(f"{d.month}月{d.day}日" if d.year == year else f"{d.year}年{d.month}月{d.day}日")
        year = d.year
    return "、".join(out)


def configured_mailbox(cfg: Config) -> str:
    """The address reports go to: [smtp] from (its address part), else [imap] user, else [smtp] user."""
    for value in (cfg.smtp.from_addr, cfg.imap.user, cfg.smtp.user):
        address = parseaddr(value or "")[1]
        if "@" in address:
            return address
    return ""


def configured_intro(cfg: Config, intro: str | None = None) -> str:
    """The ledger's note with its deadlines and mailbox taken from the config (rounds, [smtp] from)."""
    intro = cfg.ledger.intro if intro is None else intro
    rounds = [r for r in cfg.rounds if r.opens.year == cfg.ledger.year] or list(cfg.rounds)
    if rounds:
        dates = chinese_dates(sorted(r.deadline for r in rounds))
        intro = _DEADLINES.sub(lambda _m: ("分别于" if len(rounds) > 1 else "于") + dates, intro, count=1)
    mailbox = configured_mailbox(cfg)
    if mailbox:
        intro = _ADDRESS.sub(lambda _m: mailbox, intro)
    return intro


def write_form(path: str | Path, *args, **kwargs) -> Path:
    path = Path(path)
    path.write_bytes(render_form(*args, **kwargs))
    return path


def import_ledger(data: bytes) -> Ledger:
    """A year's ledger read from its blank Word form: the inverse of ``render_form``.

    Title: the first paragraph; intro: the paragraph that starts with 《 (the form's
    note); sections from the section rows (一、…); tasks from the task rows.
    """
    import re

    from .errors import ReportError
    from .ledger import Section, Task
    from .reports import _cell_at, _load_parts, _paragraph_text, _parse_number, find_ledger_table, P, SECTION_RE, sniff

    if sniff(data) != "docx":
        raise ReportError("台账模板必须是 .docx 文件：请在 Word 或 WPS 中另存为 .docx 后再导入", "not_docx")
    document, numbering = _load_parts(data)
    lt = find_ledger_table(document, numbering)
    nums = lt.nums
    paragraphs = []
    for block in lt.blocks:
        if block is lt.table:
            break
        if block.tag == P:
            text = _paragraph_text(block, nums).strip()
            if text:
                paragraphs.append(text)
    title = paragraphs[0] if paragraphs else ""
    intro = next((p for p in paragraphs if p.startswith("《")), "")
    year_match = re.search(r"(20\d\d)\s*年", title)
    sections: list[Section] = []
    tasks: list[Task] = []
    missing_roles = {"number", "item", "content", "units"} - set(lt.rows[0].roles if lt.rows else {})
    if missing_roles:
        raise ReportError("台账模板缺少「序号」「重点工作」「主要内容」「责任单位」中的列，无法导入", "not_ledger")

    def text(row, role: str) -> str:
        if role not in row.roles:
            return ""
        cell = _cell_at(row.cells, row.roles[role])
        return cell.text(nums).strip() if cell is not None else ""

    for row in lt.rows:
        if row.section is not None:
            label = re.sub(r"\s+", "", row.section)
            sections.append(Section(len(sections) + 1, SECTION_RE.sub("", label, count=1)))
            continue
        number = _parse_number(text(row, "number"))
        if number is None:
            continue
        tasks.append(
            Task(
                number=number,
                section=len(sections) or 1,
                item=re.sub(r"\s+", "", text(row, "item")),
                content=text(row, "content"),
                indicator=text(row, "indicator"),
                units=text(row, "units"),
                deadline=text(row, "deadline"),
            )
        )
    if not tasks:
        raise ReportError("台账模板中没有任务行（序号为数字的行）", "not_ledger")
    if not sections:
        sections = [Section(1, "")]
    return Ledger(int(year_match.group(1)) if year_match else 0, title, intro, sections, tasks)
