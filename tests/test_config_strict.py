"""Strict config: typed keys, unknown keys refused, ambiguous rosters and rounds refused,
TOML errors in Chinese, `[smtp] from` with a display name, warnings, README numbers = DEFAULTS."""

from __future__ import annotations

import datetime as dt
import email
import email.generator
import email.policy
import io
import re
from pathlib import Path

import pytest

from mailbot import store
from mailbot.config import DEFAULTS, check_warnings, load_config
from mailbot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
BASE = (ROOT / "config.toml").read_text(encoding="utf-8")
TZ8 = dt.timezone(dt.timedelta(hours=8))


def write(tmp_path, text: str) -> Path:
    text = text.replace('state_dir = "state"', f'state_dir = "{tmp_path / "state"}"', 1)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path, text: str):
    return load_config(write(tmp_path, text))


def refused(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    message = str(exc.value)
    assert "\n" not in message.strip(), message
    return message


def with_section(text: str, section: str, line: str) -> str:
    """Add `line` right after the `[section]` header (adding the section when it is missing)."""
    header = f"[{section}]\n"
    if header in text:
        return text.replace(header, header + line + "\n", 1)
    return text + f"\n{header}{line}\n"


# --------------------------------------------------------------------------- 1. [smtp] from


def sent_bytes(cfg, tmp_path) -> bytes:
    """An outgoing mail through the outbox code path, as smtplib would put it on the wire."""
    from mailbot.outbox import build_email, queue_mail

    db = store.open_db(cfg.db_path)
    try:
        row_id = queue_mail(db, cfg, dedupe_key="test:from", kind="alert", to=["mzj@xixia.example"], subject="测试",
                            template="alert", context={"text": "正文", "coordinator": True})
        message = build_email(cfg, db["outbox"].get(row_id))
    finally:
        db.close()
    buf = io.BytesIO()
    email.generator.BytesGenerator(buf, policy=message.policy.clone(linesep="\r\n")).flatten(message)
    return buf.getvalue()


def parsed_from(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    [addr] = msg["From"].addresses
    return addr.display_name, addr.addr_spec


def from_line(raw: bytes) -> bytes:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return re.search(rb"^From: .*(?:\r\n[ \t].*)*", head, re.M).group(0)


def test_smtp_from_with_display_name(tmp_path):
    cfg = load(tmp_path, BASE.replace('from = "xxqzwgk001@163.com"', 'from = "政务公开邮箱 <zwgk@xixia.example>"'))
    assert cfg.smtp.from_addr == "zwgk@xixia.example" and cfg.smtp.from_name == "政务公开邮箱"
    assert "zwgk@xixia.example" in cfg.own_addresses
    raw = sent_bytes(cfg, tmp_path)
    assert parsed_from(raw) == ("政务公开邮箱", "zwgk@xixia.example")
    line = from_line(raw)
    assert line.isascii() and b"=?utf-8?" in line.lower(), line  # RFC 2047, not raw UTF-8
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["X-Mailbot-Loop"] == "zwgk@xixia.example"


@pytest.mark.parametrize(
    "value,extra,expected",
    [
        ('"西夏区政府办, 政务公开" <zwgk@xixia.example>', "", ("西夏区政府办, 政务公开", "zwgk@xixia.example")),
        (r"""'"Xixia \"Open\" Office" <zwgk@xixia.example>'""", "", ('Xixia "Open" Office', "zwgk@xixia.example")),
        ('<zwgk@xixia.example>', 'from_name = "西夏区政务公开"', ("西夏区政务公开", "zwgk@xixia.example")),
        ('zwgk@xixia.example', 'from_name = "西夏区政务公开"', ("西夏区政务公开", "zwgk@xixia.example")),
        ('政务公开邮箱 <zwgk@xixia.example>', 'from_name = "别的名字"', ("政务公开邮箱", "zwgk@xixia.example")),
        ('zwgk@xixia.example', "", ("银川市西夏区人民政府办公室", "zwgk@xixia.example")),
    ],
)
def test_smtp_from_forms_and_from_name(tmp_path, value, extra, expected):
    line = f"from = {value}" if value.startswith("'") else f'from = "{value.replace(chr(34), chr(92) + chr(34))}"'
    text = BASE.replace('from = "xxqzwgk001@163.com"', line + ("\n" + extra if extra else ""))
    cfg = load(tmp_path, text)
    assert cfg.smtp.from_addr == "zwgk@xixia.example"
    assert parsed_from(sent_bytes(cfg, tmp_path)) == expected


def test_from_display_name_and_from_name_differ_is_a_warning(tmp_path):
    cfg = load(tmp_path, BASE.replace('from = "xxqzwgk001@163.com"', 'from = "政务公开邮箱 <zwgk@xixia.example>"\nfrom_name = "别的名字"'))
    assert any("from_name" in w and "政务公开邮箱" in w for w in check_warnings(cfg))


@pytest.mark.parametrize(
    "value",
    ["政务公开邮箱", "a@b.example, c@d.example", "政务 <zwgk@localhost>", "\"未闭合 <zwgk@xixia.example>", "坏 <zwgk@xixia.example> 尾巴"],
)
def test_smtp_from_refused(tmp_path, value):
    text = BASE.replace('from = "xxqzwgk001@163.com"', f'from = "{value.replace(chr(34), chr(92) + chr(34))}"')
    assert "[smtp] from" in refused(tmp_path, text)


def test_empty_smtp_from_means_the_smtp_user(tmp_path):
    cfg = load(tmp_path, BASE.replace('from = "xxqzwgk001@163.com"', 'from = ""'))
    assert cfg.smtp.from_addr == ""
    assert parsed_from(sent_bytes(cfg, tmp_path)) == ("银川市西夏区人民政府办公室", "xxqzwgk001@163.com")


# --------------------------------------------------------------------------- 2. typed keys


@pytest.mark.parametrize(
    "section,line,words",
    [
        ("notices", 'skip_weekends = "false"', "[notices] skip_weekends 应是 true 或 false"),
        ("notices", 'overdue_cc_coordinator = "no"', "[notices] overdue_cc_coordinator 应是 true 或 false"),
        ("bot", 'max_attachments = "100"', "[bot] max_attachments 应是整数"),
        ("bot", "max_attachments = true", "[bot] max_attachments 应是整数"),
        ("bot", "outbox_interval_seconds = 1.5", "[bot] outbox_interval_seconds 应是整数"),
        ("bot", "trust_authentication_results = 1", "[bot] trust_authentication_results 应是 true 或 false"),
        ("bot", "loop_header = 1", "[bot] loop_header 应是字符串"),
        ("bot", "parse_processes = true", "[bot] parse_processes"),
        ("bot", 'scoring = {late_points = "1"}', "[bot] scoring.late_points 应是数字"),
        ("notices", "digest_days_before_deadline = false", "[notices] digest_days_before_deadline 应是整数"),
        ("notices", "hour = 9", "[notices] hour 应是字符串"),
        ("smtp", "max_replies_per_address_per_day = \"20\"", "[smtp] max_replies_per_address_per_day 应是整数"),
        ("imap", "timeout_seconds = true", "[imap] timeout_seconds 应是整数"),
        ("coordinator", "", "[coordinator] emails"),  # emails = "…" (a string, not a list): written below
        ("round", "remind_days_before = [true]", "[round] remind_days_before"),
        ("round", "overdue_every_days = true", "[round] overdue_every_days 应是整数"),
    ],
)
def test_every_key_is_typed(tmp_path, section, line, words):
    if section == "imap":
        text = BASE.replace('folders = ["INBOX"]', 'folders = ["INBOX"]\n' + line)
    elif section == "smtp":
        text = BASE.replace('from = "xxqzwgk001@163.com"', 'from = "xxqzwgk001@163.com"\n' + line)
    elif section == "coordinator":
        text = BASE.replace('emails = ["duchashi@xixia.example"]', 'emails = "duchashi@xixia.example"')
    else:
        text = with_section(BASE, section, line)
    assert words in refused(tmp_path, text)


def test_imap_folders_must_be_a_list(tmp_path):
    assert "[imap] folders" in refused(tmp_path, BASE.replace('folders = ["INBOX"]', 'folders = "INBOX"'))


@pytest.mark.parametrize(
    "old,new,words",
    [
        ("overdue_every_days = 3\n\n[[rounds]]", "overdue_every_days = true\n\n[[rounds]]", "overdue_every_days 应是整数"),
        ("remind_days_before = [7, 3, 1]", "remind_days_before = [7, false]", "remind_days_before"),
        ('name = "年中"', "name = 2023", "name"),
        ('name = "民政局"', 'name = "民政局"\nkind = 1', "kind"),
        ('emails = ["mzj@xixia.example"]\naliases = []', 'emails = ["mzj@xixia.example"]\naliases = "民政"', "aliases 应是字符串列表"),
    ],
)
def test_rounds_and_units_are_typed(tmp_path, old, new, words):
    assert old in BASE
    assert words in refused(tmp_path, BASE.replace(old, new, 1))


# --------------------------------------------------------------------------- 2. unknown keys


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda s: with_section(s, "bot", 'stat_dir = "/srv/mailbot"'), "配置项 [bot] stat_dir 无法识别：是不是 state_dir？"),
        (lambda s: s.replace("overdue_every_days = 3", "overdue_every_day = 3", 1), "overdue_every_day 无法识别：是不是 overdue_every_days？"),
        (lambda s: s.replace("aliases = []", "alias = []", 1), "alias 无法识别：是不是 aliases？"),
        (lambda s: with_section(s, "notices", "skip_weekend = true"), "[notices] skip_weekend 无法识别：是不是 skip_weekends？"),
        (lambda s: s.replace('from = "xxqzwgk001@163.com"', 'form = "xxqzwgk001@163.com"'), "[smtp] form 无法识别：是不是 from？"),
        (lambda s: s.replace('folders = ["INBOX"]', 'folders = ["INBOX"]\npost_acton = "flag"'), "[imap] post_acton 无法识别：是不是 post_action？"),
        (lambda s: s.replace("[coordinator]\n", "[coordinator]\nemail = []\n"), "[coordinator] email 无法识别：是不是 emails？"),
        (lambda s: with_section(s, "round", "remind_day_before = [1]"), "[round] remind_day_before 无法识别：是不是 remind_days_before？"),
        (lambda s: with_section(s, "bot", "scoring = {late_point = 1.0}"), "[bot] scoring.late_point 无法识别：是不是 late_points？"),
        (lambda s: s + '\n[notice]\nhour = "09:00"\n', "[notice] 无法识别：是不是 [notices]？"),
        (lambda s: s + '\n[[unit]]\nname = "x"\n', "[[unit]] 无法识别：是不是 [[units]]？"),
        (lambda s: 'poll_interval_seconds = 60\n' + s, "应写在 [bot] 段落中"),
        (lambda s: with_section(s, "bot", "frobnicate = 1"), "[bot] frobnicate 无法识别"),
    ],
)
def test_unknown_keys_are_refused_with_the_nearest_valid_key(tmp_path, mutate, words):
    assert words in refused(tmp_path, mutate(BASE))


def test_password_in_file_still_has_its_own_message(tmp_path):
    message = refused(tmp_path, BASE.replace('password_env = "MAILBOT_IMAP_PASSWORD"', 'password = "secret"'))
    assert "不允许直接写 password" in message


# --------------------------------------------------------------------------- 2. host


def test_server_section_without_host_is_refused(tmp_path):
    assert "[imap] host" in refused(tmp_path, BASE.replace('host = "imap.163.com"\n', ""))
    assert "[smtp] host" in refused(tmp_path, BASE.replace('host = "smtp.163.com"\n', ""))


def test_no_server_sections_keeps_loopback_default_with_a_warning(tmp_path):
    start, end = BASE.index("\n[imap]\n"), BASE.index("\n[coordinator]\n")
    cfg = load(tmp_path, BASE[:start] + BASE[end:])
    assert (cfg.imap.host, cfg.smtp.host) == ("127.0.0.1", "127.0.0.1")
    warnings = check_warnings(cfg)
    assert any("[imap]" in w and "127.0.0.1" in w for w in warnings)
    assert any("[smtp]" in w and "127.0.0.1" in w for w in warnings)


# --------------------------------------------------------------------------- 2. ambiguous roster


def test_two_units_sharing_an_address_are_refused(tmp_path):
    text = BASE.replace('emails = ["mzj@xixia.example"]', 'emails = ["mzj@xixia.example", "Shared@xixia.example"]')
    text = text.replace('emails = ["sfj@xixia.example"]', 'emails = ["sfj@xixia.example", "shared@xixia.example"]')
    message = refused(tmp_path, text)
    assert "民政局" in message and "司法局" in message and "shared@xixia.example" in message


@pytest.mark.parametrize(
    "old,new,other",
    [
        ('name = "司法局"\nkind = "department"\nemails = ["sfj@xixia.example"]\naliases = []',
         'name = "司法局"\nkind = "department"\nemails = ["sfj@xixia.example"]\naliases = ["民宗局"]', "民族宗教事务局"),
        ('name = "司法局"\nkind = "department"\nemails = ["sfj@xixia.example"]\naliases = []',
         'name = "司法局"\nkind = "department"\nemails = ["sfj@xixia.example"]\naliases = ["西夏区民政局"]', "民政局"),
    ],
)
def test_alias_shared_or_equal_to_another_units_name_is_refused(tmp_path, old, new, other):
    assert old in BASE
    message = refused(tmp_path, BASE.replace(old, new))
    assert "司法局" in message and other in message


def test_a_units_own_alias_equal_to_its_name_is_fine(tmp_path):
    cfg = load(tmp_path, BASE.replace('name = "民政局"\nkind = "department"\nemails = ["mzj@xixia.example"]\naliases = []',
                                      'name = "民政局"\nkind = "department"\nemails = ["mzj@xixia.example", "MZJ@xixia.example"]\naliases = ["西夏区民政局"]'))
    assert cfg.roster.match("西夏区民政局").name == "民政局"


# --------------------------------------------------------------------------- 2. warnings


def test_check_warnings(tmp_path):
    assert check_warnings(load(tmp_path, BASE)) == []
    text = BASE.replace('emails = ["duchashi@xixia.example"]', "emails = []")
    text = text.replace('emails = ["tjj@xixia.example"]', "emails = []")
    warnings = check_warnings(load(tmp_path, text))
    assert "[coordinator] emails 为空：汇总和告警邮件将无人接收" in warnings
    assert any(w.startswith("单位「统计局」没有登记邮箱") for w in warnings)
    assert all("\n" not in w for w in warnings) and len(warnings) == 2


# --------------------------------------------------------------------------- 2. TOML syntax


def test_toml_syntax_error_in_chinese_with_line_and_text(tmp_path):
    text = BASE.replace("deadline = 2023-08-15", "deadline = 2023-08-32")
    lineno = text[: text.index("deadline = 2023-08-32")].count("\n") + 1
    message = refused(tmp_path, text)
    assert message.startswith("配置文件 ") and "config.toml" in message
    assert f"第 {lineno} 行第 " in message and "列" in message
    assert "deadline = 2023-08-32" in message and "日期或数值" in message
    assert "Expected" not in message and "Invalid" not in message


@pytest.mark.parametrize(
    "tail,hint",
    [
        ('\n[notices\n', "方括号"),
        ('\n[imap]\n', "写了两次"),
        ('\nx = "abc\n', "引号"),
        ("\n[bot]\n", "写了两次"),
        ("\nstate = yes\n", "引号"),
    ],
)
def test_other_toml_errors_are_explained(tmp_path, tail, hint):
    message = refused(tmp_path, BASE + tail)
    assert "TOML" in message and hint in message and "行" in message


# --------------------------------------------------------------------------- 2. round windows


def rounds_text(*rounds) -> str:
    head = BASE[: BASE.index("[[rounds]]")]
    units = BASE[BASE.index("# The roster"):]
    body = "".join(f'[[rounds]]\nname = "{n}"\nopens = {o}\ndeadline = {d}\n\n' for n, o, d in rounds)
    return head + body + units


def test_rounds_with_the_same_opens_are_refused(tmp_path):
    message = refused(tmp_path, rounds_text(("年中", "2023-07-01", "2023-08-15"), ("年底", "2023-07-01", "2023-12-05")))
    assert "年中" in message and "年底" in message and "opens" in message


def test_a_round_nested_inside_another_is_refused(tmp_path):
    message = refused(tmp_path, rounds_text(("年中", "2023-07-01", "2023-12-15"), ("年底", "2023-09-01", "2023-12-05")))
    assert "年中" in message and "年底" in message and "deadline" in message
    message = refused(tmp_path, rounds_text(("年中", "2023-07-01", "2023-12-05"), ("年底", "2023-09-01", "2023-12-05")))
    assert "年中" in message and "年底" in message


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TZ8)


def test_round_for_overlapping_rounds(tmp_path):
    cfg = load(tmp_path, rounds_text(("年中", "2023-07-01", "2023-08-15"), ("年底", "2023-08-01", "2023-12-05")))
    name = lambda when, named=None: cfg.round_for(at(when), named).name  # noqa: E731
    assert name("2023-06-01T10:00") == "年中"  # before the first opens: the first
    assert name("2023-07-20T10:00") == "年中"
    assert name("2023-08-10T10:00") == "年中"  # both open: the earliest whose deadline has not passed
    assert name("2023-08-15T23:59") == "年中"  # the deadline day is still on time
    assert name("2023-08-16T00:00") == "年底"
    assert name("2023-12-20T10:00") == "年底"  # every deadline passed: the latest opened
    assert name("2023-08-20T10:00", "年中") == "年中"  # a round named (and opened) wins
    assert name("2023-08-10T10:00", "年底") == "年底"
    assert name("2023-07-20T10:00", "年底") == "年中"  # not opened yet: the date rule
    assert name("2023-07-20T10:00", "年初") == "年中"  # no such round: the date rule


def test_round_for_non_overlapping_rounds_unchanged(cfg):
    name = lambda when: cfg.round_for(at(when)).name  # noqa: E731
    assert [name(w) for w in ("2023-01-01T00:00", "2023-08-15T12:00", "2023-08-20T09:00", "2023-09-01T00:00", "2024-01-10T00:00")] == [
        "年中", "年中", "年中", "年底", "年底"]
    assert cfg.round_for(at("2023-11-20T09:00"), "年中").name == "年中"


# --------------------------------------------------------------------------- every key the code reads is in DEFAULTS


def test_every_config_key_the_code_reads_is_in_defaults():
    reads = {
        "bot": r"(?:cfg\.bot|\bbot)(?:\[|\.get\()\s*[\"'](\w+)[\"']",
        "notices": r"(?:cfg\.notices|\bs)\[\s*[\"'](\w+)[\"']",
        "server": r"\.options(?:\[|\.get\()\s*[\"'](\w+)[\"']",
    }
    missing = []
    for path in sorted((ROOT / "mailbot").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for section, pattern in reads.items():
            known = set(DEFAULTS["imap"]) | set(DEFAULTS["smtp"]) if section == "server" else set(DEFAULTS[section])
            if section == "notices" and path.name != "notices.py":
                pattern = r"cfg\.notices\[\s*[\"'](\w+)[\"']"
            missing += [f"{path.name}: [{section}] {key}" for key in re.findall(pattern, source) if key not in known]
    assert missing == []


# --------------------------------------------------------------------------- 3. README numbers


UNITS = {"": 1, "MiB": 1 << 20, "KiB": 1 << 10, "GiB": 1 << 30, "MB": 10**6, "KB": 10**3, "GB": 10**9, "s": 1, "秒": 1}


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end > 0 else None]


def _default(key: str, section: str | None):
    if section:
        return DEFAULTS[section][key]
    owners = [s for s in DEFAULTS if key in DEFAULTS[s]]
    assert len(owners) == 1, f"README names `{key}` without its section, and several sections have it: {owners}"
    return DEFAULTS[owners[0]][key]


def _readme_value(text: str):
    """The value a README parenthesis states: 30 MiB, 100, 120 s, "auto", true, 7, 3, 1, 09:00, 20:00–08:00."""
    text = text.strip()
    if m := re.match(r"(\d{1,2}:\d{2})\s*[–-]\s*(\d{1,2}:\d{2})", text):
        return f"{m.group(1)}-{m.group(2)}"
    if m := re.match(r"\d{1,2}:\d{2}", text):
        return m.group(0)
    if m := re.match(r"\d+(?:\s*,\s*\d+)+", text):
        return [int(x) for x in m.group(0).split(",")]
    if m := re.match(r"(\d+(?:\.\d+)?)\s*(MiB|KiB|GiB|MB|KB|GB|s|秒)?(?![\w.])", text):
        number = float(m.group(1)) * UNITS[m.group(2) or ""]
        return int(number) if number == int(number) else number
    if m := re.match(r"\"([^\"]*)\"", text):
        return m.group(1)
    if m := re.match(r"(true|false)\b", text):
        return m.group(1) == "true"
    return None


def readme_defaults(section_text: str) -> dict[str, tuple]:
    """Every `key` (value …) and `key` … (default value) the README states, with DEFAULTS' value."""
    found = {}
    keys = {k for sec in DEFAULTS.values() for k in sec}
    pattern = r"`(?:\[(\w+)\] )?(\w+)`\s*(?:\(|[^`()]{0,60}\(default )([^)]*)\)"
    for m in re.finditer(pattern, section_text):
        section, key, inside = m.group(1), m.group(2), m.group(3)
        if key not in keys:
            continue
        stated = _readme_value(inside.removeprefix("default "))
        if stated is None:
            continue
        found[key] = (stated, _default(key, section))
    return found


def test_readme_limits_equal_defaults():
    found = readme_defaults(_readme_section("Configuration"))
    assert {"max_message_bytes", "max_attachments", "max_decompressed_bytes", "conversion_timeout_seconds"} <= set(found), found
    assert {k: v[0] for k, v in found.items()} == {k: v[1] for k, v in found.items()}


def test_readme_other_defaults_equal_defaults():
    found = readme_defaults((ROOT / "README.md").read_text(encoding="utf-8"))
    assert {"remind_days_before", "hour", "quiet_hours"} <= set(found), found
    assert {k: v[0] for k, v in found.items()} == {k: v[1] for k, v in found.items()}
