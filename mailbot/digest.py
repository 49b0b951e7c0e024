"""The coordinator's digest: who reported, who is late, what arrived, what needs a person."""

from __future__ import annotations

import datetime as dt
import json

from . import store
from .config import Config
from .status import status_table

STATUS_LABELS = {"accepted": "已登记", "duplicate": "重复", "quarantined": "已隔离", "rejected": "已退回", "ignored": "已忽略"}


def _local(cfg: Config, stamp: str | None) -> str:
    if not stamp:
        return ""
    t = dt.datetime.fromisoformat(stamp).astimezone(cfg.tz)
    return f"{t.month}月{t.day}日 {t:%H:%M}"


def digest_context(cfg: Config, db, now: dt.datetime) -> dict:
    from .notices import last_digest_slot

    slot = last_digest_slot(cfg, db)
    since = store.iso(slot) if slot else ""
    opened = [r for r in cfg.rounds if r.opens <= now] or [cfg.rounds[0]]
    table = status_table(cfg, db, opened, now)
    rounds = []
    for info in table["rounds"]:
        name = info["name"]
        rnd = cfg.round_named(name)
        groups = {"on_time": [], "late": [], "missing": [], "pending": []}
        for unit in table["units"]:
            st = unit["rounds"][name]
            groups[st["state"]].append({"unit": unit["unit"], "time": st["first"] or "", "missing_tasks": len(st["missing_tasks"])})
        rounds.append({
            "name": name,
            "deadline": f"{rnd.deadline.month}月{rnd.deadline.day}日",
            "passed": now >= rnd.deadline_end,
            "counts": info["counts"],
            **groups,
        })
    arrived = [
        {
            "time": _local(cfg, r["received_at"]),
            "unit": r["unit"] or "",
            "sender": r["from_addr"] or "",
            "status": STATUS_LABELS.get(r["status"], r["status"]),
            "late": bool(r["late"]),
            "verified": bool(r["verified"]),
            "subject": (r["subject"] or "")[:60],
        }
        for r in db.query(
            "SELECT * FROM messages WHERE received_at >= ? AND received_at <= ? AND status != 'duplicate' ORDER BY received_at",
            [since, store.iso(now)],
        )
    ]
    problems = []
    for r in db.query(
        "SELECT * FROM messages WHERE received_at >= ? AND received_at <= ? "
        "AND (status IN ('quarantined','rejected') OR (status = 'accepted' AND verified = 0)) ORDER BY id",
        [since, store.iso(now)],
    ):
        if r["status"] == "accepted":
            text = f"{r['unit']} 的报送来自未登记的地址 {r['from_addr']}，已登记并抄送单位登记邮箱，请核实"
        else:
            text = f"{STATUS_LABELS[r['status']]}：{r['from_addr'] or '（无发件人）'}「{(r['subject'] or '')[:40]}」—— {r['reason']}"
        problems.append(text)
    failures = store.kv_get(db, "imap_failures")
    if failures:
        since_fail = store.kv_get(db, "imap_outage_since")
        problems.append(f"收信失败：自 {_local(cfg, since_fail)} 起已连续失败 {failures} 次，期间的邮件会在恢复后补收")
    for r in db.query("SELECT kind, to_addrs, last_error, attempts FROM outbox WHERE status = 'failed' AND created_at > ?", [since]):
        problems.append(f"邮件发送失败（{r['kind']}，收件人 {', '.join(json.loads(r['to_addrs']))}）：{r['last_error']}")
    stuck = db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND attempts > 0").fetchone()[0]
    if stuck:
        problems.append(f"有 {stuck} 封邮件发送未成功，正在重试（SMTP 服务器可能不可用）")
    upcoming = [
        {"name": r.name, "deadline": f"{r.deadline.month}月{r.deadline.day}日", "days": (r.deadline - now.astimezone(cfg.tz).date()).days}
        for r in cfg.rounds
        if dt.timedelta(0) <= r.deadline_end - now <= dt.timedelta(days=14)
    ]
    current = rounds[-1]
    c = current["counts"]
    headline = f"{current['name']}：按时 {c['on_time']}，逾期 {c['late']}，未报送 {c['missing'] + c['pending']}"
    if problems:
        headline += f"；{len(problems)} 项待处理"
    local = now.astimezone(cfg.tz)
    return {
        "date": f"{local.year}年{local.month}月{local.day}日",
        "since": _local(cfg, since) if since else "",
        "rounds": rounds,
        "arrived": arrived,
        "problems": problems,
        "upcoming": upcoming,
        "headline": headline,
        "ledger_title": cfg.ledger.title,
    }


def digest_attachments(cfg: Config, db, now: dt.datetime) -> list[dict]:
    from .exports import digest_export

    path = digest_export(cfg, db, now)
    return [{"path": str(path), "name": path.name}]
