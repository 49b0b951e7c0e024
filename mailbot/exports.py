"""The consolidated ledger (汇总台账): every unit's progress per task, as .docx (docxtpl) and .xlsx.

Coordinators work in Excel: the workbook has one sheet per round (units × tasks)
and a sheet of who reported when.
"""

from __future__ import annotations

import datetime as dt
import io
from copy import copy
from pathlib import Path

from docxtpl import DocxTemplate, RichText

from .config import Config, Round
from .status import status_table
from .templating import templates_dir

NOT_REPORTED = "未报送"
STATE_LABELS = {"on_time": "按时", "late": "逾期", "missing": "未报送", "pending": "待报送"}


class _LinearTemplate(DocxTemplate):
    """DocxTemplate whose rendered body goes into the document in linear time.

    docxtpl parses the rendered body into its own lxml document and moves it into the
    Word document (map_tree). lxml (6.1) takes time quadratic in the number of
    xml:space attributes to move a subtree between documents, and every RichText run
    has one: at 2,000 units the move alone took 10–19 s per round. The attributes are
    taken off before the move and put back after, in their order: the XML is unchanged.
    """

    def map_tree(self, tree):
        saved = [(el, el.items()) for el in tree.xpath("//*[@xml:space]")]
        for el, _items in saved:
            el.attrib.clear()
        super().map_tree(tree)
        for el, items in saved:
            for key, value in items:
                el.set(key, value)


def _progress(db, round_name: str) -> dict[tuple[str, int], dict]:
    return {
        (unit, task): {"unit": unit, "task": task, "progress": progress, "received_at": received_at}
        for unit, task, progress, received_at in db.execute(
            "SELECT unit, task, progress, received_at FROM progress WHERE round = ?", [round_name]
        )
    }


def consolidated_docx(cfg: Config, db, rnd: Round, now: dt.datetime) -> bytes:
    """The seed's table; the last column lists every responsible unit's text (or 未报送) with its date."""
    progress = _progress(db, rnd.name)
    table = status_table(cfg, db, [rnd], now)
    counts = table["rounds"][0]["counts"]
    sections = []
    for section in cfg.ledger.sections:
        groups: list[dict] = []
        for task in cfg.ledger.tasks:
            if task.section != section.number:
                continue
            # One small RichText per unit, joined once: RichText.add appends to a string,
            # which is quadratic over thousands of units. The XML is the same.
            parts = []
            for i, unit in enumerate(cfg.roster.responsible_units(task)):
                row = progress.get((unit.name, task.number))
                part = RichText()
                if i:
                    part.add("\a")
                if row and row["progress"]:
                    day = dt.datetime.fromisoformat(row["received_at"]).astimezone(cfg.tz)
                    part.add(f"{unit.name}（{day.month}月{day.day}日）：", bold=True)
                    part.add(row["progress"])
                else:
                    part.add(f"{unit.name}：", bold=True)
                    part.add(NOT_REPORTED, color="C00000")
                parts.append(part.xml)
            rt = RichText()
            rt.xml = "".join(parts)
            if not groups or groups[-1]["item"] != task.item:
                groups.append({"item": task.item, "tasks": []})
            groups[-1]["tasks"].append(
                {"number": task.number, "content": task.content, "indicator": task.indicator, "units": task.units,
                 "deadline": task.deadline, "progress": rt}
            )
        sections.append({"label": section.label, "groups": groups})
    local = now.astimezone(cfg.tz)
    summary = (
        f"截至{local.year}年{local.month}月{local.day}日{local:%H:%M}，共 {counts['total']} 个单位：按时报送 {counts['on_time']} 个，"
        f"逾期报送 {counts['late']} 个，未报送 {counts['missing'] + counts['pending']} 个。报送截止：{rnd.deadline.year}年{rnd.deadline.month}月{rnd.deadline.day}日。"
    )
    tpl = _LinearTemplate(str(templates_dir() / "forms" / "consolidated_ledger.docx"))
    tpl.render(
        {"title": cfg.ledger.title, "round_label": cfg.round_label(rnd), "summary": summary, "sections": sections},
        autoescape=True,
    )
    buf = io.BytesIO()
    tpl.save(buf)
    return buf.getvalue()


def consolidated_xlsx(cfg: Config, db, now: dt.datetime, rounds: list[Round] | None = None) -> bytes:
    """One sheet per round (units × tasks, '—' where the unit is not responsible), plus 报送情况."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    rounds = rounds or list(cfg.rounds)
    wb = Workbook()
    wb.remove(wb.active)
    wrap = Alignment(wrap_text=True, vertical="top")
    bold = Font(bold=True)
    missing_fill = PatternFill("solid", fgColor="FDE9E7")
    tasks = cfg.ledger.tasks
    styled = {}  # missing? → the style array of an unstyled cell after `alignment = wrap` (and the fill)
    for rnd in rounds:
        ws = wb.create_sheet(_sheet_name(cfg.round_label(rnd)))
        progress = _progress(db, rnd.name)
        ws.append(["单位", "类别"] + [f"任务{t.number}" for t in tasks])
        for cell in ws[1]:
            cell.font = bold
        for r, unit in enumerate(cfg.roster, start=2):
            mine = set(cfg.roster.tasks_of(unit, cfg.ledger))
            row = [unit.name, unit.kind_label]
            for task in tasks:
                if task.number not in mine:
                    found = progress.get((unit.name, task.number))
                    row.append(found["progress"] if found and found["progress"] else "—")
                else:
                    found = progress.get((unit.name, task.number))
                    row.append(found["progress"] if found and found["progress"] else NOT_REPORTED)
            for cell in _append(ws, r, row)[2:]:
                missing = cell.value == NOT_REPORTED
                if cell.has_style or missing not in styled:
                    plain = not cell.has_style
                    cell.alignment = wrap
                    if missing:
                        cell.fill = missing_fill
                    if plain:
                        styled[missing] = copy(cell._style)
                else:
                    # The style the two assignments above give an unstyled cell, copied: assigning
                    # hashes the Alignment / PatternFill once per cell (4 s at 2,000 units × 30 tasks × 2 rounds).
                    cell._style = copy(styled[missing])
        ws.freeze_panes = "C2"
        ws.column_dimensions["A"].width = 22
        for i in range(3, len(tasks) + 3):
            ws.column_dimensions[get_column_letter(i)].width = 30
    ws = wb.create_sheet("报送情况")
    ws.append(["单位", "类别", "报送节点", "截止日期", "状态", "首次报送", "最近报送", "报送次数", "尚缺任务"])
    for cell in ws[1]:
        cell.font = bold
    table = status_table(cfg, db, rounds, now)
    deadlines = {r["name"]: r["deadline"] for r in table["rounds"]}
    r = 1
    for unit in table["units"]:
        for name, st in unit["rounds"].items():
            r += 1
            _append(ws, r, [
                unit["unit"], "部门" if unit["kind"] == "department" else "镇街", name, deadlines[name], STATE_LABELS[st["state"]],
                st["first"] or "", st["latest"] or "", st["reports"], "、".join(map(str, st["missing_tasks"])),
            ])
    for col, width in zip("ABCDEFGHI", (22, 6, 10, 12, 8, 14, 14, 8, 40)):
        ws.column_dimensions[col].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _sheet_name(name: str) -> str:
    for ch in "[]:*?/\\":
        name = name.replace(ch, "_")
    return name[:31] or "Sheet"


def _append(ws, row: int, values: list) -> list:
    """Write ``values`` as row number ``row`` (the next row, as ws.append would) and return its cells;
    unit text that starts with "=" stays text, never a formula Excel would evaluate.

    Cells are addressed by number: ws.max_row and ws[row] scan every cell of the sheet,
    which made a 2,000-unit workbook quadratic (35 s)."""
    cells = [ws.cell(row=row, column=col, value=value) for col, value in enumerate(values, 1)]
    for cell in cells:
        if isinstance(cell.value, str) and cell.value.startswith("="):
            cell.data_type = "s"
    return cells


def write_atomic(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def digest_export(cfg: Config, db, now: dt.datetime) -> Path:
    """The workbook attached to a digest, under state/exports/."""
    local = now.astimezone(cfg.tz)
    path = cfg.state_dir / "exports" / f"汇总台账-{local:%Y%m%d-%H%M}.xlsx"
    return write_atomic(path, consolidated_xlsx(cfg, db, now, [r for r in cfg.rounds if r.opens <= now] or [cfg.rounds[0]]))



def annual_score_document(cfg: Config, rows: list[dict], year: int, now: dt.datetime, fmt: str) -> bytes:
    """The annual score sheet (年度考核扣分表) as .docx (A4, a table the office prints) or .xlsx."""
    title = f"{year}年度任务落实台账报送考核扣分表"
    local = now.astimezone(cfg.tz)
    note = f"截至{local.year}年{local.month}月{local.day}日。扣分规则见配置文件 [bot] scoring；完成情况为系统依据各单位填报内容判断，经人工认定的以认定为准。"
    table = [(i, r["unit"], "；".join(f"{d['reason']}（{d['points']:g}分）" for d in r["deductions"]) or "无", r["total"])
             for i, r in enumerate(rows, 1)]
    if fmt == "xlsx":
        from openpyxl import Workbook
        from openpyxl.styles import Alignment, Font

        wb = Workbook()
        ws = wb.active
        ws.title = "年度扣分"
        ws.append([title])
        ws["A1"].font = Font(bold=True, size=14)
        ws.append(["序号", "单位", "扣分事项", "扣分合计"])
        for row in table:
            ws.append(list(row))
        ws.append([note])
        for col, width in zip("ABCD", (6, 22, 80, 10), strict=True):
            ws.column_dimensions[col].width = width
        for cells in ws.iter_rows(min_row=3):
            cells[2].alignment = Alignment(wrap_text=True, vertical="top")
        ws.freeze_panes = "A3"
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.print_title_rows = "2:2"
        buf = io.BytesIO()
        wb.save(buf)
        return buf.getvalue()
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt

    doc = Document()
    section = doc.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin, section.bottom_margin, section.left_margin, section.right_margin = Mm(37), Mm(35), Mm(28), Mm(26)
    style = doc.styles["Normal"]
    style.font.name, style.font.size = "仿宋_GB2312", Pt(14)
    style.element.rPr.rFonts.set(qn("w:eastAsia"), "仿宋_GB2312")
    head = doc.add_paragraph()
    head.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = head.add_run(title)
    run.font.size, run.bold = Pt(18), True
    grid = doc.add_table(rows=1, cols=4)
    grid.style = "Table Grid"
    grid.autofit = False
    for cell, text in zip(grid.rows[0].cells, ("序号", "单位", "扣分事项", "扣分"), strict=True):
        cell.text = text
    for row in table:
        cells = grid.add_row().cells
        for cell, value in zip(cells, row, strict=True):
            cell.text = f"{value:g}" if isinstance(value, float) else str(value)
    widths = (Mm(14), Mm(38), Mm(86), Mm(18))  # 156 mm: the type area of an A4 page with these margins
    for column, width in zip(grid.columns, widths, strict=True):
        column.width = width
    for i, row in enumerate(grid.rows):
        for j, (cell, width) in enumerate(zip(row.cells, widths, strict=True)):
            cell.width = width
            for para in cell.paragraphs:
                if j != 2 or i == 0:
                    para.alignment = WD_ALIGN_PARAGRAPH.CENTER
                for r in para.runs:
                    r.font.size = Pt(12)
                    r.bold = i == 0
        if i == 0:
            tr_pr = row._tr.get_or_add_trPr()
            header = tr_pr.makeelement(qn("w:tblHeader"), {qn("w:val"): "true"})
            tr_pr.append(header)  # repeated on every page
    doc.add_paragraph(note)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()
