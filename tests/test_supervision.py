"""Supervision over the store: paper copies, extensions, exemptions, completion states and overrides,
through the CLI contract (`status --json`, `completion --json`, `paper`, `extend`, `exempt`)."""

from __future__ import annotations

import datetime as dt
import json

import mailbuilder as mb

from mailbot.cli import main
from mailbot.intake import ingest


def run(capsys, cfg_path, *argv):
    code = main(["--config", str(cfg_path), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def mz(db, cfg, progress, day="2023-08-10", **kw):
    return ingest(cfg, db, mb.simple(attachments=[("a.docx", _doc(cfg, progress, **kw))], date=mb.when(day), body=str(progress)))


def _doc(cfg, progress, unit="民政局"):
    import tempfile
    from pathlib import Path

    from docbuilder import build_report

    d = cfg.ledger.to_dict()
    path = Path(tempfile.mkdtemp()) / "r.docx"
    return build_report(path, d["sections"], d["tasks"], unit=unit, progress=progress).read_bytes()


def unit_round(out, unit="民政局", rnd="年中"):
    return next(u for u in json.loads(out)["units"] if u["unit"] == unit)["rounds"][rnd]


def test_status_json_contract_fields(cfg_path, cfg, db, capsys):
    mz(db, cfg, {1: "已完成", 3: "正在推进"})
    code, out, err = run(capsys, cfg_path, "--now", "2023-12-10T10:00+08:00", "status", "--json")
    assert code == 0, err
    st = unit_round(out)
    assert st["state"] == "on_time" and st["reported_at"] == "2023-08-10T10:00:00+08:00"
    assert st["extended_until"] is None and st["paper"] is False
    assert 3 in st["overdue_tasks"] and 1 not in st["overdue_tasks"]  # 11月底 passed, task 3 not done


def test_paper_copy_recorded_and_undone_never_changes_on_time(cfg_path, cfg, db, capsys):
    mz(db, cfg, {1: "已完成"})
    code, out, err = run(capsys, cfg_path, "paper", "民政局", "--round", "年中", "--date", "2023-08-20")
    assert code == 0 and out.strip() == "已记录：民政局 2023年年中纸质版于 2023年8月20日 收到"
    code, out, _ = run(capsys, cfg_path, "--now", "2023-08-21T10:00+08:00", "status", "--json")
    assert unit_round(out)["paper"] is True and unit_round(out)["state"] == "on_time"
    code, out, _ = run(capsys, cfg_path, "paper", "民政局", "--round", "年中", "--undo")
    assert code == 0 and "撤销" in out
    code, out, _ = run(capsys, cfg_path, "--now", "2023-08-21T10:00+08:00", "status", "--json")
    assert unit_round(out)["paper"] is False


def test_unknown_unit_or_round_is_a_one_line_error(cfg_path, capsys):
    for argv in (["paper", "不存在局", "--round", "年中"], ["extend", "民政局", "--round", "三季度", "--until", "2023-08-25", "--reason", "x"],
                 ["exempt", "不存在局", "--round", "年中", "--reason", "x"]):
        code, out, err = run(capsys, cfg_path, *argv)
        assert code != 0 and out == "" and err.startswith("错误：") and len(err.strip().splitlines()) == 1, err


def test_extension_makes_a_later_report_on_time_and_silences_reminders(cfg_path, cfg, db, capsys):
    from mailbot.notices import due_notices

    code, out, err = run(capsys, cfg_path, "extend", "民政局", "--round", "年中", "--until", "2023-08-25", "--reason", "机构调整")
    assert code == 0 and out.strip() == "已记录：民政局 2023年年中延期至 2023年8月25日（机构调整）", err
    due = due_notices(cfg, db, dt.datetime(2023, 8, 18, 9, 30, tzinfo=cfg.tz))
    assert "民政局" not in {n.unit for n in due if n.kind == "overdue"}
    assert "司法局" in {n.unit for n in due if n.kind == "overdue"}
    res = mz(db, cfg, {1: "已完成"}, day="2023-08-24")
    assert res.late is False
    code, out, _ = run(capsys, cfg_path, "--now", "2023-08-26T10:00+08:00", "status", "--json")
    assert unit_round(out)["state"] == "on_time" and unit_round(out)["extended_until"] == "2023-08-25"


def test_exemption_is_a_state_and_stops_notices(cfg_path, cfg, db, capsys):
    from mailbot.notices import due_notices

    code, out, _ = run(capsys, cfg_path, "exempt", "司法局", "--round", "年中", "--reason", "本节点无相关任务")
    assert code == 0 and "免于报送" in out
    due = due_notices(cfg, db, dt.datetime(2023, 8, 18, 9, 30, tzinfo=cfg.tz))
    assert "司法局" not in {n.unit for n in due}
    code, out, _ = run(capsys, cfg_path, "--now", "2023-08-26T10:00+08:00", "status", "--json")
    assert unit_round(out, "司法局")["state"] == "exempt"
    code, out, _ = run(capsys, cfg_path, "--now", "2023-08-26T10:00+08:00", "status")
    assert "豁免" in out


def test_completion_contract_and_an_override_that_lasts_until_the_text_changes(cfg_path, cfg, db, capsys):
    mz(db, cfg, {1: "已完成", 3: "正在推进，预计11月底前完成"})
    code, out, _ = run(capsys, cfg_path, "--now", "2023-12-10T10:00+08:00", "completion", "--round", "年中", "--json")
    rows = {(r["unit"], r["task"]): r for r in json.loads(out)}
    assert set(rows[("民政局", 1)]) == {"unit", "task", "due", "state", "set_by", "overdue"}
    assert rows[("民政局", 1)] == {"unit": "民政局", "task": 1, "due": "2023-11-30", "state": "done", "set_by": "system", "overdue": False}
    assert rows[("民政局", 3)]["state"] == "in_progress" and rows[("民政局", 3)]["overdue"] is True
    code, out, err = run(capsys, cfg_path, "override", "民政局", "--round", "年中", "--task", "3", "--state", "done", "--reason", "现场核实已完成")
    assert code == 0, err
    code, out, _ = run(capsys, cfg_path, "--now", "2023-12-10T10:00+08:00", "completion", "--round", "年中", "--json")
    r3 = next(r for r in json.loads(out) if r["unit"] == "民政局" and r["task"] == 3)
    assert (r3["state"], r3["set_by"], r3["overdue"]) == ("done", "coordinator", False)
    mz(db, cfg, {3: "尚未启动"}, day="2023-08-12")  # the unit changed its text: the system reads it again
    code, out, _ = run(capsys, cfg_path, "--now", "2023-12-10T10:00+08:00", "completion", "--round", "年中", "--json")
    r3 = next(r for r in json.loads(out) if r["unit"] == "民政局" and r["task"] == 3)
    assert (r3["state"], r3["set_by"]) == ("not_started", "system")
    code, out, _ = run(capsys, cfg_path, "log")
    assert "人工认定完成情况 民政局 年中" in out and "现场核实已完成" in out


def test_receipt_and_reminder_mention_the_paper_copy(cfg, db):
    from mailbot.notices import queue_notices

    mz(db, cfg, {1: "已完成"})
    [ack] = db.query("SELECT body_text FROM outbox WHERE kind = 'ack'")
    assert "请同时将加盖本单位公章的纸质版报送至行政中心718室。" in ack["body_text"]
    queue_notices(cfg, db, dt.datetime(2023, 8, 8, 9, 30, tzinfo=cfg.tz))
    [rem] = db.query("SELECT body_text FROM outbox WHERE kind = 'reminder' AND unit = '司法局'")
    assert "纸质版报送至行政中心718室" in rem["body_text"]


def test_a_simulated_year_scored_line_by_line(cfg_path, cfg, db, capsys, tmp_path):
    """Both rounds; 民政局 on time with paper, 司法局 late, 教育局 missing, 科学技术局 extended then on time,
    财政局 exempt, one overridden state; every deduction checked."""
    d = cfg.ledger.to_dict()
    from docbuilder import build_report

    def report(unit, progress, day, sender):
        path = tmp_path / f"{unit}-{day}.docx"
        doc = build_report(path, d["sections"], d["tasks"], unit=unit, progress=progress).read_bytes()
        return ingest(cfg, db, mb.simple(sender=sender, subject=unit, attachments=[("a.docx", doc)], date=mb.when(day), body=f"{unit}{day}"))

    def done_all(unit):
        return {t: "已全部完成" for t in cfg.roster.tasks_of(unit, cfg.ledger)}

    emails = {u.name: u.emails[0] for u in cfg.roster}
    for unit in [u.name for u in cfg.roster if u.name not in ("司法局", "教育局", "科学技术局", "财政局")]:
        report(unit, done_all(unit), "2023-08-10", emails[unit])
        report(unit, done_all(unit), "2023-12-01", emails[unit])
        for rnd in ("年中", "年底"):
            run(capsys, cfg_path, "paper", unit, "--round", rnd, "--date", "2023-12-02")
    sfj = done_all("司法局")
    first_task = cfg.roster.tasks_of("司法局", cfg.ledger)[0]
    sfj[first_task] = "正在推进，预计明年完成"
    report("司法局", sfj, "2023-08-20", emails["司法局"])  # 年中 late by 5 days
    report("司法局", sfj, "2023-12-04", emails["司法局"])  # 年底 on time
    run(capsys, cfg_path, "extend", "科学技术局", "--round", "年中", "--until", "2023-08-25", "--reason", "机构改革")
    report("科学技术局", done_all("科学技术局"), "2023-08-24", emails["科学技术局"])
    report("科学技术局", done_all("科学技术局"), "2023-12-05", emails["科学技术局"])
    run(capsys, cfg_path, "exempt", "财政局", "--round", "年中", "--reason", "本年度新设")
    report("财政局", done_all("财政局"), "2023-12-03", emails["财政局"])
    jyj_task = cfg.roster.tasks_of("教育局", cfg.ledger)[0]
    run(capsys, cfg_path, "paper", "司法局", "--round", "年中")
    code, out, err = run(capsys, cfg_path, "--now", "2023-12-31T18:00+08:00", "report", "annual", "--year", "2023", "--json")
    assert code == 0, err
    got = {r["unit"]: r for r in json.loads(out)}
    assert got["民政局"] == {"unit": "民政局", "deductions": [], "total": 0.0}
    assert got["司法局"]["deductions"] == [
        {"reason": "年中逾期报送5天", "points": 1.0},
        {"reason": "年底未报送纸质版", "points": 0.5},
        {"reason": f"任务{first_task}未按完成时限完成", "points": 0.5},
    ] and got["司法局"]["total"] == 2.0
    from mailbot.supervision_rules import due_date

    last_day = dt.date(2023, 12, 31)  # 12月底 tasks are due that day: not yet overdue on it
    overdue_jyj = [t for t in cfg.roster.tasks_of("教育局", cfg.ledger) if (due := due_date(cfg.ledger.task(t).deadline, 2023).date) and due < last_day]
    assert got["教育局"]["deductions"][:2] == [{"reason": "年中未报送", "points": 2.0}, {"reason": "年底未报送", "points": 2.0}]
    assert len(got["教育局"]["deductions"]) == 2 + len(overdue_jyj) and jyj_task in cfg.roster.tasks_of("教育局", cfg.ledger)
    assert got["科学技术局"]["deductions"] == [{"reason": "年中未报送纸质版", "points": 0.5}, {"reason": "年底未报送纸质版", "points": 0.5}]
    assert got["财政局"]["deductions"] == [{"reason": "年底未报送纸质版", "points": 0.5}]  # 年中 exempt
    # a person's judgement removes a deduction
    run(capsys, cfg_path, "override", "司法局", "--round", "年底", "--task", str(first_task), "--state", "done", "--reason", "现场核实")
    code, out, _ = run(capsys, cfg_path, "--now", "2023-12-31T18:00+08:00", "report", "annual", "--year", "2023", "--json")
    assert {r["unit"]: r["total"] for r in json.loads(out)}["司法局"] == 1.5
    for name in ("扣分表.docx", "扣分表.xlsx"):
        code, out, err = run(capsys, cfg_path, "--now", "2023-12-31T18:00+08:00", "report", "annual", "--year", "2023", "-o", str(tmp_path / name))
        assert code == 0 and (tmp_path / name).stat().st_size > 1000, err
    from openpyxl import load_workbook

    ws = load_workbook(tmp_path / "扣分表.xlsx").active
    assert ws["A2"].value == "序号" and any(row[1] == "教育局" for row in ws.iter_rows(values_only=True))
