"""Test document builder: realistic 任务落实台账 (.docx) reports in many variations.

The builder reproduces the layout of the real form (see ``tests/data/seed_2023.txt``)
and can inject the Word features that real, hand-edited reports contain, so that
the parser tests can check that a correct parser extracts the right text.

Plain layout (all defaults)::

    [title]   银川市西夏区2023年政务公开工作要点任务落实台账
              （填报版）
              《银川市西夏区2023年政务公开工作要点》共N个板块、…   (intro)
    [header]  填报单位：{unit}（盖章）  联系人：{contact}  联系电话：{phone}
    [table]   序号 | 重点工作 | 主要内容 | 量化指标 | 责任单位 | 完成时限 | 进展落实情况
              一、{section 1 title}                (one cell, gridSpan = number of columns)
              1 | {item} | {content} | …         (重点工作 vMerge'd over equal consecutive items)
              …
    (empty paragraph)

Landscape A4, Normal style with ``w:eastAsia="仿宋"``, table style "Table Grid".

Text conventions used in all docstrings below:

* "cell text" = the paragraphs of the cell joined with ``"\\n"``; a soft line break
  (``w:br``) inside a paragraph also gives ``"\\n"``.
* Text in ``w:del``/``w:delText``, ``w:instrText`` and picture runs is never visible.

Only the standard library, python-docx and lxml are used.  LibreOffice helpers at
the bottom convert the built files (docx→docx, docx→odt→doc).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_CELL_VERTICAL_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.oxml import OxmlElement, parse_xml
from docx.oxml.ns import nsdecls, qn
from docx.shared import Cm, Mm, Pt

__all__ = [
    "COLUMNS",
    "TITLE",
    "build_report",
    "fullwidth_digits",
    "chinese_numeral",
    "section_row_text",
    "tiny_png",
    "libreoffice_convert",
    "resave_with_libreoffice",
    "to_legacy_doc",
]

TITLE = "银川市西夏区2023年政务公开工作要点任务落实台账"
SUBTITLE = "（填报版）"

#: The 7 columns of the real form, in order, with the task-dict key they show.
COLUMNS: tuple[str, ...] = ("序号", "重点工作", "主要内容", "量化指标", "责任单位", "完成时限", "进展落实情况")
_COLUMN_KEYS = {
    "序号": "number",
    "重点工作": "item",
    "主要内容": "content",
    "量化指标": "indicator",
    "责任单位": "units",
    "完成时限": "deadline",
    "进展落实情况": None,  # progress
}
#: relative column widths (cm on a 25.7 cm wide landscape A4 text area)
_COLUMN_WIDTHS_CM = {
    "序号": 1.2,
    "重点工作": 2.6,
    "主要内容": 8.4,
    "量化指标": 4.4,
    "责任单位": 2.6,
    "完成时限": 2.0,
    "进展落实情况": 4.5,
}
_EXTRA_COLUMN_WIDTH_CM = 2.0
_TEXT_WIDTH_CM = 25.7

#: header_cell_breaks=True layout: column -> list of paragraphs, each paragraph a
#: list of segments separated by a soft line break (w:br).
HEADER_CELL_BREAKS: dict[str, list[list[str]]] = {
    "序号": [["序  号"]],  # two ASCII spaces
    "重点工作": [["重点", "工作"]],  # w:br  -> "重点\n工作"
    "主要内容": [["主要"], ["内容"]],  # two paragraphs -> "主要\n内容"
    "量化指标": [["量化\u3000指标"]],  # ideographic space U+3000
    "责任单位": [["责任", "单位"]],  # w:br
    "完成时限": [["完成"], ["时限"]],  # two paragraphs
    "进展落实情况": [["进展落实", "情况"]],  # w:br -> "进展落实\n情况"
}

_W_AUTHOR = "张三"
_W_DATE = "2023-08-14T09:30:00Z"


# --------------------------------------------------------------------------- helpers


def fullwidth_digits(s: str) -> str:
    """'12' -> '１２' (U+FF10..U+FF19)."""
    return "".join(chr(0xFF10 + int(c)) if "0" <= c <= "9" else c for c in str(s))


_CN_DIGITS = "零一二三四五六七八九"


def chinese_numeral(n: int) -> str:
    """1 -> 一, 10 -> 十, 12 -> 十二, 20 -> 二十, 23 -> 二十三 (1..99)."""
    if not 1 <= n <= 99:
        raise ValueError(f"section number out of range: {n}")
    if n < 10:
        return _CN_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _CN_DIGITS[tens]) + "十" + (_CN_DIGITS[ones] if ones else "")


_SECTION_PREFIX_RE = re.compile(r"^\s*[一二三四五六七八九十]+\s*[、.．]")


def section_row_text(section: Mapping) -> str:
    """Text of the section row: ``"一、围绕…"`` (the title is kept if it already has a prefix)."""
    title = str(section["title"])
    if _SECTION_PREFIX_RE.match(title):
        return title
    return f"{chinese_numeral(int(section['number']))}、{title}"


def tiny_png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid RGB PNG made with zlib/struct only (no PIL)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _format_number(n, style: str) -> str:
    if style == "plain":
        return str(n)
    if style == "fullwidth":
        return fullwidth_digits(str(n))
    if style == "dot":
        return f"{n}."
    if style in ("blank", "auto"):
        return ""
    raise ValueError(f"unknown number_style: {style!r}")


class _Ids:
    """Document-wide counter for w:id attributes (revisions, content controls)."""

    def __init__(self, start: int = 1000):
        self._n = start

    def next(self) -> str:
        self._n += 1
        return str(self._n)


def _w(tag: str, **attrs) -> "OxmlElement":
    el = OxmlElement(tag)
    for k, v in attrs.items():
        el.set(qn(k), str(v))
    return el


def _t(text: str, tag: str = "w:t"):
    t = OxmlElement(tag)
    t.text = text
    t.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
    return t


def _run(text: str | None = None, tag: str = "w:t"):
    r = OxmlElement("w:r")
    if text is not None:
        r.append(_t(text, tag))
    return r


def _fld_char_run(kind: str):
    r = OxmlElement("w:r")
    r.append(_w("w:fldChar", **{"w:fldCharType": kind}))
    return r


def _set_cell_paragraphs(cell, paragraphs: Sequence[Sequence[str]], *, bold=False, align=None):
    """paragraphs: list of paragraphs; each paragraph = list of segments joined by w:br."""
    first = True
    for segs in paragraphs:
        p = cell.paragraphs[0] if first else cell.add_paragraph()
        first = False
        if align is not None:
            p.alignment = align
        for i, seg in enumerate(segs):
            if i:
                p.add_run().add_break()  # <w:br/> (soft line break)
            if seg:
                p.add_run(seg).bold = bold or None


def _set_cell_text(cell, text: str, *, bold=False, align=None):
    """Write text; "\\n" separates paragraphs."""
    text = "" if text is None else str(text)
    _set_cell_paragraphs(cell, [[line] for line in text.split("\n")], bold=bold, align=align)


def _set_widths(row, widths_cm: Sequence[float]):
    for cell, w in zip(row.cells, widths_cm):
        cell.width = Cm(w)


# --------------------------------------------------------------------------- numbering


class _Numbering:
    """Adds abstractNum/num definitions to python-docx's numbering.xml part."""

    def __init__(self, document):
        self.el = document.part.numbering_part.element
        self._abs: dict[str, int] = {}

    def _next_ids(self):
        abs_ids = [int(a.get(qn("w:abstractNumId"))) for a in self.el.findall(qn("w:abstractNum"))]
        num_ids = [int(n.get(qn("w:numId"))) for n in self.el.findall(qn("w:num"))]
        return max(abs_ids + [0]) + 1, max(num_ids + [0]) + 1

    def abstract(self, key: str, lvl_text: str, jc: str) -> int:
        if key in self._abs:
            return self._abs[key]
        abs_id, _ = self._next_ids()
        nsid = f"{zlib.crc32(key.encode()) & 0xFFFFFFFF:08X}"
        xml = (
            f'<w:abstractNum {nsdecls("w")} w:abstractNumId="{abs_id}">'
            f'<w:nsid w:val="{nsid}"/><w:multiLevelType w:val="singleLevel"/>'
            f'<w:tmpl w:val="{nsid}"/>'
            f'<w:lvl w:ilvl="0"><w:start w:val="1"/><w:numFmt w:val="decimal"/>'
            f'<w:suff w:val="nothing"/><w:lvlText w:val="{lvl_text}"/><w:lvlJc w:val="{jc}"/>'
            f'<w:pPr><w:ind w:left="0" w:firstLine="0"/></w:pPr></w:lvl></w:abstractNum>'
        )
        node = parse_xml(xml)
        existing = self.el.findall(qn("w:abstractNum"))
        if existing:
            existing[-1].addnext(node)
        else:
            self.el.insert(0, node)
        self._abs[key] = abs_id
        return abs_id

    def num(self, abs_id: int, restart: bool = False) -> int:
        _, num_id = self._next_ids()
        override = (
            '<w:lvlOverride w:ilvl="0"><w:startOverride w:val="1"/></w:lvlOverride>' if restart else ""
        )
        node = parse_xml(
            f'<w:num {nsdecls("w")} w:numId="{num_id}"><w:abstractNumId w:val="{abs_id}"/>{override}</w:num>'
        )
        self.el.append(node)  # w:num elements come after all w:abstractNum
        return num_id


def _apply_numpr(paragraph, num_id: int, ilvl: int = 0):
    pPr = paragraph._p.get_or_add_pPr()
    numPr = pPr.get_or_add_numPr()
    numPr.get_or_add_ilvl().val = ilvl
    numPr.get_or_add_numId().val = num_id


# --------------------------------------------------------------------------- document setup


def _setup_document():
    doc = Document()
    sec = doc.sections[0]
    sec.orientation = WD_ORIENT.LANDSCAPE
    sec.page_width, sec.page_height = Mm(297), Mm(210)
    sec.left_margin = sec.right_margin = Cm(2.0)
    sec.top_margin = sec.bottom_margin = Cm(2.2)

    normal = doc.styles["Normal"]
    normal.font.name = "Times New Roman"
    normal.font.size = Pt(10.5)
    rpr = normal.element.get_or_add_rPr()
    rfonts = rpr.get_or_add_rFonts()
    rfonts.set(qn("w:eastAsia"), "仿宋")
    lang = _w("w:lang", **{"w:val": "en-US", "w:eastAsia": "zh-CN"})
    rpr.append(lang)
    pf = normal.paragraph_format
    pf.space_after = Pt(0)
    pf.space_before = Pt(0)
    pf.line_spacing = 1.0
    return doc


def _title_paragraphs(doc, sections, tasks, title):
    title_text = title if isinstance(title, str) else TITLE
    p = doc.add_paragraph()
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    r = p.add_run(title_text)
    r.bold = True
    r.font.size = Pt(18)
    r._r.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), "宋体")
    p = doc.add_paragraph()
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    p.add_run(SUBTITLE).font.size = Pt(14)
    n_items = len({(t.get("section"), t.get("item")) for t in tasks})
    intro = (
        f"《银川市西夏区2023年政务公开工作要点》共{len(sections)}个板块、{n_items}个大项、"
        f"{len(tasks)}项重点任务，同步编制了《任务落实台账（填报版）》。请各单位对照台账细化措施、"
        "逐项落实，并将落实进展情况分别于2023年8月15日、12月5日前报送政府办公室（WORD文字版发送至"
        "政务公开邮箱:xxqzwgk001@163.com，纸质版加盖本单位公章报送至行政中心718室）。政府督查室将"
        "实时跟进督查，对未按时完成的进行季度通报，年度扣分。"
    )
    p = doc.add_paragraph(intro)
    p.paragraph_format.first_line_indent = Pt(21)


def _cover_letter(doc, unit):
    p = doc.add_paragraph()
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    r = p.add_run("关于报送2023年政务公开工作要点落实情况的函")
    r.bold = True
    r.font.size = Pt(16)
    doc.add_paragraph("区政府办公室：")
    doc.add_paragraph(
        "根据《银川市西夏区2023年政务公开工作要点》要求，现将我单位政务公开工作要点任务落实情况"
        "报送如下，请审阅。"
    ).paragraph_format.first_line_indent = Pt(21)
    doc.add_paragraph("附件：银川市西夏区2023年政务公开工作要点任务落实台账")
    p = doc.add_paragraph(unit or "")
    p.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    p = doc.add_paragraph("2023年8月14日")
    p.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)


def _extra_table(doc):
    doc.add_paragraph("附件清单")
    t = doc.add_table(rows=2, cols=2)
    t.style = doc.styles["Table Grid"]
    t.cell(0, 0).text = "附件名称"
    t.cell(0, 1).text = "份数"
    t.cell(1, 0).text = "任务落实台账"
    t.cell(1, 1).text = "1"
    doc.add_paragraph()


def _header(doc, style, unit, contact, phone):
    unit, contact, phone = unit or "", contact or "", phone or ""
    if style == "paragraph":
        doc.add_paragraph(f"填报单位：{unit}（盖章）  联系人：{contact}  联系电话：{phone}")
    elif style == "paragraphs":
        doc.add_paragraph(f"填报单位：{unit}")
        doc.add_paragraph(f"联系人:{contact}")  # half-width colon
        doc.add_paragraph(f"联系电话：{phone}")
    elif style == "blank":
        doc.add_paragraph("填报单位：        联系人：        联系电话：")
    elif style == "table":
        t = doc.add_table(rows=1, cols=6)
        t.style = doc.styles["Table Grid"]
        for cell, text in zip(t.rows[0].cells, ("填报单位：", unit, "联系人：", contact, "联系电话：", phone)):
            cell.text = text
        _set_widths(t.rows[0], (2.5, 7.0, 2.0, 4.0, 2.5, 4.0))
        doc.add_paragraph()
    else:
        raise ValueError(f"unknown header_style: {style!r}")


# --------------------------------------------------------------------------- the builder


def build_report(
    path,
    sections: Sequence[Mapping],
    tasks: Sequence[Mapping],
    *,
    unit: str | None = "民政局",
    contact: str | None = "张三",
    phone: str | None = "0951-1234567",
    progress: Mapping[int, str] | None = None,
    header_style: str = "paragraph",
    title: bool | str = True,
    cover_letter: bool = False,
    extra_table_before: bool = False,
    split_tables: bool = False,
    repeat_header: bool | int = False,
    extra_column: str | None = None,
    drop_columns: Iterable[str] = (),
    number_style: str = "plain",
    merge_progress: tuple[int, int] | None = None,
    tracked: Mapping[int, tuple[str, str]] | None = None,
    sdt: Mapping[int, str] | None = None,
    hyperlink: Mapping[int, tuple[str, str]] | None = None,
    fields: Mapping[int, str | tuple[str, str]] | None = None,
    smart_tag: Mapping[int, str] | None = None,
    line_breaks: Mapping[int, Sequence[str]] | None = None,
    image_in: Iterable[int] | None = None,
    numbered_progress: Mapping[int, Sequence[str]] | None = None,
    header_cell_breaks: bool = False,
    block_sdt_table: bool = False,
    extra_rows: Mapping[int, Sequence[str]] | None = None,
    extra_rows_style: str = "vmerge",
    stray_rows: Mapping[int, tuple[int, str]] | None = None,
) -> Path:
    """Build a filled-in (or blank) 任务落实台账 .docx at ``path`` and return its Path.

    ``sections``: ``[{"number": 1, "title": "围绕…"}, …]``; ``tasks``:
    ``[{"number": 1, "section": 1, "item": "…", "content": "…", "indicator": "…",
    "units": "…", "deadline": "…"}, …]`` (the shape of mailbot/data/ledger_2023.json).
    Rows are emitted section by section (in ``sections`` order), each section row
    followed by that section's tasks in ``tasks`` order.  A task whose section is
    not listed raises ValueError.  Consecutive tasks of a section with the same
    ``item`` share ONE vertically merged 重点工作 cell (text only in the first,
    ``vMerge="restart"``; the others ``<w:vMerge/>`` and empty).

    Header (unit / contact) — what a parser should extract as unit/contact/phone:

    * ``header_style="paragraph"``: one paragraph
      ``"填报单位：{unit}（盖章）  联系人：{contact}  联系电话：{phone}"`` (the unit is
      followed by the literal "（盖章）", which is not part of the unit name).
    * ``"paragraphs"``: three paragraphs ``"填报单位：{unit}"``, ``"联系人:{contact}"``
      (HALF-width colon), ``"联系电话：{phone}"``.
    * ``"table"``: a 1×6 table ``填报单位： | unit | 联系人： | contact | 联系电话： | phone``
      placed before the ledger table (after the title / extra table).
    * ``"blank"``: ``"填报单位：        联系人：        联系电话："`` — unit, contact and
      phone are NOT written (expect nothing / empty).
    ``unit``/``contact``/``phone`` are written verbatim; ``None`` is written as "".

    Document framing:

    * ``title``: True → title paragraph (``TITLE``), "（填报版）" and the intro paragraph
      (the intro mentions the mailbox and deadlines); a str replaces the title text;
      False → none of the three.
    * ``cover_letter=True``: before the title, paragraphs "关于报送2023年政务公开工作要点
      落实情况的函", "区政府办公室：", a body sentence, "附件：…台账", ``unit`` (signature,
      right-aligned), "2023年8月14日", then a page break.
    * ``extra_table_before=True``: a paragraph "附件清单" and a 2×2 table
      (附件名称|份数 / 任务落实台账|1) before the header and the ledger table.
    * Body order: cover letter, title block, extra table, header, ledger table(s),
      one trailing empty paragraph.

    Ledger table structure:

    * ``split_tables=True``: one table per section, separated by an empty paragraph;
      only the first table has the header row; every table begins (after the header
      in the first one) with its section row.
    * ``repeat_header``: True → the header row is repeated just before the section
      row of the 3rd section (the 2nd if there are only 2 sections; before the middle
      task row if there is only one section); an int → before that section number's
      row.  Ignored with ``split_tables`` (each later table starts with a section row).
    * ``extra_column="备注"``: an extra last column with that header; every task row has
      "无" in it; section rows span it too.
    * ``drop_columns=("量化指标", …)``: omit these columns (unknown names → ValueError).
      If "进展落实情况" is dropped, all progress options are silently ignored.
    * ``header_cell_breaks=True``: header cells are written as in ``HEADER_CELL_BREAKS``:
      "序  号" (ASCII spaces), "重点⏎工作" (w:br), "主要"/"内容" (two paragraphs),
      "量化　指标" (U+3000), "责任⏎单位" (w:br), "完成"/"时限" (two paragraphs),
      "进展落实⏎情况" (w:br).  Removing all whitespace gives the plain names.
    * ``block_sdt_table=True``: the ledger table (with ``split_tables``: all ledger
      tables and the paragraphs between them) is wrapped in a body-level
      ``w:sdt > w:sdtContent``, so ``Document.tables`` no longer sees it.
    * ``number_style``: 序号 text "plain" → "1"; "fullwidth" → "１" / "１２"
      (U+FF10..FF19); "dot" → "1."; "blank" → "" (match by 主要内容); "auto" → ""
      but the paragraph has ``w:numPr`` pointing at a numbering.xml definition
      ``numFmt=decimal lvlText="%1"`` (suffix nothing).  Word then shows 1, 2, 3, …
      by ROW POSITION over all task rows (continues across split tables), which
      equals the task number only when ``tasks`` is 1..N in order.

    Progress column (进展落实情况).  Per task the cell is built in this order, and the
    EXPECTED VISIBLE CELL TEXT is the concatenation described:

    1. ``progress[n]`` (str): "\\n" separates paragraphs.  Tasks missing from
       ``progress`` get an empty cell (unless features below add something).
    2. Inline features, all appended to the LAST paragraph of (1), in this order and
       with no separator between them:
       ``tracked[n] = (deleted, inserted)`` → ``w:del`` (``w:delText`` deleted) then
       ``w:ins`` (``w:t`` inserted), w:id/w:author="张三"/w:date set; visible adds
       ``inserted`` only.
       ``sdt[n] = text`` → inline rich-text content control ``w:sdt`` (sdtPr: alias,
       tag, id) ``> w:sdtContent > w:r > w:t text``; visible adds ``text``
       (python-docx ``paragraph.text`` does NOT see it).
       ``hyperlink[n] = (text, url)`` → ``w:hyperlink r:id=…`` (external relationship
       to url) with a run ``text``; visible adds ``text``.
       ``fields[n] = text`` or ``(text1, text2)`` → complex field
       ``fldChar begin, instrText " MERGEFIELD x ", fldChar separate, <run text1>,
       fldChar end`` followed by ``<w:fldSimple w:instr=" MERGEFIELD y "><w:r>
       text2</w:r></w:fldSimple>``; visible adds ``text1 + text2`` (a plain str means
       text1 == text2 == text, i.e. the text appears TWICE).  "MERGEFIELD" must not
       be visible.
       ``smart_tag[n] = text`` → ``w:smartTag w:uri="urn:schemas-microsoft-com:office:
       smarttags" w:element="PersonName" > w:r > w:t text``; visible adds ``text``.
       ``image_in`` containing n → an inline picture run (tiny PNG, 0.6 cm) at the
       end; adds no text.
       Example: progress "已完成", tracked ("旧","新"), sdt "甲" → "已完成新甲".
    3. ``line_breaks[n] = ["l1", "l2"]`` → ONE paragraph with runs separated by
       ``w:br``: "l1\\nl2".  It is a new paragraph after (1)/(2) if those wrote
       anything, otherwise the cell's first paragraph.
    4. ``numbered_progress[n] = ["a", "b"]`` → one paragraph per entry, each with
       ``w:numPr`` → numbering.xml ``numFmt=decimal lvlText="%1."`` suffix "nothing",
       restarted at 1 in every cell (own w:num with startOverride).  The XML text is
       "a" / "b"; Word (and LibreOffice text export) display "1.a" / "2.b".  New
       paragraphs after (1)-(3), or starting in the first paragraph if the cell was
       still empty.

    So the cell text (paragraphs joined by "\\n", labels not rendered) is
    ``"\\n".join(filter(None, [progress_and_inline, "l1\\nl2", "a", "b"]))``.

    ``merge_progress=(a, b)``: the progress cells of tasks a..b (same section, a
    before b) are one vertically merged cell: task a's cell holds everything for a
    (``vMerge="restart"``), tasks after a up to b get ``<w:vMerge/>`` continuation
    cells that are EMPTY (their ``progress`` entries are ignored; any other feature
    on them raises ValueError).  A correct parser should attribute the text to every
    task in a..b (or at least to a), never to the tasks outside.

    Tasks split into several rows (细化措施), as units do when they add rows under a task:

    * ``extra_rows={n: ["text2", "text3"]}``: after task n's row, one row per entry whose
      进展落实情况 cell holds that text ("\n" separates paragraphs; "" leaves it empty).
      The 重点工作 cell of these rows is always part of the item's vertical merge.  The
      other cells depend on ``extra_rows_style``:
      ``"vmerge"`` → 序号, 主要内容, 量化指标, 责任单位, 完成时限 (and the extra column) are
      vertically merged from task n's row down over the added rows;
      ``"vmerge_number"`` → only 序号 is merged down; the other cells are empty;
      ``"copy"`` → the row is copied: the same 序号 text (no numPr), 主要内容 … 完成时限;
      ``"blank"`` → those cells are empty.
      A correct parser gives task n the texts of its rows in order, joined by "\n".
    * ``stray_rows={a: (n, text)}``: after task a's row (and its extra rows) a full copy of
      task n's row (序号, 重点工作, 主要内容 …, not merged with anything) with ``text`` as
      its progress: the same task in a second, non-adjacent place of the table.
    """
    path = Path(path)
    progress = dict(progress or {})
    tracked = dict(tracked or {})
    sdt = dict(sdt or {})
    hyperlink = dict(hyperlink or {})
    fields = dict(fields or {})
    smart_tag = dict(smart_tag or {})
    line_breaks = dict(line_breaks or {})
    image_in = set(image_in or ())
    numbered_progress = dict(numbered_progress or {})
    drop_columns = tuple(drop_columns)
    extra_rows = {n: list(texts) for n, texts in (extra_rows or {}).items()}
    stray_rows = dict(stray_rows or {})
    if extra_rows_style not in ("vmerge", "vmerge_number", "copy", "blank"):
        raise ValueError(f"unknown extra_rows_style: {extra_rows_style!r}")

    unknown = [c for c in drop_columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown columns in drop_columns: {unknown}")
    columns = [c for c in COLUMNS if c not in drop_columns]
    if extra_column:
        columns.append(extra_column)
    ncols = len(columns)
    raw_widths = [_COLUMN_WIDTHS_CM.get(c, _EXTRA_COLUMN_WIDTH_CM) for c in columns]
    widths = [w * _TEXT_WIDTH_CM / sum(raw_widths) for w in raw_widths]
    pcol = columns.index("进展落实情况") if "进展落实情况" in columns else None
    icol = columns.index("重点工作") if "重点工作" in columns else None

    # ---- order tasks by section
    sec_numbers = [s["number"] for s in sections]
    orphans = [t["number"] for t in tasks if t["section"] not in sec_numbers]
    if orphans:
        raise ValueError(f"tasks with a section not in sections: {orphans}")
    grouped = [(s, [t for t in tasks if t["section"] == s["number"]]) for s in sections]
    task_section = {t["number"]: t["section"] for t in tasks}

    # ---- merge_progress validation
    continuation: set[int] = set()
    if merge_progress is not None and pcol is not None:
        a, b = merge_progress
        if a not in task_section or b not in task_section:
            raise ValueError(f"merge_progress tasks not found: {merge_progress}")
        if task_section[a] != task_section[b]:
            raise ValueError("merge_progress tasks must belong to the same section")
        sec_tasks = [t["number"] for s, ts in grouped if s["number"] == task_section[a] for t in ts]
        ia, ib = sec_tasks.index(a), sec_tasks.index(b)
        if ia >= ib:
            raise ValueError("merge_progress=(a, b) needs a before b")
        continuation = set(sec_tasks[ia + 1 : ib + 1])
        for name, opt in (
            ("tracked", tracked), ("sdt", sdt), ("hyperlink", hyperlink), ("fields", fields),
            ("smart_tag", smart_tag), ("line_breaks", line_breaks), ("image_in", image_in),
            ("numbered_progress", numbered_progress),
        ):
            bad = continuation.intersection(opt)
            if bad:
                raise ValueError(f"{name} targets merged continuation cells {sorted(bad)}")

    # ---- repeat_header position: section number before which the header repeats,
    # or ("task", task_number) for the single-section case
    repeat_before = None
    if repeat_header and not split_tables:
        if isinstance(repeat_header, bool):
            if len(sections) >= 3:
                repeat_before = sections[2]["number"]
            elif len(sections) == 2:
                repeat_before = sections[1]["number"]
            elif grouped and grouped[0][1]:
                ts = grouped[0][1]
                repeat_before = ("task", ts[len(ts) // 2]["number"])
        else:
            if repeat_header not in sec_numbers:
                raise ValueError(f"repeat_header: no section {repeat_header}")
            repeat_before = repeat_header

    doc = _setup_document()
    ids = _Ids()
    numbering = _Numbering(doc) if (number_style == "auto" or numbered_progress) else None
    auto_num_id = None
    if number_style == "auto":
        auto_num_id = numbering.num(numbering.abstract("mailbot-seq", "%1", "center"))
    elif number_style not in ("plain", "fullwidth", "dot", "blank"):
        raise ValueError(f"unknown number_style: {number_style!r}")

    if cover_letter:
        _cover_letter(doc, unit)
    if title:
        _title_paragraphs(doc, sections, tasks, title)
    if extra_table_before:
        _extra_table(doc)
    _header(doc, header_style, unit, contact, phone)

    # ---- table construction helpers
    tables = []  # (table, merges) ; merges = list of (col, row_a, row_b)

    def new_table():
        t = doc.add_table(rows=0, cols=ncols)
        t.style = doc.styles["Table Grid"]
        t.autofit = False
        for col, w in zip(t.columns, widths):
            col.width = Cm(w)
        tables.append({"table": t, "merges": []})
        return t

    def add_header_row(t):
        row = t.add_row()
        _set_widths(row, widths)
        for cell, name in zip(row.cells, columns):
            cell.vertical_alignment = WD_CELL_VERTICAL_ALIGNMENT.CENTER
            if header_cell_breaks and name in HEADER_CELL_BREAKS:
                _set_cell_paragraphs(cell, HEADER_CELL_BREAKS[name], bold=True, align=WD_ALIGN_PARAGRAPH.CENTER)
            else:
                _set_cell_paragraphs(cell, [[name]], bold=True, align=WD_ALIGN_PARAGRAPH.CENTER)
        return row

    def add_section_row(t, section):
        row = t.add_row()
        _set_widths(row, widths)
        merged = row.cells[0].merge(row.cells[-1]) if ncols > 1 else row.cells[0]
        _set_cell_text(merged, section_row_text(section), bold=True)
        return row

    def fill_progress(cell, n):
        """Build the progress cell for task n (see docstring)."""
        p = cell.paragraphs[0]
        used = False
        text = progress.get(n)
        if text and n not in continuation:
            for i, line in enumerate(str(text).split("\n")):
                if i:
                    p = cell.add_paragraph()
                if line:
                    p.add_run(line)
            used = True
        _p = p._p
        if n in tracked:
            deleted, inserted = tracked[n]
            d = _w("w:del", **{"w:id": ids.next(), "w:author": _W_AUTHOR, "w:date": _W_DATE})
            d.append(_run(deleted, "w:delText"))
            _p.append(d)
            ins = _w("w:ins", **{"w:id": ids.next(), "w:author": _W_AUTHOR, "w:date": _W_DATE})
            ins.append(_run(inserted))
            _p.append(ins)
            used = True
        if n in sdt:
            el = OxmlElement("w:sdt")
            pr = OxmlElement("w:sdtPr")
            pr.append(_w("w:alias", **{"w:val": "进展落实情况"}))
            pr.append(_w("w:tag", **{"w:val": f"progress-{n}"}))
            pr.append(_w("w:id", **{"w:val": ids.next()}))
            # rich-text control (no <w:text/>): LibreOffice 7.4 quadruples the text of
            # plain-text (<w:text/>) inline controls when it re-saves a docx.
            el.append(pr)
            content = OxmlElement("w:sdtContent")
            content.append(_run(sdt[n]))
            el.append(content)
            _p.append(el)
            used = True
        if n in hyperlink:
            htext, url = hyperlink[n]
            rid = doc.part.relate_to(url, RT.HYPERLINK, is_external=True)
            h = _w("w:hyperlink", **{"r:id": rid, "w:history": "1"})
            r = _run()
            rpr = OxmlElement("w:rPr")
            rpr.append(_w("w:color", **{"w:val": "0563C1"}))
            rpr.append(_w("w:u", **{"w:val": "single"}))
            r.append(rpr)
            r.append(_t(htext))
            h.append(r)
            _p.append(h)
            used = True
        if n in fields:
            val = fields[n]
            t1, t2 = (val, val) if isinstance(val, str) else val
            _p.append(_fld_char_run("begin"))
            _p.append(_run(" MERGEFIELD x ", "w:instrText"))
            _p.append(_fld_char_run("separate"))
            _p.append(_run(t1))
            _p.append(_fld_char_run("end"))
            fs = _w("w:fldSimple", **{"w:instr": " MERGEFIELD y "})
            fs.append(_run(t2))
            _p.append(fs)
            used = True
        if n in smart_tag:
            st = _w("w:smartTag", **{"w:uri": "urn:schemas-microsoft-com:office:smarttags", "w:element": "PersonName"})
            st.append(_run(smart_tag[n]))
            _p.append(st)
            used = True
        if n in image_in:
            p.add_run().add_picture(io.BytesIO(tiny_png()), width=Cm(0.6))
            used = True
        if n in line_breaks:
            lp = cell.add_paragraph() if used else cell.paragraphs[0]
            for i, seg in enumerate(line_breaks[n]):
                if i:
                    lp.add_run().add_break()
                lp.add_run(seg)
            used = True
        if n in numbered_progress:
            abs_id = numbering.abstract("mailbot-progress", "%1.", "left")
            num_id = numbering.num(abs_id, restart=True)
            for entry in numbered_progress[n]:
                np_ = cell.add_paragraph() if used else cell.paragraphs[0]
                _apply_numpr(np_, num_id)
                np_.add_run(entry)
                used = True

    def add_task_row(t, task, prev_item_row):
        """Returns the row index of this task."""
        row = t.add_row()
        _set_widths(row, widths)
        idx = len(t.rows) - 1
        n = task["number"]
        for ci, (cell, name) in enumerate(zip(row.cells, columns)):
            if name == "序号":
                cell.vertical_alignment = WD_CELL_VERTICAL_ALIGNMENT.CENTER
                _set_cell_text(cell, _format_number(n, number_style), align=WD_ALIGN_PARAGRAPH.CENTER)
                if auto_num_id is not None:
                    _apply_numpr(cell.paragraphs[0], auto_num_id)
            elif name == "重点工作":
                cell.vertical_alignment = WD_CELL_VERTICAL_ALIGNMENT.CENTER
                if prev_item_row is None:  # first of its item group
                    _set_cell_text(cell, task.get("item", ""), align=WD_ALIGN_PARAGRAPH.CENTER)
            elif name == "进展落实情况":
                fill_progress(cell, n)
            elif name in _COLUMN_KEYS:
                if name in ("责任单位", "完成时限"):
                    cell.vertical_alignment = WD_CELL_VERTICAL_ALIGNMENT.CENTER
                _set_cell_text(cell, task.get(_COLUMN_KEYS[name], ""))
            else:  # extra column
                _set_cell_text(cell, "无", align=WD_ALIGN_PARAGRAPH.CENTER)
        return idx

    def add_plain_row(t, task, text, *, identify: bool, item: bool):
        """A row with ``text`` in its progress cell; the task's other cells written if ``identify``."""
        row = t.add_row()
        _set_widths(row, widths)
        for cell, name in zip(row.cells, columns):
            if name == "进展落实情况":
                _set_cell_text(cell, text)
            elif name == "重点工作":
                if item:
                    _set_cell_text(cell, task.get("item", ""), align=WD_ALIGN_PARAGRAPH.CENTER)
            elif not identify:
                continue
            elif name == "序号":
                _set_cell_text(cell, _format_number(task["number"], number_style), align=WD_ALIGN_PARAGRAPH.CENTER)
            elif name in _COLUMN_KEYS:
                _set_cell_text(cell, task.get(_COLUMN_KEYS[name], ""))
            else:  # extra column
                _set_cell_text(cell, "无", align=WD_ALIGN_PARAGRAPH.CENTER)
        return len(t.rows) - 1

    tasks_by_number = {t["number"]: t for t in tasks}

    # ---- emit rows
    table = None
    task_rows: dict[int, tuple[dict, int]] = {}
    for si, (section, sec_tasks) in enumerate(grouped):
        if table is None or split_tables:
            if table is not None:
                doc.add_paragraph()  # separate the tables (else Word joins them)
            table = new_table()
            if si == 0:
                add_header_row(table)
        entry = tables[-1]
        if repeat_before == section["number"] and si > 0:
            add_header_row(table)
        add_section_row(table, section)
        group_start = None  # (item, row_idx)
        for task in sec_tasks:
            if repeat_before == ("task", task["number"]):
                add_header_row(table)
                group_start = None
            item = task.get("item", "")
            same = group_start is not None and group_start[0] == item
            idx = add_task_row(table, task, group_start[1] if same else None)
            last = idx
            for text in extra_rows.get(task["number"], ()):
                last = add_plain_row(table, task, text, identify=extra_rows_style == "copy", item=False)
            if last != idx and extra_rows_style in ("vmerge", "vmerge_number"):
                entry["merges"].append(("cols" if extra_rows_style == "vmerge" else "number", idx, last))
            if same:
                entry["merges"].append(("item", group_start[1], last))
            else:
                group_start = (item, idx)
                if last != idx:
                    entry["merges"].append(("item", idx, last))
            task_rows[task["number"]] = (entry, idx)
            if task["number"] in stray_rows:
                other, text = stray_rows[task["number"]]
                add_plain_row(table, tasks_by_number[other], text, identify=True, item=True)
                group_start = None

    if merge_progress is not None and pcol is not None:
        a, b = merge_progress
        entry, ra = task_rows[a]
        _, rb = task_rows[b]
        entry["merges"].append(("progress", ra, rb))

    # ---- vertical merges (done last so that row construction stays simple)
    for entry in tables:
        t = entry["table"]
        item_spans: dict[int, int] = {}
        for kind, ra, rb in entry["merges"]:
            if kind == "item":
                # consecutive merges of the same group collapse to (start, last)
                item_spans[ra] = max(rb, item_spans.get(ra, rb))
        spans = [("item", ra, rb) for ra, rb in item_spans.items()]
        spans += [m for m in entry["merges"] if m[0] == "progress"]
        for kind, ra, rb in spans:
            col = icol if kind == "item" else pcol
            if col is None:
                continue
            t.cell(ra, col).merge(t.cell(rb, col))
        for kind, ra, rb in entry["merges"]:
            if kind in ("cols", "number"):  # a task's identifying cells over its extra rows
                for ci, name in enumerate(columns):
                    if name not in ("重点工作", "进展落实情况") and (kind == "cols" or name == "序号"):
                        t.cell(ra, ci).merge(t.cell(rb, ci))

    doc.add_paragraph()  # body must not end with a table

    if block_sdt_table:
        first = tables[0]["table"]._tbl
        last = tables[-1]["table"]._tbl
        sdt_el = OxmlElement("w:sdt")
        pr = OxmlElement("w:sdtPr")
        pr.append(_w("w:alias", **{"w:val": "任务落实台账"}))
        pr.append(_w("w:tag", **{"w:val": "ledger"}))
        pr.append(_w("w:id", **{"w:val": ids.next()}))
        sdt_el.append(pr)
        content = OxmlElement("w:sdtContent")
        sdt_el.append(content)
        first.addprevious(sdt_el)
        node = first
        while node is not None:
            nxt = node.getnext()
            content.append(node)
            if node is last:
                break
            node = nxt

    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    return path


# --------------------------------------------------------------------------- LibreOffice


def libreoffice_convert(src, fmt: str, outdir) -> Path:
    """Convert ``src`` with headless LibreOffice; return the produced file's Path.

    Runs ``soffice --headless --norestore -env:UserInstallation=file:///tmp/lo-<uuid4>
    --convert-to <fmt> --outdir <outdir> <src>`` (timeout 180 s; the whole process
    group is killed on timeout; the throw-away profile is removed afterwards).
    ``fmt`` may carry a filter ("docx:MS Word 2007 XML"); the extension is the part
    before ":".  Raises ValueError if the output would overwrite ``src`` and
    RuntimeError (with stdout/stderr) if no output file was produced.
    """
    src = Path(src).resolve()
    outdir = Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    ext = fmt.split(":", 1)[0]
    out = outdir / f"{src.stem}.{ext}"
    if out == src:
        raise ValueError(f"converting {src} to {fmt} in {outdir} would overwrite the source")
    soffice = shutil.which("soffice") or "/usr/bin/soffice"
    profile = Path(f"/tmp/lo-{uuid.uuid4()}")
    cmd = [
        soffice, "--headless", "--norestore", f"-env:UserInstallation=file://{profile}",
        "--convert-to", fmt, "--outdir", str(outdir), str(src),
    ]
    if out.exists():
        out.unlink()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        try:
            stdout, stderr = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            stdout, stderr = proc.communicate()
            raise RuntimeError(
                f"soffice timed out converting {src} to {fmt}:\n{stderr.decode(errors='replace')}"
            ) from None
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(
            f"soffice did not produce {out} (rc={proc.returncode}):\n"
            f"stdout: {stdout.decode(errors='replace')}\nstderr: {stderr.decode(errors='replace')}"
        )
    return out


def resave_with_libreoffice(docx_path, outdir) -> Path:
    """docx → docx through LibreOffice (as when a unit opens and re-saves in LibreOffice/WPS).

    Observed with LibreOffice 7.4.7 on files from ``build_report``: tblGrid (7
    gridCol, widths recomputed), gridSpan section rows, vMerge (重点工作 and
    merge_progress), w:del/w:ins, inline rich-text w:sdt, w:hyperlink, numPr and the
    picture are kept; tblStyle stays "TableGrid" plus tblLayout=fixed, every run/
    paragraph gets explicit rPr/pStyle, empty w:tcBorders are added; w:fldSimple is
    rewritten as a complex field (fldChar/instrText), w:smartTag is dropped (its text
    kept as plain runs); numIds are renumbered; hyperlink URLs get normalised
    ("http://example.com" → "http://example.com/").  BUGS: a plain-text inline
    control (``<w:text/>``, not produced by this builder) comes back as three sdts
    with the text 4×; a block-level sdt around the table (``block_sdt_table``) is
    turned into inline sdts inside the first header cell with "序号" 4× — the table
    itself then becomes visible to ``Document.tables`` again.
    """
    return libreoffice_convert(docx_path, "docx:MS Word 2007 XML", outdir)


def to_legacy_doc(docx_path, outdir) -> Path:
    """docx → odt → Word 97 .doc (a direct docx→doc conversion flattens python-docx tables)."""
    with tempfile.TemporaryDirectory(prefix="docbuilder-odt-") as tmp:
        odt = libreoffice_convert(docx_path, "odt", tmp)
        return libreoffice_convert(odt, "doc:MS Word 97", outdir)
