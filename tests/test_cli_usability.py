"""The command line as people meet it: Chinese throughout (argparse's own words too), suggestions for
typos, which config is in use, a pipe closed early, progress on long work, and the coordinator's
inbox / accept / reprocess commands."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import mailbuilder as mb
from servers import *  # noqa: F401,F403 - fixtures: dovecot, mailbox, smtp_server
from mailbot import cli, store
from mailbot.cli import LocalTimeFormatter, Progress, build_parser, main
from mailbot.config import load_config
from mailbot.intake import ingest

ROOT = Path(__file__).resolve().parent.parent
HAN = re.compile(r"[\u4e00-\u9fff]")
ENGLISH = re.compile(r"usage|options|positional|show this help|required|invalid|choice|unrecognized|expected|error|argument", re.I)


def run_main(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _subparsers(parser: argparse.ArgumentParser):
    """(name, parser) of every command and sub-command, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{parser.prog} {name}".removeprefix("mailbot "), sub
                yield from _subparsers(sub)


# --- A. the command line in Chinese ---------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["status", "--help"],
        ["ledger", "import", "--help"],
        ["report", "quarterly"],  # a required option missing
        ["ledger"],  # a required sub-command missing
        ["statu"],  # an unknown command
        ["status", "--bogus"],  # an unknown option
        ["--config"],  # an option without its value
        ["export", "--format", "pdf"],  # not one of the choices
        ["digest", "--send", "--dry-run"],  # mutually exclusive
    ],
)
def test_argparse_speaks_chinese(capsys, argv):
    code, out, err = run_main(capsys, *argv)
    text = out + err
    assert code in (0, 2)
    assert HAN.search(text), text
    assert not ENGLISH.search(text), text
    if code == 2:  # a mistake: one line on stderr, nothing else
        assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("错误："), err
    assert argparse._("usage: ") == "usage: "  # argparse is left as it was found


def test_help_of_every_command_runs_in_chinese(capsys):
    for name, _sub in _subparsers(build_parser()):
        code, out, err = run_main(capsys, *name.split(), "--help")
        assert code == 0 and err == ""
        assert out.startswith("用法：mailbot ") and not ENGLISH.search(out), out


def test_a_mistyped_command_gets_a_suggestion(capsys):
    assert run_main(capsys, "statu") == (2, "", "错误：没有命令「statu」。是不是 status？\n")
    code, _out, err = run_main(capsys, "ledger", "imprt", "x.docx")
    assert code == 2 and err == "错误：mailbot ledger 没有子命令「imprt」。是不是 import？\n"
    code, _out, err = run_main(capsys, "status", "--bogus")
    assert code == 2 and "--bogus" in err and "mailbot status --help" in err  # points at the command's own help


def test_every_command_has_a_description():
    missing = [name for name, sub in _subparsers(build_parser()) if not (sub.description and HAN.search(sub.description))]
    assert missing == []
    assert {"run", "check", "demo", "poll", "ledger import", "report quarterly", "accept", "reprocess", "inbox"} <= {
        name for name, _ in _subparsers(build_parser())
    }


def test_poll_is_one_cycle_with_or_without_once(cfg_path, capsys, monkeypatch):
    from mailbot import daemon

    calls = []

    def fake_run_cycle(cfg, stop=None, now=None, **kwargs):
        calls.append(kwargs)
        return daemon.CycleReport()

    monkeypatch.setattr(daemon, "run_cycle", fake_run_cycle)
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: None)
    for argv in (["poll"], ["poll", "--once"]):
        code, out, err = run_main(capsys, "--config", str(cfg_path), *argv)
        assert code == 0 and "发送 0 封" in out, err
    assert [c["retry_now"] for c in calls] == [True, True]  # a person asked: the back-off does not apply


def test_log_lines_show_local_time_with_its_offset(cfg, monkeypatch):
    formatter = LocalTimeFormatter(cli.LOG_FORMAT, ZoneInfo("Asia/Shanghai"))
    record = logging.LogRecord("mailbot", logging.INFO, __file__, 1, "收到 %d 封", (3,), None)
    record.created = dt.datetime(2023, 8, 10, 2, 0, tzinfo=dt.timezone.utc).timestamp()
    assert formatter.format(record) == "2023-08-10 10:00:00+0800 INFO mailbot: 收到 3 封"

    seen = {}
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.update(kw))
    cli._setup_logging(argparse.Namespace(log_level="DEBUG"), cfg)
    [handler] = seen["handlers"]
    assert seen["level"] == logging.DEBUG
    assert isinstance(handler.formatter, LocalTimeFormatter) and handler.formatter.tz == cfg.tz
    assert handler.formatter.format(record).startswith("2023-08-10 10:00:00+0800 ")


def _fill(cfg, make_report) -> None:
    db = store.open_db(cfg.db_path)
    try:
        ingest(cfg, db, mb.simple(attachments=[("a.docx", make_report({1: "已完成"}).read_bytes())], date=mb.when("2023-08-10")))
        ingest(cfg, db, mb.simple(sender="spam@x.example", subject="广告"), received_at=mb.when("2023-08-11"))
    finally:
        db.close()


def test_reindex_counts_in_chinese_and_reports_progress(cfg, cfg_path, make_report, capsys, tmp_path):
    from mailbot.maintenance import reindex

    _fill(cfg, make_report)
    code, out, err = run_main(capsys, "--config", str(cfg_path), "reindex", "--into", str(tmp_path / "a.db"))
    assert code == 0, err
    assert "共 2 封：登记 1，隔离 1" in out and "accepted" not in out and "quarantined" not in out
    calls = []
    reindex(cfg, tmp_path / "b.db", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]


def test_a_closed_pipe_ends_quietly(cfg_path, make_report):
    """`mailbot parse FILE | head -1`: the reader goes away; no 「错误：Broken pipe」, no "Exception ignored"."""
    report = make_report({t: "已按要求落实" * 10 for t in range(1, 31)})
    for argv in (["parse", str(report)], ["--help"]):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before mailbot writes anything
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "mailbot.cli", "--config", str(cfg_path), *argv],
                stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
            )
        finally:
            os.close(write)
        assert (proc.returncode, proc.stderr) == (0, ""), argv


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_only_on_a_terminal():
    plain = io.StringIO()
    p = Progress(stream=plain)
    p(1, 2)
    p(2, 2)
    p.close()
    assert plain.getvalue() == ""
    term = _Terminal()
    with Progress("已处理", stream=term) as p:
        p(1, 5000)
        p(5000, 5000)
    assert "\r已处理 1/5000" in term.getvalue() and "\r已处理 5000/5000" in term.getvalue()


def test_export_shows_progress_on_a_terminal(cfg, cfg_path, make_report, capsys, monkeypatch, tmp_path):
    _fill(cfg, make_report)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["--config", str(cfg_path), "export", "--format", "csv", "-o", str(tmp_path / "a.csv")]) == 0
    assert "\r已导出 1/1" in term.getvalue()


# --- B. which config is in use -----------------------------------------------------------------------


def test_messages_name_the_config_in_use(tmp_path, capsys):
    text = (ROOT / "config.toml").read_text(encoding="utf-8").replace('state_dir = "state"', f'state_dir = "{tmp_path / "state"}"', 1)
    office = tmp_path / "office.toml"
    office.write_text(text, encoding="utf-8")
    code, _out, err = run_main(capsys, "--config", str(office), "form", "不存在局")
    assert code == 1 and f"见 {office} 的 [[units]]" in err


def _blank_form(cfg, tmp_path) -> Path:
    from mailbot.forms import render_form

    path = tmp_path / "2023台账.docx"
    path.write_bytes(render_form(cfg))
    return path


def test_ledger_import_writes_next_to_the_config_and_prints_a_line_that_loads(cfg, tmp_path, capsys, monkeypatch):
    form = _blank_form(cfg, tmp_path)
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    text = (ROOT / "config.toml").read_text(encoding="utf-8").replace('state_dir = "state"', f'state_dir = "{tmp_path / "state"}"', 1)
    office = conf_dir / "office.toml"
    office.write_text(text, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MAILBOT_CONFIG", raising=False)

    code, out, err = run_main(capsys, "--config", str(office), "ledger", "import", str(form))
    assert code == 0, err
    assert (conf_dir / "ledger_2023.json").exists() and not list(elsewhere.iterdir())
    [line] = re.findall(r'ledger = "[^"]*"', out)
    assert str(office) in out
    office.write_text(text.replace("[bot]\n", f"[bot]\n{line}\n", 1), encoding="utf-8")
    loaded = load_config(office)
    assert loaded.ledger.to_dict() == cfg.ledger.to_dict()

    # with -o somewhere else, the line names that file so that it loads from the config's folder too
    code, out, err = run_main(capsys, "--config", str(office), "ledger", "import", str(form), "-o", "new.json")
    assert code == 0, err
    [line] = re.findall(r'ledger = "[^"]*"', out)
    office.write_text(text.replace("[bot]\n", f"[bot]\n{line}\n", 1), encoding="utf-8")
    assert load_config(office).ledger.to_dict() == cfg.ledger.to_dict()


def test_ledger_import_without_a_config_writes_here_with_an_absolute_path(cfg, tmp_path, capsys, monkeypatch):
    form = _blank_form(cfg, tmp_path)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.delenv("MAILBOT_CONFIG", raising=False)
    code, out, err = run_main(capsys, "ledger", "import", str(form))
    assert code == 0, err
    assert f'ledger = "{here / "ledger_2023.json"}"' in out and (here / "ledger_2023.json").exists()


def test_demo_prints_the_commands_that_read_its_data(cfg, tmp_path, capsys, monkeypatch):
    from mailbot.demo import demo_config_text, explore_text

    demo_dir = tmp_path / "state" / "demo"
    (demo_dir / "state").mkdir(parents=True)
    cfg_file = demo_dir / "config.toml"
    cfg_file.write_text(demo_config_text(cfg.path, demo_dir, 1, 2), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    text = explore_text(cfg_file)
    assert "--config state/demo/config.toml" in text
    commands = [shlex.split(line) for line in text.splitlines() if line.startswith("  ")]
    assert commands and all(c[0].endswith("mailbot") for c in commands)
    status = next(c for c in commands if "status" in c)
    code, out, err = run_main(capsys, *status[1:])
    assert code == 0, err
    assert "年中（截止 2023-08-15）" in out
    assert (demo_dir / "state" / "mailbot.db").exists() and not cfg.db_path.exists()  # the demo's database, not ./config.toml's


# --- C. inbox, accept, reprocess, check ---------------------------------------------------------------


def _quarantined(cfg, make_report) -> tuple[int, int]:
    """(a report from an unknown address naming no unit, spam): both quarantined."""
    db = store.open_db(cfg.db_path)
    try:
        a = ingest(cfg, db, mb.simple(sender="someone@qq.example", subject="台账",
                                      attachments=[("a.docx", make_report({1: "已完成", 6: "推进中"}, unit="").read_bytes())]),
                   received_at=mb.when("2023-08-10"))
        b = ingest(cfg, db, mb.simple(sender="spam@x.example", subject="办公用品优惠"), received_at=mb.when("2023-08-11"))
    finally:
        db.close()
    assert a.status == b.status == "quarantined"
    return a.message_row, b.message_row


def test_inbox_lists_what_needs_a_person(cfg, cfg_path, make_report, capsys):
    first, second = _quarantined(cfg, make_report)
    code, out, err = run_main(capsys, "--config", str(cfg_path), "inbox", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["message"] for r in rows] == [first, second]
    assert set(rows[0]) >= {"message", "received_at", "from_addr", "subject", "status", "reason", "unit", "round"}
    code, out, err = run_main(capsys, "--config", str(cfg_path), "inbox")
    lines = out.strip().splitlines()
    assert f"#{first}  2023-08-10 10:00  隔离  someone@qq.example  「台账」" in lines[1]
    assert lines[-1] == "用 mailbot accept 编号 --unit 单位 认定并登记"
    code, out, err = run_main(capsys, "--config", str(cfg_path), "inbox", "--status", "rejected")
    assert code == 0 and "没有需要处理的邮件（退回）" in out


def test_accept_and_reprocess(cfg, cfg_path, make_report, capsys, monkeypatch):
    first, second = _quarantined(cfg, make_report)
    code, out, err = run_main(capsys, "--config", str(cfg_path), "accept", str(first), "--unit", "民政局", "--reason", "电话确认", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["status"] == "accepted" and got["unit"] == "民政局" and got["tasks"] == [1, 6] and got["message"] == first
    db = store.open_db(cfg.db_path)
    try:
        [audit] = list(db.query("SELECT actor, action, reason FROM audit WHERE message = ?", [first]))
    finally:
        db.close()
    assert audit["action"] == "accept" and audit["reason"] == "电话确认" and audit["actor"]

    code, out, err = run_main(capsys, "--config", str(cfg_path), "reprocess", str(second))
    assert code == 0 and out.startswith(f"第 {second} 号邮件未能登记：已隔离"), out + err

    code, out, err = run_main(capsys, "--config", str(cfg_path), "reprocess", str(first), "--json")
    assert code == 0 and json.loads(out)["message"] == first and json.loads(out)["unit"] == "民政局"  # the accept holds

    code, out, err = run_main(capsys, "--config", str(cfg_path), "accept", f"#{first}", "--unit", "西夏区民政局")
    assert code == 1 and err.strip() == f"错误：第 {first} 号邮件已登记为「民政局」，无需认定", out + err
    code, out, err = run_main(capsys, "--config", str(cfg_path), "accept", f"#{second}", "--unit", "西夏区民政局")
    assert code == 0 and out.startswith(f"第 {second} 号邮件未能登记：已退回（民政局），原因：邮件中没有附件"), out + err  # spam has no report

    for argv, words in (
        (["accept", "999", "--unit", "民政局"], "999"),
        (["accept", str(second), "--unit", "不存在局"], "不存在局"),
        (["accept", "十二", "--unit", "民政局"], "十二"),
        (["reprocess", "999"], "999"),
    ):
        code, out, err = run_main(capsys, "--config", str(cfg_path), *argv)
        assert code == 1 and out == "" and err.startswith("错误：") and words in err and len(err.strip().splitlines()) == 1, err


def _live_config(tmp_path, dovecot, user, smtp) -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    path = tmp_path / "live.toml"
    path.write_text(f"""
[bot]
state_dir = "{tmp_path / 'state'}"
timezone = "Asia/Shanghai"
reply_max_age_days = 100000

[imap]
host = "127.0.0.1"
port = {dovecot.port}
security = "plain"
user = "{user}"
password_env = "TEST_IMAP_PASSWORD"

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "plain"
from = "{user}"

{text[text.index("[[rounds]]"):]}""", encoding="utf-8")
    return path


def test_check_prints_the_warnings_and_clears_the_back_off(tmp_path, dovecot, mailbox, smtp_server, monkeypatch, capsys):
    user, password = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", password)
    path = _live_config(tmp_path, dovecot, user, smtp_server)
    cfg = load_config(path)
    db = store.open_db(cfg.db_path)
    store.kv_set(db, "imap_next_try", store.iso(store.now_utc() + dt.timedelta(hours=1)))
    db.close()
    code, out, err = run_main(capsys, "--config", str(path), "check")
    assert code == 0, err
    assert "提示：[coordinator] emails 为空" in err  # config.check_warnings, one 提示 line each
    assert "已清除收信退避，下次收信立即重试" in out
    db = store.open_db(cfg.db_path)
    assert store.kv_get(db, "imap_next_try") is None
    db.close()
    code, out, err = run_main(capsys, "--config", str(path), "check")
    assert code == 0 and "退避" not in out


def test_a_backfill_reports_its_progress(tmp_path, dovecot, mailbox, smtp_server, monkeypatch):
    from mailbot.mailbox import Mailbox, poll_folders

    user, password = mailbox
    monkeypatch.setenv("TEST_IMAP_PASSWORD", password)
    cfg = load_config(_live_config(tmp_path, dovecot, user, smtp_server))
    for n in range(3):
        dovecot.append(user, password, mb.simple(sender="spam@x.example", subject=f"广告 {n}", body=f"第 {n} 封"))
    calls = []
    db = store.open_db(cfg.db_path)
    try:
        with Mailbox(cfg.imap) as box:
            stats = poll_folders(cfg, db, box, progress=lambda done, total: calls.append((done, total)))
    finally:
        db.close()
    assert stats.fetched == 3 and calls == [(1, 3), (2, 3), (3, 3)]
