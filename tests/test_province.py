"""Province scale (issue 6 item 5): the optimised outputs are byte-for-byte what the plain code made,
and the due-notice computation does not grow with the notices already sent (bench/province.py times it)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

from docxtpl import DocxTemplate, RichText

from mailbot import exports, notices, store
from mailbot.status import status_table, task_completeness
from sqlsteps import vm_steps

TZ8 = dt.timezone(dt.timedelta(hours=8))
TEXTS = [
    "已按要求落实，发布信息12条。",
    "=SUM(A1:A3) 不是公式",
    "第一段\n第二段 & <标签> \"引号\" '单引号'",
    "制表\t符",
    "",
]


def _fill(cfg, db) -> None:
    """Reports for some units in both rounds: on time, late, twice, with blank and tricky texts."""
    units = list(cfg.roster)
    seq = 0
    plan = [("年中", dt.datetime(2023, 8, 10, 10, tzinfo=TZ8), units[:12]), ("年中", dt.datetime(2023, 8, 20, 10, tzinfo=TZ8), units[12:18]),
            ("年中", dt.datetime(2023, 8, 22, 10, tzinfo=TZ8), units[:3]), ("年底", dt.datetime(2023, 12, 1, 10, tzinfo=TZ8), units[:5])]
    with store.write_transaction(db):
        for round_name, when, group in plan:
            for unit in group:
                seq += 1
                received = store.iso(when + dt.timedelta(minutes=seq))
                msg = store.insert(db, "messages", {"sha256": f"h{seq}", "message_id": f"<m{seq}@x>", "received_at": received, "status": "accepted",
                                                    "unit": unit.name, "round": round_name, "verified": 1, "late": 0, "processed_at": received,
                                                    "from_addr": unit.emails[0] if unit.emails else "", "subject": "台账"})
                rep = store.insert(db, "reports", {"message": msg, "round": round_name, "unit": unit.name, "received_at": received, "verified": 1, "late": 0})
                tasks = cfg.roster.tasks_of(unit, cfg.ledger)
                entries = [(t, TEXTS[(t + seq) % len(TEXTS)]) for t in tasks]
                store.record_progress(db, round_name, unit.name, entries, rep, received, f"<m{seq}@x>")


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(n, zf.read(n)) for n in zf.namelist() if n != "docProps/core.xml"]  # core.xml holds the save time


# --- the code before the optimisation, verbatim (the reference) ---------------------------------------


def _reference_docx(cfg, db, rnd, now) -> bytes:
    progress = exports._progress(db, rnd.name)
    table = status_table(cfg, db, [rnd], now)
    counts = table["rounds"][0]["counts"]
    sections = []
    for section in cfg.ledger.sections:
        groups: list[dict] = []
        for task in cfg.ledger.tasks:
            if task.section != section.number:
                continue
            rt = RichText()
            for i, unit in enumerate(cfg.roster.responsible_units(task)):
                row = progress.get((unit.name, task.number))
                if i:
                    rt.add("\a")
                if row and row["progress"]:
                    day = dt.datetime.fromisoformat(row["received_at"]).astimezone(cfg.tz)
                    rt.add(f"{unit.name}（{day.month}月{day.day}日）：", bold=True)
                    rt.add(row["progress"])
                else:
                    rt.add(f"{unit.name}：", bold=True)
                    rt.add(exports.NOT_REPORTED, color="C00000")
            if not groups or groups[-1]["item"] != task.item:
                groups.append({"item": task.item, "tasks": []})
            groups[-1]["tasks"].append(
                {"number": task.number, "content": task.content, "indicator": task.indicator, "units": task.units,
                 "deadline": task.deadline, "progress": rt}
            )
        sections.append({"label": section.label, "groups": groups})
    local = now.astimezone(cfg.tz)
    summary = (
        f"截至{local.year}年{local.month}月{local.day}日{local:%H:%M}，共 {counts['total']} 个单位：按时报送 {counts['on_time']} 个，"
        f"逾期报送 {counts['late']} 个，未报送 {counts['missing'] + counts['pending']} 个。报送截止：{rnd.deadline.year}年{rnd.deadline.month}月{rnd.deadline.day}日。"
    )
    tpl = DocxTemplate(str(exports.templates_dir() / "forms" / "consolidated_ledger.docx"))
    tpl.render({"title": cfg.ledger.title, "round_label": cfg.round_label(rnd), "summary": summary, "sections": sections}, autoescape=True)
    buf = io.BytesIO()
    tpl.save(buf)
    return buf.getvalue()


def _reference_append(ws, values) -> None:
    ws.append(values)
    for cell in ws[ws.max_row]:
        if isinstance(cell.value, str) and cell.value.startswith("="):
            cell.data_type = "s"


def _reference_xlsx(cfg, db, now, rounds) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    wb.remove(wb.active)
    wrap = Alignment(wrap_text=True, vertical="top")
    bold = Font(bold=True)
    missing_fill = PatternFill("solid", fgColor="FDE9E7")
    tasks = cfg.ledger.tasks
    for rnd in rounds:
        ws = wb.create_sheet(exports._sheet_name(cfg.round_label(rnd)))
        progress = exports._progress(db, rnd.name)
        ws.append(["单位", "类别"] + [f"任务{t.number}" for t in tasks])
        for cell in ws[1]:
            cell.font = bold
        for unit in cfg.roster:
            mine = set(cfg.roster.tasks_of(unit, cfg.ledger))
            row = [unit.name, unit.kind_label]
            for task in tasks:
                found = progress.get((unit.name, task.number))
                if task.number not in mine:
                    row.append(found["progress"] if found and found["progress"] else "—")
                else:
                    row.append(found["progress"] if found and found["progress"] else exports.NOT_REPORTED)
            _reference_append(ws, row)
            for cell in ws[ws.max_row][2:]:
                cell.alignment = wrap
                if cell.value == exports.NOT_REPORTED:
                    cell.fill = missing_fill
        ws.freeze_panes = "C2"
        ws.column_dimensions["A"].width = 22
        for i in range(3, len(tasks) + 3):
            ws.column_dimensions[get_column_letter(i)].width = 30
    ws = wb.create_sheet("报送情况")
    ws.append(["单位", "类别", "报送节点", "截止日期", "状态", "首次报送", "最近报送", "报送次数", "尚缺任务"])
    for cell in ws[1]:
        cell.font = bold
    table = status_table(cfg, db, rounds, now)
    deadlines = {r["name"]: r["deadline"] for r in table["rounds"]}
    for unit in table["units"]:
        for name, st in unit["rounds"].items():
            _reference_append(ws, [
                unit["unit"], "部门" if unit["kind"] == "department" else "镇街", name, deadlines[name], exports.STATE_LABELS[st["state"]],
                st["first"] or "", st["latest"] or "", st["reports"], "、".join(map(str, st["missing_tasks"])),
            ])
    for col, width in zip("ABCDEFGHI", (22, 6, 10, 12, 8, 14, 14, 8, 40)):
        ws.column_dimensions[col].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# --- tests -------------------------------------------------------------------------------------------


def test_consolidated_outputs_are_unchanged_by_the_optimisations(cfg, db):
    _fill(cfg, db)
    now = dt.datetime(2023, 12, 10, 9, 30, tzinfo=TZ8)
    for rnd in cfg.rounds:
        assert _members(exports.consolidated_docx(cfg, db, rnd, now)) == _members(_reference_docx(cfg, db, rnd, now))
    for rounds in (list(cfg.rounds), cfg.rounds[:1]):
        assert _members(exports.consolidated_xlsx(cfg, db, now, rounds)) == _members(_reference_xlsx(cfg, db, now, rounds))


def test_task_completeness_lists_the_missing_units(cfg, db):
    _fill(cfg, db)
    for rnd in cfg.rounds:
        done = {(r["unit"], r["task"]) for r in db.query("SELECT unit, task FROM progress WHERE round = ? AND progress != ''", [rnd.name])}
        for row in task_completeness(cfg, db, rnd):
            responsible = [u.name for u in cfg.roster.responsible_units(cfg.ledger.task(row["task"]))]
            assert row["missing_units"] == [u for u in responsible if (u, row["task"]) not in done]
            assert row["filled"] == len(responsible) - len(row["missing_units"])


def _sent_before(cfg, db, n_days: int) -> int:
    """A season's worth of notices already in the outbox: every unit, many earlier steps, a digest a day, a few manual ones."""
    rows = 0
    with store.write_transaction(db):
        for day in range(n_days):
            stamp = store.iso(dt.datetime(2023, 6, 1, 9, tzinfo=TZ8) + dt.timedelta(days=day))
            for unit in cfg.roster:
                for kind in ("reminder", "overdue"):
                    for rnd in cfg.rounds:
                        store.insert(db, "outbox", {"dedupe_key": f"{kind}:{rnd.name}:{unit.name}:old-{day}", "kind": kind, "unit": unit.name,
                                                    "round": rnd.name, "status": "sent", "created_at": stamp, "body_text": "x" * 500})
                        rows += 1
            date = (dt.date(2023, 6, 1) + dt.timedelta(days=day)).isoformat()
            store.insert(db, "outbox", {"dedupe_key": f"digest:-:-:{date}", "kind": "digest", "status": "sent", "created_at": stamp})
            rows += 1
            if day % 15 == 0:  # a coordinator's `digest --send` now and then
                store.insert(db, "outbox", {"dedupe_key": f"digest:-:-:manual-{date.replace('-', '')}T0800", "kind": "digest", "status": "sent", "created_at": stamp})
                rows += 1
    return rows


def test_due_notices_work_does_not_grow_with_notices_already_sent(cfg, db):
    _fill(cfg, db)
    moments = [dt.datetime(2023, 8, 12, 9, 30, tzinfo=TZ8),  # 年中 d-3 reminders (the digest is due: near the deadline)
               dt.datetime(2023, 7, 20, 9, 30, tzinfo=TZ8),  # no reminder: the digest is decided by the last digest's slot
               dt.datetime(2023, 12, 12, 9, 30, tzinfo=TZ8)]  # 年底 overdue notices
    store.insert(db, "outbox", {"dedupe_key": "digest:-:-:2023-05-31", "kind": "digest", "status": "sent", "created_at": "2023-05-31T00:30:00+00:00"})
    before = {t: ([n.dedupe_key for n in notices.due_notices(cfg, db, t)], vm_steps(db, lambda t=t: notices.due_notices(cfg, db, t))) for t in moments}
    slot_before = notices.last_digest_slot(cfg, db), vm_steps(db, lambda: notices.last_digest_slot(cfg, db))
    assert any(k.startswith("reminder:") for k in before[moments[0]][0]) and any(k.startswith("overdue:") for k in before[moments[2]][0])
    assert _sent_before(cfg, db, 40) > 4000
    for t in moments:
        keys = [n.dedupe_key for n in notices.due_notices(cfg, db, t)]
        steps = vm_steps(db, lambda t=t: notices.due_notices(cfg, db, t))
        assert keys == before[t][0]
        assert steps <= before[t][1] * 1.1 + 50, (t, before[t][1], steps)
    slot_after = notices.last_digest_slot(cfg, db), vm_steps(db, lambda: notices.last_digest_slot(cfg, db))
    assert slot_after[0] == dt.datetime(2023, 7, 10, 8, 30, tzinfo=cfg.tz) and slot_before[0] == dt.datetime(2023, 5, 31, 8, 30, tzinfo=cfg.tz)
    assert slot_after[1] <= slot_before[1] + 3 * 20  # walks back over the manual digests only (3 here), not the 4,000 notices


def test_a_sent_notice_is_not_due_again(cfg, db):
    t = dt.datetime(2023, 8, 12, 9, 30, tzinfo=TZ8)
    due = notices.due_notices(cfg, db, t)
    first = next(n for n in due if n.kind == "reminder")
    store.insert(db, "outbox", {"dedupe_key": first.dedupe_key, "kind": "reminder", "status": "sent", "created_at": store.iso(t)})
    digest = next(n for n in due if n.kind == "digest")
    store.insert(db, "outbox", {"dedupe_key": digest.dedupe_key, "kind": "digest", "status": "sent", "created_at": store.iso(t)})
    again = [n.dedupe_key for n in notices.due_notices(cfg, db, t)]
    assert again == [n.dedupe_key for n in due if n.dedupe_key not in (first.dedupe_key, digest.dedupe_key)]
