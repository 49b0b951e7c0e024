"""The command line: parse arguments, call one library function, print the result.

Errors meant for people (MailbotError) become one line on stderr and exit 1;
nothing else is caught here, so a real bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sqlite3
import sys
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
        writer.writerows(rows)
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
    if args.format == "xlsx":
        out = Path(args.output or "汇总台账.xlsx")
        write_atomic(out, consolidated_xlsx(cfg, db, now, rounds))
        print(f"已导出 {out}（{len(rounds)} 个报送节点，每个节点一个工作表，另附「报送情况」）")
        return 0
    if len(rounds) > 1 and args.output:
        raise MailbotError("导出 Word 汇总台账时，-o 只能对应一个报送节点：请加 --round，例如 --round 年中")
    for rnd in rounds:
        out = Path(args.output or f"汇总台账-{rnd.name}.docx")
        write_atomic(out, consolidated_docx(cfg, db, rnd, now))
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
    header = [pad("单位", 22)] + [pad(n, 30) for n in names]
    lines.append("".join(header).rstrip())
    for unit in table["units"]:
        cells = [pad(unit["unit"], 22)]
        for name in names:
            st = unit["rounds"][name]
            text = {"on_time": "按时", "late": "逾期", "missing": "未报送", "pending": "待报送"}[st["state"]]
            if st["latest"]:
                text += f" {st['latest']}"
            if st["state"] in ("on_time", "late") and st["missing_tasks"]:
                text += f" 缺{len(st['missing_tasks'])}项"
            cells.append(pad(text, 30))
        lines.append("".join(cells).rstrip())
    for r in table["rounds"]:
        c = r["counts"]
        lines.append(
            f"{r['name']}（截止 {r['deadline']}）：按时 {c['on_time']}，逾期 {c['late']}，未报送 {c['missing']}，待报送 {c['pending']}，共 {c['total']} 个单位"
        )
    return "\n".join(lines)


def _setup_logging(args) -> None:
    import logging

    logging.basicConfig(
        level=getattr(logging, (args.log_level or "INFO").upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def cmd_run(args) -> int:
    from .daemon import run

    cfg = _config(args)
    _setup_logging(args)
    cfg.imap.password()  # fail now, with one line, rather than in the first poll
    if cfg.smtp.user:
        cfg.smtp.password()
    store.open_db(cfg.db_path).close()
    run(cfg)
    return 0


def cmd_poll(args) -> int:
    from .daemon import run_cycle

    cfg = _config(args)
    _setup_logging(args)
    report = run_cycle(cfg, now=_now(args, cfg) if args.now else None)
    print(report.summary())
    return 1 if report.poll_error else 0


def cmd_check(args) -> int:
    from .mailbox import Mailbox, MailboxError
    from .outbox import SmtpError, _close, _connect_smtp

    cfg = _config(args)
    print(f"配置文件 {cfg.path}：有效（{len(cfg.roster)} 个单位，{len(cfg.rounds)} 个报送节点，{len(cfg.ledger.tasks)} 项任务）")
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
    try:
        conn = _connect_smtp(cfg)
        _close(conn)
        print(f"SMTP {cfg.smtp.host}:{cfg.smtp.port}：{'登录成功' if cfg.smtp.user else '连接成功（未配置登录）'}")
    except (SmtpError, ConfigError) as err:
        print(f"SMTP：{err}", file=sys.stderr)
        ok = False
    if not cfg.smtp.from_addr:
        print("提示：[smtp] from 未设置，将使用 [smtp] user 作为发件地址", file=sys.stderr)
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
            raise MailbotError(f"名册中没有单位「{args.unit}」：请用单位全称或别名（见 config.toml 的 [[units]]）")
    out = Path(args.output or (f"{unit.name}-台账（填报版）.docx" if unit else "任务落实台账（填报版）.docx"))
    write_form(out, cfg, unit)
    print(f"已生成 {out}" + (f"（{unit.name}，{len(cfg.roster.tasks_of(unit, cfg.ledger))} 项任务）" if unit else f"（全部 {len(cfg.ledger.tasks)} 项任务）"))
    return 0


def cmd_ledger_import(args) -> int:
    from .forms import import_ledger

    ledger = import_ledger(_read_file(args.file))
    out = Path(args.output or f"ledger_{ledger.year or 'new'}.json")
    out.write_text(json.dumps(ledger.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(
        f"已导入《{ledger.title}》：{len(ledger.sections)} 个板块、{len(ledger.items)} 个重点工作、{len(ledger.tasks)} 项任务 → {out}\n"
        f"启用方法：在 config.toml 的 [bot] 中写 ledger = \"{out}\"，并按新年度修改 [[rounds]]"
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
    counts = reindex(cfg, target)
    summary = "，".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"已从归档重建数据库 {target}（{summary}）。核对无误后，停止服务并用它替换 {cfg.db_path}")
    return 0


# --- wiring -------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, in the language of the rest of the CLI
        self.print_usage(sys.stderr)
        self.exit(2, f"错误：{message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mailbot", description="台账报送邮件机器人：收取各单位的 Word 台账、登记进展、催报逾期单位")
    p.add_argument("--config", help="配置文件路径（默认 ./config.toml，或环境变量 MAILBOT_CONFIG）")
    p.add_argument("--now", help="假定的当前时间（ISO-8601），用于试算，例如 2023-08-08T09:30+08:00")
    p.add_argument("--log-level", default="INFO", help="日志级别：DEBUG、INFO、WARNING（默认 INFO）")
    p.add_argument("--version", action="version", version=f"mailbot {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("parse", help="解析一份 Word 台账，显示识别出的单位和各项进展")
    s.add_argument("file", help=".docx / .doc / .wps 文件")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(func=cmd_parse)

    s = sub.add_parser("ingest", help="像守护进程一样处理一封 .eml 邮件（归档、分类、解析、入库、生成回执），不发送")
    s.add_argument("file", help="原始邮件文件（.eml）")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("export", help="导出各单位各任务的最新进展")
    s.add_argument("--format", choices=["json", "csv", "docx", "xlsx"], default="json", help="json、csv（逐条记录）；docx、xlsx（汇总台账）")
    s.add_argument("--round", help="只导出某个报送节点（docx、xlsx）")
    s.add_argument("-o", "--output", help="写入文件而不是标准输出")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("status", help="各单位各节点的报送情况：按时、逾期、未报送")
    s.add_argument("--round", help="只看某个报送节点，例如 年中")
    s.add_argument("--tasks", action="store_true", help="同时列出每项任务的填写完成情况")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("run", help="作为守护进程运行：定时收信、登记、回复、发送提醒")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("poll", help="执行一轮：收取并处理所有新邮件，然后发送待发邮件")
    s.add_argument("--once", action="store_true", required=True, help="只执行一轮（必需）")
    s.set_defaults(func=cmd_poll)

    s = sub.add_parser("notices", help="此刻应发送的截止前提醒、逾期催报和日报（默认只列出，不发送）")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="以 JSON 列出，不发送")
    g.add_argument("--send", action="store_true", help="生成并发送")
    s.set_defaults(func=cmd_notices)

    s = sub.add_parser("remind", help="查看此刻谁会收到提醒或催报")
    s.add_argument("--dry-run", action="store_true", help="只显示，不发送")
    s.set_defaults(func=cmd_remind)

    s = sub.add_parser("digest", help="协调人日报：--dry-run 显示内容，--send 立即发送")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--dry-run", action="store_true", help="显示日报内容，不发送")
    g.add_argument("--send", action="store_true", help="立即生成并发送日报")
    s.set_defaults(func=cmd_digest)

    s = sub.add_parser("form", help="生成空白台账（填报版）：全部任务，或某单位的任务并预填单位名称")
    s.add_argument("unit", nargs="?", help="单位名称或别名；省略则生成完整台账")
    s.add_argument("-o", "--output", help="输出文件（.docx）")
    s.set_defaults(func=cmd_form)

    s = sub.add_parser("ledger", help="台账管理：从新年度的空白 Word 台账导入任务")
    lsub = s.add_subparsers(dest="ledger_command", metavar="ACTION", parser_class=_Parser, required=True)
    s2 = lsub.add_parser("import", help="从空白台账（填报版 .docx）导入一年的任务，写成 JSON")
    s2.add_argument("file", help="空白台账 .docx")
    s2.add_argument("-o", "--output", help="输出的 JSON 文件（默认 ledger_<年份>.json）")
    s2.set_defaults(func=cmd_ledger_import)

    s = sub.add_parser("report", help="生成文书：季度通报草稿")
    rsub = s.add_subparsers(dest="report_command", metavar="KIND", parser_class=_Parser, required=True)
    s2 = rsub.add_parser("quarterly", help="季度通报：本季度逾期、未报送单位及扣分（按 GB/T 9704 排版）")
    s2.add_argument("--quarter", required=True, help="季度，例如 2023Q3")
    s2.add_argument("-o", "--output", help="输出文件（.docx）")
    s2.set_defaults(func=cmd_report_quarterly)

    s = sub.add_parser("backup", help="在线备份数据库（服务可继续运行）")
    s.add_argument("file", help="备份文件路径，例如 /var/backups/mailbot-20231201.db")
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser("reindex", help="从原始邮件归档重建数据库（不会重复发送邮件）")
    s.add_argument("--into", help="新数据库文件（默认 state/mailbot-reindexed.db）")
    s.set_defaults(func=cmd_reindex)

    s = sub.add_parser("demo", help="本地完整演示：启动本机 IMAP/SMTP 服务器，投递几封示例报送，运行守护进程并展示结果")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("check", help="检查配置文件，并尝试登录 IMAP 和 SMTP 服务器")
    s.set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
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
    except OSError as err:  # an output path that is a directory, not writable, a full disk …
        where = f"{err.filename}：" if getattr(err, "filename", None) else ""
        print(f"错误：{where}{err.strerror or err}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as err:
        print(f"错误：数据库无法使用（{err}）：请检查 state 目录，必要时用 mailbot backup 的备份恢复或 mailbot reindex 重建", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
