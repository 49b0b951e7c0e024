"""Forms, the consolidated ledger, the quarterly notice and ledger import, read back cell by cell."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from docx import Document

import mailbuilder as mb
from mailbot.exports import consolidated_docx, consolidated_xlsx
from mailbot.forms import import_ledger, render_form
from mailbot.intake import ingest
from mailbot.quarterly import quarterly_context, quarterly_docx
from mailbot.reports import parse_document

TZ8 = dt.timezone(dt.timedelta(hours=8))


def test_every_units_form_parses_back_to_that_unit_and_its_tasks(cfg):
    for unit in cfg.roster:
        data = render_form(cfg, unit.name)
        report = parse_document(data, cfg.ledger, cfg.roster)
        assert report.unit == unit.name and report.unit_matched, unit.name
        assert [e.task for e in report.entries] == cfg.roster.tasks_of(unit, cfg.ledger), unit.name
        assert all(e.progress == "" for e in report.entries) and report.warnings == []


def test_whole_form_layout(cfg):
    doc = Document(io.BytesIO(render_form(cfg)))
    section = doc.sections[0]
    assert section.page_width > section.page_height  # landscape
    [table] = doc.tables
    header = [c.text for c in table.rows[0].cells]
    assert header == ["序号", "重点工作", "主要内容", "量化指标", "责任单位", "完成时限", "进展落实情况"]
    # section rows span the table; 重点工作 is merged vertically over its tasks
    tcs = {id(c._tc) for c in table.rows[1].cells}
    assert len(tcs) == 1 and table.rows[1].cells[0].text == "一、围绕深化重点领域做好政务公开"
    numbers = [r.cells[0].text for r in table.rows[1:] if len({id(c._tc) for c in r.cells}) > 1]
    assert numbers == [str(n) for n in range(1, 31)]
    vmerge = table._tbl.xpath(".//w:vMerge")
    assert len(vmerge) == 30  # one per task row in the 重点工作 column (restart or continue)
    row_of = {r.cells[0].text: r for r in table.rows[1:]}
    assert row_of["3"].cells[1]._tc is row_of["2"].cells[1]._tc  # merged: one cell spans tasks 2–4
    assert row_of["2"].cells[1].text == "聚焦保障改善民生深化公开" and row_of["4"].cells[1].text == "聚焦保障改善民生深化公开"


def test_filled_form_escapes_and_keeps_lines(cfg):
    data = render_form(cfg, "民政局", progress={3: "第一段\n第二段", 4: "<b>&amp;{{ x }}"}, contact="王五", phone="0951-5550000")
    report = parse_document(data, cfg.ledger, cfg.roster)
    got = {e.task: e.progress for e in report.entries}
    assert got[3] == "第一段\n第二段" and got[4] == "<b>&amp;{{ x }}"
    assert (report.contact, report.phone) == ("王五", "0951-5550000")


def _form_text(data: bytes) -> tuple[str, str]:
    """(the intro paragraph, all the document's text) of a rendered form."""
    doc = Document(io.BytesIO(data))
    paragraphs = [p.text for p in doc.paragraphs]
    cells = [c.text for t in doc.tables for r in t.rows for c in r.cells]
    intro = next(p for p in paragraphs if p.startswith("《"))
    return intro, "\n".join(paragraphs + cells)


def test_form_intro_follows_the_configured_rounds_and_mailbox(cfg_path):
    from mailbot.config import load_config

    text = cfg_path.read_text(encoding="utf-8")
    assert text.count("deadline = 2023-08-15") == 1 and text.count('from = "xxqzwgk001@163.com"') == 1
    text = text.replace("deadline = 2023-08-15", "deadline = 2023-08-25").replace('from = "xxqzwgk001@163.com"', 'from = "zwgk@xixia.example"')
    cfg_path.write_text(text, encoding="utf-8")
    cfg = load_config(cfg_path)
    data = render_form(cfg, "民政局")
    intro, everything = _form_text(data)
    assert "分别于2023年8月25日、12月5日前报送政府办公室" in intro
    assert "政务公开邮箱:zwgk@xixia.example，" in intro
    assert "8月15日" not in intro and "xxqzwgk001@163.com" not in everything
    # (task 30's 主要内容 quotes the 工作要点 itself, 8月15日 included: ledger text, left as issued)
    assert intro.startswith("《银川市西夏区2023年政务公开工作要点》") and intro.endswith("年度扣分。")
    report = parse_document(data, cfg.ledger, cfg.roster)  # still the unit's form
    assert report.unit == "民政局" and report.warnings == []
    assert "8月25日" in _form_text(render_form(cfg))[0]  # the whole form too


def test_form_intro_takes_the_address_part_of_a_display_name(cfg):
    import dataclasses

    from mailbot.forms import configured_intro, configured_mailbox

    cfg.smtp = dataclasses.replace(cfg.smtp, from_addr="政务公开邮箱 <zwgk@xixia.example>")
    assert configured_mailbox(cfg) == "zwgk@xixia.example"
    intro = configured_intro(cfg)
    assert "政务公开邮箱:zwgk@xixia.example，" in intro and "<" not in intro and "xxqzwgk001" not in intro
    cfg.smtp = dataclasses.replace(cfg.smtp, from_addr="")
    cfg.imap = dataclasses.replace(cfg.imap, user="shoujian@xixia.example")
    assert configured_mailbox(cfg) == "shoujian@xixia.example"  # no [smtp] from: the mailbox read


def test_form_intro_dates_one_round_and_across_years(cfg):
    import dataclasses

    from mailbot.forms import chinese_dates, configured_intro

    assert chinese_dates([dt.date(2023, 8, 25), dt.date(2023, 12, 5)]) == "2023年8月25日、12月5日"
    assert chinese_dates([dt.date(2023, 12, 5), dt.date(2024, 1, 10)]) == "2023年12月5日、2024年1月10日"
    first, second = cfg.rounds
    cfg.rounds = (dataclasses.replace(first, deadline=dt.date(2023, 8, 31)),)
    assert "并将落实进展情况于2023年8月31日前报送" in configured_intro(cfg)
    cfg.rounds = (first, dataclasses.replace(second, deadline=dt.date(2024, 1, 10)))
    assert "分别于2023年8月15日、2024年1月10日前报送" in configured_intro(cfg)


def test_form_intro_unchanged_when_the_config_says_what_the_ledger_says(cfg):
    from mailbot.forms import configured_intro

    assert [r.deadline for r in cfg.rounds] == [dt.date(2023, 8, 15), dt.date(2023, 12, 5)]
    assert configured_intro(cfg) == cfg.ledger.intro


def test_ledger_import_round_trip(cfg):
    assert import_ledger(render_form(cfg)).to_dict() == cfg.ledger.to_dict()


def test_ledger_import_refuses_a_report_without_task_rows(tmp_path):
    from mailbot.errors import ReportError

    doc = Document()
    doc.add_paragraph("标题")
    doc.save(tmp_path / "x.docx")
    with pytest.raises(ReportError):
        import_ledger((tmp_path / "x.docx").read_bytes())


def _season(cfg, db, make_report):
    ingest(cfg, db, mb.simple(attachments=[("a.docx", make_report({1: "民政局任务1", 3: "=1+1"}).read_bytes())], date=mb.when("2023-08-10")))
    ingest(cfg, db, mb.simple(sender="sfj@xixia.example", subject="司法局", attachments=[("b.docx", make_report({5: "司法局任务5"}, unit="司法局").read_bytes())], date=mb.when("2023-08-18")))


def test_consolidated_xlsx_cell_by_cell(cfg, db, make_report):
    from openpyxl import load_workbook

    _season(cfg, db, make_report)
    wb = load_workbook(io.BytesIO(consolidated_xlsx(cfg, db, dt.datetime(2023, 8, 20, tzinfo=TZ8))))
    assert wb.sheetnames == ["2023年年中", "2023年年底", "报送情况"]
    ws = wb["2023年年中"]
    assert [c.value for c in ws[1]][:4] == ["单位", "类别", "任务1", "任务2"]
    rows = {r[0].value: r for r in ws.iter_rows(min_row=2)}
    assert rows["民政局"][2].value == "民政局任务1"
    assert rows["民政局"][3].value == "—"  # task 2 is 人社局's
    assert rows["民政局"][4].value == "=1+1" and rows["民政局"][4].data_type == "s"  # text, never a formula
    assert rows["民政局"][5].value == "未报送"
    assert rows["司法局"][6].value == "司法局任务5"
    assert len(rows) == len(cfg.roster)
    status = {(r[0].value, r[2].value): r for r in wb["报送情况"].iter_rows(min_row=2)}
    assert status[("民政局", "年中")][4].value == "按时" and status[("司法局", "年中")][4].value == "逾期"
    assert status[("教育局", "年中")][4].value == "未报送"


def test_consolidated_docx_lists_every_responsible_unit(cfg, db, make_report):
    _season(cfg, db, make_report)
    doc = Document(io.BytesIO(consolidated_docx(cfg, db, cfg.rounds[0], dt.datetime(2023, 8, 20, tzinfo=TZ8))))
    [table] = doc.tables
    row_of = {r.cells[0].text: r for r in table.rows[1:] if len({id(c._tc) for c in r.cells}) > 1}
    task5 = row_of["5"].cells[6].text
    assert task5 == "司法局（8月18日）：司法局任务5"
    task1 = row_of["1"].cells[6].text.split("\n")
    assert task1[0] == "发展和改革局：未报送"
    assert len(task1) == len(cfg.roster) and "民政局（8月10日）：民政局任务1" in task1
    assert "按时报送 1 个" in doc.paragraphs[2].text and "逾期报送 1 个" in doc.paragraphs[2].text


def test_quarterly_notice_lists_late_missing_and_scores(cfg, db, make_report):
    _season(cfg, db, make_report)
    now = dt.datetime(2023, 9, 30, 18, tzinfo=TZ8)
    ctx = quarterly_context(cfg, db, "2023Q3", now)
    assert [r["unit"] for r in ctx["late"]] == ["司法局"] and ctx["late"][0]["days"] == 3
    assert len(ctx["missing"]) == len(cfg.roster) - 2
    scores = {r["unit"]: r["points"] for r in ctx["scores"]}
    assert scores["司法局"] == "1" and scores["教育局"] == "2" and "民政局" not in scores
    doc = Document(io.BytesIO(quarterly_docx(cfg, db, "2023Q3", now)))
    sec = doc.sections[0]
    assert round(sec.page_width.mm) == 210 and round(sec.top_margin.mm) == 37 and round(sec.left_margin.mm) == 28
    title = doc.paragraphs[0]
    assert title.text.startswith("关于2023年第三季度") and title.runs[0].font.size.pt == 22
    assert title.runs[0]._element.rPr.rFonts.get("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}eastAsia") == "方正小标宋简体"
    body = next(p for p in doc.paragraphs if p.text.startswith("按照"))
    assert body.runs[0].font.size.pt == 16
    late_table, missing_table, score_table = doc.tables
    assert [c.text for c in late_table.rows[1].cells] == ["1", "司法局", "年中", "8月15日", "8月18日", "3"]
    assert len(missing_table.rows) == 1 + len(cfg.roster) - 2
    with pytest.raises(Exception, match="季度"):
        quarterly_context(cfg, db, "2023Q1", now)
