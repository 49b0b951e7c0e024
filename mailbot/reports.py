"""Word report → rows: find the ledger table and read it as Word shows it.

The parser walks the WordprocessingML itself (lxml over the zip members) rather
than python-docx's object model, because python-docx drops tracked insertions,
content controls, simple fields and smart tags (python-docx#1123, #340), repeats
merged cells (#344, #232), raises on broken relationships (#797) and reads every
part into memory before anyone can check the zip (QUIRKS 15–18).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterator

from lxml import etree

from .convert import (
    DEFAULT_ZIP_LIMITS,
    KIND_LABELS,
    NEEDS_CONVERSION,
    REFUSALS,
    SAVE_AS_DOCX,
    convert_to_docx,
    open_zip,
    read_member,
    sniff,
)
from .errors import ReportError
from .ledger import Ledger, Roster, normalize_text

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC_NS = "http://schemas.openxmlformats.org/markup-compatibility/2006"
REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
# Word's "Strict Open XML Document" uses other namespace URIs for the same markup:
# http://purl.oclc.org/ooxml/<area>/<name> is http://schemas.openxmlformats.org/<area>/2006/<name>
# (wordprocessingml/main, officeDocument/relationships, drawingml/main, officeDocument/math …).
STRICT_PREFIX = "{http://purl.oclc.org/ooxml/"
_STRICT_NS = re.compile(rb"http://purl\.oclc\.org/ooxml/([A-Za-z]+)/([A-Za-z]+)")


def _w(tag: str) -> str:
    return f"{{{W_NS}}}{tag}"


P, R, T, TBL, TR, TC, TCPR, TRPR = (_w(t) for t in ("p", "r", "t", "tbl", "tr", "tc", "tcPr", "trPr"))
SDT, SDTCONTENT, SDTPR, CUSTOMXML = (_w(t) for t in ("sdt", "sdtContent", "sdtPr", "customXml"))
BR, CR, TAB, NOBREAKHYPHEN, PTAB = (_w(t) for t in ("br", "cr", "tab", "noBreakHyphen", "ptab"))
RPR, PPR, VANISH = _w("rPr"), _w("pPr"), _w("vanish")
VAL = _w("val")
# Subtrees whose text Word does not show in the body.
HIDDEN = {
    _w("del"),
    _w("moveFrom"),
    _w("delText"),
    _w("instrText"),
    _w("delInstrText"),
    PPR,
    _w("tblPr"),
    _w("trPr"),
    TCPR,
    SDTPR,
    _w("footnoteReference"),
    _w("endnoteReference"),
    _w("commentReference"),
    f"{{{MC_NS}}}Fallback",
}
INS_BLOCK_WRAPPERS = {SDT, CUSTOMXML, _w("ins"), _w("moveTo"), _w("smartTag")}

MAX_XML_BYTES = 48 * 1024 * 1024
# Elements (start tags) in the main part and the numbering part together. A filled 30-task
# form has about 2,300 and a long one saved by Word some 20,000; reading costs about 350
# bytes per element (tree and proxies), so this keeps one parse under about 200 MB (31 MB
# of empty paragraphs are 5 million elements: 1.7 GB before). Counted on the bytes, in C,
# before anything is built.
MAX_XML_ELEMENTS = 500_000
TOO_COMPLEX = "文档结构异常复杂（{what}），超出系统处理上限，疑似恶意文件，未读取：请使用下发的台账模板重新填报，不要插入大量空行或空单元格"
_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True
)


@dataclass
class Entry:
    task: int
    progress: str


@dataclass
class ParsedReport:
    """What one Word report says. ``unit`` is the roster name when 填报单位 matched, else as written."""

    unit: str | None
    unit_as_written: str | None
    unit_matched: bool
    contact: str | None
    phone: str | None
    entries: list[Entry]
    warnings: list[str] = field(default_factory=list)
    converted_from: str | None = None
    round_text: str = ""  # the title and notes above the table: may name the round (年中, 年底)

    def as_dict(self) -> dict:
        """The `mailbot parse --json` contract."""
        return {
            "unit": self.unit,
            "contact": self.contact,
            "phone": self.phone,
            "entries": [{"task": e.task, "progress": e.progress} for e in self.entries],
            "warnings": list(self.warnings),
        }

    @property
    def filled(self) -> list[Entry]:
        return [e for e in self.entries if e.progress]


# --- entry point ------------------------------------------------------------------------------


def parse_document(
    data: bytes,
    ledger: Ledger,
    roster: Roster | None = None,
    *,
    conversion_timeout: float = 120,
    max_bytes: int = 40 * 1024 * 1024,
) -> ParsedReport:
    """Parse a report file (any format we accept); raise ReportError with a reason in Chinese."""
    if len(data) > max_bytes:
        raise ReportError(f"附件过大（{len(data) // 1024 // 1024} MB），超过 {max_bytes // 1024 // 1024} MB 上限：请只发送台账 Word 文档", "too_large")
    kind = sniff(data)
    warnings: list[str] = []
    converted_from = None
    if kind in REFUSALS:
        raise ReportError(REFUSALS[kind], kind)
    if kind == "zip":
        open_zip(data, "附件")  # a damaged .docx also looks like a zip: say "corrupt" for it
        raise ReportError("附件是压缩包而不是 Word 文档：请直接附上填报好的 .docx 文件", "archive")
    if kind in NEEDS_CONVERSION:
        data = convert_to_docx(data, kind, timeout=conversion_timeout)
        converted_from = kind
        warnings.append(f"附件为 {KIND_LABELS[kind]} 格式，已自动转换后读取，请核对记录的内容；今后请直接发送 .docx 文件")
        if sniff(data) != "docx":
            raise ReportError("文档转换后仍无法读取：" + SAVE_AS_DOCX, "conversion_failed")
    try:
        document, numbering = _load_parts(data)
        report = read_report(document, ledger, roster, numbering=numbering)
    except MemoryError:
        # Over the parse worker's memory limit (RLIMIT_AS): refused like any document we cannot read.
        raise ReportError(TOO_COMPLEX.format(what="读取所需内存超过上限"), "too_complex") from None
    report.warnings[:0] = warnings
    report.converted_from = converted_from
    return report


def _load_parts(data: bytes) -> tuple[etree._Element, etree._Element | None]:
    zf = open_zip(data, "Word 文档", DEFAULT_ZIP_LIMITS)
    main = _main_part_name(zf)
    xml = read_member(zf, main, MAX_XML_BYTES)
    if xml is None:
        raise ReportError("Word 文档不完整（缺少正文部分）：请重新保存后再发送", "corrupt")
    elements = _element_count(xml)
    _check_elements(elements)
    document = _transitional(_parse_xml(xml))
    numbering = None
    numbering_xml = read_member(zf, main.rsplit("/", 1)[0] + "/numbering.xml", MAX_XML_BYTES)
    if numbering_xml and b"numPr" in xml and _within_cap(xml, numbering_xml, elements):
        try:
            numbering = _transitional(_parse_xml(numbering_xml))
        except ReportError:
            numbering = None  # numbering labels are a nicety; the text is what matters
    return document, numbering


def _element_count(xml: bytes, exact: bool = False) -> int:
    """An upper bound of the elements an XML part holds: its start tags (comments and
    processing instructions count too). Two scans in C; no tree is built. Unless ``exact``,
    a part too small to hold more than the cap (an element takes at least 4 bytes) is not
    scanned: its size / 4 is the bound."""
    if not exact and len(xml) <= 4 * MAX_XML_ELEMENTS:
        return len(xml) // 4
    return xml.count(b"<") - xml.count(b"</")


def _within_cap(xml: bytes, numbering_xml: bytes, elements: int) -> bool:
    """Whether the numbering part may be read too (the two parts together under the cap)."""
    if elements + _element_count(numbering_xml) <= MAX_XML_ELEMENTS:
        return True
    return _element_count(xml, exact=True) + _element_count(numbering_xml, exact=True) <= MAX_XML_ELEMENTS


def _check_elements(count: int) -> None:
    if count > MAX_XML_ELEMENTS:
        raise ReportError(TOO_COMPLEX.format(what=f"约 {count:,} 个元素，上限 {MAX_XML_ELEMENTS:,}"), "too_complex")


def _transitional(root: etree._Element) -> etree._Element:
    """A Strict Open XML part rewritten into the transitional namespaces the parser reads.

    Decided by the root element alone (w:document / w:numbering carry the main namespace),
    so a transitional part costs one string test; a strict one is serialized once (as UTF-8,
    whatever it was written in), its namespace URIs mapped, and parsed again.
    """
    if not root.tag.startswith(STRICT_PREFIX):
        return root
    xml = _STRICT_NS.sub(rb"http://schemas.openxmlformats.org/\1/2006/\2", etree.tostring(root, encoding="utf-8"))
    try:
        return etree.fromstring(xml, _XML_PARSER)
    except etree.XMLSyntaxError as err:
        raise ReportError("Word 文档内容已损坏，无法读取：请重新保存后再发送", "corrupt") from err


def _main_part_name(zf) -> str:
    rels = read_member(zf, "_rels/.rels", 1024 * 1024)
    if rels:
        try:
            root = _parse_xml(rels)
            for rel in root.iter(f"{{{REL_NS}}}Relationship"):
                if rel.get("Type", "").endswith("/officeDocument"):
                    target = rel.get("Target", "").lstrip("/")
                    if target and target in zf.NameToInfo:
                        return target
        except ReportError:
            pass
    return "word/document.xml"


def _parse_xml(xml: bytes) -> etree._Element:
    # Word never writes a DTD; a DOCTYPE or ENTITY here is an entity trick (in UTF-8 or UTF-16).
    head = xml[:65536]
    wide = head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head[:64]
    text = head.decode("utf-16", "ignore") if wide else ""
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml or "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ReportError("文档中含有不允许的 XML 实体声明，疑似恶意文件，已拒收", "entity")
    try:
        root = etree.fromstring(xml, _XML_PARSER)
    except etree.XMLSyntaxError as err:
        if err.code == etree.ErrorTypes.ERR_NO_MEMORY:  # libxml2 hit the parse worker's memory cap
            raise ReportError(TOO_COMPLEX.format(what="读取所需内存超过上限"), "too_complex") from err
        raise ReportError("Word 文档内容已损坏，无法读取：请重新保存后再发送", "corrupt") from err
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None:  # the byte check above misses UTF-16 parts
        raise ReportError("文档中含有不允许的 XML 实体声明，疑似恶意文件，已拒收", "entity")
    return root


# --- text as Word shows it ----------------------------------------------------------------------


# Text as Word shows it, selected in one XPath pass (C speed): text, breaks, tabs and nested
# (text-box) paragraphs, except inside deletions, moved-away text, property blocks, the
# Fallback of mc:AlternateContent (a duplicate of the Choice), content controls showing their
# placeholder, and hidden (w:vanish) runs.
_INVISIBLE = (
    "ancestor::w:del or ancestor::w:moveFrom or ancestor::mc:Fallback or ancestor::w:pPr or ancestor::w:rPr"
    " or ancestor::w:sdtPr or ancestor::w:sdt[w:sdtPr/w:showingPlcHdr]"
    " or ancestor::w:r[w:rPr/w:vanish[not(@w:val='0' or @w:val='false' or @w:val='off')]]"
)
_VISIBLE = etree.XPath(
    " | ".join(f".//w:{tag}[not({_INVISIBLE})]" for tag in ("t", "br", "cr", "tab", "ptab", "noBreakHyphen", "p")),
    namespaces={"w": W_NS, "mc": MC_NS},
)
# Most forms use none of the constructs that hide text; for them a plain selection gives the
# same nodes several times faster (the ancestor tests above dominate the parse).
_HIDING = (_w("del"), _w("moveFrom"), f"{{{MC_NS}}}Fallback", _w("sdt"), _w("vanish"))
_VISIBLE_PLAIN = etree.XPath(
    ".//w:t | .//w:br | .//w:cr | .//w:tab[not(parent::w:tabs)] | .//w:ptab | .//w:noBreakHyphen | .//w:p",
    namespaces={"w": W_NS},
)
_PIECES = {BR: "\n", CR: "\n", TAB: "\t", PTAB: "\t", NOBREAKHYPHEN: "-"}


def visible_text_selector(document: etree._Element) -> etree.XPath:
    """The XPath that selects the text Word shows in this document (see _VISIBLE)."""
    return _VISIBLE if next(document.iter(*_HIDING), None) is not None else _VISIBLE_PLAIN


def _inline_text(el: etree._Element, out: list[str], visible: etree.XPath = _VISIBLE) -> None:
    for node in visible(el):
        tag = node.tag
        if tag == T:
            out.append(node.text or "")
        elif tag == P:  # a paragraph inside a text box: on its own line
            if out and out[-1] != "\n":
                out.append("\n")
        else:
            out.append(_PIECES[tag])


def _child(el: etree._Element, tag: str) -> etree._Element | None:
    """The first child with this tag. Filtered in C: unlike find(), no ElementPath and no
    Python object for the children skipped (this runs for every row and cell)."""
    return next(el.iterchildren(tag), None)


def _showing_placeholder(sdt: etree._Element) -> bool:
    pr = sdt.find(SDTPR)
    return pr is not None and pr.find(_w("showingPlcHdr")) is not None


class Numbering:
    """Automatic numbering labels (``w:numPr``), computed in document order."""

    def __init__(self, numbering: etree._Element | None):
        self.levels: dict[tuple[str, int], tuple[int, str, str]] = {}
        # Word counts per abstract numbering, so two w:num sharing one list continue it;
        # a w:num with a startOverride restarts the list the first time it is used.
        self.abstract_of: dict[str, str] = {}
        self.restarts: set[str] = set()
        self.counters: dict[str, dict[int, int]] = {}
        self.starts: dict[str, dict[int, int]] = {}
        self.labels: dict[etree._Element, str] = {}
        self.visible = _VISIBLE  # narrowed per document by find_ledger_table (visible_text_selector)
        if numbering is None:
            return
        abstract: dict[str, dict[int, tuple[int, str, str]]] = {}
        for an in numbering.iter(_w("abstractNum")):
            levels = {}
            for lvl in an.iter(_w("lvl")):
                ilvl = _level(lvl.get(_w("ilvl"), "0"))
                if ilvl is None:
                    continue
                start = lvl.find(_w("start"))
                fmt = lvl.find(_w("numFmt"))
                text = lvl.find(_w("lvlText"))
                levels[ilvl] = (
                    _start(start.get(VAL)) if start is not None else 1,
                    fmt.get(VAL, "decimal") if fmt is not None else "decimal",
                    (text.get(VAL, "") if text is not None else "")[:MAX_LABEL],
                )
            abstract[an.get(_w("abstractNumId"), "")] = levels
        for num in numbering.iter(_w("num")):
            ref = num.find(_w("abstractNumId"))
            abstract_id = ref.get(VAL, "") if ref is not None else ""
            num_id = num.get(_w("numId"), "")
            levels = dict(abstract.get(abstract_id, {}))
            for override in num.iter(_w("lvlOverride")):
                ilvl = _level(override.get(_w("ilvl"), "0"))
                so = override.find(_w("startOverride"))
                if so is not None and ilvl in levels and (so.get(VAL) or "").isdigit():
                    _s, fmt, text = levels[ilvl]
                    levels[ilvl] = (_start(so.get(VAL)), fmt, text)
                    self.restarts.add(num_id)
            self.abstract_of[num_id] = abstract_id
            for ilvl, spec in levels.items():
                self.levels[(num_id, ilvl)] = spec

    def compute(self, body: etree._Element) -> None:
        if not self.levels:
            return
        for p in body.iter(P):
            ppr = _child(p, PPR)
            if ppr is None:
                continue
            numpr = _child(ppr, NUMPR)
            if numpr is None:
                continue
            num_id_el, ilvl_el = numpr.find(_w("numId")), numpr.find(_w("ilvl"))
            num_id = num_id_el.get(VAL, "0") if num_id_el is not None else "0"
            ilvl = _level(ilvl_el.get(VAL, "0")) if ilvl_el is not None else 0
            if num_id == "0" or (num_id, ilvl) not in self.levels:
                continue
            key = self.abstract_of.get(num_id, num_id)
            counters = self.counters.setdefault(key, {})
            starts = self.starts.setdefault(key, {})
            if num_id in self.restarts:
                self.restarts.discard(num_id)
                counters.clear()
            if ilvl not in counters:
                starts[ilvl] = self.levels[(num_id, ilvl)][0]
            counters[ilvl] = counters.get(ilvl, 0) + 1
            for deeper in [k for k in counters if k > ilvl]:
                del counters[deeper]
            self.labels[p] = self._label(num_id, ilvl, counters, starts)

    def _label(self, num_id: str, ilvl: int, counters: dict[int, int], starts: dict[int, int]) -> str:
        _start, fmt, text = self.levels[(num_id, ilvl)]
        if fmt == "bullet":
            return "•"
        if fmt == "none":
            return ""

        def value(m: re.Match) -> str:
            lvl = int(m.group(1)) - 1
            start, lfmt, _t = self.levels.get((num_id, lvl), (1, "decimal", ""))
            return _format_number(starts.get(lvl, start) + counters.get(lvl, 1) - 1, lfmt)

        return re.sub(r"%(\d)", value, text)


MAX_LABEL = 64  # a list label's template (w:lvlText): Word's are a few characters
MAX_START = 32767  # Word's largest list start value


def _level(value) -> int | None:
    """A list level (w:ilvl): Word has nine, 0-8; anything else is ignored (a counter per
    distinct level would make numbering quadratic)."""
    try:
        level = int(value or 0)
    except (TypeError, ValueError):
        return None
    return level if 0 <= level <= 8 else None


def _start(value) -> int:
    text = value or ""
    return int(text) if text.isdigit() and len(text) <= 5 and int(text) <= MAX_START else 1


def _format_number(n: int, fmt: str) -> str:
    from .ledger import chinese_numeral

    if fmt in ("chineseCounting", "chineseCountingThousand", "chineseLegalSimplified", "ideographTraditional", "taiwaneseCountingThousand"):
        return chinese_numeral(n) if 0 < n < 100 else str(n)
    if fmt.startswith("decimalEnclosedCircle") and 1 <= n <= 20:
        return chr(0x2460 + n - 1)
    if fmt == "decimalFullWidth":
        return "".join(chr(0xFF10 + int(d)) for d in str(n))
    if fmt in ("lowerLetter", "upperLetter") and 0 < n <= 26 * 4:  # a, …, z, aa, …, zzzz; beyond: digits
        s = chr(ord("a") + (n - 1) % 26) * ((n - 1) // 26 + 1)
        return s if fmt == "lowerLetter" else s.upper()
    if fmt in ("lowerRoman", "upperRoman") and 0 < n < 40:
        vals = [(10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")]
        s, k = "", n
        for v, sym in vals:
            while k >= v:
                s, k = s + sym, k - v
        return s if fmt == "lowerRoman" else s.upper()
    return str(n)


def _paragraph_text(p: etree._Element, numbering: Numbering) -> str:
    out: list[str] = []
    _inline_text(p, out, numbering.visible)
    text = "".join(out)
    label = numbering.labels.get(p)
    return label + text if label else text


def _iter_blocks(parent: etree._Element) -> Iterator[etree._Element]:
    """Body-level paragraphs and tables in order, looking through content controls and wrappers."""
    for child in parent:
        tag = child.tag
        if tag in (P, TBL):
            yield child
        elif tag == SDT:
            content = child.find(SDTCONTENT)
            if content is not None and not _showing_placeholder(child):
                yield from _iter_blocks(content)
        elif tag in INS_BLOCK_WRAPPERS:
            yield from _iter_blocks(child)


def _cell_text(tc: etree._Element, numbering: Numbering) -> str:
    lines: list[str] = []
    for block in _iter_blocks(tc):
        if block.tag == P:
            lines.append(_paragraph_text(block, numbering))
        else:  # a table nested in the cell: its cells, row by row
            for row in _table_rows(block):
                lines.append(" ".join(_cell_text(cell.tc, numbering) for cell in row if cell.origin is cell))
    return "\n".join(line.rstrip() for line in lines).strip()


# --- tables as grids ----------------------------------------------------------------------------


class Cell:
    __slots__ = ("tc", "col", "span", "origin", "row", "_text")

    def __init__(self, tc: etree._Element, col: int, span: int, row: int):
        self.tc, self.col, self.span, self.row = tc, col, span, row
        self.origin: Cell = self
        self._text: str | None = None

    def text(self, numbering: Numbering) -> str:
        origin = self.origin
        if origin._text is None:
            origin._text = _cell_text(origin.tc, numbering)
        return origin._text


def _iter_rows(tbl: etree._Element) -> Iterator[tuple[etree._Element, etree._Element | None]]:
    """(w:tr, its w:trPr or None) for the rows Word shows."""
    for child in tbl:
        if child.tag == TR:
            trpr = _child(child, TRPR)
            if trpr is not None and _child(trpr, TR_DEL) is not None:
                continue  # a tracked row deletion: Word no longer shows it
            yield child, trpr
        elif child.tag in (SDT, CUSTOMXML):
            inner = child.find(SDTCONTENT) if child.tag == SDT else child
            if inner is not None:
                yield from _iter_rows(inner)


def _iter_cells(tr: etree._Element) -> Iterator[etree._Element]:
    for child in tr:
        if child.tag == TC:
            yield child
        elif child.tag in (SDT, CUSTOMXML):
            inner = child.find(SDTCONTENT) if child.tag == SDT else child
            if inner is not None:
                yield from _iter_cells(inner)


def _int_attr(el: etree._Element | None, default: int) -> int:
    if el is None:
        return default
    try:
        return max(1, int(el.get(VAL, default)))
    except (TypeError, ValueError):
        return default


GRIDBEFORE, GRIDSPAN, VMERGE, HMERGE, TR_DEL = (_w(t) for t in ("gridBefore", "gridSpan", "vMerge", "hMerge", "del"))
NUMPR = _w("numPr")


class CellRow(list):
    """A table row: its cells in grid order, found by grid column in O(log n) (``at``)."""

    __slots__ = ("_starts",)

    def at(self, col: int) -> Cell | None:
        """The cell covering grid column ``col`` (a wide row must not be scanned per lookup)."""
        if len(self) <= 16:  # a form's row: a scan is cheaper than the index
            for cell in self:
                if cell.col <= col < cell.col + cell.span:
                    return cell
            return None
        try:
            starts = self._starts
        except AttributeError:
            starts = self._starts = [cell.col for cell in self]
        i = bisect.bisect_right(starts, col) - 1
        if i >= 0:
            cell = self[i]
            if col < cell.col + cell.span:
                return cell
        return None


def _table_rows(tbl: etree._Element) -> list[CellRow]:
    """Rows of cells with grid positions; vMerge continuations point at the cell they continue."""
    rows: list[CellRow] = []
    for r, (tr, trpr) in enumerate(_iter_rows(tbl)):
        col = 0
        if trpr is not None:
            gb = _child(trpr, GRIDBEFORE)
            col = _int_attr(gb, 0) if gb is not None else 0
        cells = CellRow()
        for tc in _iter_cells(tr):
            tcpr = _child(tc, TCPR)
            span, vmerge, hmerge = 1, None, None
            if tcpr is not None:
                for prop in tcpr:
                    tag = prop.tag
                    if tag == GRIDSPAN:
                        span = _int_attr(prop, 1)
                    elif tag == VMERGE:
                        vmerge = prop.get(VAL, "continue")
                    elif tag == HMERGE:
                        hmerge = prop.get(VAL, "continue")
            if hmerge == "continue" and cells:  # legacy horizontal merge: widen the previous cell
                cells[-1].span += span
                col += span
                continue
            cell = Cell(tc, col, span, r)
            if vmerge == "continue" and rows:
                above = rows[-1].at(col)
                if above is not None:
                    cell.origin = above.origin
            cells.append(cell)
            col += span
        rows.append(cells)
    return rows


def _cell_at(row: list[Cell], col: int) -> Cell | None:
    if isinstance(row, CellRow):
        return row.at(col)
    for cell in row:  # a plain list (callers outside this module)
        if cell.col <= col < cell.col + cell.span:
            return cell
    return None


# --- the ledger table ---------------------------------------------------------------------------

# Column roles, tried in order against the header text with whitespace removed.
ROLE_PATTERNS = [
    ("progress", re.compile(r"进展|落实情况|完成情况|推进情况|工作情况")),
    ("number", re.compile(r"^(序号|编号|序|No\.?)$", re.I)),
    ("item", re.compile(r"重点工作|重点任务|工作事项|大项")),
    ("content", re.compile(r"主要内容|任务内容|工作内容|^内容$")),
    ("indicator", re.compile(r"量化指标|指标")),
    ("units", re.compile(r"责任单位|牵头单位|单位")),
    ("deadline", re.compile(r"完成时限|时限|完成时间")),
]
SECTION_RE = re.compile(r"^[一二三四五六七八九十]+[、.．]")


_HEADER_HINT = re.compile(r"进\s*展|落\s*实\s*情\s*况|完\s*成\s*情\s*况|推\s*进\s*情\s*况|工\s*作\s*情\s*况")
_STRING = etree.XPath("string(.)")


def _header_roles(row: list[Cell], numbering: Numbering) -> dict[str, int] | None:
    # Cheap filter first (raw text in C): header cells are short, and one names the progress column.
    short = [c for c in row if c.origin is c and len(_STRING(c.tc)) <= 60]
    if not any(_HEADER_HINT.search(_STRING(c.tc)) for c in short):
        return None
    roles: dict[str, int] = {}
    for cell in short:
        key = normalize_text(cell.text(numbering))
        if not key or len(key) > 24:
            continue
        for role, pattern in ROLE_PATTERNS:
            if pattern.search(key):
                roles.setdefault(role, cell.col)
                break
    if "progress" in roles and ("number" in roles or "content" in roles):
        return roles
    return None


def _parse_number(text: str) -> int | None:
    s = unicodedata.normalize("NFKC", text).strip()
    s = s.strip("()（）[]【】 \t\n").rstrip(".、，,:：)） ").lstrip("(（第")
    s = s.removesuffix("项")
    return int(s) if s.isdigit() and len(s) <= 4 else None


@dataclass
class Row:
    """A row of the ledger table: a section row (一、…) or a task row with the column roles in force."""

    cells: list[Cell]
    roles: dict[str, int]
    grid: list[list[Cell]]
    index: int
    section: str | None = None  # the section row's text, for section rows


@dataclass
class LedgerTable:
    blocks: list[etree._Element]
    table: etree._Element
    grid: list[list[Cell]]
    header_row: int
    rows: list[Row]
    nums: Numbering
    grids: dict[int, list[CellRow]] = field(default_factory=dict)  # id(table) → rows, for the tables already read


def find_ledger_table(document: etree._Element, numbering: etree._Element | None = None) -> LedgerTable:
    """The ledger table by its header (序号 … 进展落实情况) and the tables that continue it; ReportError if none."""
    body = document.find(_w("body"))
    if body is None:
        raise ReportError("Word 文档内容为空：请使用下发的台账模板填报", "not_ledger")
    nums = Numbering(numbering)
    nums.visible = visible_text_selector(document)
    nums.compute(body)
    blocks = list(_iter_blocks(body))
    tables = [b for b in blocks if b.tag == TBL]
    nested = [t for top in tables for t in top.iter(TBL) if t is not top]

    ledger_idx, roles, header_row_idx, grids = None, None, None, {}
    for idx, tbl in enumerate(tables + nested):
        grid = grids.setdefault(id(tbl), _table_rows(tbl))
        for r, row in enumerate(grid[:6]):
            found = _header_roles(row, nums)
            if found:
                ledger_idx, roles, header_row_idx = idx, found, r
                break
        if roles:
            break
    if roles is None or ledger_idx is None:
        raise ReportError(
            "附件中没有找到台账表格（表头应含「序号」「主要内容」和「进展落实情况」）：请使用下发的台账模板填报", "not_ledger"
        )
    ledger_tbl = (tables + nested)[ledger_idx]
    ledger_grid = grids[id(ledger_tbl)]
    header_width = len([c for c in ledger_grid[header_row_idx] if c.origin is c])

    # The ledger table, then the tables that continue it (split per section, header only in the first).
    segments: list[tuple[list[list[Cell]], int]] = [(ledger_grid, header_row_idx + 1)]
    if ledger_idx < len(tables):
        for tbl in tables[ledger_idx + 1:]:
            grid = grids.setdefault(id(tbl), _table_rows(tbl))
            if not grid:
                continue
            widths = {len(row) for row in grid if len({id(c.origin) for c in row}) > 1}
            if header_width in widths or any(_header_roles(row, nums) for row in grid[:3]):
                segments.append((grid, 0))

    rows: list[Row] = []
    for grid, start in segments:
        for r in range(start, len(grid)):
            cells = grid[r]
            if cells and _parse_number(_STRING(cells[0].tc)) is not None and len({id(c.origin) for c in cells}) > 1:
                rows.append(Row(cells, roles, grid, r))  # a numbered task row: the common case, decided cheaply
                continue
            relabel = _header_roles(cells, nums)
            if relabel:
                roles = relabel
                continue
            origins = {id(c.origin) for c in cells}
            first_text = cells[0].text(nums) if cells else ""
            if len(origins) <= 1 or SECTION_RE.match(normalize_text(first_text)) and _parse_number(first_text) is None:
                if normalize_text(first_text):  # a section row (一、…); empty rows are dropped
                    rows.append(Row(cells, roles, grid, r, section=first_text.strip()))
                continue
            rows.append(Row(cells, roles, grid, r))
    return LedgerTable(blocks, ledger_tbl, ledger_grid, header_row_idx, rows, nums, grids)


def read_report(document: etree._Element, ledger: Ledger, roster: Roster | None, numbering: etree._Element | None = None) -> ParsedReport:
    """Read a parsed document.xml into a report (raises ReportError when there is no ledger table)."""
    lt = find_ledger_table(document, numbering)
    nums = lt.nums
    warnings: list[str] = []
    # A task the unit split into several rows (细化措施: 序号 merged down, the row copied with its
    # 序号, or 序号 left blank under the task) is one run of adjacent rows: their progress texts
    # are kept in order. The same task again elsewhere in the table is a conflict: first wins.
    runs: list[tuple[int, list[str]]] = []
    run_cells: set[int] = set()  # progress cells already read for the open run (a merged cell once)
    run_open = False
    merged_progress: dict[int, list[int]] = {}
    for row in lt.rows:
        if row.section is not None:
            run_open = False
            continue
        task = _task_of_row(row.cells, row.roles, nums, ledger, warnings)
        pcell = _cell_at(row.cells, row.roles["progress"])
        progress = pcell.text(nums) if pcell is not None else ""
        if task is None and run_open and _continues_task(row, nums):
            task = runs[-1][0]
        if task is None:
            run_open = False
            if progress:
                snippet = progress.replace("\n", " ")[:30]
                warnings.append(f"有一行无法对应到台账任务（序号和主要内容都无法识别），其进展内容未记录：「{snippet}」")
            continue
        if pcell is not None and (pcell.origin is not pcell or _spans_rows(pcell, row.grid, row.index)):
            tasks = merged_progress.setdefault(id(pcell.origin), [])
            if task not in tasks:
                tasks.append(task)
        if not run_open or runs[-1][0] != task:
            runs.append((task, []))
            run_cells.clear()
            run_open = True
        key = id(pcell.origin) if pcell is not None else None
        if progress and key not in run_cells:
            runs[-1][1].append(progress)
        run_cells.add(key)
    found_entries: dict[int, Entry] = {}
    for task, parts in runs:
        progress = "\n".join(parts)
        previous = found_entries.get(task)
        if previous is None:
            found_entries[task] = Entry(task, progress)
        elif progress and progress != previous.progress:
            if previous.progress:
                warnings.append(f"任务{task}在表格中出现了不止一次，已采用第一处填写的内容")
            else:
                found_entries[task] = Entry(task, progress)
    for tasks in merged_progress.values():
        if len(tasks) > 1:
            listed = "、".join(str(t) for t in sorted(tasks))
            warnings.append(f"任务{listed}的「进展落实情况」是一个合并单元格，已将同一内容分别记入每项任务，建议分开填写")

    unit_text, contact, phone = _header_line(lt.blocks, lt.table, lt.header_row, lt.grid, nums, lt.grids)
    unit_name, matched = unit_text, False
    if unit_text and roster is not None:
        unit = roster.match(unit_text)
        if unit is not None:
            unit_name, matched = unit.name, True
    entries = [found_entries[k] for k in sorted(found_entries)]
    return ParsedReport(
        unit=unit_name,
        unit_as_written=unit_text,
        unit_matched=matched,
        contact=contact,
        phone=phone,
        entries=entries,
        warnings=warnings,
        round_text=_text_above(lt.blocks, lt.table, lt.header_row, lt.grid, nums),
    )


def _spans_rows(cell: Cell, grid: list[list[Cell]], r: int) -> bool:
    if r + 1 < len(grid):
        below = _cell_at(grid[r + 1], cell.col)
        return below is not None and below.origin is cell.origin
    return False


def _task_of_row(row: list[Cell], roles: dict[str, int], nums: Numbering, ledger: Ledger, warnings: list[str]) -> int | None:
    number, merged_number = None, None
    if "number" in roles:
        ncell = _cell_at(row, roles["number"])
        if ncell is not None:
            if ncell.origin is ncell:
                number = _parse_number(ncell.text(nums))
            else:  # 序号 merged down from the row above: that row's task, unless 主要内容 says otherwise
                merged_number = _parse_number(ncell.text(nums))
    by_content = None
    if "content" in roles:
        ccell = _cell_at(row, roles["content"])
        if ccell is not None:
            # The raw string of the cell is enough to recognise the task (and much cheaper).
            by_content = ledger.match_content(_STRING(ccell.origin.tc))
    if number is None and by_content is None and merged_number is not None and ledger.task(merged_number) is not None:
        return merged_number
    if number is not None and ledger.task(number) is not None:
        if by_content is not None and by_content != number:
            warnings.append(f"表格中序号为{number}的一行，其主要内容属于任务{by_content}，已按主要内容记为任务{by_content}")
            return by_content
        return number
    return by_content


def _continues_task(row: Row, nums: Numbering) -> bool:
    """A row added under a task (细化措施): neither its 序号 nor its 主要内容 says anything."""
    for role in ("number", "content"):
        if role in row.roles:
            cell = _cell_at(row.cells, row.roles[role])
            if cell is not None and normalize_text(cell.text(nums)):
                return False
    return True


# --- 填报单位 / 联系人 / 联系电话 -------------------------------------------------------------------

_LABEL_STOP = r"(?=\s*(?:联\s*系\s*人|联\s*系\s*电\s*话|电\s*话|手\s*机|填\s*报\s*(?:日\s*期|时\s*间|人)|日\s*期)|\s*$)"
UNIT_RE = re.compile(r"填\s*报\s*单\s*位(?:\s*名\s*称)?\s*(?:[（(][^）)\n]{0,6}[）)])?\s*[:：]?[ \t　]*(?P<v>[^\n]*?)" + _LABEL_STOP, re.M)
CONTACT_RE = re.compile(r"(?:联\s*系\s*人|填\s*报\s*人)(?!\s*及)\s*(?:姓名)?\s*[:：]?[ \t　]*(?P<v>[^\n]*?)" + _LABEL_STOP, re.M)
CONTACT_PHONE_RE = re.compile(
    r"联\s*系\s*人\s*(?:及|和|、|/)\s*(?:联\s*系\s*)?(?:电\s*话|方\s*式)\s*[:：]?[ \t　]*(?P<v>[^\d\n０-９]{0,60}?)\s*(?P<phone>[0-9０-９][0-9０-９\-－—+＋()（）、/ 　]{0,60}[0-9０-９])",
    re.M,
)
PHONE_RE = re.compile(r"(?:联\s*系\s*电\s*话|电\s*话|手\s*机)\s*(?:号码)?\s*[:：]?[ \t　]*(?P<v>[0-9０-９\-－—+＋()（）、/ 　]{0,60}[0-9０-９])", re.M)
_SEAL = re.compile(r"[（(【\[]\s*(?:单位)?(?:盖章|公章|签章|章|加盖公章)\s*[)）】\]]")


def _clean_value(value: str | None) -> str | None:
    if value is None:
        return None
    v = _SEAL.sub("", value[:LINE_CAP])
    v = re.sub(r"[_＿]+", " ", v)
    v = v.strip(" \t　:：,，;；、")
    v = re.sub(r"\s{2,}", " ", v)[:VALUE_CAP].strip()
    return v or None


# The 填报单位 line is looked for in a bounded neighbourhood of the ledger table, as text made
# safe for the patterns above: every run of whitespace is one character (the patterns' adjacent
# \s* would otherwise backtrack quadratically over a long run: 200,000 spaces took minutes)
# and every line is capped. Each search is then linear in at most a few hundred lines.
AROUND_BLOCKS = 50  # paragraphs or tables read at the top of the document and right above the ledger table
AFTER_BLOCKS = 20  # paragraphs read right below it (among its next 200 blocks)
AROUND_ROWS = 20  # rows read of a table in that neighbourhood
ROW_CELLS = 50  # cells read of such a row
LINE_CAP = 500  # characters kept of a line (after collapsing whitespace)
VALUE_CAP = 100  # characters kept of a unit, contact or phone as written
_WS_RUN = re.compile(r"\s+")


def _around(blocks, ledger_tbl) -> tuple[list, list, bool]:
    """(blocks before the ledger table, blocks after it, whether the table is a body-level block):
    before it, the first and the last AROUND_BLOCKS (the title, and what sits right above the
    table); after it, the next 10 × AFTER_BLOCKS."""
    idx = next((i for i, block in enumerate(blocks) if block is ledger_tbl), None)
    if idx is None:  # a table nested in another one: everything is "before", as Word reads on
        before, after = blocks, []
    else:
        before, after = blocks[:idx], blocks[idx + 1: idx + 1 + 10 * AFTER_BLOCKS]
    if len(before) > 2 * AROUND_BLOCKS:
        before = before[:AROUND_BLOCKS] + before[-AROUND_BLOCKS:]
    return before, after, idx is not None


def _compact(texts) -> str:
    """Lines with every whitespace run collapsed to one space, no blank lines, each capped."""
    out = []
    for text in texts:
        for line in text.split("\n"):
            line = _WS_RUN.sub(" ", line).strip()
            if line:
                out.append(line[:LINE_CAP])
    return "\n".join(out)


def _text_above(blocks, ledger_tbl, header_row_idx, ledger_grid, nums: Numbering, limit: int = 2000) -> str:
    """The title and notes above the ledger table's header (where a form may say 年中 or 年底)."""
    before, _after, body_level = _around(blocks, ledger_tbl)
    parts = [_paragraph_text(block, nums) if block.tag == P else "" for block in before]
    if body_level:
        parts.extend(_row_line(row, nums) for row in ledger_grid[:header_row_idx])
    return "\n".join(p for p in parts if p)[:limit]


def _header_line(blocks, ledger_tbl, header_row_idx, ledger_grid, nums: Numbering, grids=None) -> tuple[str | None, str | None, str | None]:
    before_blocks, after_blocks, body_level = _around(blocks, ledger_tbl)
    before: list[str] = []
    for block in before_blocks:
        if block.tag == P:
            before.append(_paragraph_text(block, nums))
        else:
            grid = (grids or {}).get(id(block))
            for row in (grid if grid is not None else _table_rows(block))[:AROUND_ROWS]:
                before.append(_row_line(row, nums))
    if body_level:
        for row in ledger_grid[:header_row_idx]:  # a 填报单位 row inside the ledger table, above its header
            before.append(_row_line(row, nums))
    after = [_paragraph_text(block, nums) for block in after_blocks if block.tag == P][:AFTER_BLOCKS]
    for text in (_compact(before), _compact(after)):
        unit = _search(UNIT_RE, text)
        if unit is not None or "填报单位" in normalize_text(text):
            combined = CONTACT_PHONE_RE.search(text)
            if combined:
                return _clean_value(unit), _clean_value(combined.group("v")), _clean_phone(combined.group("phone"))
            return _clean_value(unit), _clean_value(_search(CONTACT_RE, text)), _clean_phone(_search(PHONE_RE, text))
    return None, None, None


def _row_line(row: list[Cell], nums: Numbering) -> str:
    parts, seen = [], set()
    for cell in row:
        if id(cell.origin) in seen:
            continue
        seen.add(id(cell.origin))
        parts.append(cell.text(nums).replace("\n", " "))
        if len(parts) >= ROW_CELLS:
            break
    return "  ".join(parts)


def _search(pattern: re.Pattern, text: str) -> str | None:
    m = pattern.search(text)
    return m.group("v") if m else None


def _clean_phone(value: str | None) -> str | None:
    if not value:
        return None
    v = unicodedata.normalize("NFKC", value[:VALUE_CAP]).replace("—", "-").strip(" 、/")
    return v or None
