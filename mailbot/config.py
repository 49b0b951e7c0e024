"""Load and validate config.toml.

Every default lives in ``DEFAULTS``; config.toml overrides it; secrets come only
from the environment variables the config names. Validation fails at load with a
one-line message that names the key and the fix.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError, MailbotError
from .ledger import Ledger, Roster, Unit, load_ledger

DEFAULTS: dict[str, dict[str, Any]] = {
    "bot": {
        "state_dir": "state",
        "timezone": "Asia/Shanghai",
        "poll_interval_seconds": 120,
        "loop_header": "X-Mailbot-Loop",
        "ledger": "",  # empty: the shipped 2023 ledger
        "max_message_bytes": 30 * 1024 * 1024,  # larger mail is archived (streamed) and refused unread; 163/QQ send big files as links anyway
        "max_decompressed_bytes": 128 * 1024 * 1024,  # everything one message may unpack (zips, documents) in all
        "max_conversions_per_message": 3,  # legacy files converted with LibreOffice per message
        "max_attachments": 100,
        "max_document_bytes": 40 * 1024 * 1024,
        "conversion_timeout_seconds": 120,
        "office_name": "银川市西夏区人民政府办公室",
        "trust_authentication_results": True,
        "reply_max_age_days": 14,  # older mail (a first backfill) is recorded but not answered
        "outbox_interval_seconds": 30,
        "warm_conversion": True,  # the daemon keeps one LibreOffice running between legacy-file conversions; false: one per file
        "warm_conversion_max_files": 50,  # a fresh LibreOffice (and profile) after this many files
        "warm_conversion_idle_seconds": 300,  # stopped after this long without work
        "parse_processes": "auto",  # worker processes for a backlog of mail: "auto" (one per core, at most 4) or a number; 0: threads only
        "scoring": {"late_points": 1.0, "missing_points": 2.0},  # deductions in the quarterly notice
    },
    "imap": {
        "host": "127.0.0.1",
        "port": 993,
        "security": "ssl",
        "user": "",
        "password_env": "MAILBOT_IMAP_PASSWORD",
        "folders": ["INBOX"],
        "post_action": "none",  # "none" | "flag" | "seen" | "copy:<folder>", after the message is committed
        "timeout_seconds": 60,
    },
    "smtp": {
        "host": "127.0.0.1",
        "port": 465,
        "security": "ssl",
        "user": "",
        "password_env": "MAILBOT_SMTP_PASSWORD",
        "from": "",
        "from_name": "",
        "save_to_sent": "",  # IMAP folder to APPEND a copy of what we send, e.g. "\\Sent"; empty: none
        "timeout_seconds": 60,
        "max_replies_per_address_per_day": 20,
    },
    "coordinator": {"emails": []},
    "notices": {
        "hour": "09:00",  # local time reminders and overdue notices go out
        "digest_hour": "08:30",
        "quiet_hours": "20:00-08:00",  # nothing is sent in this window (local time); "" for none
        "skip_weekends": False,
        "overdue_cc_coordinator": False,
        "digest_days_before_deadline": 7,  # a daily digest is due in this window even when nothing arrived
        "overdue_for_days": 45,  # overdue notices stop this long after the deadline (or when the next round opens)
        "interval_seconds": 300,  # how often the daemon asks what is due
    },
    "round": {"remind_days_before": [7, 3, 1], "overdue_every_days": 3},
}

SECURITY_MODES = ("ssl", "starttls", "plain")
UNIT_KINDS = ("department", "town")
_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


@dataclass(frozen=True)
class Round:
    """A reporting round (报送节点): messages received from ``opens`` on belong to it."""

    name: str
    opens: dt.datetime
    deadline: dt.date
    tz: ZoneInfo
    remind_days_before: tuple[int, ...] = (7, 3, 1)
    overdue_every_days: int = 3

    @property
    def deadline_end(self) -> dt.datetime:
        """The first instant that is late: midnight after the deadline day, local time."""
        return dt.datetime.combine(self.deadline + dt.timedelta(days=1), dt.time(0), self.tz)

    def is_late(self, received: dt.datetime) -> bool:
        return received >= self.deadline_end


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    security: str
    user: str
    password_env: str
    folders: tuple[str, ...] = ()
    from_addr: str = ""
    options: dict = field(default_factory=dict)

    def password(self) -> str:
        """The secret, read from the environment only when a connection needs it."""
        value = os.environ.get(self.password_env)
        if not value:
            raise ConfigError(
                f"环境变量 {self.password_env} 未设置：请把邮箱密码或授权码放在该环境变量中（不要写进 config.toml）"
            )
        return value


@dataclass
class Config:
    path: Path
    state_dir: Path
    tz: ZoneInfo
    bot: dict[str, Any]
    imap: ServerConfig
    smtp: ServerConfig
    coordinator_emails: tuple[str, ...]
    roster: Roster
    rounds: tuple[Round, ...]
    ledger: Ledger = field(repr=False, default=None)  # type: ignore[assignment]
    notices: dict[str, Any] = field(default_factory=dict)

    @property
    def imap_post_action(self) -> str:
        return str(self.imap.options.get("post_action") or "none")

    @property
    def db_path(self) -> Path:
        return self.state_dir / "mailbot.db"

    @property
    def own_addresses(self) -> set[str]:
        return {a.lower() for a in (self.smtp.from_addr, self.imap.user, self.smtp.user) if a and "@" in a}

    def round_for(self, received: dt.datetime) -> Round:
        """The latest round whose ``opens`` <= received; before the first opens, the first."""
        chosen = self.rounds[0]
        for rnd in self.rounds:
            if rnd.opens <= received:
                chosen = rnd
        return chosen

    def round_label(self, rnd: Round) -> str:
        """How a round is named to people: 2023年年中."""
        return f"{self.ledger.year}年{rnd.name}" if self.ledger.year else rnd.name

    def round_named(self, name: str) -> Round:
        for rnd in self.rounds:
            if rnd.name == name:
                return rnd
        names = "、".join(r.name for r in self.rounds)
        raise MailbotError(f"没有名为「{name}」的报送节点：可选 {names}")


def default_config_path() -> Path:
    return Path(os.environ.get("MAILBOT_CONFIG") or "config.toml")


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read, merge with DEFAULTS and validate; raise ConfigError with one clear line."""
    cfg_path = Path(path) if path else default_config_path()
    try:
        raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"找不到配置文件 {cfg_path}：请复制仓库中的 config.toml 并按注释修改，或用 --config 指定路径") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"无法读取配置文件 {cfg_path}：{err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"配置文件 {cfg_path} 不是合法的 TOML：{err}") from err
    return build_config(raw, cfg_path)


def _section(raw: dict, name: str) -> dict[str, Any]:
    given = raw.get(name, {})
    if not isinstance(given, dict):
        raise ConfigError(f"配置项 [{name}] 应是一个表（[{name}] 开头的段落）")
    merged = dict(DEFAULTS.get(name, {}))
    for key, value in given.items():
        if name in DEFAULTS and key not in DEFAULTS[name] and name != "bot":
            raise ConfigError(f"配置项 [{name}] {key} 无法识别：请检查拼写（可用：{', '.join(DEFAULTS[name])}）")
        merged[key] = value
    return merged


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _server(raw: dict, name: str) -> ServerConfig:
    sec = _section(raw, name)
    _expect(isinstance(sec["host"], str) and sec["host"], f"[{name}] host 应是服务器地址，例如 imap.163.com")
    _expect(isinstance(sec["port"], int) and 0 < sec["port"] < 65536, f"[{name}] port 应是 1–65535 的整数")
    _expect(sec["security"] in SECURITY_MODES, f"[{name}] security 应是 \"ssl\"、\"starttls\" 或 \"plain\" 之一")
    _expect(isinstance(sec["user"], str), f"[{name}] user 应是字符串（登录用户名，通常是邮箱地址）")
    _expect(
        isinstance(sec["password_env"], str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sec["password_env"] or ""),
        f"[{name}] password_env 应是保存密码的环境变量名，例如 MAILBOT_{name.upper()}_PASSWORD；密码本身不要写进配置文件",
    )
    _expect("password" not in sec, f"[{name}] 不允许直接写 password：请删除该行，改用 password_env 指定的环境变量")
    folders = sec.get("folders", [])
    if name == "imap":
        _expect(
            isinstance(folders, list) and folders and all(isinstance(f, str) and f for f in folders),
            "[imap] folders 应是文件夹名列表，例如 [\"INBOX\"]",
        )
    if name == "imap":
        action = sec.get("post_action", "none")
        _expect(
            isinstance(action, str) and (action in ("none", "flag", "seen") or (action.startswith("copy:") and len(action) > 5)),
            "[imap] post_action 应是 \"none\"、\"flag\"、\"seen\" 或 \"copy:文件夹名\"（系统从不删除邮件）",
        )
    from_addr = sec.get("from", "")
    if name == "smtp" and from_addr:
        _expect(isinstance(from_addr, str) and _EMAIL_RE.match(from_addr), "[smtp] from 应是发件邮箱地址，例如 xxqzwgk001@163.com")
    return ServerConfig(
        host=sec["host"],
        port=sec["port"],
        security=sec["security"],
        user=sec["user"],
        password_env=sec["password_env"],
        folders=tuple(folders),
        from_addr=from_addr or "",
        options={k: v for k, v in sec.items() if k not in ("host", "port", "security", "user", "password_env", "folders", "from")},
    )


def _as_date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{where} 应是日期，例如 2023-08-15")


def _units(raw: dict) -> list[Unit]:
    items = raw.get("units")
    _expect(isinstance(items, list) and items, "配置缺少 [[units]]：请列出各填报单位（name、kind、emails、aliases）")
    units, seen_names = [], set()
    for i, item in enumerate(items, 1):
        where = f"[[units]] 第{i}项"
        _expect(isinstance(item, dict), f"{where} 应是一个表")
        name = item.get("name")
        _expect(isinstance(name, str) and name.strip(), f"{where} 缺少 name（单位全称，例如 民政局）")
        _expect(not _has_control_chars(name + "".join(map(str, item.get("aliases") or []))),
                f"[[units]] 第{i}项（{name!r}）的名称或别名含有控制字符：请删去换行、制表符等不可见字符")
        where = f"[[units]] 第{i}项（{name}）"
        _expect(name not in seen_names, f"{where} 与前面的单位重名：每个单位只写一次")
        seen_names.add(name)
        kind = item.get("kind")
        _expect(kind in UNIT_KINDS, f"{where} kind 应是 \"department\"（部门）或 \"town\"（镇街）")
        emails = item.get("emails", [])
        _expect(isinstance(emails, list), f"{where} emails 应是邮箱地址列表")
        for addr in emails:
            _expect(isinstance(addr, str) and _EMAIL_RE.match(addr), f"{where} emails 中「{addr}」不是合法的邮箱地址")
        aliases = item.get("aliases", [])
        _expect(isinstance(aliases, list) and all(isinstance(a, str) for a in aliases), f"{where} aliases 应是字符串列表")
        unknown = set(item) - {"name", "kind", "emails", "aliases"}
        _expect(not unknown, f"{where} 有无法识别的键 {', '.join(sorted(unknown))}：可用 name、kind、emails、aliases")
        units.append(Unit(name=name.strip(), kind=kind, emails=tuple(a.strip().lower() for a in emails), aliases=tuple(aliases)))
    return units


def _rounds(raw: dict, tz: ZoneInfo) -> list[Round]:
    items = raw.get("rounds")
    _expect(isinstance(items, list) and items, "配置缺少 [[rounds]]：请列出报送节点（name、opens、deadline）")
    defaults = _section(raw, "round")
    rounds = []
    for i, item in enumerate(items, 1):
        where = f"[[rounds]] 第{i}项"
        _expect(isinstance(item, dict), f"{where} 应是一个表")
        name = item.get("name")
        _expect(isinstance(name, str) and name.strip(), f"{where} 缺少 name，例如 \"年中\"")
        where = f"[[rounds]] 第{i}项（{name}）"
        _expect("deadline" in item, f"{where} 缺少 deadline，例如 2023-08-15")
        deadline = _as_date(item["deadline"], f"{where} deadline")
        _expect("opens" in item, f"{where} 缺少 opens（本节点开始接收的日期），例如 2023-07-01")
        opens = _as_date(item["opens"], f"{where} opens")
        _expect(opens <= deadline, f"{where} opens 晚于 deadline：请检查日期")
        remind = item.get("remind_days_before", defaults["remind_days_before"])
        _expect(
            isinstance(remind, list) and all(isinstance(d, int) and d >= 0 for d in remind),
            f"{where} remind_days_before 应是非负整数列表，例如 [7, 3, 1]",
        )
        every = item.get("overdue_every_days", defaults["overdue_every_days"])
        _expect(isinstance(every, int) and every >= 1, f"{where} overdue_every_days 应是正整数，例如 3")
        rounds.append(
            Round(
                name=name.strip(),
                opens=dt.datetime.combine(opens, dt.time(0), tz),
                deadline=deadline,
                tz=tz,
                remind_days_before=tuple(sorted(set(remind), reverse=True)),
                overdue_every_days=every,
            )
        )
    rounds.sort(key=lambda r: r.opens)
    names = [r.name for r in rounds]
    _expect(len(set(names)) == len(names), "[[rounds]] 中有重名的报送节点：每个 name 只能出现一次")
    return rounds


def _has_control_chars(text: str) -> bool:
    """Line breaks, tabs, NUL, bidi overrides …: never part of a unit's name, often of a paste accident."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def build_config(raw: dict, path: Path) -> Config:
    bot = _section(raw, "bot")
    try:
        tz = ZoneInfo(bot["timezone"])
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"[bot] timezone「{bot['timezone']}」无法识别：请写 IANA 时区名，例如 Asia/Shanghai") from None
    _expect(isinstance(bot["state_dir"], str) and bot["state_dir"], "[bot] state_dir 应是目录路径，例如 \"state\"")
    state_dir = Path(bot["state_dir"]).expanduser()
    if not state_dir.is_absolute():
        state_dir = (path.parent / state_dir).resolve()
    for key in ("poll_interval_seconds", "max_message_bytes", "max_attachments", "max_document_bytes", "conversion_timeout_seconds",
                "max_decompressed_bytes", "max_conversions_per_message"):
        _expect(isinstance(bot[key], int) and bot[key] > 0, f"[bot] {key} 应是正整数")
    _expect(
        bot["parse_processes"] == "auto" or isinstance(bot["parse_processes"], int) and not isinstance(bot["parse_processes"], bool) and 0 <= bot["parse_processes"] <= 64,
        "[bot] parse_processes 应是 \"auto\" 或 0–64 的整数（0 表示不用子进程解析）",
    )
    _expect(isinstance(bot["warm_conversion"], bool), "[bot] warm_conversion 应是 true 或 false")
    for key in ("warm_conversion_max_files", "warm_conversion_idle_seconds"):
        _expect(isinstance(bot[key], int) and not isinstance(bot[key], bool) and bot[key] > 0, f"[bot] {key} 应是正整数")
    coordinator = _section(raw, "coordinator")
    emails = coordinator["emails"]
    _expect(
        isinstance(emails, list) and all(isinstance(a, str) and _EMAIL_RE.match(a) for a in emails),
        "[coordinator] emails 应是协调人邮箱地址列表，例如 [\"coordinator@example.gov.cn\"]",
    )
    notices = _section(raw, "notices")
    for key in ("hour", "digest_hour"):
        _expect(isinstance(notices[key], str) and re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", notices[key]), f"[notices] {key} 应是 24 小时制时间，例如 \"09:00\"")
    _expect(
        isinstance(notices["quiet_hours"], str) and (notices["quiet_hours"] == "" or re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d-([01]?\d|2[0-3]):[0-5]\d", notices["quiet_hours"])),
        "[notices] quiet_hours 应形如 \"20:00-08:00\"（不发送的时段），或 \"\" 表示不限",
    )
    ledger_file = bot.get("ledger") or ""
    if ledger_file:
        ledger_path = Path(ledger_file)
        if not ledger_path.is_absolute():
            ledger_path = path.parent / ledger_path
        ledger = load_ledger(ledger_path)
    else:
        ledger = load_ledger()
    roster = Roster(_units(raw))
    cfg = Config(
        path=path,
        state_dir=state_dir,
        tz=tz,
        bot=bot,
        imap=_server(raw, "imap"),
        smtp=_server(raw, "smtp"),
        coordinator_emails=tuple(emails),
        roster=roster,
        rounds=tuple(_rounds(raw, tz)),
        ledger=ledger,
        notices=notices,
    )
    for task in ledger.tasks:
        if not roster.responsible_units(task):
            raise ConfigError(
                f"台账第{task.number}项的责任单位「{task.units}」在 [[units]] 中找不到对应单位：请在名册中加入该单位或其别名"
            )
    return cfg
