"""Word forms with docxtpl: the blank ledger form (填报版), whole or for one unit.

The template is templates/forms/ledger_form.docx (built by scripts/make_templates.py).
Every form rendered here must parse back with mailbot.reports (tested per unit).
"""

from __future__ import annotations

import io
from pathlib import Path

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
) -> dict:
    """The template context: sections → item groups → tasks (only the unit's tasks when a unit is given)."""
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
        "intro": ledger.intro,
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
    if isinstance(cfg_or_ledger, Config):
        ledger, roster = cfg_or_ledger.ledger, roster or cfg_or_ledger.roster
    else:
        ledger = cfg_or_ledger
    if isinstance(unit, str):
        unit = roster.get(unit) if roster else None
    tpl = DocxTemplate(str(templates_dir() / "forms" / "ledger_form.docx"))
    tpl.render(form_context(ledger, roster, unit, progress, contact, phone), autoescape=True)
    buf = io.BytesIO()
    tpl.save(buf)
    return buf.getvalue()


def write_form(path: str | Path, *args, **kwargs) -> Path:
    path = Path(path)
    path.write_bytes(render_form(*args, **kwargs))
    return path
