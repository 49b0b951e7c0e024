"""Parser tests: Word 任务落实台账 reports → ParsedReport and the `mailbot parse FILE --json` contract.

Covers mailbot/reports.py (the ledger table, text as Word shows it, the 填报单位 line)
and mailbot/convert.py (file type by magic bytes, zip limits, LibreOffice conversion).
Every fixture file is generated at test time (tests/docbuilder.py, or raw bytes here).

Expectations are what a correct parser must produce; known parser bugs are marked
``xfail(strict=True)`` with a "BUG:" reason, never loosened.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest
from lxml import etree

from conftest import needs_soffice
from docbuilder import libreoffice_convert, resave_with_libreoffice, section_row_text, tiny_png

from mailbot import convert
from mailbot.convert import REFUSALS, sniff
from mailbot.errors import ConversionError, ReportError
from mailbot.reports import parse_document

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
MAILBOT = VENV_BIN / "mailbot"
CONFIG = ROOT / "config.toml"

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
WQ = f"{{{W_NS}}}"
CJK = re.compile(r"[\u4e00-\u9fff]")

UNIT, CONTACT, PHONE = "民政局", "张三", "0951-1234567"
ALL_TASKS = list(range(1, 31))


# --------------------------------------------------------------------------- helpers


def full_progress() -> dict[int, str]:
    """Distinct text for all 30 tasks; every 4th one has several paragraphs."""
    out = {}
    for n in ALL_TASKS:
        if n % 4 == 0:
            out[n] = f"一是第{n}项已制定方案；\n二是第{n}项已在政府网站公开{n * 3}条信息；\n三是第{n}项持续推进。"
        else:
            out[n] = f"第{n}项：已完成，累计发布信息{n * 7}条（截至8月{n % 28 + 1}日）。"
    return out


def entries(progress: dict[int, str], tasks=ALL_TASKS) -> list[dict]:
    return [{"task": n, "progress": progress.get(n, "")} for n in tasks]


def contract(progress: dict[int, str], *, unit=UNIT, contact=CONTACT, phone=PHONE, warnings=(), tasks=ALL_TASKS) -> dict:
    return {
        "unit": unit,
        "contact": contact,
        "phone": phone,
        "entries": entries(progress, tasks),
        "warnings": list(warnings),
    }


def parse(path_or_bytes, ledger, roster=None):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return parse_document(data, ledger, roster)


def refusal(data: bytes, ledger, roster=None) -> ReportError:
    with pytest.raises(ReportError) as info:
        parse_document(data, ledger, roster)
    err = info.value
    assert CJK.search(str(err)), f"message is not Chinese: {err!r}"
    assert "Traceback" not in str(err)
    return err


def rezip(data: bytes, *, replace=None, extra=(), skip=()) -> bytes:
    """Copy a zip (docx), replacing members {name: fn(bytes) -> bytes}, adding and skipping some."""
    replace = replace or {}
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if info.filename in skip:
                continue
            body = src.read(info)
            if info.filename in replace:
                body = replace[info.filename](body)
            out.writestr(info.filename, body)
        for name, body in extra:
            out.writestr(name, body)
    return buf.getvalue()


def cfb(streams: list[tuple[str, bytes]]) -> bytes:
    """A minimal OLE2 / Compound File Binary (v3, 512-byte sectors) holding root-level streams.

    Each stream must be >= 4096 bytes (the mini-stream cutoff) so that no mini FAT is
    needed. Layout: header, FAT (sector 0), directory (sector 1), stream sectors.
    """
    ENDOFCHAIN, FREESECT, FATSECT, NOSTREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    assert 1 <= len(streams) <= 3
    fat = [FATSECT, ENDOFCHAIN]
    sectors: list[bytes] = []
    starts = []
    for _name, data in streams:
        assert len(data) >= 4096
        padded = data + b"\0" * (-len(data) % 512)
        count = len(padded) // 512
        first = len(fat)
        starts.append(first)
        fat += [first + i + 1 for i in range(count - 1)] + [ENDOFCHAIN]
        sectors += [padded[i * 512:(i + 1) * 512] for i in range(count)]
    assert len(fat) <= 128

    def entry(name: str, kind: int, *, child=NOSTREAM, right=NOSTREAM, start=ENDOFCHAIN, size=0) -> bytes:
        raw = name.encode("utf-16-le") + b"\0\0" if name else b""
        return (
            raw.ljust(64, b"\0")
            + struct.pack("<HBB", len(raw), kind, 1 if name else 0)
            + struct.pack("<III", NOSTREAM, right, child)
            + b"\0" * 16  # CLSID
            + b"\0" * 4  # state bits
            + b"\0" * 16  # times
            + struct.pack("<IQ", start, size)
        )

    # Siblings form a right-leaning chain; the directory tree is sorted by (length, name).
    order = sorted(range(len(streams)), key=lambda i: (len(streams[i][0]), streams[i][0].upper()))
    dir_entries = [entry("Root Entry", 5, child=1)]
    for pos, i in enumerate(order):
        name, data = streams[i]
        right = pos + 2 if pos + 1 < len(order) else NOSTREAM
        dir_entries.append(entry(name, 2, right=right, start=starts[i], size=len(data)))
    while len(dir_entries) < 4:
        dir_entries.append(entry("", 0))
    header = (
        convert.OLE_MAGIC
        + b"\0" * 16
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
        + b"\0" * 6
        # dir sectors (0 in v3), FAT sectors, first dir sector, transaction,
        # mini cutoff, first mini FAT, mini FAT count, first DIFAT, DIFAT count
        + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, ENDOFCHAIN, 0, ENDOFCHAIN, 0)
        + struct.pack("<109I", 0, *([FREESECT] * 108))
    )
    assert len(header) == 512
    fat_sector = struct.pack("<128I", *(fat + [FREESECT] * (128 - len(fat))))
    return header + fat_sector + b"".join(dir_entries) + b"".join(sectors)


def raw_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip written by hand: (name, deflated_bytes, crc, declared_compressed, declared_size) per member.

    Lets a test declare sizes in the headers that the data does not honour.
    """
    out = io.BytesIO()
    central = []
    for name, data, crc, csize, usize in members:
        encoded = name.encode()
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, csize, usize, len(encoded), 0))
        out.write(encoded + data)
        central.append((encoded, crc, csize, usize, offset))
    cd_start = out.tell()
    for encoded, crc, csize, usize, offset in central:
        out.write(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, csize, usize, len(encoded), 0, 0, 0, 0, 0, offset)
            + encoded
        )
    cd_end = out.tell()
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), cd_end - cd_start, cd_start, 0))
    return out.getvalue()


def deflate(data: bytes, level: int = 6) -> bytes:
    co = zlib.compressobj(level, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush()


# --------------------------------------------------------------------------- shared files


@pytest.fixture(scope="module")
def plain_docx(tmp_path_factory, ledger_dict) -> bytes:
    """The plain real layout, all 30 tasks filled (full_progress()), unit 民政局."""
    from docbuilder import build_report

    path = tmp_path_factory.mktemp("plain") / "plain.docx"
    build_report(path, ledger_dict["sections"], ledger_dict["tasks"], unit=UNIT, contact=CONTACT, phone=PHONE, progress=full_progress())
    return path.read_bytes()


# =========================================================================== plain layout


def test_plain_report_all_tasks_filled(plain_docx, ledger, roster):
    report = parse(plain_docx, ledger, roster)
    assert report.as_dict() == contract(full_progress())
    assert report.unit_as_written == "民政局"
    assert report.unit_matched is True
    assert report.converted_from is None
    assert [e.task for e in report.entries] == ALL_TASKS
    assert [e.task for e in report.filled] == ALL_TASKS
    # multi-paragraph cells are joined with "\n"
    assert report.entries[3].progress == "一是第4项已制定方案；\n二是第4项已在政府网站公开12条信息；\n三是第4项持续推进。"


def test_blank_cells_give_empty_string(make_report, ledger, roster):
    progress = {1: "已完成", 17: "持续推进\n已回复留言12条", 30: "已开展“回头看”"}
    report = parse(make_report(progress), ledger, roster)
    assert report.as_dict() == contract(progress)
    assert [e.task for e in report.filled] == [1, 17, 30]


def test_blank_form_gives_thirty_empty_entries(make_report, ledger, roster):
    report = parse(make_report({}), ledger, roster)
    assert report.as_dict() == contract({})


def test_progress_is_trimmed_but_inner_paragraphs_kept(make_report, ledger, roster):
    # leading/trailing empty paragraphs and surrounding spaces go; inner empty paragraph stays
    progress = {2: "\n  已发布就业信息35条  \n", 3: "甲\n\n乙"}
    report = parse(make_report(progress), ledger, roster)
    assert report.as_dict() == contract({2: "已发布就业信息35条", 3: "甲\n\n乙"})


def test_entries_in_task_order_when_rows_are_not(tmp_path, ledger_dict, ledger, roster):
    from docbuilder import build_report

    tasks = list(reversed(ledger_dict["tasks"]))  # rows emitted 7,6,…,1 | 13,…,8 | …
    progress = full_progress()
    path = build_report(tmp_path / "reversed.docx", ledger_dict["sections"], tasks, progress=progress)
    assert parse(path, ledger, roster).as_dict() == contract(progress)


# =========================================================================== header detection variants

HEADER_VARIANTS = {
    "header_cell_breaks": dict(header_cell_breaks=True),
    "extra_column_备注": dict(extra_column="备注"),
    "drop_量化指标": dict(drop_columns=("量化指标",)),
    "drop_重点工作": dict(drop_columns=("重点工作",)),
    "drop_完成时限": dict(drop_columns=("完成时限",)),
    "drop_three_columns": dict(drop_columns=("量化指标", "重点工作", "完成时限")),
    "drop_序号_match_by_content": dict(drop_columns=("序号",)),
    "cover_letter_and_unrelated_table": dict(cover_letter=True, extra_table_before=True),
    "no_title": dict(title=False),
    "split_tables": dict(split_tables=True),
    "split_tables_header_cell_breaks": dict(split_tables=True, header_cell_breaks=True),
    "repeat_header": dict(repeat_header=True),
    "repeat_header_before_section_2": dict(repeat_header=2),
    "block_sdt_table": dict(block_sdt_table=True),
    "block_sdt_split_tables": dict(block_sdt_table=True, split_tables=True),
}


@pytest.mark.parametrize("variant", list(HEADER_VARIANTS), ids=list(HEADER_VARIANTS))
def test_header_detection_variant(variant, make_report, ledger, roster):
    progress = full_progress()
    report = parse(make_report(progress, **HEADER_VARIANTS[variant]), ledger, roster)
    assert report.as_dict() == contract(progress)


# =========================================================================== merges


def test_section_rows_are_skipped(make_report, ledger, ledger_dict, roster):
    progress = full_progress()
    report = parse(make_report(progress, split_tables=True, repeat_header=False), ledger, roster)
    assert report.as_dict() == contract(progress)
    section_texts = {section_row_text(s) for s in ledger_dict["sections"]}
    for e in report.entries:
        assert e.progress not in section_texts
        assert not any(title in e.progress for title in section_texts)


def test_item_vmerge_does_not_leak_into_rows_or_progress(make_report, ledger, roster):
    # 重点工作 is vertically merged over tasks 2-4, 5-7, 8-9, 10-12, 14-16, 17-18, 21-24, 28-30;
    # with blank 序号 every row must be recognised by its 主要内容 alone.
    report = parse(make_report({}, number_style="blank"), ledger, roster)
    assert report.as_dict() == contract({})
    items = set(ledger.items)
    assert all(e.progress == "" for e in report.entries)
    report = parse(make_report({n: f"进展{n}" for n in ALL_TASKS}), ledger, roster)
    assert not any(item in e.progress for e in report.entries for item in items)


@pytest.mark.parametrize(
    "span,options",
    [((3, 5), {}), ((28, 30), {}), ((1, 2), {"split_tables": True}), ((21, 24), {"repeat_header": 4})],
    ids=["3-5", "28-30_end_of_table", "1-2_split_tables", "21-24_after_repeated_header"],
)
def test_merged_progress_cell_goes_to_every_task(span, options, make_report, ledger, roster):
    a, b = span
    progress = {n: f"单独填写{n}" for n in ALL_TASKS}
    progress[a] = "合并填写：以上几项均已完成"
    report = parse(make_report(progress, merge_progress=span, **options), ledger, roster)
    expected = dict(progress)
    for n in range(a, b + 1):
        expected[n] = "合并填写：以上几项均已完成"  # continuation cells are empty in the file
    d = report.as_dict()
    assert d["entries"] == entries(expected)
    assert (d["unit"], d["contact"], d["phone"]) == (UNIT, CONTACT, PHONE)
    assert len(d["warnings"]) == 1
    warning = d["warnings"][0]
    assert "、".join(str(n) for n in range(a, b + 1)) in warning
    assert "合并" in warning
    # outside the span nothing changed
    if a > 1:
        assert report.entries[a - 2].progress == f"单独填写{a - 1}"
    if b < 30:
        assert report.entries[b].progress == f"单独填写{b + 1}"


def test_no_text_is_duplicated_anywhere(make_report, ledger, roster):
    markers = {n: f"【M{n:02d}】" for n in ALL_TASKS}
    progress = {n: f"{markers[n]}进展" for n in ALL_TASKS}
    report = parse(
        make_report(progress, repeat_header=True, header_cell_breaks=True, extra_column="备注"),
        ledger,
        roster,
    )
    blob = json.dumps(report.as_dict(), ensure_ascii=False)
    for n, m in markers.items():
        assert blob.count(m) == 1, (n, blob.count(m))
        assert report.entries[n - 1].progress == f"{m}进展"


# =========================================================================== text as Word shows it


def _one_task(report, n):
    d = report.as_dict()
    assert [e["task"] for e in d["entries"]] == ALL_TASKS
    assert all(e["progress"] == "" for e in d["entries"] if e["task"] != n), "text leaked into other tasks"
    assert d["warnings"] == []
    return report.entries[n - 1].progress


def test_tracked_changes_deleted_out_inserted_in(make_report, ledger, roster):
    report = parse(make_report({6: "已公开预决算"}, tracked={6: ("（待补充）", "共12个部门")}), ledger, roster)
    assert _one_task(report, 6) == "已公开预决算共12个部门"


def test_tracked_change_only(make_report, ledger, roster):
    report = parse(make_report({}, tracked={7: ("原计划8月完成", "已于7月完成")}), ledger, roster)
    assert _one_task(report, 7) == "已于7月完成"


def test_inline_content_control(make_report, ledger, roster):
    report = parse(make_report({8: "已清理文件"}, sdt={8: "23件"}), ledger, roster)
    assert _one_task(report, 8) == "已清理文件23件"


def test_content_control_only(make_report, ledger, roster):
    report = parse(make_report({}, sdt={8: "控件中的进展"}), ledger, roster)
    assert _one_task(report, 8) == "控件中的进展"


def test_hyperlink_text_in_url_out(make_report, ledger, roster):
    report = parse(make_report({9: "详见"}, hyperlink={9: ("政策文件包专栏", "http://www.xixia.gov.cn/zcwjb")}), ledger, roster)
    text = _one_task(report, 9)
    assert text == "详见政策文件包专栏"
    assert "http" not in text


def test_fields_result_visible_instruction_invisible(make_report, ledger, roster):
    report = parse(make_report({10: "解读"}, fields={10: ("5篇", "，图解3篇")}), ledger, roster)
    text = _one_task(report, 10)
    assert text == "解读5篇，图解3篇"
    assert "MERGEFIELD" not in text


def test_fields_plain_string_appears_twice(make_report, ledger, roster):
    # fields[n] = str: the complex field and the fldSimple both show it
    report = parse(make_report({}, fields={11: "已完成"}), ledger, roster)
    assert _one_task(report, 11) == "已完成已完成"


def test_smart_tag(make_report, ledger, roster):
    report = parse(make_report({12: "由"}, smart_tag={12: "李四"}), ledger, roster)
    assert _one_task(report, 12) == "由李四"


def test_line_breaks_become_newlines(make_report, ledger, roster):
    report = parse(make_report({}, line_breaks={13: ["导引站已设立", "累计接待咨询300人次"]}), ledger, roster)
    assert _one_task(report, 13) == "导引站已设立\n累计接待咨询300人次"


def test_line_breaks_after_a_paragraph(make_report, ledger, roster):
    report = parse(make_report({13: "第一段"}, line_breaks={13: ["l1", "l2"]}), ledger, roster)
    assert _one_task(report, 13) == "第一段\nl1\nl2"


def test_numbered_progress_shows_labels(make_report, ledger, roster):
    report = parse(make_report({}, numbered_progress={14: ["编制目录", "公开目录"]}), ledger, roster)
    assert _one_task(report, 14) == "1.编制目录\n2.公开目录"


def test_numbered_progress_restarts_in_every_cell(make_report, ledger, roster):
    report = parse(make_report({}, numbered_progress={14: ["a", "b"], 15: ["c", "d", "e"]}), ledger, roster)
    d = report.as_dict()
    assert d == contract({14: "1.a\n2.b", 15: "1.c\n2.d\n3.e"})


def test_numbered_progress_after_text(make_report, ledger, roster):
    report = parse(make_report({16: "已邀请代表列席"}, numbered_progress={16: ["3月", "6月"]}), ledger, roster)
    assert _one_task(report, 16) == "已邀请代表列席\n1.3月\n2.6月"


def test_image_is_ignored(make_report, ledger, roster):
    report = parse(make_report({17: "见截图"}, image_in=[17, 18]), ledger, roster)
    d = report.as_dict()
    assert d == contract({17: "见截图"})


def test_docstring_example_inline_order(make_report, ledger, roster):
    report = parse(make_report({1: "已完成"}, tracked={1: ("旧", "新")}, sdt={1: "甲"}), ledger, roster)
    assert _one_task(report, 1) == "已完成新甲"


def test_every_feature_in_one_cell(make_report, ledger, roster):
    report = parse(
        make_report(
            {19: "开放日\n已举办2次"},
            tracked={19: ("删", "增")},
            sdt={19: "控"},
            hyperlink={19: ("链", "http://example.com")},
            fields={19: ("F1", "F2")},
            smart_tag={19: "王五"},
            image_in=[19],
            line_breaks={19: ["l1", "l2"]},
            numbered_progress={19: ["a", "b"]},
        ),
        ledger,
        roster,
    )
    assert _one_task(report, 19) == "开放日\n已举办2次增控链F1F2王五\nl1\nl2\n1.a\n2.b"


def _split_numbered_list(docx: bytes, text_b: str) -> bytes:
    """Point the paragraph whose text is ``text_b`` at a NEW w:num that shares the abstractNum of
    the paragraph before it but has no startOverride — exactly what LibreOffice writes when it
    re-saves a restarted list (first item: num with startOverride, later items: plain num)."""
    zf = zipfile.ZipFile(io.BytesIO(docx))
    doc = etree.fromstring(zf.read("word/document.xml"))
    numbering = etree.fromstring(zf.read("word/numbering.xml"))
    target = next(p for p in doc.iter(WQ + "p") if "".join(t.text or "" for t in p.iter(WQ + "t")) == text_b)
    num_id_el = target.find(f"{WQ}pPr/{WQ}numPr/{WQ}numId")
    old = num_id_el.get(WQ + "val")
    num = next(n for n in numbering.iter(WQ + "num") if n.get(WQ + "numId") == old)
    abstract = num.find(WQ + "abstractNumId").get(WQ + "val")
    new = etree.SubElement(numbering, WQ + "num", {WQ + "numId": "900"})
    etree.SubElement(new, WQ + "abstractNumId", {WQ + "val": abstract})
    num_id_el.set(WQ + "val", "900")
    return rezip(
        docx,
        replace={
            "word/document.xml": lambda _b: etree.tostring(doc, xml_declaration=True, encoding="UTF-8", standalone=True),
            "word/numbering.xml": lambda _b: etree.tostring(numbering, xml_declaration=True, encoding="UTF-8", standalone=True),
        },
    )


def test_numbered_list_continues_across_nums_sharing_an_abstract(make_report, ledger, roster):
    path = make_report({}, numbered_progress={14: ["编制目录", "公开目录"]})
    data = _split_numbered_list(path.read_bytes(), "公开目录")
    report = parse(data, ledger, roster)
    assert _one_task(report, 14) == "1.编制目录\n2.公开目录"


# =========================================================================== 序号 (task numbers)


@pytest.mark.parametrize("style", ["fullwidth", "dot", "blank", "auto"])
def test_number_styles(style, make_report, ledger, roster):
    progress = full_progress()
    report = parse(make_report(progress, number_style=style), ledger, roster)
    assert report.as_dict() == contract(progress)


def test_auto_numbering_across_split_tables(make_report, ledger, roster):
    progress = full_progress()
    report = parse(make_report(progress, number_style="auto", split_tables=True, repeat_header=True), ledger, roster)
    assert report.as_dict() == contract(progress)


def _own_tasks(ledger_dict, numbers):
    return [dict(t) for t in ledger_dict["tasks"] if t["number"] in numbers]


def test_unit_kept_only_its_own_tasks(tmp_path, ledger_dict, ledger, roster):
    from docbuilder import build_report

    tasks = _own_tasks(ledger_dict, {3, 4})
    path = build_report(tmp_path / "own.docx", ledger_dict["sections"][:1], tasks, progress={3: "推送养老政策", 4: "公开评估结果"})
    report = parse(path, ledger, roster)
    assert report.as_dict() == contract({3: "推送养老政策", 4: "公开评估结果"}, tasks=[3, 4])


def test_renumbered_own_tasks_recorded_by_content(tmp_path, ledger_dict, ledger, roster):
    """民政局 kept only tasks 3 and 4 and renumbered them 1, 2: 主要内容 wins, with a warning."""
    from docbuilder import build_report

    t3, t4 = _own_tasks(ledger_dict, {3, 4})
    t3["number"], t4["number"] = 1, 2
    path = build_report(tmp_path / "renumbered.docx", ledger_dict["sections"][:1], [t3, t4], progress={1: "推送养老政策", 2: "公开评估结果"})
    d = parse(path, ledger, roster).as_dict()
    assert d["entries"] == [{"task": 3, "progress": "推送养老政策"}, {"task": 4, "progress": "公开评估结果"}]
    assert (d["unit"], d["contact"], d["phone"]) == (UNIT, CONTACT, PHONE)
    assert len(d["warnings"]) == 2
    for written, task in ((1, 3), (2, 4)):
        w = next(w for w in d["warnings"] if f"任务{task}" in w)
        assert str(written) in w.replace(f"任务{task}", "")


def test_auto_numbered_own_tasks_recorded_by_content(tmp_path, ledger_dict, ledger, roster):
    """Automatic numbering shows 1, 2 for tasks 3 and 4 (row position): content wins."""
    from docbuilder import build_report

    tasks = _own_tasks(ledger_dict, {3, 4})
    path = build_report(tmp_path / "auto-own.docx", ledger_dict["sections"][:1], tasks, number_style="auto", progress={3: "甲项进展", 4: "乙项进展"})
    d = parse(path, ledger, roster).as_dict()
    assert d["entries"] == [{"task": 3, "progress": "甲项进展"}, {"task": 4, "progress": "乙项进展"}]
    assert len(d["warnings"]) == 2
    assert any("任务3" in w for w in d["warnings"]) and any("任务4" in w for w in d["warnings"])


# =========================================================================== the 填报单位 line


@pytest.mark.parametrize("style", ["paragraph", "paragraphs", "table"])
def test_header_styles(style, make_report, ledger, roster):
    progress = full_progress()
    report = parse(make_report(progress, header_style=style), ledger, roster)
    assert report.as_dict() == contract(progress)
    assert report.unit_matched is True


def test_header_style_table_after_cover_letter(make_report, ledger, roster):
    progress = {1: "x"}
    report = parse(make_report(progress, header_style="table", cover_letter=True, extra_table_before=True), ledger, roster)
    assert report.as_dict() == contract(progress)


def test_header_style_blank(make_report, ledger, roster):
    progress = full_progress()
    report = parse(make_report(progress, header_style="blank"), ledger, roster)
    assert report.as_dict() == contract(progress, unit=None, contact=None, phone=None)
    assert report.unit_as_written is None
    assert report.unit_matched is False


@pytest.mark.parametrize(
    "written,unit,as_written,matched",
    [
        ("银川市西夏区民政局", "民政局", "银川市西夏区民政局", True),
        ("西夏区民政局（盖章）", "民政局", "西夏区民政局", True),
        ("人社局", "人力资源和社会保障局", "人社局", True),
        ("兴泾镇", "兴泾镇", "兴泾镇", True),
        ("某某局", "某某局", "某某局", False),
        (None, None, None, False),
        ("", None, None, False),
    ],
    ids=["prefixed", "seal", "alias", "town", "unknown", "none", "empty"],
)
@pytest.mark.parametrize("style", ["paragraph", "paragraphs", "table"])
def test_unit_as_written(written, unit, as_written, matched, style, make_report, ledger, roster):
    progress = {1: "已完成"}
    report = parse(make_report(progress, unit=written, header_style=style), ledger, roster)
    assert report.as_dict() == contract(progress, unit=unit)
    assert report.unit_as_written == as_written
    assert report.unit_matched is matched


def test_without_roster_unit_is_as_written(make_report, ledger):
    report = parse(make_report({1: "x"}, unit="人社局"), ledger, None)
    assert report.as_dict() == contract({1: "x"}, unit="人社局")
    assert report.unit_matched is False


def _rewrite_header_line(docx: bytes, new_line: str) -> bytes:
    """Replace the builder's one-run header paragraph (header_style="paragraph") with other wording."""
    old = f"填报单位：{UNIT}（盖章）  联系人：{CONTACT}  联系电话：{PHONE}".encode()

    def fix(b: bytes) -> bytes:
        assert b.count(old) == 1
        return b.replace(old, new_line.encode())

    return rezip(docx, replace={"word/document.xml": fix})


@pytest.mark.parametrize(
    "line",
    [
        "填报单位（盖章）：民政局  联系人：张三  联系电话：0951-1234567",
        "填报单位: 民政局 联系人: 张三 联系电话: 0951-1234567",
        "填报单位：民政局　　联系人：张三　　电话：0951-1234567",
        "填报单位：民政局（公章）  联系人：张三  联系电话：0951－1234567  填报日期：2023年8月14日",
    ],
    ids=["seal_in_label", "halfwidth_colons", "ideographic_spaces_电话", "fullwidth_dash_and_date"],
)
def test_header_line_wordings(line, make_report, ledger, roster):
    data = _rewrite_header_line(make_report({1: "x"}).read_bytes(), line)
    assert parse(data, ledger, roster).as_dict() == contract({1: "x"})


def test_header_line_combined_contact_and_phone_label(make_report, ledger, roster):
    data = _rewrite_header_line(make_report({1: "x"}).read_bytes(), "填报单位：民政局  联系人及电话：张三 0951-1234567")
    assert parse(data, ledger, roster).as_dict() == contract({1: "x"})


def test_header_line_inside_ledger_table_above_header_row(make_report, ledger, roster):
    """Some units move 填报单位… into a first, fully merged row of the ledger table."""
    path = make_report(full_progress())

    def move(b: bytes) -> bytes:
        doc = etree.fromstring(b)
        body = doc.find(WQ + "body")
        p = next(p for p in body.iter(WQ + "p") if "填报单位" in "".join(t.text or "" for t in p.iter(WQ + "t")))
        tr = etree.Element(WQ + "tr")
        tc = etree.SubElement(tr, WQ + "tc")
        etree.SubElement(etree.SubElement(tc, WQ + "tcPr"), WQ + "gridSpan", {WQ + "val": "7"})
        tc.append(p)
        body.find(WQ + "tbl").find(WQ + "tr").addprevious(tr)
        return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", standalone=True)

    data = rezip(path.read_bytes(), replace={"word/document.xml": move})
    assert parse(data, ledger, roster).as_dict() == contract(full_progress())


def test_two_units_of_equal_name_length_are_not_matched(make_report, ledger, roster):
    report = parse(make_report({}, unit="教育局、科技局"), ledger, roster)
    assert report.as_dict() == contract({}, unit="教育局、科技局")
    assert report.unit_matched is False


def test_two_units_named_are_not_matched_to_the_longer_one(make_report, ledger, roster):
    report = parse(make_report({}, unit="民政局、医疗保障局"), ledger, roster)
    assert report.as_dict() == contract({}, unit="民政局、医疗保障局")
    assert report.unit_matched is False


@pytest.mark.parametrize(
    "contact,phone",
    [(None, PHONE), (CONTACT, None), ("王小明", "13800138000"), ("李四", "０９５１－５０１２３４５")],
    ids=["no_contact", "no_phone", "mobile", "fullwidth_phone"],
)
def test_contact_and_phone(contact, phone, make_report, ledger, roster):
    report = parse(make_report({}, contact=contact, phone=phone), ledger, roster)
    expected_phone = {"０９５１－５０１２３４５": "0951-5012345"}.get(phone, phone)
    assert report.as_dict() == contract({}, contact=contact, phone=expected_phone)


# =========================================================================== file types by magic bytes


def _docm(docx: bytes) -> bytes:
    def content_types(b: bytes) -> bytes:
        main = b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
        assert main in b
        b = b.replace(main, b"application/vnd.ms-word.document.macroEnabled.main+xml")
        return b.replace(b"</Types>", b'<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>')

    def rels(b: bytes) -> bytes:
        return b.replace(
            b"</Relationships>",
            b'<Relationship Id="rIdVba1" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" '
            b'Target="vbaProject.bin"/></Relationships>',
        )

    vba = cfb([("VBA_PROJECT_CUR", b"Attribute VB_Name = \"ThisDocument\"\r\nSub AutoOpen()\r\nEnd Sub\r\n".ljust(4096, b"\0"))])
    return rezip(
        docx,
        replace={"[Content_Types].xml": content_types, "word/_rels/document.xml.rels": rels},
        extra=[("word/vbaProject.bin", vba)],
    )


def test_docm_parses(plain_docx, ledger, roster):
    data = _docm(plain_docx)
    assert sniff(data) == "docx"
    assert parse(data, ledger, roster).as_dict() == contract(full_progress())


def _xlsx() -> bytes:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["序号", "主要内容", "进展落实情况"])
    ws.append([1, "聚焦西夏区委", "已完成"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _encrypted_ooxml() -> bytes:
    """What Word writes for a password-protected .docx: an OLE file with EncryptionInfo + EncryptedPackage."""
    rng = random.Random(7)
    info = struct.pack("<HHI", 4, 4, 0x40) + b"<?xml version=\"1.0\"?><encryption/>".ljust(4088, b" ")
    package = struct.pack("<Q", 20480) + rng.randbytes(8192)
    return cfb([("EncryptionInfo", info), ("EncryptedPackage", package)])


def _encrypted_doc() -> bytes:
    """A Word 97 .doc whose FIB has fEncrypted (0x0100 at offset 0x0A) set."""
    fib = struct.pack("<HHHHHH", 0xA5EC, 0xC1, 0, 0, 0, 0x0100).ljust(4096, b"\0")
    table = b"\0" * 4096
    return cfb([("WordDocument", fib), ("1Table", table)])


WORD2003_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<?mso-application progid="Word.Document"?>\n'
    '<w:wordDocument xmlns:w="http://schemas.microsoft.com/office/word/2003/wordml">'
    "<w:body><w:tbl><w:tr><w:tc><w:p><w:r><w:t>序号</w:t></w:r></w:p></w:tc>"
    "<w:tc><w:p><w:r><w:t>进展落实情况</w:t></w:r></w:p></w:tc></w:tr></w:tbl></w:body></w:wordDocument>"
).encode("utf-8")

REFUSED_FILES = {
    "pdf": (lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n", "pdf"),
    "png": (tiny_png, "image"),
    "jpeg": (lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9", "image"),
    "encrypted_docx": (_encrypted_ooxml, "encrypted"),
    "encrypted_doc": (_encrypted_doc, "encrypted"),
    "word2003_xml": (lambda: WORD2003_XML, "word2003xml"),
    "word2003_xml_bom": (lambda: b"\xef\xbb\xbf" + WORD2003_XML, "word2003xml"),
    "xlsx": (_xlsx, "xlsx"),
    "rar": (lambda: b"Rar!\x1a\x07\x01\x00" + bytes(range(64)), "rar"),
    "empty": (lambda: b"", "empty"),
    "random": (lambda: b"\x13\x37" + random.Random(42).randbytes(8190), "unknown"),
    "text": (lambda: "填报单位：民政局 进展落实情况：已完成".encode("utf-8"), "unknown"),
}


@pytest.mark.parametrize("name", list(REFUSED_FILES), ids=list(REFUSED_FILES))
def test_refused_by_magic_bytes(name, ledger, roster):
    make, code = REFUSED_FILES[name]
    data = make()
    assert sniff(data) == code
    err = refusal(data, ledger, roster)
    assert err.code == code
    assert str(err) == REFUSALS[code]


def test_zip_holding_a_docx_is_refused_as_archive(plain_docx, ledger, roster):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("民政局台账.docx", plain_docx)
    err = refusal(buf.getvalue(), ledger, roster)
    assert err.code == "archive"


def test_no_converter_when_soffice_missing(monkeypatch, ledger, roster):
    """A legacy .doc with no LibreOffice available: a clear refusal, no attempt to run anything."""
    doc = cfb([("WordDocument", struct.pack("<HH", 0xA5EC, 0xC1).ljust(4096, b"\0")), ("1Table", b"\0" * 4096)])
    assert sniff(doc) == "doc"
    monkeypatch.setattr(convert, "soffice_path", lambda: None)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("LibreOffice must not be started"))
    err = refusal(doc, ledger, roster)
    assert isinstance(err, ConversionError)
    assert err.code == "no_converter"
    assert "LibreOffice" in str(err)


def test_no_converter_when_not_on_path(monkeypatch, tmp_path, ledger, roster):
    doc = cfb([("WordDocument", struct.pack("<HH", 0xA5EC, 0xC1).ljust(4096, b"\0")), ("1Table", b"\0" * 4096)])
    monkeypatch.delenv("MAILBOT_SOFFICE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    err = refusal(doc, ledger, roster)
    assert err.code == "no_converter"


def test_no_converter_when_mailbot_soffice_points_nowhere(monkeypatch, tmp_path, ledger, roster):
    doc = cfb([("WordDocument", struct.pack("<HH", 0xA5EC, 0xC1).ljust(4096, b"\0")), ("1Table", b"\0" * 4096)])
    monkeypatch.setenv("MAILBOT_SOFFICE", "/nonexistent/soffice")
    monkeypatch.setenv("PATH", str(tmp_path))
    err = refusal(doc, ledger, roster)
    assert err.code == "no_converter"


# =========================================================================== not a ledger


def _docx_from(build) -> bytes:
    from docx import Document

    doc = Document()
    build(doc)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def test_paragraphs_only_is_not_a_ledger(ledger, roster):
    def build(doc):
        doc.add_paragraph("关于报送2023年政务公开工作要点落实情况的函")
        doc.add_paragraph("填报单位：民政局  联系人：张三  联系电话：0951-1234567")
        doc.add_paragraph("1. 聚焦西夏区委、区政府重点工作任务 —— 进展落实情况：已完成")

    err = refusal(_docx_from(build), ledger, roster)
    assert err.code == "not_ledger"


def test_table_without_progress_header_is_not_a_ledger(ledger, roster):
    def build(doc):
        doc.add_paragraph("填报单位：民政局")
        t = doc.add_table(rows=3, cols=4)
        for r, row in enumerate([("序号", "主要内容", "责任单位", "完成时限"), ("1", "聚焦西夏区委、区政府重点工作任务", "政府各部门", "11月底"), ("2", "做好就业创业信息公开", "人社局", "11月底")]):
            for c, text in enumerate(row):
                t.cell(r, c).text = text

    err = refusal(_docx_from(build), ledger, roster)
    assert err.code == "not_ledger"


def test_ledger_without_progress_column_is_not_a_ledger(make_report, ledger, roster):
    err = refusal(make_report({1: "x"}, drop_columns=("进展落实情况",)).read_bytes(), ledger, roster)
    assert err.code == "not_ledger"


def test_empty_docx_is_not_a_ledger(ledger, roster):
    err = refusal(_docx_from(lambda doc: None), ledger, roster)
    assert err.code == "not_ledger"


# =========================================================================== hostile files

# Runs in a fresh interpreter so that peak memory (Python heap via tracemalloc, and the process
# high-water RSS, which also sees libxml2/zlib) belongs to this one parse alone.
_PROBE = r"""
import gc, json, resource, sys, time, tracemalloc
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from mailbot.config import load_config
from mailbot.errors import ReportError
from mailbot.ledger import load_ledger
from mailbot.reports import parse_document
ledger, roster = load_ledger(), load_config(sys.argv[2]).roster
data = Path(sys.argv[1]).read_bytes()
gc.collect()
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
t0 = time.perf_counter()
try:
    out = {"result": "parsed", "report": parse_document(data, ledger, roster).as_dict()}
except ReportError as err:
    out = {"result": "refused", "code": err.code, "message": str(err)}
except BaseException as err:
    out = {"result": "crashed", "error": repr(err)[:500]}
out["seconds"] = time.perf_counter() - t0
out["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
tracemalloc.stop()
out["rss_increase_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
print(json.dumps(out, ensure_ascii=False))
"""

MAX_SECONDS = 5.0
MAX_MEMORY_MB = 50  # every hostile file here is < 1.5 MB on disk; MAX_XML_BYTES per part is 48 MB


def probe(tmp_path: Path, data: bytes) -> dict:
    f = tmp_path / "hostile.bin"
    f.write_bytes(data)
    env = {k: v for k, v in os.environ.items() if k != "MAILBOT_CONFIG"}
    proc = subprocess.run(
        [str(PYTHON), "-c", _PROBE, str(f), str(CONFIG)], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["result"] != "crashed", out
    assert out["seconds"] < MAX_SECONDS, out
    assert out["traced_peak_mb"] < MAX_MEMORY_MB, out
    assert out["rss_increase_mb"] < MAX_MEMORY_MB, out
    return out


def _zeros_docx_bomb(plain: bytes, megabytes: int) -> bytes:
    """Honest headers: word/document.xml really is ``megabytes`` MiB of zeros (streamed, ~1 MiB in memory)."""
    src = zipfile.ZipFile(io.BytesIO(plain))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for info in src.infolist():
            if info.filename != "word/document.xml":
                zf.writestr(info.filename, src.read(info))
        chunk = b"\0" * (1 << 20)
        with zf.open("word/document.xml", "w", force_zip64=True) as fh:
            for _ in range(megabytes):
                fh.write(chunk)
    return buf.getvalue()


def _lying_docx_bomb(plain: bytes, megabytes: int, declared: int = 1000) -> bytes:
    """word/document.xml declared as ``declared`` bytes (and ~declared/10 compressed), really ``megabytes`` MiB."""
    src = zipfile.ZipFile(io.BytesIO(plain))
    members = []
    for info in src.infolist():
        if info.filename == "word/document.xml":
            co, crc, parts, chunk = zlib.compressobj(9, zlib.DEFLATED, -15), 0, [], b"\0" * (1 << 20)
            for _ in range(megabytes):
                parts.append(co.compress(chunk))
                crc = zlib.crc32(chunk, crc)
            parts.append(co.flush())
            body = b"".join(parts)
            members.append((info.filename, body, crc, len(body), declared))
        else:
            raw = src.read(info)
            body = deflate(raw)
            members.append((info.filename, body, zlib.crc32(raw), len(body), len(raw)))
    return raw_zip(members)


BILLION_LAUGHS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE w:document [\n<!ENTITY lol "lol">\n'
    + b"".join(b'<!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b']>\n<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
    + b"<w:tbl><w:tr><w:tc><w:p><w:r><w:t>\xe5\xba\x8f\xe5\x8f\xb7</w:t></w:r></w:p></w:tc>"  # 序号
    + b"<w:tc><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:tc></w:tr></w:tbl><w:p/></w:body></w:document>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
    b"<w:p><w:r><w:t>&x;</w:t></w:r></w:p></w:body></w:document>"
)


def _null_relationships(b: bytes) -> bytes:
    return b.replace(
        b"</Relationships>",
        b'<Relationship Id="rId901" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="NULL"/>'
        b'<Relationship Id="rId902" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink" Target="#_top"/>'
        b'<Relationship Id="rId903" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="../NULL"/>'
        b"</Relationships>",
    )


@pytest.fixture(scope="module")
def hostile(plain_docx) -> dict:
    return {
        "zip_bomb_200MB_zeros": lambda: _zeros_docx_bomb(plain_docx, 200),
        "zip_bomb_ratio_2MB_member": lambda: rezip(plain_docx, extra=[("word/media/image1.png", b"\0" * (2 << 20))]),
        "zip_5000_members": lambda: rezip(plain_docx, extra=[(f"word/media/img{i}.xml", b"<a/>") for i in range(5000)]),
        "entity_billion_laughs": lambda: rezip(plain_docx, replace={"word/document.xml": lambda _b: BILLION_LAUGHS}),
        "entity_xxe": lambda: rezip(plain_docx, replace={"word/document.xml": lambda _b: XXE}),
        "truncated_docx": lambda: plain_docx[: len(plain_docx) // 2],
        "document_xml_missing": lambda: rezip(plain_docx, skip={"word/document.xml"}),
        "document_xml_cut_in_half": lambda: rezip(plain_docx, replace={"word/document.xml": lambda b: b[: len(b) // 2]}),
        "lying_sizes_200MB": lambda: _lying_docx_bomb(plain_docx, 200),
        "entity_billion_laughs_utf16": lambda: rezip(
            plain_docx,
            replace={"word/document.xml": lambda _b: BILLION_LAUGHS.replace(b'"UTF-8"', b'"UTF-16"').decode().encode("utf-16")},
        ),
        "null_relationship_target": lambda: rezip(plain_docx, replace={"word/_rels/document.xml.rels": _null_relationships}),
    }


@pytest.mark.parametrize(
    "case,code",
    [
        ("zip_bomb_200MB_zeros", "zip_bomb"),
        ("zip_bomb_ratio_2MB_member", "zip_bomb"),
        ("zip_5000_members", "zip_bomb"),
        ("entity_billion_laughs", "entity"),
        ("entity_xxe", "entity"),
        ("document_xml_missing", "corrupt"),
        ("document_xml_cut_in_half", "corrupt"),
        pytest.param(
            "truncated_docx",
            "corrupt",
        ),
        pytest.param(
            "entity_billion_laughs_utf16",
            "entity",
        ),
        pytest.param(
            "lying_sizes_200MB",
            "zip_bomb|corrupt",
        ),
    ],
)
def test_hostile_file_refused_in_bounded_time_and_memory(case, code, hostile, tmp_path):
    out = probe(tmp_path, hostile[case]())
    assert out["result"] == "refused", out
    assert out["code"] in code.split("|"), out
    assert CJK.search(out["message"]), out


def test_null_relationship_targets_still_parse(hostile, tmp_path):
    out = probe(tmp_path, hostile["null_relationship_target"]())
    assert out["result"] == "parsed", out
    assert out["report"] == contract(full_progress())


def test_plain_report_probe_baseline(plain_docx, tmp_path):
    """The probe itself: a normal report parses well inside the same bounds."""
    out = probe(tmp_path, plain_docx)
    assert out["result"] == "parsed"
    assert out["report"] == contract(full_progress())


# =========================================================================== LibreOffice


@pytest.fixture(scope="module")
def lo_files(tmp_path_factory, plain_docx) -> dict[str, Path]:
    """The plain report through LibreOffice: re-saved .docx, .odt and (from that .odt) Word 97 .doc.

    docx→odt→doc is what docbuilder.to_legacy_doc does; the .odt is reused to save a conversion.
    """
    base = tmp_path_factory.mktemp("lo")
    src = base / "src" / "report.docx"
    src.parent.mkdir()
    src.write_bytes(plain_docx)
    odt = libreoffice_convert(src, "odt", base / "odt")
    return {
        "resaved": resave_with_libreoffice(src, base / "resaved"),
        "odt": odt,
        "doc": libreoffice_convert(odt, "doc:MS Word 97", base / "doc"),
    }


@needs_soffice
def test_libreoffice_resaved_docx_parses_the_same(lo_files, ledger, roster):
    data = lo_files["resaved"].read_bytes()
    assert sniff(data) == "docx"
    report = parse(data, ledger, roster)
    assert report.as_dict() == contract(full_progress())
    assert report.converted_from is None


@needs_soffice
@pytest.mark.parametrize("kind,label", [("doc", "Word 97-2003 (.doc)"), ("odt", "OpenDocument (.odt)")])
def test_converted_formats_parse_the_same(kind, label, lo_files, ledger, roster):
    data = lo_files[kind].read_bytes()
    assert sniff(data) == kind
    report = parse(data, ledger, roster)
    d = report.as_dict()
    assert report.converted_from == kind
    assert d["entries"] == entries(full_progress())
    assert (d["unit"], d["contact"], d["phone"]) == (UNIT, CONTACT, PHONE)
    assert len(d["warnings"]) == 1
    assert label in d["warnings"][0] and "转换" in d["warnings"][0]


RICH_PROGRESS = {1: "甲", 3: "合并填写", 30: "末项"}
RICH_OPTIONS = dict(
    header_cell_breaks=True,
    tracked={1: ("旧", "新")},
    sdt={1: "控"},
    hyperlink={1: ("链", "http://example.com")},
    fields={1: ("F1", "F2")},
    smart_tag={1: "张三"},
    line_breaks={2: ["l1", "l2"]},
    numbered_progress={5: ["a", "b"]},
    image_in=[6],
    merge_progress=(3, 4),
)
RICH_EXPECTED = {1: "甲新控链F1F2张三", 2: "l1\nl2", 3: "合并填写", 4: "合并填写", 5: "1.a\n2.b", 30: "末项"}


@pytest.fixture(scope="module")
def rich_src(tmp_path_factory, ledger_dict) -> Path:
    from docbuilder import build_report

    base = tmp_path_factory.mktemp("rich")
    return build_report(base / "rich.docx", ledger_dict["sections"], ledger_dict["tasks"], progress=RICH_PROGRESS, **RICH_OPTIONS)


@pytest.fixture(scope="module")
def rich_resaved(rich_src) -> dict[str, bytes]:
    return {"resaved": resave_with_libreoffice(rich_src, rich_src.parent / "out").read_bytes()}


def test_rich_original_parses(rich_src, ledger, roster):
    d = parse(rich_src, ledger, roster).as_dict()
    assert d["entries"] == entries(RICH_EXPECTED)
    assert len(d["warnings"]) == 1 and "任务3、4" in d["warnings"][0]


@needs_soffice
def test_rich_resaved_keeps_inline_text_and_merges(rich_resaved, ledger, roster):
    """After a LibreOffice round trip (fldSimple → complex field, smartTag dropped, numIds renumbered)."""
    d = parse(rich_resaved["resaved"], ledger, roster).as_dict()
    got = {e["task"]: e["progress"] for e in d["entries"]}
    assert sorted(got) == ALL_TASKS
    for n in ALL_TASKS:
        if n != 5:  # the numbered list: see the next test
            assert got[n] == RICH_EXPECTED.get(n, ""), n
    assert len(d["warnings"]) == 1 and "任务3、4" in d["warnings"][0]


@needs_soffice
def test_rich_resaved_numbered_list(rich_resaved, ledger, roster):
    d = parse(rich_resaved["resaved"], ledger, roster).as_dict()
    assert d["entries"][4] == {"task": 5, "progress": "1.a\n2.b"}


# =========================================================================== the CLI


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MAILBOT_CONFIG"}
    return subprocess.run([str(MAILBOT), *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def cli_dir(tmp_path) -> Path:
    d = tmp_path / "cli"
    d.mkdir()
    assert not (d / "config.toml").exists()
    return d


@pytest.fixture
def alias_report(make_report) -> Path:
    return make_report({1: "已完成\n第二段", 2: "人社局已发布就业信息35条"}, unit="人社局", contact="赵六", phone="0951-7654321")


def _alias_contract(unit: str) -> dict:
    return contract({1: "已完成\n第二段", 2: "人社局已发布就业信息35条"}, unit=unit, contact="赵六", phone="0951-7654321")


def test_cli_parse_json_without_config(alias_report, cli_dir):
    proc = run_cli(["parse", str(alias_report), "--json"], cli_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = json.loads(proc.stdout)
    assert list(out) == ["unit", "contact", "phone", "entries", "warnings"]
    assert out == _alias_contract("人社局")  # no roster: the unit as written


def test_cli_parse_json_with_config(alias_report, cli_dir):
    proc = run_cli(["--config", str(CONFIG), "parse", str(alias_report), "--json"], cli_dir)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == _alias_contract("人力资源和社会保障局")
    assert proc.stdout.count("\n{") == 0 and proc.stdout.startswith("{") and proc.stdout.rstrip().endswith("}")


@pytest.mark.parametrize("name", ["民政局台账.pdf", "report"], ids=["pdf_extension", "no_extension"])
def test_cli_type_from_bytes_not_name(name, plain_docx, cli_dir):
    f = cli_dir / name
    f.write_bytes(plain_docx)
    proc = run_cli(["parse", str(f), "--json"], cli_dir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == contract(full_progress())


@pytest.mark.parametrize(
    "name,data",
    [("report.docx", b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"), ("empty.docx", b"")],
    ids=["pdf_named_docx", "empty"],
)
def test_cli_refusal_is_one_line_on_stderr(name, data, cli_dir):
    f = cli_dir / name
    f.write_bytes(data)
    proc = run_cli(["parse", str(f), "--json"], cli_dir)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert CJK.search(lines[0])
    if data:
        assert "PDF" in lines[0]


def test_cli_missing_file(cli_dir):
    proc = run_cli(["parse", str(cli_dir / "nope.docx"), "--json"], cli_dir)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"hyperlink": {19: ("链", "http://example.com")}, "fields": {19: ("F1", "F2")}, "smart_tag": {19: "王五"}},
        {"line_breaks": {19: ["l1", "l2"]}, "numbered_progress": {19: ["a", "b"]}, "image_in": [19]},
        {"merge_progress": (3, 4), "split_tables": True, "header_cell_breaks": True},
    ],
)
def test_fast_text_selection_matches_the_full_one(variant, make_report, ledger, roster):
    """Documents without deletions, moves, Fallbacks, content controls or hidden runs take the
    plain XPath; it must select exactly what the full visibility XPath selects."""
    from mailbot.reports import _VISIBLE, _VISIBLE_PLAIN, visible_text_selector

    data = make_report({19: "开放日\n已举办2次", 3: "甲"}, **variant).read_bytes()
    root = etree.fromstring(zipfile.ZipFile(io.BytesIO(data)).read("word/document.xml"))
    assert visible_text_selector(root) is _VISIBLE_PLAIN
    assert _VISIBLE_PLAIN(root) == _VISIBLE(root)
    # Tab stops in paragraph properties are not text; a tab in a run is.
    p = etree.fromstring(
        f'<w:p xmlns:w="{W_NS}"><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>'
        "<w:r><w:t>a</w:t><w:tab/><w:t>b</w:t></w:r></w:p>"
    )
    assert [n.tag.rpartition("}")[2] for n in _VISIBLE_PLAIN(p)] == [n.tag.rpartition("}")[2] for n in _VISIBLE(p)] == ["t", "tab", "t"]


def test_hiding_constructs_take_the_full_text_selection(make_report, ledger, roster):
    from mailbot.reports import _VISIBLE, visible_text_selector

    data = make_report({19: "x"}, tracked={19: ("删", "增")}).read_bytes()
    root = etree.fromstring(zipfile.ZipFile(io.BytesIO(data)).read("word/document.xml"))
    assert visible_text_selector(root) is _VISIBLE
    assert "删" not in _one_task(parse(data, ledger, roster), 19)


# =========================================================================== Strict Open XML

_TRANSITIONAL_NS = re.compile(rb"http://schemas\.openxmlformats\.org/(wordprocessingml|officeDocument|drawingml|schemaLibrary)/2006/([A-Za-z]+)")


def to_strict(docx: bytes) -> bytes:
    """The same document as Word saves it with "Strict Open XML Document": every part's
    wordprocessingml / officeDocument / drawingml namespace and relationship type in the
    purl.oclc.org/ooxml form (document.xml, numbering, styles, settings, the rels and
    [Content_Types].xml; OPC and markup-compatibility namespaces are the same in both)."""

    def strict(body: bytes) -> bytes:
        return _TRANSITIONAL_NS.sub(rb"http://purl.oclc.org/ooxml/\1/\2", body)

    names = zipfile.ZipFile(io.BytesIO(docx)).namelist()
    parts = {n: strict for n in names if n.endswith((".xml", ".rels"))}
    out = rezip(docx, replace=parts)
    document = zipfile.ZipFile(io.BytesIO(out)).read("word/document.xml")
    assert b"http://purl.oclc.org/ooxml/wordprocessingml/main" in document and W_NS.encode() not in document
    rels = zipfile.ZipFile(io.BytesIO(out)).read("_rels/.rels")
    assert b"http://purl.oclc.org/ooxml/officeDocument/relationships/officeDocument" in rels
    return out


STRICT_VARIANTS = {
    "plain": ({}, {}),
    "rich": (RICH_PROGRESS, RICH_OPTIONS),  # tracked changes, content control, hyperlink, numbering, merges
    "split_tables_auto_numbers": ({n: f"进展{n}" for n in ALL_TASKS}, dict(split_tables=True, number_style="auto")),
    "table_header": ({7: "甲\n乙"}, dict(header_style="table", cover_letter=True)),
}


@pytest.mark.parametrize("variant", list(STRICT_VARIANTS), ids=list(STRICT_VARIANTS))
def test_strict_open_xml_parses_like_its_transitional_twin(variant, make_report, ledger, roster, plain_docx):
    progress, options = STRICT_VARIANTS[variant]
    transitional = plain_docx if variant == "plain" else make_report(progress, **options).read_bytes()
    expected = parse(transitional, ledger, roster).as_dict()
    assert [e for e in expected["entries"] if e["progress"]], "the twin must have some progress"
    assert parse(to_strict(transitional), ledger, roster).as_dict() == expected


def test_strict_hidden_text_stays_hidden(make_report, ledger, roster):
    data = to_strict(make_report({19: "x"}, tracked={19: ("删", "增")}, sdt={20: "控件"}).read_bytes())
    got = {e.task: e.progress for e in parse(data, ledger, roster).entries}
    assert got[19] == "x增" and got[20] == "控件"


def test_strict_form_imports_as_a_ledger(ledger):
    from mailbot.forms import import_ledger, render_form

    assert import_ledger(to_strict(render_form(ledger))).to_dict() == ledger.to_dict()
