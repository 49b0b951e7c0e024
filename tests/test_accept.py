"""A person's decisions on recorded mail: `accept` as a unit, `reprocess` after the roster changed, `inbox`."""

from __future__ import annotations

import json

import pytest

import mailbuilder as mb
from mailbot import store
from mailbot.config import load_config
from mailbot.errors import MailbotError
from mailbot.intake import accept_message, inbox, ingest, reprocess_message

ALL = {t: f"任务{t}已按要求落实。" for t in range(1, 31)}


def stranger_report(make_report, *, unit="", sender="li12345@qq.example", subject="台账"):
    doc = make_report(ALL, unit=unit).read_bytes()
    return mb.simple(sender=sender, subject=subject, attachments=[("台账.docx", doc)], date=mb.when("2023-08-10"))


def status_of(db, cfg, unit, round_name="年中"):
    from mailbot.status import status_table

    table = status_table(cfg, db, list(cfg.rounds), store.now_utc())
    [row] = [u for u in table["units"] if u["unit"] == unit]
    return row["rounds"][round_name]["state"]


def test_quarantined_mail_accepted_as_a_unit_with_its_original_time(cfg, db, make_report):
    res = ingest(cfg, db, stranger_report(make_report))
    assert res.status == "quarantined" and res.as_dict()["message"] == res.message_row
    assert [m["message"] for m in inbox(db)] == [res.message_row]
    again = ingest(cfg, db, stranger_report(make_report))
    assert again.status == "duplicate"  # the same mail again is still a duplicate …

    got = accept_message(cfg, db, res.message_row, "民政局", reason="电话核实：民政局新邮箱", actor="coordinator")
    assert got.status == "accepted" and got.unit == "民政局" and got.round == "年中"  # … but accept records it
    assert got.as_dict()["message"] == res.message_row and got.missing == []
    row = db["messages"].get(res.message_row)
    assert (row["status"], row["unit"], row["verified"], row["received_at"]) == ("accepted", "民政局", 1, "2023-08-10T02:00:00+00:00")
    assert {r["received_at"] for r in store.export_rows(db) if r["unit"] == "民政局"} == {"2023-08-10T02:00:00+00:00"}
    [audit] = db.query("SELECT * FROM audit")
    assert (audit["actor"], audit["action"], audit["unit"], audit["message"], audit["reason"]) == (
        "coordinator", "accept", "民政局", res.message_row, "电话核实：民政局新邮箱")
    [ack] = db.query("SELECT * FROM outbox WHERE kind = 'ack'")
    assert json.loads(ack["to_addrs"]) == ["li12345@qq.example"] and json.loads(ack["cc_addrs"]) == ["mzj@xixia.example"]
    assert inbox(db) == []


def test_accept_mistakes_are_one_line_errors(cfg, db, make_report):
    res = ingest(cfg, db, stranger_report(make_report))
    with pytest.raises(MailbotError, match="没有第 99 号邮件"):
        accept_message(cfg, db, 99, "民政局", reason=None, actor="x")
    with pytest.raises(MailbotError, match="名册中没有单位「不存在局」"):
        accept_message(cfg, db, res.message_row, "不存在局", reason=None, actor="x")
    dup = ingest(cfg, db, stranger_report(make_report))
    with pytest.raises(MailbotError, match=f"第 {res.message_row} 号邮件的重复"):
        accept_message(cfg, db, dup.message_row, "民政局", reason=None, actor="x")
    accept_message(cfg, db, res.message_row, "民政局", reason=None, actor="x")
    with pytest.raises(MailbotError, match="已登记为「民政局」"):
        accept_message(cfg, db, res.message_row, "民政局", reason=None, actor="x")


def test_accept_as_another_unit_moves_the_text(cfg, db, make_report):
    """A mail first credited to the wrong unit: accepting it as the right one withdraws what it recorded."""
    res = ingest(cfg, db, stranger_report(make_report, unit="民政局"))
    assert (res.status, res.unit, res.verified) == ("accepted", "民政局", False)
    assert [m["status"] for m in inbox(db)] == ["unverified"]
    accept_message(cfg, db, res.message_row, "司法局", reason="实为司法局报送", actor="c")
    units = {r["unit"] for r in store.export_rows(db)}
    assert units == {"司法局"}
    assert db.execute("SELECT COUNT(*) FROM reports WHERE unit = '民政局'").fetchone()[0] == 0


def test_reprocess_after_the_roster_learned_the_address(cfg_path, cfg, db, make_report):
    res = ingest(cfg, db, stranger_report(make_report))
    assert res.status == "quarantined"
    assert status_of(db, cfg, "民政局") in ("missing", "pending")
    text = cfg_path.read_text(encoding="utf-8").replace('emails = ["mzj@xixia.example"]', 'emails = ["mzj@xixia.example", "li12345@qq.example"]')
    cfg_path.write_text(text, encoding="utf-8")
    cfg2 = load_config(cfg_path)
    got = reprocess_message(cfg2, db, res.message_row, actor="it")
    assert (got.status, got.unit, got.verified) == ("accepted", "民政局", True)
    assert status_of(db, cfg2, "民政局") in ("on_time", "late")
    assert [r["action"] for r in db.query("SELECT action FROM audit")] == ["reprocess"]


def test_inbox_drops_a_rejection_once_the_unit_reported(cfg, db, make_report):
    pdf = mb.simple(attachments=[("a.pdf", b"%PDF-1.4\n")], date=mb.when("2023-08-09"), subject="民政局 pdf")
    rej = ingest(cfg, db, pdf)
    assert rej.status == "rejected" and [m["status"] for m in inbox(db, ("rejected",))] == ["rejected"]
    ingest(cfg, db, mb.simple(attachments=[("a.docx", make_report(ALL).read_bytes())], date=mb.when("2023-08-10")))
    assert inbox(db, ("rejected",)) == []


def test_reprocess_keeps_a_persons_accept(cfg, db, make_report):
    res = ingest(cfg, db, stranger_report(make_report))
    accept_message(cfg, db, res.message_row, "民政局", reason="核实", actor="c")
    again = reprocess_message(cfg, db, res.message_row, actor="it")
    assert (again.status, again.unit) == ("accepted", "民政局")
    assert db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 1  # processed again, not counted twice


def test_reindex_keeps_accept_decisions_and_the_audit_trail(cfg, db, make_report, tmp_path):
    from mailbot.maintenance import reindex

    res = ingest(cfg, db, stranger_report(make_report))
    accept_message(cfg, db, res.message_row, "民政局", reason="电话核实", actor="coordinator")
    target = tmp_path / "rebuilt.db"
    reindex(cfg, target)
    new = store.open_db(target)
    [row] = new.query("SELECT status, unit FROM messages")
    assert (row["status"], row["unit"]) == ("accepted", "民政局")
    [audit] = new.query("SELECT actor, action, unit, reason FROM audit")
    assert audit == {"actor": "coordinator", "action": "accept", "unit": "民政局", "reason": "电话核实"}
    assert new.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0] == 0  # nothing mailed twice


def test_an_accepted_old_mail_still_gets_its_receipt(cfg, db, make_report, clock):
    """The mail is months old (reply_max_age_days), but the person accepted it today: the receipt goes out."""
    from mailbot.outbox import _too_old

    res = ingest(cfg, db, stranger_report(make_report))
    accept_message(cfg, db, res.message_row, "民政局", reason=None, actor="c")
    [row] = db.query("SELECT * FROM outbox WHERE kind = 'ack'")
    assert not _too_old(db, cfg, row, store.now_utc())
    assert _too_old(db, cfg, dict(row, dedupe_key=f"ack:{res.message_row}"), store.now_utc())
