"""Reminders, overdue notices and digests over a simulated season, against the real SMTP test server."""

from __future__ import annotations

import collections
import datetime as dt
import json
import subprocess
import sys

import pytest

import mailbuilder as mb
from mailbot import store
from mailbot.config import load_config
from mailbot.intake import ingest
from mailbot.notices import due_notices, queue_notices
from mailbot.outbox import deliver
from servers import SmtpServer

TZ8 = dt.timezone(dt.timedelta(hours=8))


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TZ8)


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def season_cfg(cfg_path, smtp):
    text = cfg_path.read_text(encoding="utf-8")
    text = text.replace('host = "smtp.163.com"', 'host = "127.0.0.1"').replace("port = 465", f"port = {smtp.port}")
    text = text.replace('[smtp]\nhost = "127.0.0.1"\nport = %d\nsecurity = "ssl"' % smtp.port, '[smtp]\nhost = "127.0.0.1"\nport = %d\nsecurity = "plain"' % smtp.port)
    text = text.replace('user = "xxqzwgk001@163.com"\npassword_env = "MAILBOT_SMTP_PASSWORD"', 'user = ""\npassword_env = "MAILBOT_SMTP_PASSWORD"')
    text = text.replace("[bot]\n", "[bot]\nreply_max_age_days = 100000\n", 1)
    cfg_path.write_text(text, encoding="utf-8")
    return load_config(cfg_path)


def kind_of(subject: str) -> str:
    for prefix, kind in (("【提醒】", "reminder"), ("【逾期未报】", "overdue"), ("【台账报送日报】", "digest"), ("【回执】", "ack"), ("【退回】", "reject")):
        if subject.startswith(prefix):
            return kind
    return "other"


def simulate(cfg, start: dt.datetime, end: dt.datetime, *, step=dt.timedelta(hours=1), events=None, down=(), restart_at=None):
    """Run the notice job and the outbox every `step` on an injected clock; return what went out when."""
    events = dict(events or {})
    db = store.open_db(cfg.db_path)
    sent = []
    t = start
    while t <= end:
        if any(a <= t < b for a, b in down):
            t += step
            continue
        if restart_at is not None and t == restart_at:
            db.close()  # the daemon restarts: only the database remembers
            db = store.open_db(cfg.db_path)
        for when in sorted(k for k in events if k <= t):
            events.pop(when)(db, when)
        queue_notices(cfg, db, t)
        before = {r["id"] for r in db.query("SELECT id FROM outbox WHERE status = 'sent'")}
        deliver(cfg, db, now=t)
        for row in db.query("SELECT id, kind, unit, subject FROM outbox WHERE status = 'sent'"):
            if row["id"] not in before:
                sent.append((t, row["kind"], row["unit"], row["subject"]))
        t += step
    db.close()
    return sent


def report_event(cfg, make_report, sender: str, unit: str):
    def event(db, when):
        raw = mb.simple(sender=sender, subject=f"{unit}台账", message_id=f"<{when:%Y%m%d%H}.{sender}>",
                        attachments=[("r.docx", make_report({1: "已落实"}, unit=unit).read_bytes())])
        assert ingest(cfg, db, raw, received_at=when).status == "accepted"

    return event


def test_season_reminders_overdue_digests(season_cfg, smtp, make_report):
    cfg = season_cfg
    events = {
        at("2023-08-10T10:00"): report_event(cfg, make_report, "mzj@xixia.example", "民政局"),
        at("2023-08-20T15:00"): report_event(cfg, make_report, "sfj@xixia.example", "司法局"),
        at("2023-12-01T11:00"): report_event(cfg, make_report, "mzj@xixia.example", "民政局"),
    }
    sent = simulate(cfg, at("2023-07-01T00:00"), at("2023-12-31T23:00"), events=events)
    per = collections.defaultdict(list)
    for t, kind, unit, _s in sent:
        per[(kind, unit)].append(t.astimezone(TZ8).strftime("%m-%d %H:%M"))

    mid_rem = ["08-08 09:00", "08-12 09:00", "08-14 09:00"]
    mid_over = ["08-16 09:00", "08-19 09:00", "08-22 09:00", "08-25 09:00", "08-28 09:00", "08-31 09:00"]
    end_rem = ["11-28 09:00", "12-02 09:00", "12-04 09:00"]
    end_over = [f"12-{d:02d} 09:00" for d in (6, 9, 12, 15, 18, 21, 24, 27, 30)]
    # a unit that never reports: every reminder and every overdue notice, once, at 09:00
    assert per[("reminder", "教育局")] == mid_rem + end_rem
    assert per[("overdue", "教育局")] == mid_over + end_over
    # reported on 10 Aug: the first 年中 reminder only; reported 1 Dec for 年底: two reminders before
    assert per[("reminder", "民政局")] == ["08-08 09:00", "11-28 09:00"]
    assert ("overdue", "民政局") not in per or per[("overdue", "民政局")] == []
    # reported late on 20 Aug: the reminders and two overdue notices, none after reporting
    assert per[("reminder", "司法局")] == mid_rem + end_rem
    assert per[("overdue", "司法局")] == ["08-16 09:00", "08-19 09:00"] + end_over
    # every unit on the roster was chased; the SMTP server got exactly what the outbox says
    units = [u.name for u in cfg.roster]
    assert {u for (k, u) in per if k == "reminder"} == set(units)
    captured = collections.Counter(kind_of(m.message["Subject"]) for m in smtp.messages)
    assert captured["reminder"] == sum(len(v) for (k, _u), v in per.items() if k == "reminder")
    assert captured["overdue"] == sum(len(v) for (k, _u), v in per.items() if k == "overdue")
    # nothing at night (quiet hours 20:00–08:00)
    assert all(8 <= t.astimezone(TZ8).hour < 20 for t, *_ in sent)
    # digests: daily in the week before each deadline, the day after it, and after activity; never twice a day
    digest_days = [t.astimezone(TZ8).strftime("%m-%d") for t, kind, *_ in sent if kind == "digest"]
    assert len(digest_days) == len(set(digest_days))
    for day in ("08-08", "08-14", "08-16", "08-21", "11-28", "12-06"):
        assert day in digest_days, day
    assert "07-15" not in digest_days and "10-15" not in digest_days
    # the reminder carries the unit's own pre-filled form, which parses back to that unit
    reminder = next(m.message for m in smtp.messages if kind_of(m.message["Subject"]) == "reminder" and m.rcpt_tos == ["jyj@xixia.example"])
    [att] = [p for p in reminder.iter_attachments()]
    assert att.get_filename().startswith("教育局")
    from mailbot.reports import parse_document

    parsed = parse_document(att.get_payload(decode=True), cfg.ledger, cfg.roster)
    assert parsed.unit == "教育局" and [e.task for e in parsed.entries] == cfg.roster.tasks_of("教育局", cfg.ledger)


def test_restart_in_the_middle_sends_nothing_twice(season_cfg, smtp):
    cfg = season_cfg
    sent = simulate(cfg, at("2023-08-07T00:00"), at("2023-08-17T23:00"), restart_at=at("2023-08-12T09:00"))
    keys = [(kind, unit, t.date()) for t, kind, unit, _s in sent]
    assert len(keys) == len(set(keys))
    per_unit = collections.Counter((kind, unit) for t, kind, unit, _ in sent if kind == "reminder")
    assert set(per_unit.values()) == {3}
    # running the same moment again after the restart adds nothing
    db = store.open_db(cfg.db_path)
    assert [n for n in due_notices(cfg, db, at("2023-08-12T09:30")) if n.kind != "digest"] == []


def test_three_day_outage_over_a_reminder_day_catches_up(season_cfg, smtp):
    cfg = season_cfg
    sent = simulate(cfg, at("2023-08-07T00:00"), at("2023-08-15T23:00"), down=[(at("2023-08-10T12:00"), at("2023-08-13T12:00"))])
    times = sorted({t.astimezone(TZ8).strftime("%m-%d %H:%M") for t, kind, unit, _ in sent if kind == "reminder" and unit == "教育局"})
    assert times == ["08-08 09:00", "08-13 12:00", "08-14 09:00"]


def test_outage_across_the_deadline_sends_no_stale_reminder(season_cfg, smtp):
    cfg = season_cfg
    sent = simulate(cfg, at("2023-08-13T00:00"), at("2023-08-17T23:00"), down=[(at("2023-08-13T00:00"), at("2023-08-16T10:00"))])
    kinds = {(kind, t.astimezone(TZ8).strftime("%m-%d %H:%M")) for t, kind, unit, _ in sent if unit == "教育局"}
    assert kinds == {("overdue", "08-16 10:00")}


def test_quiet_hours_and_weekends(season_cfg, smtp, cfg_path):
    db = store.open_db(season_cfg.db_path)
    assert due_notices(season_cfg, db, at("2023-08-08T21:00")) == []
    assert [n for n in due_notices(season_cfg, db, at("2023-08-09T08:00")) if n.kind == "reminder"]
    text = cfg_path.read_text(encoding="utf-8") + '\n[notices]\nskip_weekends = true\n'
    cfg_path.write_text(text, encoding="utf-8")
    weekend_cfg = load_config(cfg_path)
    assert due_notices(weekend_cfg, db, at("2023-08-12T10:00")) == []  # a Saturday
    assert due_notices(weekend_cfg, db, at("2023-08-14T10:00"))  # Monday


def test_notices_json_contract(cfg_path, make_report):
    cfg = load_config(cfg_path)
    db = store.open_db(cfg.db_path)
    ingest(cfg, db, mb.simple(attachments=[("r.docx", make_report({1: "x"}).read_bytes())], date=mb.when("2023-08-05")))
    out = subprocess.run(
        [sys.executable, "-m", "mailbot.cli", "--config", str(cfg_path), "--now", "2023-08-08T09:30+08:00", "notices", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    reminders = [n for n in data if n["kind"] == "reminder"]
    expected = [u.name for u in cfg.roster if u.name != "民政局"]
    assert [n["unit"] for n in reminders] == expected
    assert all(n["round"] == "年中" and n["to"] == list(cfg.roster.get(n["unit"]).emails) for n in reminders)
    assert [n for n in data if n["kind"] == "digest"] == [{"kind": "digest", "round": None, "unit": None, "to": ["duchashi@xixia.example"]}]
    assert set(data[0]) == {"kind", "round", "unit", "to"}
    # listing does not send or queue anything
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'reminder'").fetchone()[0] == 0


def test_overdue_notices_for_the_last_round_stop(season_cfg):
    db = store.open_db(season_cfg.db_path)
    assert [n for n in due_notices(season_cfg, db, at("2024-01-10T09:30")) if n.kind == "overdue"]
    assert [n for n in due_notices(season_cfg, db, at("2024-06-01T09:30")) if n.kind == "overdue"] == []
