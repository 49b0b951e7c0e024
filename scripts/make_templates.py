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


def set_widths(table, columns: list[tuple[str, float]]) -> None:
    """Fixed column widths in the grid (LibreOffice and WPS read w:tblGrid) and on every cell (Word)."""
    table.autofit = False
    for grid_col, (_n, width) in zip(table._tbl.tblGrid.findall(qn("w:gridCol")), columns):
        grid_col.set(qn("w:w"), str(int(Cm(width).twips)))
    for row in table.rows:
        for cell, (_n, width) in zip(row.cells, columns):
            cell.width = Cm(width)


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
    set_widths(table, COLUMNS)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc.save(out)
    print(f"wrote {out}")


def official_para(doc, text: str, *, font="仿宋_GB2312", size=16, bold=False, align=None, indent=True, space_before=0):
    """A paragraph of an official document (GB/T 9704-2012): fixed 28.9 pt lines, 2-character indent."""
    p = doc.add_paragraph()
    run = p.add_run(text)
    run.font.size = Pt(size)
    run.font.bold = bold
    run.font.name = "Times New Roman"
    run._element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), font)
    fmt = p.paragraph_format
    fmt.line_spacing = Pt(28.9)
    fmt.space_after = Pt(0)
    fmt.space_before = Pt(space_before)
    if indent:
        fmt.first_line_indent = Pt(size * 2)
    if align is not None:
        p.alignment = align
    return p


def official_table(doc, headers: list[tuple[str, float]], loop: str, cells: list[str]) -> None:
    table = doc.add_table(rows=1, cols=len(headers))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, (name, _w) in zip(table.rows[0].cells, headers):
        cell_text(cell, name, bold=True, center=True, size=12)
    span_row(table, "{%tr for r in " + loop + " %}")
    row = table.add_row()
    for cell, value in zip(row.cells, cells):
        cell_text(cell, value, center=True, size=12)
    span_row(table, "{%tr endfor %}")
    set_widths(table, headers)


def build_quarterly(out: Path) -> None:
    """The quarterly notice (季度通报) draft, laid out per GB/T 9704-2012."""
    doc = Document()
    sec = doc.sections[0]
    sec.page_width, sec.page_height = Mm(210), Mm(297)
    sec.top_margin, sec.bottom_margin = Mm(37), Mm(35)
    sec.left_margin, sec.right_margin = Mm(28), Mm(26)
    set_fonts(doc.styles["Normal"], "仿宋_GB2312", 16)
    # page number "— 1 —" in 宋体 4号 at the foot of every page
    footer = sec.footer.paragraphs[0]
    footer.alignment = WD_ALIGN_PARAGRAPH.CENTER
    for text, field in (("— ", False), ("PAGE", True), (" —", False)):
        run = footer.add_run()
        run.font.size = Pt(14)
        run._element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), "宋体")
        if field:
            for kind in ("begin", None, "end"):
                if kind is None:
                    instr = OxmlElement("w:instrText")
                    instr.set(qn("xml:space"), "preserve")
                    instr.text = " PAGE "
                    run._element.append(instr)
                else:
                    fld = OxmlElement("w:fldChar")
                    fld.set(qn("w:fldCharType"), kind)
                    run._element.append(fld)
        else:
            run.text = text
    official_para(doc, "{{ title }}", font="方正小标宋简体", size=22, align=WD_ALIGN_PARAGRAPH.CENTER, indent=False, space_before=28.9)
    official_para(doc, "", indent=False)
    official_para(doc, "{{ addressee }}：", indent=False)
    official_para(doc, "{%p for text in intro %}")
    official_para(doc, "{{ text }}")
    official_para(doc, "{%p endfor %}")
    official_para(doc, "一、逾期报送单位", font="黑体")
    official_para(doc, "{{ late_summary }}")
    official_table(doc, [("序号", 1.2), ("单位", 4.8), ("报送节点", 2.2), ("截止日期", 2.4), ("报送日期", 2.4), ("逾期天数", 2.4)],
                   "late", ["{{ r.no }}", "{{ r.unit }}", "{{ r.round }}", "{{ r.deadline }}", "{{ r.reported }}", "{{ r.days }}"])
    official_para(doc, "二、未报送单位", font="黑体")
    official_para(doc, "{{ missing_summary }}")
    official_table(doc, [("序号", 1.2), ("单位", 6.0), ("报送节点", 2.6), ("截止日期", 2.8), ("统计截至", 2.8)],
                   "missing", ["{{ r.no }}", "{{ r.unit }}", "{{ r.round }}", "{{ r.deadline }}", "{{ r.as_of }}"])
    official_para(doc, "三、扣分情况", font="黑体")
    official_para(doc, "{{ score_rule }}")
    official_table(doc, [("序号", 1.2), ("单位", 5.0), ("扣分事项", 6.6), ("扣分", 2.6)],
                   "scores", ["{{ r.no }}", "{{ r.unit }}", "{{ r.reason }}", "{{ r.points }}"])
    official_para(doc, "{{ closing }}", space_before=14)
    official_para(doc, "", indent=False)
    official_para(doc, "{{ office }}", indent=False, align=WD_ALIGN_PARAGRAPH.RIGHT)
    official_para(doc, "{{ date }}", indent=False, align=WD_ALIGN_PARAGRAPH.RIGHT)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc.save(out)
    print(f"wrote {out}")


def main() -> None:
    build(FORMS / "ledger_form.docx", consolidated=False)
    build(FORMS / "consolidated_ledger.docx", consolidated=True)
    build_quarterly(FORMS / "quarterly_notice.docx")


if __name__ == "__main__":
    main()
