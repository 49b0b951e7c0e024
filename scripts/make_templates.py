"""Build templates/forms/ledger_form.docx, the docxtpl template of the ledger form (填报版).

The template is committed; rerun this after changing the layout:
    .venv/bin/python scripts/make_templates.py
Office staff may also restyle the .docx in Word, keeping the {{ }} / {%tr %} tags.
Layout follows the seed form: A4 landscape, 7 columns, a section row spanning the
table before each section, 重点工作 merged vertically over its tasks.
"""

from __future__ import annotations

from pathlib import Path

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Mm, Pt

FORMS = Path(__file__).resolve().parent.parent / "templates" / "forms"
COLUMNS = [("序号", 1.2), ("重点工作", 2.4), ("主要内容", 7.0), ("量化指标", 4.0), ("责任单位", 2.4), ("完成时限", 2.2), ("进展落实情况", 6.5)]


def set_fonts(style, east_asia: str, size: float, bold: bool = False) -> None:
    style.font.name = "Times New Roman"
    style.font.size = Pt(size)
    style.font.bold = bold
    rpr = style.element.get_or_add_rPr()
    fonts = rpr.find(qn("w:rFonts"))
    if fonts is None:
        fonts = OxmlElement("w:rFonts")
        rpr.insert(0, fonts)
    fonts.set(qn("w:eastAsia"), east_asia)


def para(doc, text: str, *, size=12, bold=False, align=None, font="仿宋_GB2312", space_after=4):
    p = doc.add_paragraph()
    run = p.add_run(text)
    run.font.size = Pt(size)
    run.font.bold = bold
    run._element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), font)
    if align is not None:
        p.alignment = align
    p.paragraph_format.space_after = Pt(space_after)
    return p


def cell_text(cell, text: str, *, bold=False, center=False, size=10.5) -> None:
    p = cell.paragraphs[0]
    run = p.add_run(text)
    run.font.size = Pt(size)
    run.font.bold = bold
    if center:
        p.alignment = WD_ALIGN_PARAGRAPH.CENTER


def span_row(table, text: str) -> None:
    row = table.add_row()
    merged = row.cells[0].merge(row.cells[-1])
    cell_text(merged, text, bold=True)


def build(out: Path, *, consolidated: bool) -> None:
    """The form (填报版: one unit fills the last column) or the consolidated ledger (汇总台账: every unit's text)."""
    doc = Document()
    section = doc.sections[0]
    section.orientation = WD_ORIENT.LANDSCAPE
    section.page_width, section.page_height = Mm(297), Mm(210)
    for side in ("left_margin", "right_margin"):
        setattr(section, side, Cm(2.0))
    section.top_margin = section.bottom_margin = Cm(2.0)
    set_fonts(doc.styles["Normal"], "仿宋_GB2312", 12)

    para(doc, "{{ title }}", size=18, bold=True, align=WD_ALIGN_PARAGRAPH.CENTER, font="方正小标宋简体")
    if consolidated:
        para(doc, "（汇总台账 · {{ round_label }}）", size=14, align=WD_ALIGN_PARAGRAPH.CENTER, font="楷体_GB2312")
        para(doc, "{{ summary }}", size=12, space_after=8)
    else:
        para(doc, "（填报版）", size=14, align=WD_ALIGN_PARAGRAPH.CENTER, font="楷体_GB2312")
        intro = para(doc, "{{ intro }}", size=12)
        intro.paragraph_format.first_line_indent = Pt(24)
        para(doc, "填报单位：{{ unit_name }}        联系人：{{ contact }}        联系电话：{{ phone }}", size=12, space_after=8)

    table = doc.add_table(rows=1, cols=len(COLUMNS))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, (name, _w) in zip(table.rows[0].cells, COLUMNS):
        cell_text(cell, name, bold=True, center=True)
    tr_pr = table.rows[0]._tr.get_or_add_trPr()
    header = OxmlElement("w:tblHeader")  # repeat the header row on every page
    tr_pr.append(header)

    span_row(table, "{%tr for s in sections %}")
    span_row(table, "{{ s.label }}")
    span_row(table, "{%tr for g in s.groups %}")
    span_row(table, "{%tr for t in g.tasks %}")
    row = table.add_row()
    values = ["{{ t.number }}", "{% vm %}{{ g.item }}", "{{ t.content }}", "{{ t.indicator }}", "{{ t.units }}", "{{ t.deadline }}", "{{r t.progress }}"]
    for cell, value in zip(row.cells, values):
        cell_text(cell, value, center=value in ("{{ t.number }}", "{{ t.deadline }}", "{% vm %}{{ g.item }}"))
    span_row(table, "{%tr endfor %}")
    span_row(table, "{%tr endfor %}")
    span_row(table, "{%tr endfor %}")
    table.autofit = False
    for grid_col, (_n, width) in zip(table._tbl.tblGrid.findall(qn("w:gridCol")), COLUMNS):
        grid_col.set(qn("w:w"), str(int(Cm(width).twips)))
    for row in table.rows:
        for cell, (_n, width) in zip(row.cells, COLUMNS):
            cell.width = Cm(width)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc.save(out)
    print(f"wrote {out}")


def main() -> None:
    build(FORMS / "ledger_form.docx", consolidated=False)
    build(FORMS / "consolidated_ledger.docx", consolidated=True)


if __name__ == "__main__":
    main()
