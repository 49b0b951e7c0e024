"""Supervision rules: due dates from 完成时限, completion states from 进展落实情况 (issue 13)."""

from __future__ import annotations

import time
from datetime import date

import pytest

from mailbot.ledger import load_ledger
from mailbot.supervision_rules import (
    DATED,
    DONE,
    IN_PROGRESS,
    NOT_REPORTED,
    NOT_STARTED,
    ONGOING,
    ONGOING_DEADLINE,
    STATE_LABELS,
    STATES,
    UNREADABLE,
    classify,
    classify_task,
    due_date,
    is_overdue,
    task_due_date,
)

# ---------------------------------------------------------------------------------------------------------
# Due dates

D = date
DUE_CASES = [
    # (as written, year, expected: a date, "ongoing" or "unreadable")
    ("8月底前", 2023, D(2023, 8, 31)),
    ("11月底", 2023, D(2023, 11, 30)),
    ("12月底", 2023, D(2023, 12, 31)),
    ("11 月底", 2023, D(2023, 11, 30)),
    ("8 月底前", 2023, D(2023, 8, 31)),
    ("１１月底", 2023, D(2023, 11, 30)),
    ("十一月底", 2023, D(2023, 11, 30)),
    ("十二月底前", 2023, D(2023, 12, 31)),
    ("2月底", 2024, D(2024, 2, 29)),
    ("2023年10月底前", 2024, D(2023, 10, 31)),
    ("２０２３年１０月底前", 2024, D(2023, 10, 31)),
    ("二〇二四年三月", 2023, D(2024, 3, 31)),
    ("次年3月底", 2023, D(2024, 3, 31)),
    ("6月30日前", 2023, D(2023, 6, 30)),
    ("10月15日", 2023, D(2023, 10, 15)),
    ("10月15号前", 2023, D(2023, 10, 15)),
    ("9月", 2023, D(2023, 9, 30)),
    ("9月份", 2023, D(2023, 9, 30)),
    ("9月中旬", 2023, D(2023, 9, 20)),
    ("9月上旬", 2023, D(2023, 9, 10)),
    ("9月下旬", 2023, D(2023, 9, 30)),
    ("年底前", 2023, D(2023, 12, 31)),
    ("年内", 2023, D(2023, 12, 31)),
    ("2023年底", 2023, D(2023, 12, 31)),
    ("今年年底前", 2023, D(2023, 12, 31)),
    ("上半年", 2023, D(2023, 6, 30)),
    ("下半年", 2023, D(2023, 12, 31)),
    ("第三季度", 2023, D(2023, 9, 30)),
    ("三季度末", 2023, D(2023, 9, 30)),
    ("第一季度", 2023, D(2023, 3, 31)),
    ("4季度", 2023, D(2023, 12, 31)),
    ("8月底前完成制定，12月底前完成", 2023, D(2023, 12, 31)),
    ("6月底前启动，11月底前全部完成", 2023, D(2023, 11, 30)),
    ("8月至12月", 2023, D(2023, 12, 31)),
    ("11月底前完成，长期坚持", 2023, D(2023, 11, 30)),
    ("长期坚持", 2023, "ongoing"),
    ("长期", 2023, "ongoing"),
    ("持续推进", 2023, "ongoing"),
    ("常态化", 2023, "ongoing"),
    ("常态化开展", 2023, "ongoing"),
    ("全年持续", 2023, "ongoing"),
    ("每季度", 2023, "ongoing"),
    ("每月", 2023, "ongoing"),
    ("每季度末", 2023, "ongoing"),
    ("每月10日前", 2023, "ongoing"),
    ("每年12月底前", 2023, "ongoing"),
    ("定期更新", 2023, "ongoing"),
    ("", 2023, "unreadable"),
    ("视情况而定", 2023, "unreadable"),
    ("按上级要求", 2023, "unreadable"),
    ("13月底", 2023, "unreadable"),
    ("2月30日", 2023, "unreadable"),
]


def _read(d) -> date | str:
    return d.date if d.kind == DATED else d.kind


@pytest.mark.parametrize("written,year,expected", DUE_CASES, ids=[c[0] or "(blank)" for c in DUE_CASES])
def test_due_date(written, year, expected):
    due = due_date(written, year)
    assert _read(due) == expected, due
    if due.kind == DATED:
        assert due.date == max(due.dates) and due.warning is None
        assert due.label == f"{due.date.year}年{due.date.month}月{due.date.day}日"
    elif due.kind == ONGOING_DEADLINE:
        assert due.date is None and due.dates == () and due.label == "长期任务，无截止日期"
    else:
        assert due.kind == UNREADABLE and due.date is None
        assert due.warning and due.warning.endswith("未设定截止日期") and due.label == due.warning


def test_unreadable_warning_quotes_the_text():
    assert due_date("视情况而定", 2023).warning == "完成时限「视情况而定」无法识别，未设定截止日期"
    assert due_date("  ", 2023).warning == "完成时限未填写，未设定截止日期"


def test_several_dates_are_all_kept():
    due = due_date("8月底前完成制定，12月底前完成", 2023)
    assert due.dates == (D(2023, 8, 31), D(2023, 12, 31)) and due.date == D(2023, 12, 31)


def test_shipped_ledger_deadlines(capsys):
    """Every 完成时限 in the shipped ledger reads sensibly: the table is printed, each row asserted."""
    ledger = load_ledger()
    expected = {"11月底": D(ledger.year, 11, 30), "11 月底": D(ledger.year, 11, 30), "12月底": D(ledger.year, 12, 31),
                "8月底前": D(ledger.year, 8, 31), "长期坚持": "ongoing"}
    rows = []
    for task in ledger.tasks:
        due = task_due_date(task, ledger.year)
        rows.append((task.number, task.deadline, due.label))
        assert task.deadline in expected, f"任务{task.number} 的完成时限「{task.deadline}」不在预期表中"
        assert _read(due) == expected[task.deadline], (task.number, task.deadline, due)
    with capsys.disabled():
        print("\n序号  完成时限（原文）  识别结果")
        for number, written, label in rows:
            print(f"{number:>4}  {written:<10}  {label}")
    assert len(rows) == len(ledger.tasks) == 30


# ---------------------------------------------------------------------------------------------------------
# Completion states

DT = False  # a dated task (11月底, 8月底前 …)
LT = True  # a long-term task without a date (长期坚持)

# (progress text, ongoing task?, expected state)
CASES = [
    # --- done
    ("已完成", DT, DONE),
    ("已完成。", DT, DONE),
    ("该项工作已全部完成。", DT, DONE),
    ("全部完成", DT, DONE),
    ("各项任务均已完成", DT, DONE),
    ("已按期完成", DT, DONE),
    ("已落实到位", DT, DONE),
    ("已全部落实", DT, DONE),
    ("已办结", DT, DONE),
    ("已完成并通过验收", DT, DONE),
    ("已完成并在区政府网站公开", DT, DONE),
    ("已在区政府网站发布政策解读12篇，完成全年任务", DT, DONE),
    ("该项工作已于6月完成，下一步将持续做好信息更新", DT, DONE),
    ("已完成100%", DT, DONE),
    ("已完成１００％", DT, DONE),
    ("年度目标任务完成率100%", DT, DONE),
    ("已完成百分之百", DT, DONE),
    ("已按要求完成2023年部门预算公开，公开率100%。", DT, DONE),
    ("已于11月底前完成行政规范性文件清理工作，共清理文件23件", DT, DONE),
    ("按照“谁制定、谁清理”原则，已完成全部行政规范性文件清理，无遗漏。", DT, DONE),
    ("我局高度重视，6月已启动清理工作，8月已全部完成。", DT, DONE),
    ("已完成未成年人保护政策信息公开专栏建设。", DT, DONE),
    ("不动产登记信息公开已完成", DT, DONE),
    ("已提前完成全年任务", DT, DONE),
    ("已完成专栏建设，并持续做好信息更新。", DT, DONE),
    ("已全部完成且未出现差错", DT, DONE),
    ("上半年已完成政府信息公开年报发布工作", DT, DONE),
    ("工作计划已编制完成并印发", DT, DONE),
    ("已按计划完成", DT, DONE),
    ("1.已在政府网站公开预决算信息；\n2.行政事业性收费目录清单已公开；\n3.全年任务已全部完成。", DT, DONE),
    ("已全部完成。下一步将继续巩固成果，确保各项工作落实到位。", DT, DONE),
    ("已全面完成", LT, DONE),
    ("已完成，群众满意度达95%", DT, DONE),
    ("对不作为问题整改已完成", DT, DONE),
    ("罚没款信息公开已完成", DT, DONE),
    ("已于第三季度完成", DT, DONE),
    ("已将文件全部上传完成", DT, DONE),
    ("已完成。\n下一步，我局将持续推进，确保11月底前全部完成各项工作", DT, DONE),
    # --- in progress
    ("正在推进", DT, IN_PROGRESS),
    ("正在组织编制，预计11月底前完成", DT, IN_PROGRESS),
    ("预计11月底前完成", DT, IN_PROGRESS),
    ("计划10月完成", DT, IN_PROGRESS),
    ("将于11月底前完成", DT, IN_PROGRESS),
    ("力争年底前全部完成", DT, IN_PROGRESS),
    ("确保按期完成", DT, IN_PROGRESS),
    ("11月底前完成", DT, IN_PROGRESS),
    ("已完成58%", DT, IN_PROGRESS),
    ("已完成95%", DT, IN_PROGRESS),
    ("已完成58％", DT, IN_PROGRESS),
    ("完成进度60%", DT, IN_PROGRESS),
    ("已完成全年任务的60%", DT, IN_PROGRESS),
    ("目前工作进度达80%，预计年底前全部完成", DT, IN_PROGRESS),
    ("未完成", DT, IN_PROGRESS),
    ("尚未完成", DT, IN_PROGRESS),
    ("没有完成", DT, IN_PROGRESS),
    ("受疫情影响，未能按期完成", DT, IN_PROGRESS),
    ("该项工作尚未全部完成", DT, IN_PROGRESS),
    ("完成了一半", DT, IN_PROGRESS),
    ("已完成年度任务的一半", DT, IN_PROGRESS),
    ("部分完成", DT, IN_PROGRESS),
    ("大部分已完成，剩余3件正在审核", DT, IN_PROGRESS),
    ("基本完成", DT, IN_PROGRESS),
    ("已基本完成专栏建设", DT, IN_PROGRESS),
    ("已初步完成", DT, IN_PROGRESS),
    ("已完成初稿", DT, IN_PROGRESS),
    ("方案初稿已完成，正在征求意见", DT, IN_PROGRESS),
    ("已完成前期调研，方案正在起草中", DT, IN_PROGRESS),
    ("已完成第一阶段清理工作", DT, IN_PROGRESS),
    ("持续推进中", DT, IN_PROGRESS),
    ("已启动", DT, IN_PROGRESS),
    ("已启动政策文件清理工作", DT, IN_PROGRESS),
    ("按照要求持续推进，常态化开展", DT, IN_PROGRESS),
    ("已完成本季度信息更新", DT, IN_PROGRESS),
    ("已在政府网站发布政策解读12篇", DT, IN_PROGRESS),
    ("1.政策解读工作已完成；\n2.专栏建设正在推进中。", DT, IN_PROGRESS),
    ("专栏建设正在推进中，政策解读已完成", DT, IN_PROGRESS),
    ("已完成方案制定，培训工作尚未开展", DT, IN_PROGRESS),
    ("已完成方案制定并计划9月开展培训", DT, IN_PROGRESS),
    ("已完成方案制定，正在报送审批", DT, IN_PROGRESS),
    ("已完成信息公开但未完成年报编制", DT, IN_PROGRESS),
    ("下一步将于11月底前完成剩余任务", DT, IN_PROGRESS),
    ("完成时限为11月底，目前正在推进", DT, IN_PROGRESS),
    ("稳步推进，预计十一月底前全部完成", DT, IN_PROGRESS),
    ("已完成8项，还有2项待印发", DT, IN_PROGRESS),
    ("截至目前，已完成清理文件15件，完成率75%", DT, IN_PROGRESS),
    ("预计完成率100%", DT, IN_PROGRESS),
    ("已完成制定，待区政府常务会审议", DT, IN_PROGRESS),
    ("本季度工作已完成", DT, IN_PROGRESS),
    ("按季度公开政府工作报告重点任务，已完成一、二季度公开", DT, IN_PROGRESS),
    ("已过期未完成", DT, IN_PROGRESS),
    ("完成不了", DT, IN_PROGRESS),
    ("方案已完成正在组织实施", DT, IN_PROGRESS),
    ("于年底完成", DT, IN_PROGRESS),
    ("已拟定实施方案", DT, IN_PROGRESS),
    # --- not started
    ("暂未开展", DT, NOT_STARTED),
    ("尚未启动", DT, NOT_STARTED),
    ("未开展", DT, NOT_STARTED),
    ("还没有开始", DT, NOT_STARTED),
    ("计划下半年开展", DT, NOT_STARTED),
    ("待启动", DT, NOT_STARTED),
    ("因人员调整，该项工作暂未开展。", DT, NOT_STARTED),
    ("暂无进展", DT, NOT_STARTED),
    ("无", DT, NOT_STARTED),
    ("拟于9月组织开展专题培训", DT, NOT_STARTED),
    ("尚未启动", LT, NOT_STARTED),
    # --- ongoing (tasks without a due date)
    ("持续开展", LT, ONGOING),
    ("常态化推进", LT, ONGOING),
    ("按照要求持续推进，常态化开展", LT, ONGOING),
    ("已完成本季度信息更新", LT, ONGOING),
    ("已完成上半年政务公开专区资料更新，下半年持续推进", LT, ONGOING),
    ("正在推进", LT, ONGOING),
    ("持续推进中", LT, ONGOING),
    ("每月定期更新政府信息公开目录", LT, ONGOING),
    ("已在政府网站发布政策解读12篇", LT, ONGOING),
    ("已完成58%", LT, ONGOING),
    ("本季度工作已完成", LT, ONGOING),
    # --- not reported
    (None, DT, NOT_REPORTED),
    ("", DT, NOT_REPORTED),
    ("   \n ", DT, NOT_REPORTED),
    ("/", LT, NOT_REPORTED),
    ("——", DT, NOT_REPORTED),
]


@pytest.mark.parametrize("text,ongoing,expected", CASES, ids=[f"{i:03d}" for i in range(len(CASES))])
def test_classify(text, ongoing, expected):
    result = classify(text, ongoing)
    assert result.state == expected, f"{text!r} → {result.state}（{result.basis}）"
    assert result.state in STATES and result.label == STATE_LABELS[result.state]
    assert result.basis and result.explanation == f"系统判断：{result.basis}"


def test_accuracy_done_vs_not_done(capsys):
    """Over the whole table: is 'done' read right (the error that matters for supervision)?"""
    right = sum((classify(t, o).state == DONE) == (e == DONE) for t, o, e in CASES)
    exact = sum(classify(t, o).state == e for t, o, e in CASES)
    with capsys.disabled():
        print(f"\n完成判断准确率：{right}/{len(CASES)} = {right / len(CASES):.1%}；"
              f"状态完全一致：{exact}/{len(CASES)}；其中「已完成」{sum(e == DONE for *_, e in CASES)} 条")
    assert len(CASES) >= 80
    assert right == len(CASES) and exact == len(CASES)


@pytest.mark.parametrize("text,quoted", [
    ("已完成", "含「已完成」"),
    ("正在组织编制，预计11月底前完成", "含「正在"),
    ("已完成58%", "含「已完成58%」"),
    ("尚未完成", "含「未完成」"),
    ("暂未开展", "含「暂未开展」"),
])
def test_basis_quotes_the_deciding_words(text, quoted):
    assert classify(text, False).basis.startswith(quoted)


def test_basis_for_mixed_text_names_both():
    basis = classify("1.政策解读工作已完成；\n2.专栏建设正在推进中。", False).basis
    assert "已完成" in basis and "正在推进" in basis


def test_classify_task_uses_the_due_date():
    assert classify_task("持续开展", due_date("长期坚持", 2023)).state == ONGOING
    assert classify_task("持续开展", due_date("11月底", 2023)).state == IN_PROGRESS


def test_overdue():
    due = due_date("11月底", 2023)
    done, going, blank = classify("已完成", False), classify("正在推进", False), classify("", False)
    assert not is_overdue(due, going, D(2023, 11, 30))  # the due day itself is in time
    assert is_overdue(due, going, D(2023, 12, 1))
    assert is_overdue(due, blank, D(2023, 12, 1))
    assert not is_overdue(due, done, D(2023, 12, 1))
    assert not is_overdue(due_date("长期坚持", 2023), going, D(2024, 1, 1))
    assert not is_overdue(due_date("视情况而定", 2023), going, D(2024, 1, 1))


def test_long_and_hostile_text_is_bounded():
    """Linear time: a huge text is capped; adversarial repetitions don't blow up."""
    for text in ("已完成" * 200_000, "未" * 500_000 + "完成", "计划" * 300_000, "1" * 400_000 + "%",
                 "，" * 400_000, "月" * 300_000, "下一步" * 200_000 + "完成", "完成1%" * 100_000,
                 "本季度已完成初稿" * 100_000, "计划于" + "一" * 500_000 + "开展"):
        start = time.perf_counter()
        assert classify(text, False).state in STATES
        due_date(text, 2023)
        assert time.perf_counter() - start < 1.0
