"""A task split into several rows (细化措施): every row's progress is kept, in order.

Units add rows under a task: 序号 (and the other identifying cells) merged down over
the extra rows, the row copied with its 序号, or 序号 left blank. The task's entry is
the rows' progress texts joined by "\\n"; the same task at two places of the table that
are not adjacent is a conflict (first wins, with a warning).
"""

from __future__ import annotations

import datetime as dt
import io

import pytest

import mailbuilder as mb
from conftest import needs_soffice
from docbuilder import build_report, resave_with_libreoffice

from mailbot.reports import parse_document

ALL_TASKS = list(range(1, 31))
CONFLICT = "任务3在表格中出现了不止一次，已采用第一处填写的内容"
TZ8 = dt.timezone(dt.timedelta(hours=8))


def base_progress() -> dict[int, str]:
    return {n: f"第{n}项已落实" for n in ALL_TASKS}


def build(tmp_path, ledger_dict, name="split.docx", **kw):
    kw.setdefault("progress", base_progress())
    return build_report(tmp_path / name, ledger_dict["sections"], ledger_dict["tasks"], **kw)


def parse(path, ledger, roster):
    return parse_document(path.read_bytes(), ledger, roster)


def progress_of(report) -> dict[int, str]:
    d = report.as_dict()
    assert [e["task"] for e in d["entries"]] == ALL_TASKS  # one entry per task
    return {e["task"]: e["progress"] for e in d["entries"]}


SPLITS = {
    3: ["一是细化措施甲", "二是细化措施乙\n（续）"],
    7: ["", "七项补充"],  # a blank continuation row adds nothing
    13: ["十三项补充"],  # the last task of its section (next row is a section row)
    30: ["", ""],  # only blank rows added: the entry is unchanged
}


def expected_split() -> dict[int, str]:
    expected = base_progress()
    expected[3] = "第3项已落实\n一是细化措施甲\n二是细化措施乙\n（续）"
    expected[7] = "第7项已落实\n七项补充"
    expected[13] = "第13项已落实\n十三项补充"
    return expected


@pytest.mark.parametrize("style", ["vmerge", "vmerge_number", "copy", "blank"])
def test_split_task_rows_keep_every_rows_progress(style, tmp_path, ledger_dict, ledger, roster):
    report = parse(build(tmp_path, ledger_dict, extra_rows=SPLITS, extra_rows_style=style), ledger, roster)
    assert progress_of(report) == expected_split()
    assert report.warnings == []
    assert (report.unit, report.contact, report.phone) == ("民政局", "张三", "0951-1234567")


@pytest.mark.parametrize("style", ["vmerge", "copy", "blank"])
def test_split_rows_when_the_first_row_is_empty(style, tmp_path, ledger_dict, ledger, roster):
    progress = base_progress()
    progress[5] = ""
    report = parse(build(tmp_path, ledger_dict, progress=progress, extra_rows={5: ["只填在第二行"]}, extra_rows_style=style), ledger, roster)
    assert progress_of(report)[5] == "只填在第二行"
    assert report.warnings == []


def test_split_rows_with_blank_numbers_matched_by_content(tmp_path, ledger_dict, ledger, roster):
    # 序号 blank everywhere: task rows are recognised by 主要内容, the added rows continue them.
    report = parse(build(tmp_path, ledger_dict, number_style="blank", extra_rows=SPLITS, extra_rows_style="blank"), ledger, roster)
    assert progress_of(report) == expected_split()
    assert report.warnings == []


def test_split_rows_in_split_tables(tmp_path, ledger_dict, ledger, roster):
    report = parse(build(tmp_path, ledger_dict, split_tables=True, extra_rows=SPLITS, extra_rows_style="vmerge"), ledger, roster)
    assert progress_of(report) == expected_split()
    assert report.warnings == []


def test_same_task_at_two_places_is_a_conflict(tmp_path, ledger_dict, ledger, roster):
    report = parse(build(tmp_path, ledger_dict, stray_rows={7: (3, "另一处填写的任务3")}), ledger, roster)
    got = progress_of(report)
    assert got == base_progress()  # first wins; task 7 keeps its own text
    assert report.warnings == [CONFLICT]


def test_conflict_after_split_rows_keeps_the_split_rows(tmp_path, ledger_dict, ledger, roster):
    report = parse(
        build(tmp_path, ledger_dict, extra_rows={3: ["细化一"]}, extra_rows_style="copy", stray_rows={9: (3, "另一处")}),
        ledger,
        roster,
    )
    got = progress_of(report)
    assert got[3] == "第3项已落实\n细化一"
    assert got[9] == "第9项已落实" and got[4] == "第4项已落实"
    assert report.warnings == [CONFLICT]


def test_same_text_at_two_places_is_no_conflict(tmp_path, ledger_dict, ledger, roster):
    report = parse(build(tmp_path, ledger_dict, stray_rows={7: (3, "第3项已落实")}), ledger, roster)
    assert progress_of(report) == base_progress()
    assert report.warnings == []


def test_blank_first_place_takes_the_second(tmp_path, ledger_dict, ledger, roster):
    progress = base_progress()
    progress[3] = ""
    report = parse(build(tmp_path, ledger_dict, progress=progress, stray_rows={7: (3, "后面才填")}), ledger, roster)
    assert progress_of(report)[3] == "后面才填"
    assert report.warnings == []


def test_merged_progress_over_other_tasks_still_warns(tmp_path, ledger_dict, ledger, roster):
    progress = base_progress()
    report = parse(build(tmp_path, ledger_dict, progress=progress, merge_progress=(3, 4), extra_rows={2: ["二补充"]}), ledger, roster)
    got = progress_of(report)
    assert got[2] == "第2项已落实\n二补充"
    assert got[3] == got[4] == "第3项已落实"
    assert len(report.warnings) == 1 and "任务3、4" in report.warnings[0]


def test_split_rows_reach_the_store_and_the_export(cfg, db, tmp_path, ledger_dict):
    from openpyxl import load_workbook

    from mailbot.exports import consolidated_xlsx
    from mailbot.intake import ingest

    path = build(tmp_path, ledger_dict, progress={1: "任务1第一行", 3: "任务3第一行"}, extra_rows={1: ["任务1第二行"], 3: ["", "任务3第三行"]})
    ingest(cfg, db, mb.simple(attachments=[("民政局台账.docx", path.read_bytes())], date=mb.when("2023-08-10")))
    wb = load_workbook(io.BytesIO(consolidated_xlsx(cfg, db, dt.datetime(2023, 8, 20, tzinfo=TZ8))))
    rows = {r[0].value: r for r in wb["2023年年中"].iter_rows(min_row=2)}
    assert rows["民政局"][2].value == "任务1第一行\n任务1第二行"
    assert rows["民政局"][4].value == "任务3第一行\n任务3第三行"


@needs_soffice
@pytest.mark.parametrize("style", ["vmerge", "copy"])
def test_libreoffice_resaved_split_rows(style, tmp_path, ledger_dict, ledger, roster):
    src = build(tmp_path, ledger_dict, extra_rows=SPLITS, extra_rows_style=style, stray_rows={20: (3, "另一处")})
    resaved = resave_with_libreoffice(src, tmp_path / "lo")
    report = parse(resaved, ledger, roster)
    assert progress_of(report) == expected_split()
    assert report.warnings == [CONFLICT]
