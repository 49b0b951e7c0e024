"""What a unit is told: the round a mail counts for, its own tasks only, the deadline day, the wording."""

from __future__ import annotations

import datetime as dt
import json

import mailbuilder as mb
from mailbot import store
from mailbot.config import load_config
from mailbot.intake import ingest
from mailbot.notices import due_notices, queue_notices

ALL = {t: f"任务{t}已按要求落实。" for t in range(1, 31)}


def overlapping(cfg_path):
    """年底 opens 1 August, before 年中's deadline (15 August)."""
    text = cfg_path.read_text(encoding="utf-8").replace("opens = 2023-09-01", "opens = 2023-08-01")
    cfg_path.write_text(text, encoding="utf-8")
    return load_config(cfg_path)


def ack_of(db, res):
    [row] = db.query("SELECT * FROM outbox WHERE message = ? AND kind = 'ack'", [res.message_row])
    return row


def test_overlapping_rounds_a_report_before_the_first_deadline_counts_for_it(cfg_path, make_report):
    cfg = overlapping(cfg_path)
    db = store.open_db(cfg.db_path)
    doc = make_report(ALL).read_bytes()
    res = ingest(cfg, db, mb.simple(subject="民政局年中台账", attachments=[("台账.docx", doc)], date=mb.when("2023-08-10")))
    assert (res.status, res.round, res.late) == ("accepted", "年中", False)
    plain = ingest(cfg, db, mb.simple(subject="民政局台账", attachments=[("a.docx", make_report(ALL, unit="司法局").read_bytes())],
                                      sender="sfj@xixia.example", date=mb.when("2023-08-12")))
    assert plain.round == "年中"  # no round named: the earliest open round whose deadline has not passed


def test_a_late_nianzhong_report_named_as_such_after_niandi_opened(cfg, db, make_report):
    doc = make_report(ALL).read_bytes()
    res = ingest(cfg, db, mb.simple(subject="民政局上半年台账（补报）", attachments=[("台账.docx", doc)], date=mb.when("2023-11-02")))
    assert (res.round, res.late) == ("年中", True)
    body = ack_of(db, res)["body_text"]
    assert "本次报送计入2023年年中：邮件主题写明了「年中」（按收到日期本应计入2023年年底）。" in body
    unnamed = ingest(cfg, db, mb.simple(subject="民政局台账", body="x", attachments=[("台账.docx", doc)], date=mb.when("2023-11-03")))
    assert unnamed.round == "年底"  # the date rule


def test_a_round_named_before_it_opens_falls_back_to_the_date(cfg, db, make_report):
    doc = make_report(ALL).read_bytes()
    res = ingest(cfg, db, mb.simple(subject="民政局年底台账", attachments=[("台账.docx", doc)], date=mb.when("2023-08-10")))
    assert res.round == "年中"
    assert "但2023年年底报送自 2023年9月1日 起才开始接收，本次按收到日期计入2023年年中。" in ack_of(db, res)["body_text"]


def test_the_file_name_names_the_round(cfg, db, make_report):
    doc = make_report(ALL).read_bytes()
    res = ingest(cfg, db, mb.simple(subject="台账", attachments=[("民政局2023年半年台账.docx", doc)], date=mb.when("2023-10-08")))
    assert res.round == "年中" and "附件名写明了「年中」" in ack_of(db, res)["body_text"]


def test_only_the_units_own_tasks_are_recorded(cfg, db, make_report):
    own = cfg.roster.tasks_of("民政局", cfg.ledger)
    assert len(own) < 30
    res = ingest(cfg, db, mb.simple(attachments=[("a.docx", make_report(ALL).read_bytes())], date=mb.when("2023-08-10")))
    assert res.tasks == own and res.missing == []
    assert sorted({r["task"] for r in store.export_rows(db)}) == own
    body = ack_of(db, res)["body_text"]
    foreign = [t for t in range(1, 31) if t not in own]
    assert f"本次登记的任务（{len(own)} 项）" in body and f"你单位负责的 {len(own)} 项任务均已填写" in body
    assert f"任务{'、'.join(map(str, foreign))}不是你单位负责的任务，其填写内容未登记（原件已存档）。" in body


def test_a_form_with_only_foreign_tasks_filled_is_returned(cfg, db, make_report):
    own = cfg.roster.tasks_of("民政局", cfg.ledger)
    foreign = {t: "已完成" for t in range(1, 31) if t not in own}
    res = ingest(cfg, db, mb.simple(attachments=[("a.docx", make_report(foreign).read_bytes())], date=mb.when("2023-08-10")))
    assert (res.status, res.reason_code if hasattr(res, "reason_code") else None) == ("rejected", "foreign_tasks")
    assert "都不是你单位负责的任务" in res.reason and store.export_rows(db) == []


def test_on_the_deadline_day(cfg, db, make_report):
    doc = make_report(ALL).read_bytes()
    res = ingest(cfg, db, mb.simple(attachments=[("a.docx", doc)], date=dt.datetime(2023, 8, 15, 17, 40, tzinfo=dt.timezone(dt.timedelta(hours=8)))))
    body = ack_of(db, res)["body_text"]
    assert "你单位在截止日当天报送，属按时报送（截止时间：2023年8月15日）。" in body and "截止时间（2023年8月15日）前" not in body
    early = ingest(cfg, db, mb.simple(sender="sfj@xixia.example", subject="司法局", attachments=[("b.docx", make_report(ALL, unit="司法局").read_bytes())],
                                      date=mb.when("2023-08-14")))
    assert "本次报送在截止时间（2023年8月15日）前，属按时报送。" in ack_of(db, early)["body_text"]


def test_rejection_subject_is_short_and_complete_and_the_reason_a_sentence(cfg, db):
    res = ingest(cfg, db, mb.simple(sender="jyj@xixia.example", subject="教育局", attachments=[("a.pdf", b"%PDF-1.4\n")], date=mb.when("2023-08-10")))
    [row] = db.query("SELECT * FROM outbox WHERE kind = 'reject'")
    assert row["subject"] == "【退回】教育局 2023年年中台账未能登记，请按邮件说明重新发送"
    assert "不要转成 PDF。" in row["body_text"] and "（.docx、.doc 或 .wps 均可）" in row["body_text"]
    assert "如需更正" not in row["body_text"] and "如需更正" not in row["body_html"]
    assert res.status == "rejected"


def test_receipt_keeps_the_correction_line_and_unverified_warning_ends_with_a_stop(cfg, db, make_report):
    doc = make_report(ALL).read_bytes()
    res = ingest(cfg, db, mb.simple(sender="someone@qq.example", subject="民政局", attachments=[("a.docx", doc)], date=mb.when("2023-08-10")))
    body = ack_of(db, res)["body_text"]
    assert "如需更正，请直接回复本邮件" in body
    assert "本回执只发送到登记邮箱。" in body


def test_reminders_list_tasks_with_the_chinese_comma_and_no_correction_line(cfg, db):
    now = dt.datetime(2023, 8, 8, 9, 30, tzinfo=cfg.tz)
    queue_notices(cfg, db, now)
    [row] = list(db.query("SELECT * FROM outbox WHERE kind = 'reminder' AND unit = '民政局'"))
    tasks = "、".join(map(str, cfg.roster.tasks_of("民政局", cfg.ledger)))
    assert f"（任务{tasks}）" in row["body_text"] and ", " not in row["body_text"]
    assert "如需更正" not in row["body_text"]
    assert json.loads(row["to_addrs"]) == ["mzj@xixia.example"] and due_notices(cfg, db, now) == []


def test_the_form_title_names_the_round(cfg, db, make_report):
    doc = make_report(ALL, title="银川市西夏区2023年政务公开工作要点任务落实台账（年中）").read_bytes()
    res = ingest(cfg, db, mb.simple(subject="台账", attachments=[("台账.docx", doc)], date=mb.when("2023-10-08")))
    assert res.round == "年中" and "台账标题写明了「年中」" in ack_of(db, res)["body_text"]
    plain = make_report(ALL).read_bytes()  # the shipped form's own text names no round
    again = ingest(cfg, db, mb.simple(subject="台账", body="2", attachments=[("台账.docx", plain)], date=mb.when("2023-10-09")))
    assert again.round == "年底"
