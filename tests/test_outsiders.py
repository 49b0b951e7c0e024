"""Issue 11, identity and reply targeting: what an outsider can make the office's mailbox do.

Each test is one class of attack from the independent review: relay, overwrite, receipt lockout,
weak sender verification, ping-pong, invisible characters, absurd dates.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

import mailbuilder as mb
from mailbot import store
from mailbot.intake import accept_message, inbox, ingest
from mailbot.outbox import _over_rate_limit

ALL = {t: f"任务{t}已按要求落实。" for t in range(1, 31)}
PHISH = "恭喜获得政务补贴请点击 http://evil.example/claim 填写银行卡信息领取补贴"


def outbox(db):
    return list(db.query("SELECT * FROM outbox ORDER BY id"))


def mail_to(db, addr):
    return [r for r in outbox(db) if addr in json.loads(r["to_addrs"]) + json.loads(r["cc_addrs"] or "[]")]


def test_relay_nothing_a_stranger_wrote_goes_back_to_the_stranger(cfg, db, make_report):
    doc = make_report({1: PHISH, 6: PHISH}, unit=PHISH).read_bytes()
    res = ingest(cfg, db, mb.simple(sender="victim@qq.example", subject=f"民政局 {PHISH}", attachments=[(f"{PHISH}.docx", doc)],
                                    date=mb.when("2023-08-10")))
    assert res.status == "accepted" and res.unit == "民政局" and not res.verified
    [to_stranger] = mail_to(db, "victim@qq.example")
    assert to_stranger["kind"] == "stranger"
    text = to_stranger["subject"] + to_stranger["body_text"] + to_stranger["body_html"]
    assert "evil.example" not in text and "补贴" not in text and "民政局" not in text
    [receipt] = [r for r in outbox(db) if r["kind"] == "ack"]
    assert json.loads(receipt["to_addrs"]) == ["mzj@xixia.example"] and json.loads(receipt["cc_addrs"]) == []
    # what the unit sees of the stranger's text is bounded
    assert receipt["body_text"].count("evil.example") <= 2 and PHISH not in receipt["body_text"]


def test_relay_a_stranger_gets_at_most_one_fixed_notice_a_day(cfg, db, make_report):
    for i in range(5):
        doc = make_report({1: f"第{i}次"}, unit="民政局").read_bytes()
        ingest(cfg, db, mb.simple(sender="victim@qq.example", subject=f"民政局{i}", attachments=[("a.docx", doc)], date=mb.when("2023-08-10")))
    assert len(mail_to(db, "victim@qq.example")) == 1


def test_rejection_for_a_stranger_goes_to_nobody_but_the_notice(cfg, db):
    res = ingest(cfg, db, mb.simple(sender="x@qq.example", subject="民政局", attachments=[("a.pdf", b"%PDF-1.4\n")], date=mb.when("2023-08-10")))
    assert res.status == "rejected"
    assert [r["kind"] for r in outbox(db)] == ["stranger"]
    assert [m["message"] for m in inbox(db, ("rejected",))] == [res.message_row]


def test_overwrite_a_stranger_cannot_replace_the_units_verified_text(cfg, db, make_report):
    own = ingest(cfg, db, mb.simple(attachments=[("a.docx", make_report({1: "民政局的真实进展"}).read_bytes())], date=mb.when("2023-08-10")))
    assert own.verified
    fake = ingest(cfg, db, mb.simple(sender="x@qq.example", subject="民政局", body="fake",
                                     attachments=[("b.docx", make_report({1: "伪造内容", 3: "伪造3"}).read_bytes())], date=mb.when("2023-08-11")))
    assert fake.status == "accepted" and not fake.verified and fake.held == [1]
    current = {r["task"]: r["progress"] for r in store.export_rows(db) if r["unit"] == "民政局"}
    assert current[1] == "民政局的真实进展"
    assert current[3] == "伪造3"  # no verified text for task 3 yet: shown, marked unverified
    assert db.execute("SELECT verified FROM progress WHERE task = 3").fetchone()[0] == 0
    later = ingest(cfg, db, mb.simple(attachments=[("c.docx", make_report({3: "民政局任务3"}).read_bytes())], body="2", date=mb.when("2023-08-09")))
    assert later.verified  # received earlier than the stranger's, but verified: it wins
    assert {r["task"]: r["progress"] for r in store.export_rows(db)}[3] == "民政局任务3"
    [item] = inbox(db, ("unverified",))
    assert item["message"] == fake.message_row
    accept_message(cfg, db, fake.message_row, "民政局", reason="电话确认是新联络员", actor="c")
    assert {r["task"]: r["progress"] for r in store.export_rows(db)}[1] == "伪造内容"  # a person accepted it


def test_receipt_lockout_strangers_cannot_use_up_the_units_receipts(cfg, db, make_report, clock):
    clock.set(dt.datetime(2023, 8, 10, 3, tzinfo=dt.timezone.utc))
    for i in range(20):
        doc = make_report({1: f"伪造{i}"}).read_bytes()
        ingest(cfg, db, mb.simple(sender=f"bot{i}@qq.example", subject="民政局", body=str(i), attachments=[("a.docx", doc)],
                                  date=mb.when("2023-08-10")))
    to_unit = [r for r in mail_to(db, "mzj@xixia.example")]
    assert len(to_unit) == cfg.bot["max_unverified_receipts_per_unit_per_day"] == 3
    db.execute("UPDATE outbox SET status = 'sent', sent_at = ?", [store.iso(clock.t)])
    own = ingest(cfg, db, mb.simple(attachments=[("own.docx", make_report(ALL).read_bytes())], body="own", date=mb.when("2023-08-10")))
    [row] = db.query("SELECT * FROM outbox WHERE message = ? AND kind = 'ack'", [own.message_row])
    assert not _over_rate_limit(db, cfg, row, clock.t)  # the unit's own budget is untouched


def test_the_per_sender_limit_still_holds(cfg, db, make_report, clock):
    clock.set(dt.datetime(2023, 8, 10, 3, tzinfo=dt.timezone.utc))
    for i in range(21):
        ingest(cfg, db, mb.simple(body=f"{i}", subject="民政局", attachments=[("a.docx", make_report({1: f"v{i}"}).read_bytes())],
                                  date=mb.when("2023-08-10")))
        db.execute("UPDATE outbox SET status = 'sent', sent_at = ? WHERE status = 'pending'", [store.iso(clock.t)])
    last = list(db.query("SELECT * FROM outbox ORDER BY id DESC LIMIT 1"))[0]
    assert _over_rate_limit(db, cfg, dict(last, status="pending"), clock.t)


AR = "Authentication-Results"


@pytest.mark.parametrize(
    "headers, status, verified, code",
    [
        ([], "accepted", True, None),  # no Authentication-Results at all: the roster address (configurable)
        ([f"{AR}: mx.163.com; spf=pass smtp.mailfrom=mzj@xixia.example; dkim=pass header.d=xixia.example; dmarc=pass header.from=xixia.example"],
         "accepted", True, None),
        ([f"{AR}: mx.163.com; spf=softfail smtp.mailfrom=mzj@xixia.example; dkim=none; dmarc=none"], "accepted", False, None),
        ([f"{AR}: mx.163.com; dkim=pass header.d=evil.example; spf=pass smtp.mailfrom=x@evil.example"], "accepted", False, None),
        ([f"{AR}: mx.163.com; dmarc=pass header.from=evil.example"], "accepted", False, None),
        ([f"{AR}: mx.163.com; spf=none", f"{AR}: mx.163.com; dkim=fail header.d=xixia.example"], "quarantined", False, "auth_failed"),
        # a "pass" lower down, with the receiving server's id, is the sender's own: it does not verify
        ([f"{AR}: mx.163.com; spf=none", f"{AR}: mx.163.com; dmarc=pass header.from=xixia.example"], "accepted", False, None),
        # other servers' results are not ours
        ([f"{AR}: mx.163.com; dmarc=pass header.from=xixia.example", f"{AR}: relay.evil.example; spf=fail"], "accepted", True, None),
    ],
)
def test_sender_verification(cfg, db, make_report, headers, status, verified, code):
    raw = "".join(h + "\r\n" for h in headers).encode() + mb.simple(attachments=[("a.docx", make_report(ALL).read_bytes())],
                                                                    date=mb.when("2023-08-10"))
    res = ingest(cfg, db, raw)
    assert (res.status, res.verified, res.reason_code) == (status, verified, code), res.reason


def test_configured_authserv_id_and_required_results(cfg_path, make_report):
    from mailbot.config import load_config

    text = cfg_path.read_text(encoding="utf-8").replace("[bot]\n", '[bot]\nauthserv_id = "mx.163.com"\nrequire_authentication_results = true\n', 1)
    cfg_path.write_text(text, encoding="utf-8")
    cfg = load_config(cfg_path)
    db = store.open_db(cfg.db_path)
    doc = make_report(ALL).read_bytes()
    top = f"{AR}: mx.attacker.example; dmarc=pass header.from=xixia.example\r\n".encode()
    res = ingest(cfg, db, top + mb.simple(attachments=[("a.docx", doc)], date=mb.when("2023-08-10")))
    assert (res.status, res.verified) == ("accepted", False)  # the topmost header is not the configured server's
    ok = f"{AR}: mx.163.com; dmarc=pass header.from=xixia.example\r\n".encode()
    res = ingest(cfg, db, ok + mb.simple(attachments=[("a.docx", doc)], body="2", date=mb.when("2023-08-10")))
    assert res.verified


@pytest.mark.parametrize("from_lines", [
    [b"From: mzj@xixia.example", b"From: attacker@evil.example"],
    [b"From: mzj@xixia.example <>"],
    [b"From: mzj@xixia.example, attacker@evil.example"],
])
def test_several_or_unusable_from_headers_are_quarantined(cfg, db, make_report, from_lines):
    raw = mb.simple(attachments=[("a.docx", make_report(ALL).read_bytes())], date=mb.when("2023-08-10"))
    raw = raw.replace(b"From: =?utf-8?b?5byg5LiJ?= <mzj@xixia.example>", b"\r\n".join(from_lines))
    res = ingest(cfg, db, raw)
    assert (res.status, res.reason_code) == ("quarantined", "bad_from") and outbox(db) == []


def test_ping_pong_a_thank_you_to_our_receipt_is_recorded_not_answered(cfg, db, make_report):
    first = ingest(cfg, db, mb.simple(attachments=[("a.docx", make_report(ALL).read_bytes())], date=mb.when("2023-08-10")))
    [ack] = outbox(db)
    thanks = mb.simple(subject="Re: " + ack["subject"], body="收到，谢谢", headers={"In-Reply-To": ack["msgid"], "References": ack["msgid"]},
                       date=mb.when("2023-08-10"))
    res = ingest(cfg, db, thanks)
    assert (res.status, res.reason_code) == ("ignored", "reply_to_us") and len(outbox(db)) == 1
    assert first.status == "accepted"
    plain = ingest(cfg, db, mb.simple(subject="台账", body="忘了附件", date=mb.when("2023-08-11")))
    assert plain.status == "rejected"  # not a reply to us: the unit is told what is missing


def test_invisible_characters_never_reach_a_receipt(cfg, db, make_report):
    sneaky = "已完成\u202egnp.exe\u200b\u200d\u2066隐藏\u2069\ufeff"
    res = ingest(cfg, db, mb.simple(attachments=[("a.docx", make_report({1: sneaky}, unit="民政局\u202e").read_bytes())],
                                    date=mb.when("2023-08-10")))
    [ack] = outbox(db)
    for ch in "\u202e\u200b\u200d\u2066\u2069\ufeff":
        assert ch not in ack["body_text"] and ch not in ack["body_html"] and ch not in ack["subject"]
    assert "已完成gnp.exe隐藏" in ack["body_text"]
    assert res.status == "accepted"


def test_year_9999_date_is_recorded_and_reindex_carries_on(cfg, db, make_report, tmp_path, clock):
    from mailbot.maintenance import reindex

    raw = mb.simple(attachments=[("a.docx", make_report(ALL).read_bytes())], date=mb.when("2023-08-10"))
    raw = raw.replace(b"Date: ", b"Date: Fri, 31 Dec 9999 23:59:59 +0000\r\nX-Old-Date: ", 1)
    res = ingest(cfg, db, raw)
    assert res.status == "accepted"
    assert db["messages"].get(res.message_row)["received_at"] == store.iso(clock.t)  # our clock, not the sender's
    counts = reindex(cfg, tmp_path / "rebuilt.db")
    assert counts == {"accepted": 1}
