"""Message intake: every status, unit identification, rounds, encodings, history, replies."""

from __future__ import annotations

import json

import pytest

import mailbuilder as mb
from mailbot import store
from mailbot.intake import ingest

ALL = {t: f"任务{t}已按要求落实，发布信息{t}条。" for t in range(1, 31)}


def docx_bytes(make_report, progress=ALL, **kw) -> bytes:
    return make_report(progress, **kw).read_bytes()


def outbox(db):
    return list(db.query("SELECT * FROM outbox ORDER BY id"))


def test_accepted_on_time_records_all_tasks_and_queues_ack(cfg, db, make_report):
    raw = mb.simple(attachments=[("民政局台账.docx", docx_bytes(make_report))], date=mb.when("2023-08-10"))
    res = ingest(cfg, db, raw)
    mz_tasks = cfg.roster.tasks_of("民政局", cfg.ledger)
    assert res.as_dict() == {
        "status": "accepted",
        "unit": "民政局",
        "round": "年中",
        "tasks": mz_tasks,  # only its own tasks are recorded from a full 30-task form
        "missing": [],
        "reason": None,
        "message": res.message_row,  # the number inbox/accept/reprocess/digest/logs use
    }
    assert res.message_row == 1 and res.verified and not res.late
    assert 3 in mz_tasks and 4 in mz_tasks and 2 not in mz_tasks and 20 not in mz_tasks
    rows = store.export_rows(db)
    assert len(rows) == len(mz_tasks) and rows[0]["progress"] == ALL[1]
    [ack] = outbox(db)
    assert ack["kind"] == "ack" and json.loads(ack["to_addrs"]) == ["mzj@xixia.example"]
    assert json.loads(ack["cc_addrs"]) == []
    assert "按时" in ack["subject"] and "民政局" in ack["subject"]
    assert "已收到并登记" in ack["body_text"] and "2023年8月10日 10:00" in ack["body_text"]
    assert ack["in_reply_to"].startswith("<") and ack["msgid"].startswith("<mailbot.")


def test_archive_written_before_and_kept(cfg, db, make_report):
    raw = mb.simple(attachments=[("a.docx", docx_bytes(make_report))])
    res = ingest(cfg, db, raw)
    row = db["messages"].get(res.message_row)
    assert open(row["archive_path"], "rb").read() == raw


def test_late_report_after_deadline_is_late_nianzhong(cfg, db, make_report):
    raw = mb.simple(attachments=[("a.docx", docx_bytes(make_report))], date=mb.when("2023-08-20"))
    res = ingest(cfg, db, raw)
    assert (res.status, res.round, res.late) == ("accepted", "年中", True)
    assert "逾期" in outbox(db)[0]["subject"]


def test_deadline_day_is_on_time_and_next_round_by_opens(cfg, db, make_report):
    a = ingest(cfg, db, mb.simple(attachments=[("a.docx", docx_bytes(make_report))], date=mb.when("2023-08-15", 23)))
    assert (a.round, a.late) == ("年中", False)
    b = ingest(
        cfg, db, mb.simple(subject="年底", attachments=[("b.docx", docx_bytes(make_report, {1: "年底进展"}))], date=mb.when("2023-12-01"))
    )
    assert (b.round, b.late) == ("年底", False)


def test_received_header_beats_date_header(cfg, db, make_report):
    # The sender's clock says 10 Aug; our server received it on 16 Aug: late.
    raw = mb.simple(attachments=[("a.docx", docx_bytes(make_report))], date=mb.when("2023-08-10"), received=mb.when("2023-08-16", 9))
    res = ingest(cfg, db, raw)
    assert res.late and res.round == "年中"


def test_partial_report_lists_missing_then_resubmission_replaces(cfg, db, make_report):
    first = ingest(cfg, db, mb.simple(attachments=[("a.docx", docx_bytes(make_report, {1: "初稿1", 3: "初稿3"}))]))
    mine = cfg.roster.tasks_of("民政局", cfg.ledger)
    assert first.tasks == [1, 3]
    assert first.missing == [t for t in mine if t not in (1, 3)]
    ack = outbox(db)[0]["body_text"]
    assert "尚未填写进展落实情况" in ack and "任务4：" in ack
    second = ingest(
        cfg, db, mb.simple(subject="更正", body="更正版", attachments=[("b.docx", docx_bytes(make_report, {1: "终稿1", 4: "终稿4"}))])
    )
    assert second.tasks == [1, 4] and second.replaced and second.kept == [3]
    current = {(r["task"]): r["progress"] for r in store.export_rows(db)}
    assert current == {1: "终稿1", 3: "初稿3", 4: "终稿4"}
    history = [r["progress"] for r in db.query("SELECT progress FROM progress_history WHERE task = 1 ORDER BY id")]
    assert history == ["初稿1", "终稿1"]
    body = outbox(db)[1]["body_text"]
    assert "已更新你单位此前报送的内容" in body and "保留你单位此前报送的内容：3" in body


def test_duplicate_same_bytes_and_same_message_id(cfg, db, make_report):
    raw = mb.simple(attachments=[("a.docx", docx_bytes(make_report))], message_id="<same@x.example>")
    assert ingest(cfg, db, raw).status == "accepted"
    again = ingest(cfg, db, raw)
    assert again.status == "duplicate" and again.unit == "民政局" and again.round == "年中"
    # the same Message-ID seen in another folder with an extra header
    other = b"X-Folder-Copy: junk\r\n" + raw
    assert ingest(cfg, db, other).status == "duplicate"
    assert len(outbox(db)) == 1
    assert [r["status"] for r in db.query("SELECT status FROM messages ORDER BY id")] == ["accepted", "duplicate", "duplicate"]


@pytest.mark.parametrize(
    "headers,subject,sender",
    [
        ({"Auto-Submitted": "auto-replied"}, "Re: 回执", "mzj@xixia.example"),
        ({"X-Autoreply": "yes"}, "回执", "mzj@xixia.example"),
        ({}, "自动回复：回执", "mzj@xixia.example"),
        ({}, "Automatic reply: 回执", "mzj@xixia.example"),
        ({}, "Undelivered Mail Returned to Sender", "MAILER-DAEMON@xixia.example"),
        ({"X-Mailbot-Loop": "xxqzwgk001@163.com"}, "【回执】民政局", "mzj@xixia.example"),
        ({}, "我们自己的邮件", "xxqzwgk001@163.com"),
    ],
)
def test_automatic_and_own_mail_ignored_without_reply(cfg, db, make_report, headers, subject, sender):
    raw = mb.simple(sender=sender, subject=subject, headers=headers, attachments=[("a.docx", docx_bytes(make_report))])
    res = ingest(cfg, db, raw)
    assert res.status == "ignored" and res.reason
    assert outbox(db) == [] and store.export_rows(db) == []


def test_qq_vacation_reply_ignored(cfg, db):
    raw = mb.simple(subject="Re: 回执", body="这是来自QQ邮箱的假期自动回复邮件。您好，我最近正在休假中")
    assert ingest(cfg, db, raw).status == "ignored"


def test_unknown_sender_naming_no_unit_quarantined_silently(cfg, db, make_report):
    raw = mb.simple(sender="stranger@spam.example", subject="hello", attachments=[("x.docx", docx_bytes(make_report, unit="某某公司"))])
    res = ingest(cfg, db, raw)
    assert res.status == "quarantined" and res.unit is None and "不在单位名册" in res.reason
    assert outbox(db) == [] and store.export_rows(db) == []


def test_unknown_sender_naming_unit_accepted_unverified_and_cc_unit(cfg, db, make_report):
    raw = mb.simple(sender="someone@qq.example", subject="台账", attachments=[("x.docx", docx_bytes(make_report, unit="西夏区司法局（盖章）"))])
    res = ingest(cfg, db, raw)
    assert (res.status, res.unit, res.verified) == ("accepted", "司法局", False)
    # issue 11: the receipt with the content goes to the unit's registered address only; the
    # stranger gets a fixed text that quotes nothing it wrote
    notice, ack = outbox(db)
    assert json.loads(ack["to_addrs"]) == ["sfj@xixia.example"] and json.loads(ack["cc_addrs"]) == []
    assert "不是「司法局」登记的邮箱" in ack["body_text"]
    assert (notice["kind"], json.loads(notice["to_addrs"])) == ("stranger", ["someone@qq.example"])
    assert "司法局" not in notice["body_text"] + notice["subject"] and "台账" not in notice["subject"]


def test_unknown_sender_unit_named_in_subject_only(cfg, db, make_report):
    raw = mb.simple(sender="someone@qq.example", subject="兴泾镇 2023年中台账", attachments=[("x.docx", docx_bytes(make_report, unit="", header_style="blank"))])
    res = ingest(cfg, db, raw)
    assert (res.status, res.unit, res.verified) == ("accepted", "兴泾镇", False)


def test_forged_roster_sender_failing_authentication_quarantined(cfg, db, make_report):
    raw = b"Authentication-Results: mx.163.com; spf=fail smtp.mailfrom=mzj@xixia.example; dkim=none\r\n" + mb.simple(
        attachments=[("a.docx", docx_bytes(make_report))]
    )
    res = ingest(cfg, db, raw)
    assert res.status == "quarantined" and "spf=fail" in res.reason
    assert outbox(db) == [] and store.export_rows(db) == []


def test_lower_authentication_results_from_sender_not_trusted(cfg, db, make_report):
    # Only the topmost header is our server's; a "pass" forged below does not help, a "fail" below does not hurt.
    raw = b"Authentication-Results: mx.163.com; spf=pass; dkim=pass\r\nAuthentication-Results: evil; dmarc=fail\r\n" + mb.simple(
        attachments=[("a.docx", docx_bytes(make_report))]
    )
    assert ingest(cfg, db, raw).status == "accepted"


@pytest.mark.parametrize(
    "attachments,code,words",
    [
        ([], "no_attachment", "没有附件"),
        ([("report.pdf", b"%PDF-1.4\n1 0 obj\n")], "pdf", "PDF"),
        ([("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF")], "image", "图片"),
        ([("r.rar", b"Rar!\x1a\x07\x00xxxx")], "rar", "RAR"),
        ([("notes.txt", b"just text")], "not_document", "不是 Word"),
    ],
)
def test_known_sender_without_usable_report_rejected_with_reason(cfg, db, attachments, code, words):
    res = ingest(cfg, db, mb.simple(attachments=attachments))
    assert res.status == "rejected"
    row = db["messages"].get(res.message_row)
    assert row["reason_code"] == code and words in res.reason
    [reply] = outbox(db)
    assert reply["kind"] == "reject" and words in reply["body_text"] and "【退回】" in reply["subject"]
    [form] = json.loads(reply["attachments"])  # the unit's own blank form, to fill in
    from mailbot.reports import parse_document

    parsed = parse_document(open(form["path"], "rb").read(), cfg.ledger, cfg.roster)
    assert parsed.unit == "民政局" and "空白台账" in reply["body_text"]
    assert res.missing == cfg.roster.tasks_of("民政局", cfg.ledger)


def test_empty_form_rejected(cfg, db, make_report):
    res = ingest(cfg, db, mb.simple(attachments=[("a.docx", docx_bytes(make_report, {}))]))
    assert res.status == "rejected" and "全部为空" in res.reason


def test_not_a_ledger_rejected(cfg, db, tmp_path):
    from docx import Document

    doc = Document()
    doc.add_paragraph("关于报送工作总结的函")
    doc.save(tmp_path / "letter.docx")
    res = ingest(cfg, db, mb.simple(attachments=[("letter.docx", (tmp_path / "letter.docx").read_bytes())]))
    assert res.status == "rejected" and "没有找到台账表格" in res.reason


def test_foxmail_gbk_labelled_gb2312_subject_and_filename(cfg, db, make_report):
    name = "西夏区民政局台账（喆堃镕）.docx"  # GBK-only characters under a gb2312 label
    raw = mb.foxmail_gbk(sender="mzj@xixia.example", subject="民政局报送：喆堃镕", filename=name, data=docx_bytes(make_report))
    res = ingest(cfg, db, raw)
    assert res.status == "accepted"
    row = db["messages"].get(res.message_row)
    assert row["subject"] == "民政局报送：喆堃镕" and row["from_name"] == "李四"
    assert json.loads(row["files"])[0]["name"] == name


def test_unknown_charset_label_x_gbk(cfg, db, make_report):
    raw = mb.foxmail_gbk(sender="mzj@xixia.example", subject="台账报送", filename="台账.docx", data=docx_bytes(make_report), label="x-gbk")
    res = ingest(cfg, db, raw)
    assert db["messages"].get(res.message_row)["subject"] == "台账报送"


def test_rfc2231_continuation_and_raw_8bit_subject(cfg, db, make_report):
    name = "兴泾镇2023年政务公开工作要点任务落实台账（年中）.docx"
    raw = mb.rfc2231_gbk(sender="xjz@xixia.example", subject="兴泾镇台账", filename=name, data=docx_bytes(make_report, unit="兴泾镇"))
    res = ingest(cfg, db, raw)
    row = db["messages"].get(res.message_row)
    assert res.unit == "兴泾镇" and row["subject"] == "兴泾镇台账"
    assert json.loads(row["files"])[0]["name"] == name


def test_raw_8bit_gbk_filename(cfg, db, make_report):
    raw = mb.raw_8bit_name(sender="mzj@xixia.example", filename="民政局.docx", data=docx_bytes(make_report))
    res = ingest(cfg, db, raw)
    assert res.status == "accepted"
    assert json.loads(db["messages"].get(res.message_row)["files"])[0]["name"] == "民政局.docx"


def test_forwarded_message_rfc822_report_found_once(cfg, db, make_report):
    data = docx_bytes(make_report)
    inner = mb.simple(sender="mzj@xixia.example", attachments=[("民政局.docx", data)])
    raw = mb.forward(inner, sender="mzj@xixia.example")
    res = ingest(cfg, db, raw)
    assert res.status == "accepted" and res.tasks == cfg.roster.tasks_of("民政局", cfg.ledger)
    files = json.loads(db["messages"].get(res.message_row)["files"])
    assert [f["name"] for f in files] == ["民政局.docx"] and "转发" in files[0]["path"]


def test_zip_with_gbk_member_names(cfg, db, make_report):
    data = docx_bytes(make_report)
    archive = mb.zip_gbk({"西夏区民政局台账.docx": data, "说明.txt": "见台账".encode("gbk")})
    res = ingest(cfg, db, mb.simple(attachments=[("台账.zip", archive)]))
    assert res.status == "accepted"
    names = [f["name"] for f in json.loads(db["messages"].get(res.message_row)["files"])]
    assert "西夏区民政局台账.docx" in names


def test_same_attachment_twice_is_one_file(cfg, db, make_report):
    data = docx_bytes(make_report)
    res = ingest(cfg, db, mb.simple(attachments=[("a.docx", data), ("a副本.docx", data)]))
    assert res.status == "accepted"
    assert len(json.loads(db["messages"].get(res.message_row)["files"])) == 1
    assert not any("多份台账" in w for w in res.warnings)


def test_unit_mismatch_warning_keeps_roster_unit(cfg, db, make_report):
    res = ingest(cfg, db, mb.simple(attachments=[("a.docx", docx_bytes(make_report, unit="司法局"))]))
    assert res.unit == "民政局" and any("不一致" in w for w in res.warnings)
    assert "不一致" in outbox(db)[0]["body_text"]


def test_path_traversal_attachment_name_sanitised(cfg, db, make_report):
    res = ingest(cfg, db, mb.simple(attachments=[("../../etc/passwd.docx", docx_bytes(make_report))]))
    assert res.status == "accepted"
    [f] = json.loads(db["messages"].get(res.message_row)["files"])
    assert f["name"] == "passwd.docx"


def test_html_in_unit_text_is_escaped_in_html_reply(cfg, db, make_report):
    evil = "<script>alert(1)</script>{{ 7*7 }}"
    res = ingest(cfg, db, mb.simple(attachments=[("a.docx", docx_bytes(make_report, {1: evil}))]))
    ack = outbox(db)[0]
    assert res.status == "accepted"
    assert "<script>" not in ack["body_html"] and "&lt;script&gt;" in ack["body_html"]
    assert "{{ 7*7 }}" in ack["body_text"] and "49" not in ack["body_text"]


def test_subject_with_crlf_does_not_inject_headers(cfg, db):
    raw = mb.simple(subject="民政局", attachments=[]).replace(b"Subject: ", b"Subject: =?utf-8?q?a=0D=0ABcc:_evil@x.example?= ", 1)
    res = ingest(cfg, db, raw)
    row = db["outbox"].get(1)
    assert res.status == "rejected" and "\n" not in row["subject"] and "\r" not in row["subject"]
    assert "Bcc:" not in row["subject"].split("：")[0]


def test_every_status_has_reason_except_accepted(cfg, db, make_report):
    ingest(cfg, db, mb.simple(attachments=[("a.docx", docx_bytes(make_report))]))
    ingest(cfg, db, mb.simple(sender="x@spam.example", subject="hi"))
    ingest(cfg, db, mb.simple(subject="自动回复：休假"))
    ingest(cfg, db, mb.simple(subject="无附件"))
    for row in db.query("SELECT status, reason FROM messages"):
        assert row["status"] in ("accepted", "duplicate", "quarantined", "rejected", "ignored")
        assert (row["reason"] is None) == (row["status"] == "accepted"), row


def _bomb_docx(good: bytes) -> bytes:
    """A .docx whose document.xml expands to 300 MB of zeros (compressed ~300 KB)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != "word/document.xml":
                dst.writestr(info, src.read(info))
        with dst.open("word/document.xml", "w", force_zip64=True) as fh:
            chunk = b"\0" * (1 << 20)
            for _ in range(300):
                fh.write(chunk)
    return out.getvalue()


def _entity_docx(good: bytes) -> bytes:
    import io
    import zipfile

    lol = '<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi")
    ) + ']><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>&i;</w:t></w:r></w:p></w:body></w:document>'
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, lol.encode() if info.filename == "word/document.xml" else src.read(info))
    return out.getvalue()


@pytest.mark.parametrize(
    "make,code",
    [
        (_bomb_docx, "zip_bomb"),
        (_entity_docx, "entity"),
        (lambda good: good[: len(good) // 2], "corrupt"),
        (lambda good: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 4000, None),  # junk OLE: converter fails or is missing
    ],
)
def test_hostile_attachment_rejected_with_reason_and_archived(cfg, db, make_report, make, code):
    raw = mb.simple(attachments=[("台账.docx", make(docx_bytes(make_report)))])
    res = ingest(cfg, db, raw)
    assert res.status == "rejected" and res.reason
    row = db["messages"].get(res.message_row)
    if code:
        assert row["reason_code"] == code
    else:
        assert row["reason_code"] in ("conversion_failed", "no_converter", "conversion_timeout")
    assert open(row["archive_path"], "rb").read() == raw
    assert store.export_rows(db) == []


# --- regressions from the independent review ------------------------------------------------------


@pytest.mark.parametrize(
    "from_header",
    ["=?utf-8?q?mzj=40xixia.example?= <attacker@evil.example>", "mzj@xixia.example <attacker@evil.example>"],
)
def test_display_name_cannot_pose_as_roster_address(cfg, db, make_report, from_header):
    raw = mb.simple(attachments=[("a.docx", docx_bytes(make_report))]).replace(
        b"From: =?utf-8?b?5byg5LiJ?= <mzj@xixia.example>", b"From: " + from_header.encode()
    )
    assert b"attacker@evil.example" in raw
    res = ingest(cfg, db, raw)
    row = db["messages"].get(res.message_row)
    # never the roster address; an ambiguous header yields no address at all
    assert row["from_addr"] in ("attacker@evil.example", "")
    assert not res.verified
    if row["from_addr"] == "":  # issue 11: a From without a usable address is quarantined, unanswered
        assert (res.status, res.reason_code, outbox(db)) == ("quarantined", "bad_from", [])
    else:  # the report names 民政局: accepted as unverified, the receipt to 民政局's own address
        acks = [r for r in outbox(db) if r["kind"] == "ack"]
        assert [json.loads(a["to_addrs"]) for a in acks] == [["mzj@xixia.example"]]


def test_line_separator_in_message_id_cannot_reach_headers(cfg, db):
    raw = mb.simple(sender="x@qq.example", subject="民政局台账", message_id="<ab@x.example>")
    raw = raw.replace(b"<ab@x.example>", "<a\u2028b@x.example>".encode("utf-8"))
    res = ingest(cfg, db, raw)
    [row] = outbox(db)
    assert res.status == "rejected" and row["in_reply_to"] is None
    assert "\u2028" not in (row["references"] or "")
    from mailbot.outbox import build_email

    assert "\u2028" not in str(build_email(cfg, row))  # the reply can be built: nothing blocks the queue


def test_raw_8bit_rfc2231_name_does_not_lose_the_other_attachments(cfg, db, make_report):
    good = mb.simple(attachments=[("report.docx", docx_bytes(make_report))])
    odd = ("--PART\r\nContent-Type: image/png\r\nContent-Disposition: inline; filename*=utf-8''公章.png\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n").encode("utf-8")
    boundary = good.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    raw = good.replace(b"--" + boundary + b"--", odd.replace(b"PART", boundary) + b"--" + boundary + b"--")
    res = ingest(cfg, db, raw)
    assert res.status == "accepted" and res.tasks == cfg.roster.tasks_of("民政局", cfg.ledger)


def test_forward_attached_as_eml_file_is_opened(cfg, db, make_report):
    inner = mb.simple(attachments=[("民政局.docx", docx_bytes(make_report))])
    raw = mb.simple(subject="转发", attachments=[("原邮件.eml", inner)])
    res = ingest(cfg, db, raw)
    assert res.status == "accepted" and res.tasks == cfg.roster.tasks_of("民政局", cfg.ledger)


def test_no_from_address_is_quarantined_and_acceptable_by_a_person(cfg, db, make_report):
    """Issue 11 changed this: a From without a usable address is quarantined (no reply); `accept` resolves it."""
    from mailbot.intake import accept_message

    raw = mb.simple(attachments=[("a.docx", docx_bytes(make_report))]).replace(
        b"From: =?utf-8?b?5byg5LiJ?= <mzj@xixia.example>", b"From: undisclosed-recipients:;"
    )
    res = ingest(cfg, db, raw)
    assert (res.status, res.reason_code) == ("quarantined", "bad_from") and outbox(db) == []
    got = accept_message(cfg, db, res.message_row, "民政局", reason="核实", actor="c")
    assert got.status == "accepted"
    [ack] = outbox(db)
    assert json.loads(ack["to_addrs"]) == ["mzj@xixia.example"]


def test_missing_is_reported_for_every_status_with_a_unit(cfg, db):
    raw = b"Authentication-Results: mx; dmarc=fail\r\n" + mb.simple(subject="x")
    res = ingest(cfg, db, raw)
    assert res.status == "quarantined" and res.missing == cfg.roster.tasks_of("民政局", cfg.ledger)


def test_absurd_date_header_does_not_crash(cfg, db):
    raw = mb.simple(subject="无附件").replace(b"Date: ", b"X-Old-Date: ", 1)
    raw = b"Date: Fri, 31 Dec 9999 23:59:59 -2359\r\n" + raw
    assert ingest(cfg, db, raw).status == "rejected"


def test_two_processes_recording_the_same_mail_accept_it_once(cfg, make_report):
    import threading

    from mailbot.intake import commit, prepare

    raw = mb.simple(attachments=[("a.docx", docx_bytes(make_report))], message_id="<race@x.example>")
    prepared = [prepare(cfg, raw), prepare(cfg, raw)]
    store.open_db(cfg.db_path).close()
    barrier = threading.Barrier(2)
    results = [None, None]

    def run(i):
        db = store.open_db(cfg.db_path)  # each "process" its own connection
        barrier.wait()
        results[i] = commit(cfg, db, prepared[i]).status
        db.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["accepted", "duplicate"]
    assert store.open_db(cfg.db_path).execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1



@pytest.mark.parametrize("headers", [{"Precedence": "bulk"}, {"List-Unsubscribe": "<mailto:x@x.example>"}, {"X-Auto-Response-Suppress": "All"}])
def test_do_not_answer_headers_record_the_report_without_reply(cfg, db, make_report, headers):
    # QUIRKS 19 says "do not answer", not "do not record": a report sent through a
    # mass-mail tool or from Outlook with X-Auto-Response-Suppress still counts.
    res = ingest(cfg, db, mb.simple(headers=headers, attachments=[("a.docx", docx_bytes(make_report))]))
    assert res.status == "accepted" and res.tasks == cfg.roster.tasks_of("民政局", cfg.ledger)
    assert outbox(db) == []


def test_correction_after_deadline_is_not_called_late(cfg, db, make_report):
    ingest(cfg, db, mb.simple(attachments=[("a.docx", docx_bytes(make_report, {1: "初稿"}))], date=mb.when("2023-08-10")))
    res = ingest(cfg, db, mb.simple(subject="更正", attachments=[("b.docx", docx_bytes(make_report, {1: "终稿"}))], date=mb.when("2023-08-20")))
    assert res.late and res.first_on_time
    ack = outbox(db)[1]
    assert "更正" in ack["subject"] and "逾期" not in ack["subject"]
    assert "仍记为按时报送" in ack["body_text"] and "已记为逾期报送" not in ack["body_text"]
