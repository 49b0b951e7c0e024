"""Coordinator outputs at province scale: status, exports, digest and due notices for N units × 30 tasks × 2 rounds.

    .venv/bin/python bench/province.py [--units 2000] [--ledger all|shipped] [--repeat 7] [--skip-docx] [--no-job]

Everything runs in-process, through the same functions the CLI calls: `status`,
`status --tasks`, `export --format json|csv|xlsx|docx` are timed as
``mailbot.cli.main([...])`` (config load included, output written to a temp dir);
the digest as ``notices.queue_digest`` (context, text + HTML bodies and the .xlsx
attachment) with a breakdown; the due-notice computation as ``notices.due_notices``
and the notices job as ``notices.queue_notices`` (what the daemon runs).

The roster: the 31 units of config.toml, then synthetic units up to --units,
alternately departments (省直部门0001…) and towns (…镇 / …街道), each with one
address. The ledger: by default (--ledger all) the shipped 2023 ledger with every
task's 责任单位 set to 政府各部门、各镇街, so that every unit owns all 30 tasks
(2,000 × 30 × 2 = 120,000 (round, unit, task) cells: the figure the issue asks for,
and the worst case). With --ledger shipped the 2023 ledger is used as it is (towns
own 26 tasks, departments 25, a few named units 26–27).

The state: a season simulated in time order. For each (round, unit): 80–88 % report
on time (most in the last week), 10–12 % late, the rest never; 15 % send a second,
replacing report; 10 % of reports leave 1–3 tasks blank; 1 % of messages are
rejected or quarantined. The first two reports go through the real
``intake.ingest`` (a rendered Word form in a real mail); every other report is
written with the store functions intake uses (``store.insert`` into messages and
reports with the same columns as ``intake._record``/``_store_report``,
``store.record_progress``) plus an acknowledgement outbox row copied from the real
one (the bench asserts the columns match). All ~4,200 messages through intake would
take minutes (a Word parse and a durable archive write each) for rows that are the same. Notices: daily runs at 09:30 insert the
reminder / overdue / digest rows the real steps would produce (keys from
``notices.reminder_step``/``overdue_step``, bodies rendered once from the real
templates) for units not yet reported.

Two databases are kept side by side: "fresh" (reports and acknowledgements only:
no notice ever sent) and "season" (the same plus every notice of the season so
far). The due notices are computed on both at the first morning of a step (so the
same reminders / overdue notices are due on both; asserted) and the ratio season/fresh is printed, of the
time (median of --repeat; milliseconds, so noisy on a busy machine) and of the SQLite
work (virtual-machine instructions, counted with a progress handler: deterministic).
Both should be ~1. (On a morning when the digest's "mail since the last digest" check
runs, the season side counts messages over a shorter time range, so its ratio can be
below 1: that query follows the messages received, not the notices sent.) Outputs are
timed on the season database at the end (2 Jan). The notices job (queue_notices) is
timed last on copies of the fresh database as it was on the first reminder morning:
first with no unit's blank form rendered yet (each notice renders its unit's form,
once per round), then again with the forms on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mailbot import cli, notices, store  # noqa: E402
from mailbot.config import load_config  # noqa: E402
from mailbot.forms import render_form  # noqa: E402
from mailbot.intake import ingest  # noqa: E402
from mailbot.templating import render  # noqa: E402
from sqlsteps import vm_steps  # noqa: E402

TZ8 = dt.timezone(dt.timedelta(hours=8))
PHRASES = [
    "已按要求落实，通过政府网站和政务新媒体发布相关信息{n}条",
    "开展政策解读{n}次，组织线上线下宣传活动",
    "工作台账已建立并动态更新，责任到人、按月调度",
    "对照年度要点逐项梳理，完成栏目优化调整{n}处",
    "下一步将继续加强信息发布审核，确保内容准确、及时、规范",
    "召开专题会议{n}次，研究部署政务公开重点工作",
    "依申请公开件均在法定期限内答复，办理规范率100%",
    "组织开展业务培训{n}期，参训人员{n}人次",
]


def local(y, m, d, h=9, mi=30) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=TZ8)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- config ---------------------------------------------------------------------------------------


def make_config(work: Path, n_units: int, ledger_mode: str) -> Path:
    shipped = (ROOT / "config.toml").read_text(encoding="utf-8")
    rounds_and_units = shipped[shipped.index("[[rounds]]"):]
    real_units = rounds_and_units.count("[[units]]")
    lines = [f'[bot]\nstate_dir = "{work / "state"}"\ntimezone = "Asia/Shanghai"\n']
    if ledger_mode == "all":
        ledger = json.loads((ROOT / "mailbot" / "data" / "ledger_2023.json").read_text(encoding="utf-8"))
        for t in ledger["tasks"]:
            t["units"] = "政府各部门、各镇街"
        (work / "ledger_all.json").write_text(json.dumps(ledger, ensure_ascii=False), encoding="utf-8")
        lines.append('ledger = "ledger_all.json"\n')
    lines.append(
        '[imap]\nhost = "127.0.0.1"\nport = 993\nsecurity = "ssl"\nuser = "bot@example.test"\n\n'
        '[smtp]\nhost = "127.0.0.1"\nport = 465\nsecurity = "ssl"\nfrom = "bot@example.test"\n\n'
        '[coordinator]\nemails = ["duchashi@example.test"]\n\n'
    )
    lines.append(rounds_and_units)
    if n_units < real_units:
        raise SystemExit(f"--units must be at least {real_units} (the shipped roster)")
    for i in range(n_units - real_units):
        if i % 2:
            name, kind = f"省直部门{i:04d}", "department"
        else:
            name, kind = (f"第{i:04d}镇" if i % 4 == 0 else f"第{i:04d}街道"), "town"
        lines.append(f'\n[[units]]\nname = "{name}"\nkind = "{kind}"\nemails = ["u{i:04d}@units.example"]\naliases = []\n')
    path = work / "config.toml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


# --- the season's reports -------------------------------------------------------------------------


def progress_text(rng: random.Random) -> str:
    parts = rng.sample(PHRASES, rng.randint(2, 5))
    return "；".join(p.format(n=rng.randint(1, 60)) for p in parts) + "。"


def report_events(cfg, rng: random.Random) -> list[dict]:
    """Every report of the season, in time order: (time, round, unit, progress, status)."""
    plans = {
        "年中": dict(early=(local(2023, 7, 1), local(2023, 8, 7)), rush=(local(2023, 8, 8), local(2023, 8, 15, 19)),
                    late=(local(2023, 8, 16), local(2023, 8, 31)), p_on_time=0.80, p_late=0.12),
        "年底": dict(early=(local(2023, 9, 1), local(2023, 11, 27)), rush=(local(2023, 11, 28), local(2023, 12, 5, 19)),
                    late=(local(2023, 12, 6), local(2023, 12, 31)), p_on_time=0.78, p_late=0.12),
    }

    def when(span) -> dt.datetime:
        a, b = span
        t = a + (b - a) * rng.random()
        return t.replace(hour=rng.randint(8, 18), minute=rng.randint(0, 59), second=rng.randint(0, 59))

    tasks = {u.name: cfg.roster.tasks_of(u, cfg.ledger) for u in cfg.roster} if len(cfg.roster) <= 50 else _tasks_by_unit(cfg)
    events = []
    for rnd in cfg.rounds:
        plan = plans[rnd.name]
        for unit in cfg.roster:
            x = rng.random()
            if x < plan["p_on_time"]:
                first = when(plan["early"] if rng.random() < 0.3 else plan["rush"])
            elif x < plan["p_on_time"] + plan["p_late"]:
                first = when(plan["late"])
            else:
                continue
            times = [first] + ([first + dt.timedelta(days=rng.randint(1, 10), minutes=rng.randint(0, 600))] if rng.random() < 0.15 else [])
            for t in times:
                mine = list(tasks[unit.name])
                if rng.random() < 0.10:
                    for gone in rng.sample(mine, min(len(mine), rng.randint(1, 3))):
                        mine.remove(gone)
                events.append({"time": t, "round": rnd.name, "unit": unit.name, "entries": [(n, progress_text(rng)) for n in mine],
                               "status": "accepted"})
            if rng.random() < 0.01:
                events.append({"time": first - dt.timedelta(hours=2), "round": rnd.name, "unit": unit.name, "entries": [],
                               "status": rng.choice(["rejected", "quarantined"])})
    events.sort(key=lambda e: e["time"])
    return events


def _tasks_by_unit(cfg) -> dict[str, list[int]]:
    """Same result as Roster.tasks_of for every unit, without its O(units) scan per task (bench setup only)."""
    out: dict[str, list[int]] = {u.name: [] for u in cfg.roster}
    for task in cfg.ledger.tasks:
        for unit in cfg.roster.responsible_units(task):
            out[unit.name].append(task.number)
    return out


def real_mail(cfg, unit, event, i: int) -> bytes:
    form = render_form(cfg, unit.name, progress=dict(event["entries"]), contact="张三", phone="0951-1234567")
    msg = EmailMessage()
    msg["From"] = f"{unit.name} <{unit.emails[0]}>"
    msg["To"] = "bot@example.test"
    msg["Subject"] = f"{unit.name}{event['round']}台账报送"
    msg["Date"] = format_datetime(event["time"])
    msg["Message-ID"] = make_msgid(idstring=f"real{i}", domain="bench.example")
    msg.set_content("见附件")
    msg.add_attachment(form, maintype="application", subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
                       filename=f"{unit.name}.docx")
    return bytes(msg)


class Writer:
    """Writes report events into one database the way intake does (see the module docstring)."""

    def __init__(self, cfg, db, ack_template: dict | None):
        self.cfg, self.db, self.ack = cfg, db, ack_template
        self.n = 0

    def write(self, ev: dict, seq: int) -> None:
        received = store.iso(ev["time"])
        rnd = self.cfg.round_named(ev["round"])
        late = rnd.is_late(ev["time"])
        unit = self.cfg.roster.get(ev["unit"])
        digest = hashlib.sha256(f"bench-{seq}".encode()).hexdigest()
        accepted = ev["status"] == "accepted"
        msg_row = store.insert(self.db, "messages", {
            "sha256": digest, "message_id": f"<bench.{seq}@units.example>", "source": "imap", "folder": "INBOX",
            "uidvalidity": 1, "uid": seq, "received_at": received, "from_addr": unit.emails[0], "from_name": unit.name,
            "subject": f"{unit.name}{ev['round']}台账报送", "archive_path": str(self.cfg.state_dir / "archive" / digest[:2] / f"{digest}.eml"),
            "status": ev["status"], "reason": None if accepted else "附件不是 Word 文档", "reason_code": None if accepted else "not_document",
            "unit": unit.name, "verified": 1, "round": rnd.name, "late": int(late), "duplicate_of": None, "warnings": "[]",
            "files": store.dumps([{"name": f"{unit.name}.docx", "kind": "docx", "sha256": digest, "path": f"files/{digest}.docx"}]),
            "processed_at": received,
        })
        if not accepted:
            return
        report_id = store.insert(self.db, "reports", {
            "message": msg_row, "round": rnd.name, "unit": unit.name, "verified": 1, "late": int(late), "received_at": received,
            "filename": f"{unit.name}.docx", "file_sha256": digest, "unit_as_written": unit.name, "contact": "张三",
            "phone": "0951-1234567", "converted_from": None, "filled": len(ev["entries"]), "warnings": "[]",
        })
        store.record_progress(self.db, rnd.name, unit.name, ev["entries"], report_id, received, f"<bench.{seq}@units.example>")
        row = dict(self.ack, dedupe_key=f"ack:{msg_row}", unit=unit.name, round=rnd.name, message=msg_row,
                   to_addrs=json.dumps([unit.emails[0]]), msgid=f"<mailbot.ack{msg_row}@example.test>",
                   in_reply_to=f"<bench.{seq}@units.example>", references=f"<bench.{seq}@units.example>",
                   created_at=received, sent_at=received, status="sent", attempts=1)
        store.insert(self.db, "outbox", row)


def notice_rows(cfg, db) -> dict[str, dict]:
    """Outbox rows for a reminder, an overdue notice and a digest, rendered once from the real templates."""
    rnd = cfg.rounds[0]
    unit = next(iter(cfg.roster))
    ctx = dict(notices._unit_context(cfg, db, rnd, unit.name, local(2023, 8, 8)), office="银川市西夏区人民政府办公室")
    rows = {}
    for kind in ("reminder", "overdue"):
        rows[kind] = {
            "kind": kind, "message": None, "cc_addrs": "[]", "subject": f"【提醒】请于8月15日前报送台账（{unit.name}）",
            "body_text": render(f"mail/{kind}.txt.j2", **ctx), "body_html": render(f"mail/{kind}.html.j2", **ctx),
            "in_reply_to": None, "references": None, "status": "sent", "attempts": 1, "next_attempt_at": None, "last_error": None,
            "attachments": json.dumps([{"path": str(cfg.state_dir / "forms" / "x.docx"), "name": "填报版.docx"}], ensure_ascii=False),
        }
    rows["digest"] = dict(rows["reminder"], kind="digest", subject="【台账报送日报】", body_text="日报" * 2000, body_html="<p>日报</p>" * 2000)
    return rows


class Season:
    """Daily notice runs at 09:30: the rows the real job would have queued, for units not yet reported."""

    def __init__(self, cfg, db, templates):
        self.cfg, self.db, self.t = cfg, db, templates
        self.sent: set[str] = set()
        self.count = 0
        units = list(cfg.roster)
        tasks = _tasks_by_unit(cfg)
        self.eligible = [u for u in units if u.emails and tasks[u.name]]

    def run(self, t: dt.datetime, reported: dict[str, set[str]]) -> None:
        rows = []
        for rnd in self.cfg.rounds:
            for kind, step in (("reminder", notices.reminder_step(self.cfg, rnd, t)), ("overdue", notices.overdue_step(self.cfg, rnd, t))):
                if step is None:
                    continue
                for unit in self.eligible:
                    if unit.name in reported[rnd.name]:
                        continue
                    key = f"{kind}:{rnd.name}:{unit.name}:{step}"
                    if key not in self.sent:
                        rows.append(dict(self.t[kind], dedupe_key=key, unit=unit.name, round=rnd.name, to_addrs=json.dumps(list(unit.emails))))
        key = f"digest:-:-:{t.date().isoformat()}"
        if key not in self.sent:
            rows.append(dict(self.t["digest"], dedupe_key=key, unit=None, round=None, to_addrs=json.dumps(list(self.cfg.coordinator_emails))))
        stamp = store.iso(t)
        with store.write_transaction(self.db):
            for row in rows:
                self.sent.add(row["dedupe_key"])
                row.update(msgid=f"<mailbot.{hashlib.sha256(row['dedupe_key'].encode()).hexdigest()[:32]}@example.test>", created_at=stamp, sent_at=stamp)
                store.insert(self.db, "outbox", row)
        self.count += len(rows)


# --- measuring ------------------------------------------------------------------------------------


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, label: str, seconds: float, note: str = "") -> None:
        flag = "  OVER 10 s" if seconds > 10 else ""
        self.rows.append((label, f"{seconds:8.2f}", f"{rss_mb():7.0f}", note + flag))
        print(f"  {label:<52} {seconds:8.2f} s   RSS≤{rss_mb():6.0f} MB  {note}{flag}", flush=True)


def timed(fn, repeat: int = 1):
    samples, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), result


def run_cli(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = cli.main(argv)
    if rc != 0:
        raise SystemExit(f"mailbot {' '.join(argv)} failed ({rc}): {err.getvalue()}")


def copy_db(db, target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    db.conn.execute("VACUUM INTO ?", [str(target)])
    return store.open_db(target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--ledger", choices=["all", "shipped"], default="all")
    ap.add_argument("--repeat", type=int, default=7, help="repeats (median) for the due-notice computation")
    ap.add_argument("--skip-docx", action="store_true", help="skip the Word exports")
    ap.add_argument("--no-job", action="store_true", help="skip timing the notices job (queue_notices)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mailbot-province-"))
    try:
        t_setup = time.perf_counter()
        cfg_path = make_config(work, args.units, args.ledger)
        cfg = load_config(cfg_path)
        rng = random.Random(20231)
        events = report_events(cfg, rng)
        season_db = store.open_db(cfg.db_path)
        fresh_db = store.open_db(work / "fresh" / "mailbot.db")

        # The first two reports go through the real intake; their rows are the model for the rest.
        real = [e for e in events if e["status"] == "accepted"][:2]
        for i, ev in enumerate(real):
            raw = real_mail(cfg, cfg.roster.get(ev["unit"]), ev, i)
            for db in (season_db, fresh_db):
                res = ingest(cfg, db, raw, received_at=ev["time"])
                assert res.status == "accepted", res
            ev["done"] = True
        ack = dict(next(season_db.query("SELECT * FROM outbox WHERE kind = 'ack' ORDER BY id LIMIT 1")))
        ack.pop("id")
        real_msg = next(season_db.query("SELECT * FROM messages ORDER BY id LIMIT 1"))
        real_rep = next(season_db.query("SELECT * FROM reports ORDER BY id LIMIT 1"))

        writers = [Writer(cfg, season_db, ack), Writer(cfg, fresh_db, ack)]
        season = Season(cfg, season_db, notice_rows(cfg, season_db))
        reported: dict[str, set[str]] = {r.name: set() for r in cfg.rounds}
        for ev in real:
            reported[ev["round"]].add(ev["unit"])
        pending = [e for e in events if not e.get("done")]
        pos = 0

        def apply_until(t: dt.datetime) -> None:
            nonlocal pos
            start = pos
            while pos < len(pending) and pending[pos]["time"] < t:
                pos += 1
            for w in writers:
                with store.write_transaction(w.db):
                    for seq in range(start, pos):
                        w.write(pending[seq], seq)
            for ev in pending[start:pos]:
                if ev["status"] == "accepted":
                    reported[ev["round"]].add(ev["unit"])

        # Check that the bulk rows look exactly like intake's.
        apply_until(local(2023, 7, 2, 0, 0))
        for table, model in (("messages", real_msg), ("reports", real_rep)):
            bulk = next(season_db.query(f"SELECT * FROM {table} ORDER BY id DESC LIMIT 1"), None)
            if bulk is not None:
                assert set(bulk) == set(model), (table, set(bulk) ^ set(model))

        checkpoints = [
            ("年中 d-7 提醒日", local(2023, 8, 8)),
            ("年中 d-1 提醒日", local(2023, 8, 14)),
            ("年中 逾期首日 o0", local(2023, 8, 16)),
            ("年底 d-3 提醒日", local(2023, 12, 2)),
            ("年底 逾期 o2", local(2023, 12, 12)),
        ]
        final_now = local(2024, 1, 2, 10, 0)
        day = dt.date(2023, 7, 1)
        print(f"mailbot province bench: {len(cfg.roster)} units × {len(cfg.ledger.tasks)} tasks × {len(cfg.rounds)} rounds "
              f"(--ledger {args.ledger}: {sum(len(v) for v in _tasks_by_unit(cfg).values()) / len(cfg.roster):.1f} tasks per unit)"
)
        table = Table()
        notice_rows_out = []
        print("\ndue notices (notices.due_notices), fresh = no notice ever sent, season = every notice of the season so far:")
        for label, t in checkpoints + [("end", final_now)]:
            while local(day.year, day.month, day.day) < t and day < t.date():
                run_t = local(day.year, day.month, day.day)
                apply_until(run_t)
                season.run(run_t, reported)
                day += dt.timedelta(days=1)
            apply_until(t)
            if label == "end":
                break
            if t == checkpoints[0][1]:
                copy_db(fresh_db, work / "job" / "snapshot.db").close()  # the notices job is timed on this state
            fresh_s, fresh_due = timed(lambda: notices.due_notices(cfg, fresh_db, t), args.repeat)
            season_s, season_due = timed(lambda: notices.due_notices(cfg, season_db, t), args.repeat)
            # The same unit notices are due on both; the digest may differ, legitimately: it is due when mail
            # arrived since the last digest, and the fresh database has never sent one.
            assert [n.dedupe_key for n in fresh_due if n.kind != "digest"] == [n.dedupe_key for n in season_due if n.kind != "digest"], label
            fresh_vm = vm_steps(fresh_db, lambda: notices.due_notices(cfg, fresh_db, t))
            season_vm = vm_steps(season_db, lambda: notices.due_notices(cfg, season_db, t))
            sent = season_db.execute("SELECT COUNT(*) FROM outbox WHERE kind IN ('reminder','overdue','digest')").fetchone()[0]
            notice_rows_out.append((label, len(fresh_due), fresh_s, season_s, sent, fresh_vm, season_vm))
            print(f"  {label:<18} {t:%m-%d %H:%M}  due {len(fresh_due):5d}   fresh {fresh_s * 1000:7.1f} ms   season {season_s * 1000:7.1f} ms "
                  f"({sent:6d} notices sent)   time ratio {season_s / fresh_s:5.2f}   SQLite steps {fresh_vm} → {season_vm} "
                  f"(ratio {season_vm / fresh_vm:5.2f})   RSS≤{rss_mb():.0f} MB", flush=True)
        n_progress = season_db.execute("SELECT COUNT(*) FROM progress").fetchone()[0]
        n_hist = season_db.execute("SELECT COUNT(*) FROM progress_history").fetchone()[0]
        n_msgs = season_db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        n_out = season_db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        size = sum(f.stat().st_size for f in cfg.db_path.parent.glob("mailbot.db*")) / 2**20
        print(f"\nstate at {final_now:%Y-%m-%d %H:%M}: {n_msgs} messages, {n_progress} progress rows, {n_hist} history rows, "
              f"{n_out} outbox rows ({season.count} notices); database {size:.0f} MB; setup {time.perf_counter() - t_setup:.0f} s")

        now = final_now.isoformat()
        base = ["--config", str(cfg_path), "--now", now]
        out = work / "out"
        out.mkdir()
        print("\noutputs at the end of the season (in-process CLI, season database):")
        # Each time includes load_config, as the command does.
        s, _ = timed(lambda: load_config(cfg_path))
        table.add("load_config (part of every command below)", s)
        s, _ = timed(lambda: run_cli(base + ["status"]))
        table.add("status", s)
        s, _ = timed(lambda: run_cli(base + ["status", "--tasks"]))
        table.add("status --tasks", s)
        s, _ = timed(lambda: run_cli(base + ["status", "--json"]))
        table.add("status --json", s)
        s, _ = timed(lambda: run_cli(base + ["export", "--format", "json", "-o", str(out / "x.json")]))
        table.add("export --format json", s, f"{(out / 'x.json').stat().st_size / 2**20:.0f} MB")
        s, _ = timed(lambda: run_cli(base + ["export", "--format", "csv", "-o", str(out / "x.csv")]))
        table.add("export --format csv", s)
        s, _ = timed(lambda: run_cli(base + ["export", "--format", "xlsx", "-o", str(out / "x.xlsx")]))
        table.add("export --format xlsx (2 rounds + 报送情况)", s, f"{(out / 'x.xlsx').stat().st_size / 2**20:.1f} MB")
        if not args.skip_docx:
            for rnd in cfg.rounds:
                target = out / f"{rnd.name}.docx"
                s, _ = timed(lambda: run_cli(base + ["export", "--format", "docx", "--round", rnd.name, "-o", str(target)]))
                table.add(f"export --format docx --round {rnd.name}", s, f"{target.stat().st_size / 2**20:.1f} MB")
            cwd = os.getcwd()
            os.chdir(out)
            try:
                s, _ = timed(lambda: run_cli(base + ["export", "--format", "docx"]))
            finally:
                os.chdir(cwd)
            table.add("export --format docx (all rounds)", s)

        # The digest: what the daemon's notices job and `digest --send` build.
        from mailbot.digest import digest_attachments, digest_context

        cfg = load_config(cfg_path)
        s_ctx, ctx = timed(lambda: digest_context(cfg, season_db, final_now))
        table.add("digest: digest_context", s_ctx)
        ctx = dict(ctx, coordinator=True, office="")
        s_txt, _ = timed(lambda: (render("mail/digest.txt.j2", **ctx), render("mail/digest.html.j2", **ctx)))
        table.add("digest: text + HTML bodies", s_txt)
        s_att, _ = timed(lambda: digest_attachments(cfg, season_db, final_now))
        table.add("digest: .xlsx attachment", s_att)
        s, ok = timed(lambda: notices.queue_digest(cfg, season_db, final_now, force=True))
        assert ok
        table.add("digest: notices.queue_digest (all of it)", s)
        s, _ = timed(lambda: run_cli(base + ["digest", "--dry-run"]))
        table.add("digest --dry-run (CLI)", s)
        s, _ = timed(lambda: run_cli(base + ["notices", "--json"]))
        table.add("notices --json (CLI, end of season)", s)

        # The notices job at the busiest moment, on copies (it writes): forms cold, then warm.
        t = checkpoints[0][1]
        print(f"\nnotices job (notices.queue_notices) at {checkpoints[0][0]} {t:%m-%d %H:%M}: the first run renders each unit's form:")
        if args.no_job:
            print("  (skipped: --no-job)")
        else:
            snapshot = store.open_db(work / "job" / "snapshot.db")
            for label in ("cold forms", "warm forms"):
                copy = copy_db(snapshot, work / "job" / f"{label.replace(' ', '-')}.db")
                s, queued = timed(lambda: notices.queue_notices(cfg, copy, t))
                table.add(f"queue_notices, {label} ({len(queued)} queued)", s)
                copy.close()
        print(f"\npeak RSS: {rss_mb():.0f} MB")
        print("\nsummary (seconds; target < 10 s each, notice ratio ~1):")
        for label, n_due, fresh_s, season_s, sent, fresh_vm, season_vm in notice_rows_out:
            print(f"  due_notices {label:<18} due {n_due:5d}  fresh {fresh_s * 1000:6.1f} ms  season {season_s * 1000:6.1f} ms  sent {sent:6d}  "
                  f"time ratio {season_s / fresh_s:5.2f}  SQLite-steps ratio {season_vm / fresh_vm:5.2f}")
        for label, secs, rss, note in table.rows:
            print(f"  {label:<52} {secs}  {note}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
