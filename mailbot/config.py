"""Load and validate config.toml.

Every default lives in ``DEFAULTS``; config.toml overrides it; secrets come only
from the environment variables the config names. Validation fails at load with a
one-line message that names the key and the fix.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from email import policy as email_policy
from email.errors import HeaderParseError
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError, MailbotError
from .ledger import Ledger, Roster, Unit, load_ledger, normalize_unit_name

# The one place for defaults. Every key of every section is typed by its default here
# (true/false, integer, number, string, list; [bot] parse_processes also takes an integer):
# a key that is not listed, or a value of another type, is refused at load.
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
        "trust_authentication_results": True,  # read the receiving server's Authentication-Results (false: the roster address alone)
        "authserv_id": "",  # the receiving server's authserv-id, e.g. "mx.163.com"; "": that of the topmost Authentication-Results
        "require_authentication_results": False,  # true: a roster address is verified only by an aligned pass (no header: unverified)
        "max_unverified_receipts_per_unit_per_day": 3,  # receipts for reports from unverified senders, to the unit's own addresses
        "paper_copy": True,  # units also deliver the form on paper with their seal (纸质版加盖公章); false: not tracked
        "paper_copy_place": "行政中心718室",  # where the paper copy goes, said in receipts and reminders
        "paper_copy_grace_days": 5,  # the digest lists units whose e-report is older than this without a paper copy
        "reply_max_age_days": 14,  # older mail (a first backfill) is recorded but not answered
        "outbox_interval_seconds": 30,
        "warm_conversion": True,  # the daemon keeps one LibreOffice running between legacy-file conversions; false: one per file
        "warm_conversion_max_files": 50,  # a fresh LibreOffice (and profile) after this many files
        "warm_conversion_idle_seconds": 300,  # stopped after this long without work
        "parse_processes": "auto",  # worker processes for a backlog of mail: "auto" (one per core, at most 4) or a number; 0: in the daemon, without the limits below (debugging only)
        "parse_timeout_seconds": 60.0,  # wall-clock limit per message's analysis in a worker (killed past it: `timeout`)
        "parse_memory_mb": 1024,  # address-space limit per parse worker (RLIMIT_AS); 0: none
        # Deductions (年度扣分), per rule: the seed names no numbers, so these are a starting point the office edits.
        # late: each round reported after its (extended) deadline; missing: each round not reported;
        # overdue_task: each task past its 完成时限 and not reported done; paper_missing: each round with
        # an e-report but no sealed paper copy (when [bot] paper_copy is on).
        "scoring": {"late_points": 1.0, "missing_points": 2.0, "overdue_task_points": 0.5, "paper_missing_points": 0.5},
    },
    # host: 127.0.0.1 applies only when the file has no [imap] (or [smtp]) section at all: a
    # config for the offline commands (ingest, status, export, parse) needs no mail server,
    # and check_warnings() says where the daemon would connect. A section that is written
    # without host is refused (it would silently reach 127.0.0.1). The demo, tests/servers.py
    # and the tests' configs always write host = "127.0.0.1" for their loopback servers.
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
        "from": "",  # a bare address or "显示名 <address>" (RFC 5322); empty: [smtp] user is the sender
        "from_name": "",  # the display name when `from` has none (a name in `from` wins); empty: [bot] office_name
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
    "round": {"remind_days_before": [7, 3, 1], "overdue_every_days": 3},  # defaults for every [[rounds]] item
}

# Keys whose value may also have another type than their default's.
_ALSO_ALLOWED: dict[tuple[str, str], tuple[type, ...]] = {("bot", "parse_processes"): (int,)}
ROUND_KEYS = ("name", "opens", "deadline", "remind_days_before", "overdue_every_days")
UNIT_KEYS = ("name", "kind", "emails", "aliases")
TOP_LEVEL = (*DEFAULTS, "rounds", "units")

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
    from_addr: str = ""  # the bare address of [smtp] from: envelope sender, own-address and loop checks
    from_name: str = ""  # the display name: from `from` ("显示名 <address>"), else from_name
    options: dict = field(default_factory=dict)
    in_file: bool = True  # False: the config file has no such section (every key is a default)

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

    def round_for(self, received: dt.datetime, named: str | None = None) -> Round:
        """The round a message received then belongs to.

        ``named`` (a round the subject, file name or document names): that round, when it
        has opened by ``received``. Otherwise the date rule: among the rounds opened by
        then, the earliest whose deadline has not passed; when every opened round's deadline
        has passed, the latest opened; before the first opens, the first. (Load refuses
        windows this cannot tell apart: the same ``opens``, or one round inside another.)
        """
        opened = [rnd for rnd in self.rounds if rnd.opens <= received]
        if not opened:
            return self.rounds[0]
        if named:
            for rnd in opened:
                if rnd.name == named:
                    return rnd
        for rnd in opened:
            if received < rnd.deadline_end:
                return rnd
        return opened[-1]

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
        text = cfg_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"找不到配置文件 {cfg_path}：请复制仓库中的 config.toml 并按注释修改，或用 --config 指定路径") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"无法读取配置文件 {cfg_path}：{err}") from err
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(toml_error_message(err, text, cfg_path)) from None
    return build_config(raw, cfg_path)


# What tomllib's English messages usually mean for someone editing config.toml.
_TOML_HINTS = (
    (("Invalid date", "Invalid number", "Invalid time"), "日期或数值写法不正确？日期写作 2023-08-15"),
    (("Cannot declare", "Cannot overwrite", "Cannot mutate"), "同一个键或段落写了两次？"),
    (("Expected ']'", "Unclosed array", "Unclosed inline table", "Expected '}'"), "方括号或花括号没有闭合？"),
    (("Illegal character", "Unterminated string", "Invalid hex value", "Unescaped", "Invalid escape", "Unclosed"),
     "引号没有闭合，或字符串中有不允许的字符？"),
    (("Expected '=' after a key",), "缺少等号「=」？每行应写作 键 = 值"),
    (("Invalid value",), "值的写法不正确？文字要加英文双引号，开关写 true 或 false"),
    (("Invalid initial character for a key", "Invalid statement"), "这一行不是「键 = 值」或 [段落]？注释以 # 开头"),
)


def toml_error_message(err: tomllib.TOMLDecodeError, text: str, path: Path) -> str:
    """One Chinese line: file, line, column, the line as written and a hint."""
    message = str(err)
    where = re.search(r"\(at line (\d+), column (\d+)\)", message)
    detail = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)\s*$", "", message)
    lines = text.splitlines()
    if where:
        lineno, col = int(where.group(1)), int(where.group(2))
        place = f"第 {lineno} 行第 {col} 列"
    else:
        lineno = next((i for i in range(len(lines), 0, -1) if lines[i - 1].strip()), 0)
        place = "末尾"
    line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    line = line if len(line) <= 80 else line[:77] + "…"
    hint = next((h for keys, h in _TOML_HINTS if any(k in detail for k in keys)), "")
    if detail.startswith("Expected newline or end of document after a statement"):
        value = line.partition("=")[2].strip()
        hint = ("日期或数值写法不正确？日期写作 2023-08-15" if value[:1].isdigit()
                else "一行只能写一个「键 = 值」？文字要加英文双引号，行尾注释以 # 开头")
    hint = hint or f"TOML 解析器的说明：{detail}"
    shown = f"{line}（{hint}）" if line else hint
    return f"配置文件 {path} {place}有 TOML 语法错误：{shown}"


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_repr(v)}" for k, v in value.items()) + "}"
    return str(value)


def _type_label(default: Any) -> str:
    if isinstance(default, bool):
        return " true 或 false（不加引号）"
    if isinstance(default, int):
        return "整数（不加引号）"
    if isinstance(default, float):
        return "数字（不加引号）"
    if isinstance(default, str):
        return "字符串（加英文双引号）"
    if isinstance(default, list):
        return "列表，例如 " + _toml_repr(default or ["…"])
    if isinstance(default, dict):
        return "表，例如 " + _toml_repr(default)
    return type(default).__name__


def _has_type_of(value: Any, default: Any) -> bool:
    """A TOML value of the default's type: true/false is never an integer, an integer is a number."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _unknown_key(label: str, key: str, known) -> ConfigError:
    """「配置项 [bot] stat_dir 无法识别：是不是 state_dir？」, or the valid keys when none is close.

    ``label`` is how the key is shown ("[bot] stat_dir"); ``key`` is matched against ``known``.
    """
    known = list(known)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    fix = f"是不是 {close[0]}？" if close else f"可用的键：{'、'.join(known)}"
    return ConfigError(f"配置项 {label} 无法识别：{fix}")


def _check_value(where: str, value: Any, default: Any, also: tuple[type, ...] = ()) -> None:
    """``value`` has the type of ``default`` (list items and table keys too)."""
    if also and isinstance(value, also) and not isinstance(value, bool):
        return
    _expect(_has_type_of(value, default), f"{where} 应是{_type_label(default)}，现在写的是 {_toml_repr(value)}")
    if isinstance(default, list) and default:
        item = default[0]
        for v in value:
            _expect(_has_type_of(v, item), f"{where} 的每一项都应是{_type_label(item)}，其中 {_toml_repr(v)} 不是")
    if isinstance(default, dict):
        for key, v in value.items():
            if key not in default:
                raise _unknown_key(f"{where}.{key}", key, default)
            _check_value(f"{where}.{key}", v, default[key])


def _section(raw: dict, name: str) -> dict[str, Any]:
    """A section merged over its DEFAULTS; every key known and of its default's type."""
    given = raw.get(name, {})
    if not isinstance(given, dict):
        if isinstance(given, list) and f"{name}s" in TOP_LEVEL:
            raise ConfigError(f"配置项 [[{name}]] 无法识别：是不是 [[{name}s]]？")
        raise ConfigError(f"配置项 [{name}] 应是一个表（[{name}] 开头的段落）")
    defaults = DEFAULTS[name]
    merged = dict(defaults)
    for key, value in given.items():
        if key == "password" and name in ("imap", "smtp"):
            raise ConfigError(f"[{name}] 不允许直接写 password：请删除该行，改用 password_env 指定的环境变量")
        if key not in defaults:
            raise _unknown_key(f"[{name}] {key}", key, defaults)
        _check_value(f"[{name}] {key}", value, defaults[key], _ALSO_ALLOWED.get((name, key), ()))
        merged[key] = dict(defaults[key], **value) if isinstance(defaults[key], dict) else value
    return merged


def _check_top_level(raw: dict) -> None:
    """Only the known tables: a misspelt [notice] or [[unit]], or a key above every table, is refused."""
    tables = [n for n in TOP_LEVEL if n not in ("rounds", "units")]
    for key, value in raw.items():
        if key in TOP_LEVEL:
            continue
        if isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            array = isinstance(value, list)
            shown = (lambda n: f"[[{n}]]") if array else (lambda n: f"[{n}]")
            close = difflib.get_close_matches(key, ["rounds", "units"] if array else tables, n=1, cutoff=0.6)
            fix = f"是不是 {shown(close[0])}？" if close else "可用的段落：" + "、".join([*(f"[{n}]" for n in tables), "[[rounds]]", "[[units]]"])
            raise ConfigError(f"配置项 {shown(key)} 无法识别：{fix}")
        owners = [name for name, keys in DEFAULTS.items() if key in keys]
        if owners:
            raise ConfigError(f"配置项 {key} 写在了所有段落之前，无法识别：应写在 [{owners[0]}] 段落中（[{owners[0]}] 这一行之后）")
        every = {k: name for name, keys in DEFAULTS.items() for k in keys}
        close = difflib.get_close_matches(key, list(every), n=1, cutoff=0.6)
        fix = f"是不是 [{every[close[0]]}] {close[0]}？" if close else "每个键都应写在 [bot]、[imap] 等段落之后"
        raise ConfigError(f"配置项 {key} 写在了所有段落之前，无法识别：{fix}")


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


_HOST_EXAMPLES = {"imap": "imap.163.com", "smtp": "smtp.163.com"}


def parse_from(value: str) -> tuple[str, str]:
    """``[smtp] from`` → (display name, address): a bare address or any RFC 5322 name-addr
    ("政务公开邮箱 <zwgk@xixia.example>", a quoted display name, an RFC 2047 encoded word).
    Raises ConfigError unless it is exactly one usable address."""
    fix = "[smtp] from 应是发件邮箱地址，或「显示名 <邮箱地址>」，例如 xxqzwgk001@163.com 或 政务公开邮箱 <xxqzwgk001@163.com>"
    _expect(not _has_control_chars(value), fix + "（不能含换行等控制字符）")
    try:
        header = email_policy.default.header_factory("From", value)
        addresses, defects = list(header.addresses), list(header.defects)
    except (HeaderParseError, ValueError, IndexError, TypeError):
        raise ConfigError(fix) from None
    _expect(len(addresses) == 1, fix + "（只能写一个地址）" if len(addresses) > 1 else fix)
    _expect(not defects, fix)
    addr = addresses[0]
    _expect(bool(_EMAIL_RE.match(addr.addr_spec)), fix)
    return addr.display_name.strip(), addr.addr_spec


def _server(raw: dict, name: str) -> ServerConfig:
    sec = _section(raw, name)
    in_file = name in raw
    _expect(not in_file or "host" in raw[name],
            f"[{name}] host 未填写：请写邮件服务器地址，例如 {_HOST_EXAMPLES[name]}（不写会连接本机 127.0.0.1）")
    _expect(isinstance(sec["host"], str) and sec["host"].strip(), f"[{name}] host 应是服务器地址，例如 {_HOST_EXAMPLES[name]}")
    _expect(0 < sec["port"] < 65536, f"[{name}] port 应是 1–65535 的整数")
    _expect(sec["security"] in SECURITY_MODES, f"[{name}] security 应是 \"ssl\"、\"starttls\" 或 \"plain\" 之一")
    _expect(
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sec["password_env"] or "") is not None,
        f"[{name}] password_env 应是保存密码的环境变量名，例如 MAILBOT_{name.upper()}_PASSWORD；密码本身不要写进配置文件",
    )
    _expect(sec["timeout_seconds"] > 0, f"[{name}] timeout_seconds 应是正整数")
    folders = sec.get("folders", [])
    from_addr, from_name = "", ""
    if name == "imap":
        _expect(folders and all(f for f in folders), "[imap] folders 应是文件夹名列表，例如 [\"INBOX\"]")
        action = sec["post_action"]
        _expect(
            action in ("none", "flag", "seen") or (action.startswith("copy:") and len(action) > 5),
            "[imap] post_action 应是 \"none\"、\"flag\"、\"seen\" 或 \"copy:文件夹名\"（系统从不删除邮件）",
        )
    if name == "smtp":
        _expect(sec["max_replies_per_address_per_day"] > 0, "[smtp] max_replies_per_address_per_day 应是正整数")
        _expect(not _has_control_chars(sec["from_name"]), "[smtp] from_name 不能含换行等控制字符")
        if sec["from"].strip():
            from_name, from_addr = parse_from(sec["from"].strip())
        # A display name written in `from` wins; from_name is the name for a bare address.
        from_name = from_name or sec["from_name"].strip()
    # options keep the keys as written (from_name too); from_addr/from_name are the values in effect.
    options = {k: v for k, v in sec.items() if k not in ("host", "port", "security", "user", "password_env", "folders", "from")}
    return ServerConfig(
        host=sec["host"].strip(),
        port=sec["port"],
        security=sec["security"],
        user=sec["user"],
        password_env=sec["password_env"],
        folders=tuple(folders),
        from_addr=from_addr,
        from_name=from_name,
        options=options,
        in_file=in_file,
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
        control = f"[[units]] 第{i}项（{name!r}）的名称或别名含有控制字符：请删去换行、制表符等不可见字符"
        _expect(not _has_control_chars(name), control)
        where = f"[[units]] 第{i}项（{name.strip()}）"
        for key in item:
            if key not in UNIT_KEYS:
                raise _unknown_key(f"{where} {key}", key, UNIT_KEYS)
        aliases = item.get("aliases", [])
        _expect(isinstance(aliases, list) and all(isinstance(a, str) for a in aliases), f"{where} aliases 应是字符串列表，例如 [\"发改局\"]")
        _expect(not _has_control_chars("".join(aliases)), control)
        _expect(name.strip() not in seen_names, f"{where} 与前面的单位重名：每个单位只写一次")
        seen_names.add(name.strip())
        kind = item.get("kind")
        _expect(kind in UNIT_KINDS, f"{where} kind 应是 \"department\"（部门）或 \"town\"（镇街）")
        emails = item.get("emails", [])
        _expect(isinstance(emails, list), f"{where} emails 应是邮箱地址列表，例如 [\"mzj@xixia.example\"]")
        for addr in emails:
            _expect(isinstance(addr, str) and _EMAIL_RE.match(addr.strip()), f"{where} emails 中「{addr}」不是合法的邮箱地址")
        addrs = tuple(dict.fromkeys(a.strip().lower() for a in emails))
        units.append(Unit(name=name.strip(), kind=kind, emails=addrs, aliases=tuple(aliases)))
    _check_unambiguous(units)
    return units


def _check_unambiguous(units: list[Unit]) -> None:
    """One address, one name or alias → one unit: a mail from a shared address, or a form whose
    填报单位 is a shared alias, could not be credited to the right unit."""
    by_addr: dict[str, Unit] = {}
    by_key: dict[str, tuple[Unit, str]] = {}
    for unit in units:
        for addr in unit.emails:
            other = by_addr.setdefault(addr, unit)
            _expect(other is unit, f"[[units]]「{other.name}」和「{unit.name}」登记了同一个邮箱 {addr}：无法判断来自该地址的报送属于哪个单位，"
                                   "请只保留在其中一个单位下")
        for written in (unit.name, *unit.aliases):
            key = normalize_unit_name(written)
            if not key:
                continue
            other, other_written = by_key.setdefault(key, (unit, written))
            if other is not unit:
                what = "单位名称" if other_written == other.name else "别名"
                raise ConfigError(
                    f"[[units]]「{unit.name}」的{'名称' if written == unit.name else '别名'}「{written}」与「{other.name}」的{what}"
                    f"「{other_written}」相同：填这个名称的台账无法判断属于哪个单位，请删去或改写其中一个"
                )


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
        where = f"[[rounds]] 第{i}项（{name.strip()}）"
        for key in item:
            if key not in ROUND_KEYS:
                raise _unknown_key(f"{where} {key}", key, ROUND_KEYS)
        _expect("deadline" in item, f"{where} 缺少 deadline，例如 2023-08-15")
        deadline = _as_date(item["deadline"], f"{where} deadline")
        _expect("opens" in item, f"{where} 缺少 opens（本节点开始接收的日期），例如 2023-07-01")
        opens = _as_date(item["opens"], f"{where} opens")
        _expect(opens <= deadline, f"{where} opens 晚于 deadline：请检查日期")
        remind = item.get("remind_days_before", defaults["remind_days_before"])
        every = item.get("overdue_every_days", defaults["overdue_every_days"])
        for key, value in (("remind_days_before", remind), ("overdue_every_days", every)):
            _check_value(f"{where} {key}", value, DEFAULTS["round"][key])
        _expect(all(d >= 0 for d in remind), f"{where} remind_days_before 应是非负整数列表，例如 [7, 3, 1]")
        _expect(every >= 1, f"{where} overdue_every_days 应是正整数，例如 3")
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
    _expect(all(d >= 0 for d in defaults["remind_days_before"]), "[round] remind_days_before 应是非负整数列表，例如 [7, 3, 1]")
    _expect(defaults["overdue_every_days"] >= 1, "[round] overdue_every_days 应是正整数，例如 3")
    rounds.sort(key=lambda r: r.opens)
    names = [r.name for r in rounds]
    _expect(len(set(names)) == len(names), "[[rounds]] 中有重名的报送节点：每个 name 只能出现一次")
    _check_windows(rounds)
    return rounds


def _check_windows(rounds: list[Round]) -> None:
    """Windows the round rule can tell apart (``rounds`` sorted by opens): no two open the same
    day, and a round that opens later also ends later. Overlapping is fine (年底 may open
    before 年中's deadline); one window inside another is not."""
    for a, b in zip(rounds, rounds[1:]):
        _expect(
            a.opens != b.opens,
            f"[[rounds]]「{a.name}」和「{b.name}」的 opens 相同（{a.opens.date()}）：无法按收到日期区分，请让后一个节点晚一些开始",
        )
    for i, a in enumerate(rounds):
        for b in rounds[i + 1:]:
            _expect(
                b.deadline > a.deadline,
                f"[[rounds]]「{b.name}」（opens {b.opens.date()}，deadline {b.deadline}）落在「{a.name}」（opens {a.opens.date()}，"
                f"deadline {a.deadline}）之内：开始较晚的节点，deadline 也应较晚",
            )


def _has_control_chars(text: str) -> bool:
    """Line breaks, tabs, NUL, bidi overrides …: never part of a unit's name, often of a paste accident."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def build_config(raw: dict, path: Path) -> Config:
    _check_top_level(raw)
    bot = _section(raw, "bot")
    try:
        tz = ZoneInfo(bot["timezone"])
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"[bot] timezone「{bot['timezone']}」无法识别：请写 IANA 时区名，例如 Asia/Shanghai") from None
    _expect(bot["state_dir"] != "", "[bot] state_dir 应是目录路径，例如 \"state\"")
    state_dir = Path(bot["state_dir"]).expanduser()
    if not state_dir.is_absolute():
        state_dir = (path.parent / state_dir).resolve()
    for key in ("poll_interval_seconds", "max_message_bytes", "max_attachments", "max_document_bytes", "conversion_timeout_seconds",
                "max_decompressed_bytes", "max_conversions_per_message", "outbox_interval_seconds",
                "warm_conversion_max_files", "warm_conversion_idle_seconds"):
        _expect(bot[key] > 0, f"[bot] {key} 应是正整数")
    _expect(bot["reply_max_age_days"] >= 0, "[bot] reply_max_age_days 应是不小于 0 的整数")
    _expect(bot["parse_timeout_seconds"] > 0, "[bot] parse_timeout_seconds 应是大于 0 的秒数，例如 60")
    _expect(bot["parse_memory_mb"] >= 0, "[bot] parse_memory_mb 应是不小于 0 的整数（0 表示不限）")
    _expect(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", bot["loop_header"]) is not None, "[bot] loop_header 应是邮件头名称，例如 \"X-Mailbot-Loop\"")
    _expect(
        bot["parse_processes"] == "auto" or isinstance(bot["parse_processes"], int) and not isinstance(bot["parse_processes"], bool) and 0 <= bot["parse_processes"] <= 64,
        "[bot] parse_processes 应是 \"auto\" 或 0–64 的整数（0 表示不用子进程解析）",
    )
    _expect(all(v >= 0 for v in bot["scoring"].values()), "[bot] scoring 中的扣分应是不小于 0 的数字")
    coordinator = _section(raw, "coordinator")
    emails = coordinator["emails"]
    _expect(
        all(isinstance(a, str) and _EMAIL_RE.match(a) for a in emails),
        "[coordinator] emails 应是协调人邮箱地址列表，例如 [\"coordinator@example.gov.cn\"]",
    )
    notices = _section(raw, "notices")
    for key in ("hour", "digest_hour"):
        _expect(re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", notices[key]) is not None, f"[notices] {key} 应是 24 小时制时间，例如 \"09:00\"")
    _expect(
        notices["quiet_hours"] == "" or re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d-([01]?\d|2[0-3]):[0-5]\d", notices["quiet_hours"]) is not None,
        "[notices] quiet_hours 应形如 \"20:00-08:00\"（不发送的时段），或 \"\" 表示不限",
    )
    _expect(notices["interval_seconds"] > 0, "[notices] interval_seconds 应是正整数")
    for key in ("digest_days_before_deadline", "overdue_for_days"):
        _expect(notices[key] >= 0, f"[notices] {key} 应是不小于 0 的整数")
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


def check_warnings(cfg: Config) -> list[str]:
    """What a valid config may still get wrong: one Chinese line each (``mailbot check`` prints them)."""
    warnings = []
    if not cfg.coordinator_emails:
        warnings.append("[coordinator] emails 为空：汇总和告警邮件将无人接收")
    for unit in cfg.roster:
        if not unit.emails:
            warnings.append(f"单位「{unit.name}」没有登记邮箱：无法向其发送提醒，其报送只能按表中填报单位认定")
    own = cfg.own_addresses
    for unit in cfg.roster:
        for addr in unit.emails:
            if addr in own:
                warnings.append(f"单位「{unit.name}」登记的邮箱 {addr} 是本系统自己的邮箱：来自该地址的邮件会被当作自己发出的邮件而忽略")
    for server, name in ((cfg.imap, "imap"), (cfg.smtp, "smtp")):
        if not server.in_file:
            warnings.append(f"配置中没有 [{name}] 段：将连接本机 {server.host}:{server.port}；如需收发邮件，请填写 [{name}] host 等")
    given_name = str(cfg.smtp.options.get("from_name") or "").strip()
    if given_name and cfg.smtp.from_name and given_name != cfg.smtp.from_name:
        warnings.append(f"[smtp] from 中的显示名「{cfg.smtp.from_name}」与 from_name「{given_name}」不同：发信时使用「{cfg.smtp.from_name}」，"
                        "请删去其中一个")
    if not cfg.smtp.from_addr and not cfg.smtp.user:
        warnings.append("[smtp] from 和 user 都为空：发出的邮件没有发件地址，请填写 [smtp] from")
    return warnings
