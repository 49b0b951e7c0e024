"""Config validation, responsibility resolution, and the coordinator's CLI (ingest, export, status)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mailbuilder as mb
from mailbot.cli import main
from mailbot.config import load_config
from mailbot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_loads(cfg):
    assert [r.name for r in cfg.rounds] == ["年中", "年底"]
    assert str(cfg.rounds[0].deadline) == "2023-08-15" and cfg.tz.key == "Asia/Shanghai"
    kinds = {u.kind for u in cfg.roster}
    assert kinds == {"department", "town"}
    assert all(u.emails and u.emails[0].endswith(".example") for u in cfg.roster)


def test_responsibility_resolution(cfg):
    r, ledger = cfg.roster, cfg.ledger
    depts = [u.name for u in r if u.kind == "department"]
    towns = [u.name for u in r if u.kind == "town"]
    assert [u.name for u in r.responsible_units(ledger.task(1))] == depts + towns
    assert [u.name for u in r.responsible_units(ledger.task(2))] == ["人力资源和社会保障局"]
    assert [u.name for u in r.responsible_units(ledger.task(3))] == ["民政局", "医疗保障局"]
    assert [u.name for u in r.responsible_units(ledger.task(5))] == ["司法局"]
    assert [u.name for u in r.responsible_units(ledger.task(20))] == towns
    assert r.tasks_of("兴泾镇", ledger) == [t for t in range(1, 31) if t not in (2, 3, 4, 5)]
    assert r.tasks_of("人力资源和社会保障局", ledger) == [t for t in range(1, 31) if t not in (3, 4, 5, 20)]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("银川市西夏区民政局", "民政局"),
        ("西夏区民政局（盖章）", "民政局"),
        ("人社局", "人力资源和社会保障局"),
        ("西夏区人民政府民政局", "民政局"),
        ("兴泾镇人民政府", "兴泾镇"),
        ("朔方路街道办事处", "朔方路街道"),
        ("某某局", None),
        ("", None),
    ],
)
def test_roster_match(cfg, text, expected):
    unit = cfg.roster.match(text)
    assert (unit.name if unit else None) == expected


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    return p


BASE = (ROOT / "config.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda s: s.replace('security = "ssl"', 'security = "tls"', 1), "[imap] security"),
        (lambda s: s.replace('timezone = "Asia/Shanghai"', 'timezone = "Mars/Base"'), "timezone"),
        (lambda s: s.replace('kind = "town"', 'kind = "village"', 1), "kind"),
        (lambda s: s.replace("deadline = 2023-08-15", 'deadline = "8月15日"'), "deadline"),
        (lambda s: s.replace('password_env = "MAILBOT_IMAP_PASSWORD"', 'password = "secret"'), "password"),
        (lambda s: s.replace('emails = ["mzj@xixia.example"]', 'emails = ["not-an-address"]'), "not-an-address"),
        (lambda s: s.replace('name = "司法局"', 'name = "司法所"'), "司法局"),
        (lambda s: s + "\n[imap\n", "TOML"),
    ],
)
def test_invalid_config_one_line_error_naming_key(tmp_path, mutate, words):
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, mutate(BASE)))
    message = str(exc.value)
    assert words in message and "\n" not in message.strip()


def test_missing_config_file_message(tmp_path):
    with pytest.raises(ConfigError, match="找不到配置文件"):
        load_config(tmp_path / "nope.toml")


def test_password_only_from_environment(cfg, monkeypatch):
    monkeypatch.delenv("MAILBOT_IMAP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="MAILBOT_IMAP_PASSWORD"):
        cfg.imap.password()
    monkeypatch.setenv("MAILBOT_IMAP_PASSWORD", "s3cret")
    assert cfg.imap.password() == "s3cret"


def run_cli(*args, cwd=None, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "mailbot.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_cli_ingest_json_export_status(cfg_path, make_report, tmp_path):
    good = mb.simple(attachments=[("a.docx", make_report({1: "甲", 3: "乙"}).read_bytes())])
    eml = tmp_path / "a.eml"
    eml.write_bytes(good)
    out = run_cli("--config", str(cfg_path), "ingest", str(eml), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["status"] == "accepted" and data["tasks"] == [1, 3] and 4 in data["missing"]

    out = run_cli("--config", str(cfg_path), "export", "--format", "json")
    rows = json.loads(out.stdout)
    assert [(r["round"], r["unit"], r["task"], r["progress"]) for r in rows] == [("年中", "民政局", 1, "甲"), ("年中", "民政局", 3, "乙")]
    assert rows[0]["received_at"].startswith("2023-08-10T") and rows[0]["message_id"].startswith("<")

    out = run_cli("--config", str(cfg_path), "export", "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert parsed[0]["unit"] == "民政局" and parsed[1]["progress"] == "乙"

    out = run_cli("--config", str(cfg_path), "--now", "2023-08-20T09:00+08:00", "status", "--round", "年中")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert any(line.startswith("民政局") and "按时" in line and "缺" in line for line in lines)
    assert any(line.startswith("兴泾镇") and "未报送" in line for line in lines)
    assert "按时 1，逾期 0，未报送 30" in out.stdout


def test_status_json_pending_before_deadline(cfg_path):
    out = run_cli("--config", str(cfg_path), "--now", "2023-08-08T09:30+08:00", "status", "--json")
    data = json.loads(out.stdout)
    assert data["rounds"][0]["counts"] == {"on_time": 0, "late": 0, "missing": 0, "pending": 31, "exempt": 0, "total": 31}  # exempt: issue 13


@pytest.mark.parametrize(
    "args,words",
    [
        (["ingest", "/nonexistent.eml"], "找不到文件"),
        (["status", "--round", "年初"], "年初"),
        (["--now", "yesterday", "status"], "--now"),
        (["frobnicate"], "错误"),
    ],
)
def test_cli_user_mistakes_one_line_no_traceback(cfg_path, args, words):
    out = run_cli("--config", str(cfg_path), *args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and words in out.stderr
    assert len([l for l in out.stderr.splitlines() if l.startswith(("错误", "配置错误"))]) == 1


def test_cli_bad_config_one_line(tmp_path):
    bad = _write(tmp_path, BASE.replace('kind = "town"', 'kind = "village"', 1))
    out = run_cli("--config", str(bad), "status")
    assert out.returncode == 1 and out.stderr.startswith("配置错误：") and len(out.stderr.strip().splitlines()) == 1


def test_every_command_has_help():
    from mailbot.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        assert sp.description or sp.format_help(), name
        assert any(a.help for a in sub._choices_actions if a.dest == name), f"{name} has no help"
    assert main(["--config", "/nonexistent.toml", "status"]) == 1


def test_status_tasks_completeness(cfg_path, make_report, tmp_path):
    eml = tmp_path / "a.eml"
    eml.write_bytes(mb.simple(attachments=[("a.docx", make_report({1: "甲", 3: "乙"}).read_bytes())]))
    assert run_cli("--config", str(cfg_path), "ingest", str(eml)).returncode == 0
    out = run_cli("--config", str(cfg_path), "status", "--round", "年中", "--tasks", "--json")
    tasks = {t["task"]: t for t in json.loads(out.stdout)["tasks"]["年中"]}
    assert (tasks[1]["filled"], tasks[1]["responsible"]) == (1, 31)
    assert (tasks[3]["filled"], tasks[3]["responsible"]) == (1, 2) and tasks[3]["missing_units"] == ["医疗保障局"]
    assert (tasks[2]["filled"], tasks[5]["filled"]) == (0, 0)
    text = run_cli("--config", str(cfg_path), "status", "--round", "年中", "--tasks").stdout
    assert "任务 3" in text and "1/2" in text
