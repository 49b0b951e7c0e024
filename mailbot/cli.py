"""The command line: parse arguments, call one library function, print the result.

Errors meant for people (MailbotError) become one line on stderr and exit 1;
nothing else is caught here, so a real bug still shows its traceback. Every word
argparse prints is Chinese too (see `_ZH`), and a mistyped command gets a suggestion.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import difflib
import io
import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

from . import __version__, store
from .config import Config, default_config_path, load_config
from .errors import ConfigError, MailbotError, ReportError


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _config(args) -> Config:
    return load_config(args.config)


def _now(args, cfg: Config | None = None) -> dt.datetime:
    if getattr(args, "now", None):
        try:
            t = dt.datetime.fromisoformat(args.now)
        except ValueError:
            raise MailbotError(f"--now 的时间格式不正确：「{args.now}」，应为 ISO-8601，例如 2023-08-08T09:30+08:00") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=cfg.tz if cfg else dt.timezone.utc)
        return t
    return store.now_utc()


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise MailbotError(f"找不到文件：{path}") from None
    except IsADirectoryError:
        raise MailbotError(f"{path} 是目录，不是文件") from None
    except OSError as err:
        raise MailbotError(f"无法读取文件 {path}：{err.strerror}") from None


def _actor() -> str:
    """Who runs this command (the OS user), for the audit trail."""
    import getpass

    try:
        return getpass.getuser() or "unknown"
    except Exception:  # noqa: BLE001 - no user name in the environment nor in the password database
        return "unknown"


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """`\\r已处理 123/5000` on stderr while long work runs; nothing at all when stderr is not a terminal.

    Called as ``progress(done, total)``; redraws at most every ``interval`` seconds (and at the end).
    """

    def __init__(self, label: str = "已处理", stream=None, interval: float = 0.2):
        self.label, self.interval = label, interval
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream)
        self.shown = False
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        self._write(f"\r{self.label} {done}/{total}")

    def note(self, text: str) -> None:
        """A one-off status line (work whose size is not known)."""
        if self.enabled:
            self._write(f"\r{text}")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text + "\x1b[K")
            self.stream.flush()
            self.shown = True
        except OSError:
            self.enabled = False

    def close(self) -> None:
        if self.shown:
            self._write("\r")
            self.shown = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalTimeFormatter(logging.Formatter):
    """Log times in the office's time zone ([bot] timezone) with the UTC offset: 2023-08-10 10:00:00+0800."""

    default_time_format = "%Y-%m-%d %H:%M:%S%z"

    def __init__(self, fmt: str | None = None, tz: dt.tzinfo | None = None):
        super().__init__(fmt)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        t = dt.datetime.fromtimestamp(record.created, self.tz) if self.tz else dt.datetime.fromtimestamp(record.created).astimezone()
        return t.strftime(datefmt or self.default_time_format)


STATUS_LABELS = {"accepted": "登记", "rejected": "退回", "quarantined": "隔离", "duplicate": "重复", "ignored": "忽略", "error": "无法处理（见日志）"}


def _counts_text(counts: dict[str, int]) -> str:
    """「登记 150，重复 3」 in a fixed order, with the words the daemon's summary uses."""
    order = list(STATUS_LABELS) + sorted(k for k in counts if k not in STATUS_LABELS)
    return "，".join(f"{STATUS_LABELS.get(k, k)} {counts[k]}" for k in order if counts.get(k))


# --- commands ---------------------------------------------------------------------------------


def cmd_parse(args) -> int:
    from .ledger import load_ledger
    from .reports import parse_document

    data = _read_file(args.file)
    path = Path(args.config) if args.config else default_config_path()
    if args.config or path.exists():
        cfg = load_config(path)
        ledger, roster, timeout = cfg.ledger, cfg.roster, cfg.bot["conversion_timeout_seconds"]
    else:
        ledger, roster, timeout = load_ledger(), None, 120
    report = parse_document(data, ledger, roster, conversion_timeout=timeout)
    if args.json:
        _print_json(report.as_dict())
        return 0
    print(f"填报单位：{report.unit or '（未填写）'}    联系人：{report.contact or '（未填写）'}    联系电话：{report.phone or '（未填写）'}")
    for e in report.entries:
        text = e.progress.replace("\n", " / ") or "（空）"
        print(f"  任务{e.task:>2}：{text[:70]}")
    filled = len(report.filled)
    print(f"共 {len(report.entries)} 项任务，已填写 {filled} 项")
    for w in report.warnings:
        print(f"  注意：{w}")
    return 0


def cmd_ingest(args) -> int:
    from .intake import ingest

    cfg = _config(args)
    raw = _read_file(args.file)
    db = store.open_db(cfg.db_path)
    result = ingest(cfg, db, raw, received_at=_now(args, cfg) if args.now else None)
    if args.json:
        _print_json(result.as_dict())
        return 0
    labels = {"accepted": "已登记", "duplicate": "重复邮件", "quarantined": "已隔离", "rejected": "已退回", "ignored": "已忽略"}
    line = f"{labels[result.status]}（{result.status}）"
    if result.unit:
        line += f"  单位：{result.unit}"
    if result.round:
        line += f"  节点：{result.round}"
    print(line)
    if result.tasks:
        print(f"  登记任务：{'、'.join(map(str, result.tasks))}")
    if result.missing:
        print(f"  尚缺任务：{'、'.join(map(str, result.missing))}")
    if result.reason:
        print(f"  原因：{result.reason}")
    for w in result.warnings:
        print(f"  注意：{w}")
    return 0


def _message_number(text: str) -> int:
    """A message number as people write it: 12, #12, 第12号."""
    digits = text.strip().removeprefix("#").removeprefix("第").removesuffix("号").strip()
    if not digits.isdigit():
        raise MailbotError(f"邮件编号应为数字（见 mailbot inbox 或日报），而不是「{text}」")
    return int(digits)


def _describe_decision(number: int, result, verb: str) -> str:
    """One line about a message the coordinator accepted or reprocessed."""
    if result.status == "accepted":
        tasks = f"任务 {'、'.join(map(str, result.tasks))}" if result.tasks else "未填写任何任务"
        where = "，".join(x for x in (result.round, tasks) if x)
        reply = f"，未发回执（{result.no_reply}）" if getattr(result, "no_reply", None) else "，回执已排队发送"
        line = f"第 {number} 号邮件{verb}「{result.unit}」并登记（{where}）{reply}" if result.unit else f"第 {number} 号邮件已登记（{where}）{reply}"
        missing = result.missing
        if missing:
            line += f"；尚缺任务 {'、'.join(map(str, missing))}" if len(missing) <= 8 else f"；尚缺 {len(missing)} 项任务"
    else:
        label = {"rejected": "已退回", "quarantined": "已隔离", "duplicate": "是重复邮件", "ignored": "已忽略"}.get(result.status, result.status)
        line = f"第 {number} 号邮件未能登记：{label}" + (f"（{result.unit}）" if result.unit else "")
        if result.reason:
            line += f"，原因：{result.reason}"
    return line


def _print_decision(args, number: int, result, verb: str) -> int:
    if args.json:
        _print_json(result.as_dict())
        return 0
    print(_describe_decision(number, result, verb))
    for w in result.warnings:
        print(f"  注意：{w}")
    return 0


def _decide(args, verb: str, act) -> int:
    """Run a person's decision on message ``args.message``: ``act(cfg, db, number)`` returns its result."""
    cfg = _config(args)
    number = _message_number(args.message)
    db = store.open_db(cfg.db_path)
    try:
        result = act(cfg, db, number)
    finally:
        db.close()
    return _print_decision(args, number, result, verb)


def cmd_accept(args) -> int:
    from .intake import accept_message

    return _decide(args, "已认定为", lambda cfg, db, n: accept_message(cfg, db, n, args.unit, reason=args.reason, actor=_actor()))


def cmd_reprocess(args) -> int:
    from .intake import reprocess_message

    return _decide(args, "已重新处理，单位为", lambda cfg, db, n: reprocess_message(cfg, db, n, actor=_actor()))


def _supervise(args, act) -> int:
    """A coordinator's decision on a unit: ``act(cfg, db)`` returns the one Chinese line to print."""
    cfg = _config(args)
    db = store.open_db(cfg.db_path)
    try:
        print(act(cfg, db))
    finally:
        db.close()
    return 0


def cmd_paper(args) -> int:
    from .supervision import record_paper

    return _supervise(args, lambda cfg, db: record_paper(
        cfg, db, args.unit, args.round, on=args.date, undo=args.undo, actor=_actor(), now=_now(args, cfg)))


def cmd_extend(args) -> int:
    from .supervision import record_extension

    return _supervise(args, lambda cfg, db: record_extension(
        cfg, db, args.unit, args.round, until=args.until, reason=args.reason, undo=args.undo, actor=_actor()))


def cmd_exempt(args) -> int:
    from .supervision import record_exemption

    return _supervise(args, lambda cfg, db: record_exemption(cfg, db, args.unit, args.round, reason=args.reason, undo=args.undo, actor=_actor()))


def cmd_override(args) -> int:
    from .supervision import override_completion

    return _supervise(args, lambda cfg, db: override_completion(
        cfg, db, args.unit, args.round, args.task, args.state, reason=args.reason, actor=_actor()))


def cmd_completion(args) -> int:
    from .supervision import completion
    from .supervision_rules import STATE_LABELS

    cfg = _config(args)
    rnd = cfg.round_named(args.round)
    db = store.open_db(cfg.db_path)
    try:
        rows = completion(cfg, db, rnd, _now(args, cfg))
    finally:
        db.close()
    if args.unit:
        unit = cfg.roster.get(args.unit) or cfg.roster.match(args.unit)
        if unit is None:
            raise MailbotError(f"名册中没有单位「{args.unit}」：请用单位全称或别名（见 {cfg.path} 的 [[units]]）")
        rows = [r for r in rows if r["unit"] == unit.name]
    if args.json:
        _print_json([{k: r[k] for k in ("unit", "task", "due", "state", "set_by", "overdue")} for r in rows])
        return 0
    current = None
    for r in rows:
        if r["unit"] != current:
            current = r["unit"]
            print(f"{current}：")
        due = f"完成时限 {r['due']}" if r["due"] else "长期任务"
        flag = "  【未按时完成】" if r["overdue"] else ""
        who = "人工认定" if r["set_by"] == "coordinator" else "系统判断"
        print(f"  任务{r['task']:>2}  {STATE_LABELS[r['state']]}（{who}）  {due}{flag}")
    overdue = sum(1 for r in rows if r["overdue"])
    print(f"共 {len(rows)} 项，未按时完成 {overdue} 项。系统判断依据各单位最新填报的文字，可用 mailbot override 人工认定")
    return 0


def cmd_log(args) -> int:
    cfg = _config(args)
    db = store.open_db(cfg.db_path)
    try:
        rows = list(db.query("SELECT * FROM audit ORDER BY id"))
    finally:
        db.close()
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("还没有操作记录")
        return 0
    words = {"accept": "认定邮件", "reprocess": "重新处理", "paper": "纸质版收到", "paper_undo": "撤销纸质版", "extend": "延期",
             "extend_undo": "撤销延期", "exempt": "豁免", "exempt_undo": "撤销豁免", "override": "人工认定完成情况"}
    for r in rows:
        when = dt.datetime.fromisoformat(r["at"]).astimezone(cfg.tz).strftime("%Y-%m-%d %H:%M")
        what = " ".join(x for x in (words.get(r["action"], r["action"]), r["unit"] or "", r["round"] or "",
                                    f"第 {r['message']} 号邮件" if r["message"] else "") if x)
        print(f"{when}  {r['actor']}  {what}" + (f"  理由：{r['reason']}" if r["reason"] else ""))
    return 0


INBOX_LABELS = {"quarantined": "隔离", "rejected": "退回", "unverified": "未核实"}


def _short(text: str | None, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def cmd_inbox(args) -> int:
    from .intake import inbox

    cfg = _config(args)
    statuses = tuple(dict.fromkeys(args.status)) if args.status else tuple(INBOX_LABELS)
    db = store.open_db(cfg.db_path)
    try:
        rows = inbox(db, statuses)
    finally:
        db.close()
    if args.json:
        _print_json(rows)
        return 0
    kinds = "、".join(INBOX_LABELS[s] for s in statuses)
    if not rows:
        print(f"没有需要处理的邮件（{kinds}）")
        return 0
    print(f"需要处理的邮件 {len(rows)} 封（{kinds}）：")
    for row in rows:
        try:
            when = dt.datetime.fromisoformat(row["received_at"]).astimezone(cfg.tz).strftime("%Y-%m-%d %H:%M")
        except (TypeError, ValueError):
            when = str(row.get("received_at") or "")
        parts = [f"#{row['message']}", when, INBOX_LABELS.get(row["status"], row["status"]), row.get("from_addr") or "（无发件人）",
                 f"「{_short(row.get('subject'), 30)}」"]
        if row.get("unit"):
            parts.append(f"→ {row['unit']}" + (f"（{row['round']}）" if row.get("round") else ""))
        if row.get("reason"):
            parts.append(_short(row["reason"], 60))
        print("  " + "  ".join(parts))
    print("用 mailbot accept 编号 --unit 单位 认定并登记")
    return 0


def cmd_export(args) -> int:
    cfg = _config(args)
    db = store.open_db(cfg.db_path)
    round_order = {r.name: i for i, r in enumerate(cfg.rounds)}
    unit_order = {u.name: i for i, u in enumerate(cfg.roster)}
    rows = sorted(
        store.export_rows(db),
        key=lambda r: (round_order.get(r["round"], 99), unit_order.get(r["unit"], 10**6), r["unit"], r["task"]),
    )
    if args.format in ("docx", "xlsx"):
        return _export_document(args, cfg, db)
    if args.format == "json":
        text = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["round", "unit", "task", "progress", "received_at", "message_id"])
        writer.writeheader()
        with Progress("已导出") as progress:
            for start in range(0, len(rows), 1000):
                writer.writerows(rows[start:start + 1000])
                progress(min(start + 1000, len(rows)), len(rows))
        text = buf.getvalue()
    if args.output:
        # utf-8-sig so that Excel on Chinese Windows opens the CSV with the right encoding
        Path(args.output).write_text(text, encoding="utf-8-sig" if args.format == "csv" else "utf-8")
        print(f"已导出 {len(rows)} 条记录到 {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _export_document(args, cfg: Config, db) -> int:
    from .exports import consolidated_docx, consolidated_xlsx, write_atomic

    now = _now(args, cfg)
    rounds = [cfg.round_named(args.round)] if args.round else list(cfg.rounds)
    progress = Progress()
    if args.format == "xlsx":
        out = Path(args.output or "汇总台账.xlsx")
        with progress:
            progress.note(f"正在生成 {out}（{len(rounds)} 个报送节点）…")
            data = consolidated_xlsx(cfg, db, now, rounds)
        write_atomic(out, data)
        print(f"已导出 {out}（{len(rounds)} 个报送节点，每个节点一个工作表，另附「报送情况」）")
        return 0
    if len(rounds) > 1 and args.output:
        raise MailbotError("导出 Word 汇总台账时，-o 只能对应一个报送节点：请加 --round，例如 --round 年中")
    for rnd in rounds:
        out = Path(args.output or f"汇总台账-{rnd.name}.docx")
        with progress:
            progress.note(f"正在生成 {out}…")
            data = consolidated_docx(cfg, db, rnd, now)
        write_atomic(out, data)
        print(f"已导出 {out}")
    return 0


def cmd_status(args) -> int:
    from .status import status_table

    cfg = _config(args)
    db = store.open_db(cfg.db_path)
    rounds = [cfg.round_named(args.round)] if args.round else list(cfg.rounds)
    table = status_table(cfg, db, rounds, _now(args, cfg))
    if args.tasks:
        from .status import task_completeness

        for rnd in rounds:
            table.setdefault("tasks", {})[rnd.name] = task_completeness(cfg, db, rnd)
    if args.json:
        _print_json(table)
        return 0
    print(render_status(table))
    for name, rows in table.get("tasks", {}).items():
        print(f"\n{name}：各项任务填写情况（已填写单位数 / 责任单位数）")
        for r in rows:
            pct = 100 * r["filled"] // r["responsible"] if r["responsible"] else 0
            bar = "█" * (pct // 10) + "·" * (10 - pct // 10)
            print(f"  任务{r['task']:>2}  {bar} {r['filled']:>3}/{r['responsible']:<3}")
    return 0


def render_status(table: dict) -> str:
    from unicodedata import east_asian_width

    def width(s: str) -> int:
        return sum(2 if east_asian_width(c) in "WF" else 1 for c in s)

    def pad(s: str, n: int) -> str:
        return s + " " * max(0, n - width(s))

    lines = []
    names = [r["name"] for r in table["rounds"]]
    header = [pad("单位", 22)] + [pad(n, 44) for n in names]
    lines.append("".join(header).rstrip())
    for unit in table["units"]:
        cells = [pad(unit["unit"], 22)]
        for name in names:
            st = unit["rounds"][name]
            text = {"on_time": "按时", "late": "逾期", "missing": "未报送", "pending": "待报送", "exempt": "豁免"}[st["state"]]
            if st["latest"]:
                text += f" {st['latest']}"
            if st["state"] in ("on_time", "late") and st["missing_tasks"]:
                text += f" 缺{len(st['missing_tasks'])}项"
            if st.get("extended_until"):
                text += f" 延期至{st['extended_until'][5:]}"
            if st.get("overdue_tasks"):
                text += f" 超时{len(st['overdue_tasks'])}项"
            if st.get("paper") is not None and st["state"] in ("on_time", "late"):
                text += " 纸质版已收" if st["paper"] else " 纸质版未收"
            cells.append(pad(text, 44))
        lines.append("".join(cells).rstrip())
    for r in table["rounds"]:
        c = r["counts"]
        lines.append(
            f"{r['name']}（截止 {r['deadline']}）：按时 {c['on_time']}，逾期 {c['late']}，未报送 {c['missing']}，待报送 {c['pending']}，"
            f"豁免 {c.get('exempt', 0)}，共 {c['total']} 个单位"
        )
    return "\n".join(lines)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _setup_logging(args, cfg: Config) -> None:
    """Log lines on stderr with the office's local time and its UTC offset (cfg.tz)."""
    handler = logging.StreamHandler()
    handler.setFormatter(LocalTimeFormatter(LOG_FORMAT, cfg.tz))
    logging.basicConfig(level=getattr(logging, (args.log_level or "INFO").upper(), logging.INFO), handlers=[handler])
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def cmd_run(args) -> int:
    from .daemon import run

    cfg = _config(args)
    _setup_logging(args, cfg)
    cfg.imap.password()  # fail now, with one line, rather than in the first poll
    if cfg.smtp.user:
        cfg.smtp.password()
    run(cfg)  # it checks (or creates) the database itself: a broken state directory is reported, not fatal
    return 0


def cmd_poll(args) -> int:
    from .daemon import run_cycle

    cfg = _config(args)
    _setup_logging(args, cfg)
    with Progress("已收取") as progress:  # a first backfill of thousands of mails shows how far it is
        report = run_cycle(cfg, now=_now(args, cfg) if args.now else None, retry_now=True, progress=progress)
    print(report.summary())
    return 1 if report.poll_error else 0


def cmd_check(args) -> int:
    from .config import check_warnings
    from .daemon import clear_backoff
    from .mailbox import Mailbox, MailboxError
    from .outbox import SmtpError, _close, _connect_smtp

    cfg = _config(args)
    print(f"配置文件 {cfg.path}：有效（{len(cfg.roster)} 个单位，{len(cfg.rounds)} 个报送节点，{len(cfg.ledger.tasks)} 项任务）")
    sys.stdout.flush()  # before the hints on stderr, in this order on a terminal too
    for warning in check_warnings(cfg):
        print(f"提示：{warning}", file=sys.stderr)
    ok = True
    try:
        with Mailbox(cfg.imap, timeout=cfg.imap.options.get("timeout_seconds", 60)) as mb:
            folders = mb.resolve_folders(cfg.imap.folders)
            for folder in folders:
                mb.select(folder)
            id_note = "已发送 ID 命令" if "ID" in mb.capabilities else "服务器不支持 ID 命令"
            print(f"IMAP {cfg.imap.host}:{cfg.imap.port}：登录成功，文件夹 {'、'.join(folders)} 可读（{id_note}）")
    except (MailboxError, ConfigError) as err:
        print(f"IMAP：{err}", file=sys.stderr)
        ok = False
    else:
        if cfg.db_path.exists():  # no database yet: no back-off either (and do not create one as another user)
            try:
                if clear_backoff(cfg):
                    print("已清除收信退避，下次收信立即重试")
            except (sqlite3.Error, OSError) as err:
                print(f"提示：无法清除收信退避（{err}）：守护进程将按原计划重试", file=sys.stderr)
    try:
        conn = _connect_smtp(cfg)
        _close(conn)
        print(f"SMTP {cfg.smtp.host}:{cfg.smtp.port}：{'登录成功' if cfg.smtp.user else '连接成功（未配置登录）'}")
    except (SmtpError, ConfigError) as err:
        print(f"SMTP：{err}", file=sys.stderr)
        ok = False
    if not cfg.smtp.from_addr and cfg.smtp.user:  # both empty: one of check_warnings
        print("提示：[smtp] from 未设置，将使用 [smtp] user 作为发件地址", file=sys.stderr)
    import shutil

    if shutil.which("soffice"):
        from .convert import probe_confinement

        confinement = probe_confinement()
        if confinement in ("netns", "userns+netns"):
            print("LibreOffice：转换旧版文档时无网络访问（独立的网络命名空间），链接内容不会被加载")
        else:
            print(f"提示：LibreOffice 转换时无法隔离网络（{confinement}），只靠配置禁止加载链接；"
                  "启用方法见 docs/RELIABILITY.md「LibreOffice cannot reach the network」", file=sys.stderr)
    return 0 if ok else 1


def cmd_demo(args) -> int:
    from .demo import run_demo

    path = Path(args.config) if args.config else default_config_path()
    return run_demo(path)


def cmd_notices(args) -> int:
    from .notices import due_notices, queue_notices
    from .outbox import deliver

    cfg = _config(args)
    db = store.open_db(cfg.db_path)
    now = _now(args, cfg)
    if args.send:
        queued = queue_notices(cfg, db, now)
        stats = deliver(cfg, db, now=now)
        if args.json:
            _print_json([n.as_dict() for n in queued])
        else:
            print(f"已生成 {len(queued)} 封通知，发送 {stats.sent} 封" + (f"，{stats.retried} 封稍后重试" if stats.retried else ""))
        return 0
    due = due_notices(cfg, db, now)
    if args.json:
        _print_json([n.as_dict() for n in due])
    else:
        _print_due(due, cfg, now)
    return 0


def _print_due(due, cfg: Config, now) -> None:
    labels = {"reminder": "截止前提醒", "overdue": "逾期催报", "digest": "协调人日报"}
    local = now.astimezone(cfg.tz)
    if not due:
        print(f"{local:%Y-%m-%d %H:%M}：没有需要发送的通知")
        return
    print(f"{local:%Y-%m-%d %H:%M} 应发送 {len(due)} 封通知：")
    for n in due:
        print(f"  {labels[n.kind]}  {n.round or ''} {n.unit or ''} → {', '.join(n.to)}")


def cmd_remind(args) -> int:
    from .notices import due_notices

    cfg = _config(args)
    db = store.open_db(cfg.db_path)
    now = _now(args, cfg)
    due = [n for n in due_notices(cfg, db, now) if n.kind in ("reminder", "overdue")]
    if not args.dry_run:
        raise MailbotError("remind 目前只支持 --dry-run（查看谁会收到什么）；实际发送由守护进程或 notices --send 完成")
    _print_due(due, cfg, now)
    return 0


def cmd_digest(args) -> int:
    from .digest import digest_context
    from .outbox import deliver
    from .templating import render

    cfg = _config(args)
    db = store.open_db(cfg.db_path)
    now = _now(args, cfg)
    if args.send:
        if not cfg.coordinator_emails:
            raise MailbotError("[coordinator] emails 为空：请先在配置中填写协调人邮箱")
        from .notices import queue_digest

        queue_digest(cfg, db, now, force=True)
        stats = deliver(cfg, db, now=now)
        print(f"日报已生成并发送 {stats.sent} 封" + (f"（{stats.retried} 封稍后重试）" if stats.retried else ""))
        return 0
    ctx = digest_context(cfg, db, now)
    print(render("mail/digest.txt.j2", **ctx, office=cfg.bot.get("office_name", ""), coordinator=True))
    return 0


def cmd_form(args) -> int:
    from .forms import write_form

    cfg = _config(args)
    unit = None
    if args.unit:
        unit = cfg.roster.get(args.unit) or cfg.roster.match(args.unit)
        if unit is None:
            raise MailbotError(f"名册中没有单位「{args.unit}」：请用单位全称或别名（见 {cfg.path} 的 [[units]]）")
    out = Path(args.output or (f"{unit.name}-台账（填报版）.docx" if unit else "任务落实台账（填报版）.docx"))
    write_form(out, cfg, unit)
    print(f"已生成 {out}" + (f"（{unit.name}，{len(cfg.roster.tasks_of(unit, cfg.ledger))} 项任务）" if unit else f"（全部 {len(cfg.ledger.tasks)} 项任务）"))
    return 0


def cmd_ledger_import(args) -> int:
    """Write the ledger JSON next to the config in use (where `[bot] ledger` is resolved) unless -o says
    otherwise, and print the exact `ledger = "…"` line that loads it."""
    from .forms import import_ledger

    ledger = import_ledger(_read_file(args.file))
    cfg = None
    path = Path(args.config) if args.config else default_config_path()
    if args.config or path.exists():
        try:
            cfg = load_config(path)
        except ConfigError as err:
            print(f"提示：{err}；JSON 写到当前目录", file=sys.stderr)
    name = f"ledger_{ledger.year or 'new'}.json"
    if args.output:
        out = Path(args.output)
    elif cfg is not None:
        out = cfg.path.parent / name
    else:
        out = Path.cwd() / name
    out.write_text(json.dumps(ledger.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    where = out.resolve()
    if cfg is not None:
        folder = cfg.path.parent.resolve()
        value = where.relative_to(folder).as_posix() if where.is_relative_to(folder) else str(where)
        target = f"在 {cfg.path} 的 [bot] 中写"
    else:
        value, target = str(where), "在配置文件的 [bot] 中写"
    print(
        f"已导入《{ledger.title}》：{len(ledger.sections)} 个板块、{len(ledger.items)} 个重点工作、{len(ledger.tasks)} 项任务 → {out}\n"
        f"启用方法：{target} ledger = {json.dumps(value, ensure_ascii=False)}，并按新年度修改 [[rounds]]"
    )
    return 0


def cmd_report_quarterly(args) -> int:
    from .exports import write_atomic
    from .quarterly import quarterly_docx

    cfg = _config(args)
    db = store.open_db(cfg.db_path)
    out = Path(args.output or f"季度通报-{args.quarter}.docx")
    write_atomic(out, quarterly_docx(cfg, db, args.quarter, _now(args, cfg)))
    print(f"已生成季度通报草稿 {out}（可在 Word/WPS 中修改后印发）")
    return 0


def cmd_report_annual(args) -> int:
    from .exports import annual_score_document, write_atomic
    from .supervision import annual_score

    cfg = _config(args)
    db = store.open_db(cfg.db_path)
    now = _now(args, cfg)
    try:
        rows = annual_score(cfg, db, args.year, now)
    finally:
        db.close()
    if args.json:
        _print_json(rows)
        return 0
    out = Path(args.output or f"年度考核扣分表-{args.year}.docx")
    fmt = "xlsx" if out.suffix.lower() == ".xlsx" else "docx"
    if out.suffix.lower() not in (".docx", ".xlsx"):
        raise MailbotError(f"输出文件应以 .docx 或 .xlsx 结尾：{out}")
    write_atomic(out, annual_score_document(cfg, rows, args.year, now, fmt))
    deducted = [r for r in rows if r["total"]]
    print(f"已生成 {out}：{len(rows)} 个单位，其中 {len(deducted)} 个单位有扣分")
    return 0


def cmd_backup(args) -> int:
    from .maintenance import backup

    cfg = _config(args)
    out = backup(cfg, Path(args.file))
    print(f"已备份数据库到 {out}（恢复方法：停止服务后，用该文件替换 {cfg.db_path}）")
    return 0


def cmd_reindex(args) -> int:
    from .maintenance import reindex

    cfg = _config(args)
    target = Path(args.into or cfg.state_dir / "mailbot-reindexed.db")
    with Progress("已处理") as progress:
        counts = reindex(cfg, target, progress=progress)
    summary = f"共 {sum(counts.values())} 封：{_counts_text(counts)}"
    print(f"已从归档重建数据库 {target}（{summary}）。核对无误后，停止服务并用它替换 {cfg.db_path}")
    return 0


# --- wiring -------------------------------------------------------------------------------------

# argparse's own words (usage, options, its error messages), by the message id it passes to gettext.
# Later Python versions reword a few; their ids are listed too, and a test fails on any English left.
_ZH = {
    "usage: ": "用法：",
    "options": "选项",
    "optional arguments": "选项",
    "positional arguments": "位置参数",
    "subcommands": "子命令",
    "show this help message and exit": "显示本帮助并退出",
    "show program's version number and exit": "显示版本号并退出",
    "argument %(argument_name)s: %(message)s": "参数 %(argument_name)s：%(message)s",
    "the following arguments are required: %s": "缺少必需的参数：%s",
    "one of the arguments %s is required": "必须给出以下参数之一：%s",
    "not allowed with argument %s": "不能与 %s 同时使用",
    "ignored explicit argument %r": "不接受取值 %r",
    "expected one argument": "后面需要一个值",
    "expected at most one argument": "后面最多一个值",
    "expected at least one argument": "后面至少需要一个值",
    "expected %s argument": "后面需要 %s 个值",
    "expected %s arguments": "后面需要 %s 个值",
    "unrecognized arguments: %s": "无法识别的参数：%s",
    "ambiguous option: %(option)s could match %(matches)s": "选项 %(option)s 不明确，可能是：%(matches)s",
    "invalid choice: %(value)r (choose from %(choices)s)": "取值 %(value)r 无效（可选：%(choices)s）",
    "invalid choice: %(value)r, maybe you meant %(closest)r?": "取值 %(value)r 无效，是不是 %(closest)r？",
    "invalid %(type)s value: %(value)r": "取值 %(value)r 无效（应为 %(type)s）",
    "unknown parser %(parser_name)r (choices: %(choices)s)": "没有命令 %(parser_name)r（可选：%(choices)s）",
    "unexpected option string: %s": "意外的选项：%s",
    "%(prog)s: error: %(message)s\n": "%(prog)s：错误：%(message)s\n",
    "%(prog)s: warning: %(message)s\n": "%(prog)s：提示：%(message)s\n",
    "argument '%(argument_name)s' is deprecated": "参数 %(argument_name)s 已弃用",
    "command '%(parser_name)s' is deprecated": "命令 %(parser_name)s 已弃用",
}


def _zh_gettext(message):
    return _ZH.get(message, message)


def _zh_ngettext(singular, plural, n):
    return _zh_gettext(singular if n == 1 else plural)


@contextlib.contextmanager
def _chinese_argparse():
    """argparse looks its words up through its module's `_`/`ngettext` when it uses them: swap them while it does."""
    saved = argparse._, argparse.ngettext
    argparse._, argparse.ngettext = _zh_gettext, _zh_ngettext
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved


def _width(text: str) -> int:
    from unicodedata import east_asian_width

    return sum(2 if east_asian_width(c) in "WF" else 1 for c in text)


class _HelpFormatter(argparse.HelpFormatter):
    """Keeps the help column aligned when an option's metavar is Chinese (two columns per character)."""

    def _format_action(self, action):
        text = super()._format_action(action)
        invocation = self._format_action_invocation(action)
        extra = _width(invocation) - len(invocation)
        head = " " * self._current_indent + invocation
        if extra and text.startswith(head) and text[len(head):].startswith("  "):
            rest = text[len(head):]
            spaces = len(rest) - len(rest.lstrip(" "))
            if spaces - extra >= 2 and not rest.startswith(" " * spaces + "\n"):
                text = head + rest[extra:]
        return text


class _Parser(argparse.ArgumentParser):
    """argparse in Chinese: help and usage, its error messages, and a suggestion for a mistyped command."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        with _chinese_argparse():  # the titles of the argument groups and -h's help are made here
            super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        with _chinese_argparse():
            return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        with _chinese_argparse():
            parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # named after the command they were given to (its defaults say which: _prog)
            self._fail(f"无法识别的参数：{' '.join(extras)}", getattr(parsed, "_prog", self.prog))
        return parsed

    def format_usage(self) -> str:
        with _chinese_argparse():
            return super().format_usage()

    def format_help(self) -> str:
        with _chinese_argparse():
            return super().format_help()

    def _check_value(self, action, value):
        if action.choices is None or value in action.choices:
            return
        choices = [str(c) for c in action.choices]
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
        if isinstance(action, argparse._SubParsersAction):
            what = "没有命令" if self.prog == "mailbot" else f"{self.prog} 没有子命令"
            hint = f"是不是 {close[0]}？" if close else f"可用的命令见 {self.prog} --help"
            raise argparse.ArgumentError(None, f"{what}「{value}」。{hint}")
        hint = f"是不是 {close[0]}？" if close else f"可选：{'、'.join(choices)}"
        raise argparse.ArgumentError(action, f"没有「{value}」这个取值。{hint}")

    def error(self, message: str):
        self._fail(message, self.prog)

    def _fail(self, message: str, prog: str):
        """One line on stderr, exit 2: the problem, and where to read how it is used."""
        if not message.endswith(("？", "--help")):
            message += f"。用法见 {prog} --help"
        self.exit(2, f"错误：{message}\n")


def _command(sub, name: str, help: str, description: str | None = None, **kwargs) -> argparse.ArgumentParser:
    """A sub-command; its description (shown by `mailbot NAME --help`) is the help line unless given."""
    parser = sub.add_parser(name, help=help, description=description or help, **kwargs)
    parser.set_defaults(_prog=parser.prog)
    return parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mailbot",
        description="台账报送邮件机器人：收取各单位的 Word 台账、登记进展、回执、催报逾期单位。用 mailbot 命令 --help 查看每个命令的用法。",
    )
    p.add_argument("--config", metavar="文件", help="配置文件路径（默认 ./config.toml，或环境变量 MAILBOT_CONFIG）")
    p.add_argument("--now", metavar="时间", help="假定的当前时间（ISO-8601），用于试算，例如 2023-08-08T09:30+08:00")
    p.add_argument("--log-level", default="INFO", metavar="级别", help="日志级别：DEBUG、INFO、WARNING（默认 INFO）")
    p.add_argument("--version", action="version", version=f"mailbot {__version__}", help="显示版本号并退出")
    sub = p.add_subparsers(dest="command", metavar="命令", title="命令", parser_class=_Parser, help="用 mailbot 命令 --help 查看该命令的用法")

    s = _command(sub, "parse", "解析一份 Word 台账，显示识别出的单位和各项进展",
                 "解析一份 Word 台账（.docx，或经 LibreOffice 转换的 .doc/.wps 等），显示识别出的填报单位、联系人和各项任务的进展；不写入数据库")
    s.add_argument("file", metavar="文件", help=".docx / .doc / .wps 文件")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(func=cmd_parse)

    s = _command(sub, "ingest", "像守护进程一样处理一封 .eml 邮件（归档、分类、解析、入库、生成回执），不发送")
    s.add_argument("file", metavar="文件", help="原始邮件文件（.eml）")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(func=cmd_ingest)

    s = _command(sub, "inbox", "列出需要人工处理的邮件：隔离、退回、发件人未核实",
                 "列出需要人工处理的邮件（隔离、退回、发件人未核实），每封一行：编号、收到时间、状态、发件人、主题、原因。"
                 "之后用 mailbot accept 编号 --unit 单位 认定并登记")
    s.add_argument("--status", action="append", choices=list(INBOX_LABELS), metavar="状态",
                   help="只列出某一种：quarantined（隔离）、rejected（退回）、unverified（未核实）；可重复；默认三种都列")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(func=cmd_inbox)

    s = _command(sub, "accept", "认定一封邮件属于某单位并登记，发送回执",
                 "把一封邮件（编号见 mailbot inbox）认定为某单位的报送：按原收到时间重新处理并登记，记录操作人和原因，向该单位发送回执")
    s.add_argument("message", metavar="编号", help="邮件编号，例如 12")
    s.add_argument("--unit", required=True, metavar="单位", help="单位名称或别名")
    s.add_argument("--reason", metavar="原因", help="认定的原因（记入操作记录）")
    s.add_argument("--json", action="store_true", help="输出 JSON（与 ingest --json 相同）")
    s.set_defaults(func=cmd_accept)

    s = _command(sub, "paper", "记录某单位某节点的纸质版（加盖公章）已收到",
                 "记录某单位在某个报送节点的纸质版（加盖本单位公章）已收到；--undo 撤销。纸质版不影响电子版的按时/逾期")
    s.add_argument("unit", metavar="单位", help="单位名称或别名")
    s.add_argument("--round", required=True, metavar="节点", help="报送节点，例如 年中")
    s.add_argument("--date", metavar="日期", help="收到日期，例如 2023-08-16（默认今天）")
    s.add_argument("--undo", action="store_true", help="撤销：改为未收到")
    s.set_defaults(func=cmd_paper)

    s = _command(sub, "extend", "准予某单位在某节点延期报送",
                 "准予某单位在某个报送节点延期至某日（含当日）：期间不提醒、不催报，在延期日前报送记为按时；--undo 撤销")
    s.add_argument("unit", metavar="单位", help="单位名称或别名")
    s.add_argument("--round", required=True, metavar="节点", help="报送节点，例如 年中")
    s.add_argument("--until", metavar="日期", help="延期至，例如 2023-08-25")
    s.add_argument("--reason", metavar="理由", help="延期理由（记入操作记录）")
    s.add_argument("--undo", action="store_true", help="撤销延期")
    s.set_defaults(func=cmd_extend)

    s = _command(sub, "exempt", "免除某单位某节点的报送",
                 "免除某单位在某个报送节点的报送：不提醒、不催报、不扣分，在各处显示为「豁免」；--undo 撤销")
    s.add_argument("unit", metavar="单位", help="单位名称或别名")
    s.add_argument("--round", required=True, metavar="节点", help="报送节点，例如 年中")
    s.add_argument("--reason", metavar="理由", help="豁免理由（记入操作记录）")
    s.add_argument("--undo", action="store_true", help="撤销豁免")
    s.set_defaults(func=cmd_exempt)

    s = _command(sub, "completion", "各单位各任务的完成情况（已完成、推进中、未启动…）和是否超过完成时限",
                 "按各单位最新填报的进展判断每项任务的完成情况（系统判断，或人工认定），并按完成时限列出未按时完成的任务")
    s.add_argument("--round", required=True, metavar="节点", help="报送节点，例如 年中")
    s.add_argument("--unit", metavar="单位", help="只看某个单位")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(func=cmd_completion)

    s = _command(sub, "override", "人工认定某单位某任务的完成情况",
                 "人工认定某单位某项任务的完成情况（done 已完成、in_progress 推进中、not_started 未启动、ongoing 持续推进、"
                 "not_reported 未填报）；该单位此后修改这项任务的内容时，恢复系统判断")
    s.add_argument("unit", metavar="单位", help="单位名称或别名")
    s.add_argument("--round", required=True, metavar="节点", help="报送节点，例如 年中")
    s.add_argument("--task", required=True, type=int, metavar="任务", help="任务序号，例如 6")
    s.add_argument("--state", required=True, metavar="状态", help="done、in_progress、not_started、ongoing 或 not_reported")
    s.add_argument("--reason", required=True, metavar="理由", help="认定理由（记入操作记录）")
    s.set_defaults(func=cmd_override)

    s = _command(sub, "log", "操作记录：谁在何时做了什么（认定、延期、豁免、纸质版、人工认定完成情况）")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(func=cmd_log)

    s = _command(sub, "reprocess", "按当前配置重新处理一封已归档的邮件",
                 "按当前的配置和名册重新处理一封已归档的邮件（编号见 mailbot inbox），例如补登了单位邮箱之后")
    s.add_argument("message", metavar="编号", help="邮件编号，例如 12")
    s.add_argument("--json", action="store_true", help="输出 JSON（与 ingest --json 相同）")
    s.set_defaults(func=cmd_reprocess)

    s = _command(sub, "export", "导出各单位各任务的最新进展",
                 "导出各单位各任务的最新进展：json、csv 为逐条记录；docx、xlsx 为汇总台账")
    s.add_argument("--format", choices=["json", "csv", "docx", "xlsx"], default="json", metavar="格式",
                   help="json、csv（逐条记录）；docx、xlsx（汇总台账）；默认 json")
    s.add_argument("--round", metavar="节点", help="只导出某个报送节点（docx、xlsx）")
    s.add_argument("-o", "--output", metavar="文件", help="写入文件而不是标准输出")
    s.set_defaults(func=cmd_export)

    s = _command(sub, "status", "各单位各节点的报送情况：按时、逾期、未报送")
    s.add_argument("--round", metavar="节点", help="只看某个报送节点，例如 年中")
    s.add_argument("--tasks", action="store_true", help="同时列出每项任务的填写完成情况")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(func=cmd_status)

    s = _command(sub, "run", "作为守护进程运行：定时收信、登记、回复、发送提醒",
                 "作为守护进程运行（一般由 systemd 启动）：定时收信、登记、回复、发送提醒和日报，直到收到 SIGTERM 或 Ctrl-C")
    s.set_defaults(func=cmd_run)

    s = _command(sub, "poll", "执行一轮：收取并处理所有新邮件，然后发送待发邮件",
                 "执行一轮后退出：收取并处理所有新邮件，然后发送待发邮件；忽略上次失败后的退避，立即收信。持续运行请用 mailbot run")
    s.add_argument("--once", action="store_true", help="只执行一轮（默认即如此，可省略）")
    s.set_defaults(func=cmd_poll)

    s = _command(sub, "notices", "此刻应发送的截止前提醒、逾期催报和日报（默认只列出，不发送）")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="以 JSON 列出，不发送")
    g.add_argument("--send", action="store_true", help="生成并发送")
    s.set_defaults(func=cmd_notices)

    s = _command(sub, "remind", "查看此刻谁会收到提醒或催报")
    s.add_argument("--dry-run", action="store_true", help="只显示，不发送")
    s.set_defaults(func=cmd_remind)

    s = _command(sub, "digest", "协调人日报：--dry-run 显示内容，--send 立即发送")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--dry-run", action="store_true", help="显示日报内容，不发送")
    g.add_argument("--send", action="store_true", help="立即生成并发送日报")
    s.set_defaults(func=cmd_digest)

    s = _command(sub, "form", "生成空白台账（填报版）：全部任务，或某单位的任务并预填单位名称")
    s.add_argument("unit", nargs="?", metavar="单位", help="单位名称或别名；省略则生成完整台账")
    s.add_argument("-o", "--output", metavar="文件", help="输出文件（.docx）")
    s.set_defaults(func=cmd_form)

    s = _command(sub, "ledger", "台账管理：从新年度的空白 Word 台账导入任务")
    lsub = s.add_subparsers(dest="ledger_command", metavar="操作", title="操作", parser_class=_Parser, required=True)
    s2 = _command(lsub, "import", "从空白台账（填报版 .docx）导入一年的任务，写成 JSON",
                  "从新年度的空白台账（填报版 .docx）导入任务，写成 JSON（默认写在所用配置文件的目录中），并给出启用它的 ledger = 一行")
    s2.add_argument("file", metavar="文件", help="空白台账 .docx")
    s2.add_argument("-o", "--output", metavar="文件", help="输出的 JSON 文件（默认：配置文件所在目录的 ledger_<年份>.json）")
    s2.set_defaults(func=cmd_ledger_import)

    s = _command(sub, "report", "生成文书：季度通报草稿、年度考核扣分表")
    rsub = s.add_subparsers(dest="report_command", metavar="类型", title="类型", parser_class=_Parser, required=True)
    s2 = _command(rsub, "quarterly", "季度通报：本季度逾期、未报送单位及扣分（按 GB/T 9704 排版）")
    s2.add_argument("--quarter", required=True, metavar="季度", help="季度，例如 2023Q3")
    s2.add_argument("-o", "--output", metavar="文件", help="输出文件（.docx）")
    s2.set_defaults(func=cmd_report_quarterly)

    s2 = _command(rsub, "annual", "年度考核扣分表：逾期、未报送、未按时完成的任务、纸质版未报送",
                  "年度考核扣分表：每个单位的每项扣分及理由（逾期报送、未报送、任务未按完成时限完成、纸质版未报送）和合计；"
                  "分值见配置 [bot] scoring；延期和豁免已计入")
    s2.add_argument("--year", required=True, type=int, metavar="年份", help="年份，例如 2023")
    s2.add_argument("-o", "--output", metavar="文件", help="输出文件（.docx 或 .xlsx，默认 年度考核扣分表-年份.docx）")
    s2.add_argument("--json", action="store_true", help="输出 JSON")
    s2.set_defaults(func=cmd_report_annual)

    s = _command(sub, "backup", "在线备份数据库（服务可继续运行）")
    s.add_argument("file", metavar="文件", help="备份文件路径，例如 /var/backups/mailbot-20231201.db")
    s.set_defaults(func=cmd_backup)

    s = _command(sub, "reindex", "从原始邮件归档重建数据库（不会重复发送邮件）",
                 "从原始邮件归档重建数据库：按收到顺序重新处理每一封归档邮件，回执记为已处理（不会重复发送）；核对后再替换正在使用的数据库")
    s.add_argument("--into", metavar="文件", help="新数据库文件（默认 state/mailbot-reindexed.db）")
    s.set_defaults(func=cmd_reindex)

    s = _command(sub, "demo", "本地完整演示：启动本机 IMAP/SMTP 服务器，投递几封示例报送，运行守护进程并展示结果",
                 "本地完整演示，不需要邮箱账号和 root：启动本机 IMAP/SMTP 服务器，投递几封示例报送，运行守护进程，"
                 "展示处理结果；数据留在 state_dir 下的 demo 目录，结束时给出查看它的命令")
    s.set_defaults(func=cmd_demo)

    s = _command(sub, "check", "检查配置文件，并尝试登录 IMAP 和 SMTP 服务器",
                 "检查配置文件是否有效并列出提示，尝试登录 IMAP 和 SMTP 服务器；IMAP 登录成功时清除收信退避")
    s.set_defaults(func=cmd_check)
    return p


def _stdout_to_devnull() -> None:
    """The reader of our stdout went away (`mailbot … | head`): send what is still buffered nowhere,
    so the interpreter's final flush does not complain (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # here, so that a closed pipe is noticed while it can still be handled
    except BrokenPipeError:
        _stdout_to_devnull()
        return 0


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ReportError as err:
        print(f"错误：{err}", file=sys.stderr)
        return 3
    except ConfigError as err:
        print(f"配置错误：{err}", file=sys.stderr)
        return 1
    except MailbotError as err:
        print(f"错误：{err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # before OSError, which it is
        raise
    except OSError as err:  # an output path that is a directory, not writable, a full disk …
        where = f"{err.filename}：" if getattr(err, "filename", None) else ""
        print(f"错误：{where}{err.strerror or err}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as err:
        print(f"错误：数据库无法使用（{err}）：请检查 state 目录，必要时用 mailbot backup 的备份恢复或 mailbot reindex 重建", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
