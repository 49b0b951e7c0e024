"""`mailbot demo`: the whole job on loopback, with no account and no root.

Starts a local IMAP server (pymap, in memory) and a local SMTP server (aiosmtpd)
that writes every mail it receives to state/demo/replies/*.eml, delivers a
handful of realistic unit reports into the mailbox, runs the real daemon
(`mailbot run`) until every reply is out, stops it with SIGTERM, and shows what
happened.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import imaplib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from . import store
from .config import load_config
from .errors import MailbotError
from .forms import render_form

USER, PASSWORD = "xxqzwgk001@demo.example", "demo-password"
TZ = dt.timezone(dt.timedelta(hours=8))
DOCX = ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise MailbotError(f"本地演示服务器未能在 {timeout:.0f} 秒内启动（端口 {port}）")


class CaptureSmtp:
    """aiosmtpd on loopback; each received mail is written to a .eml file."""

    def __init__(self, outdir: Path):
        from aiosmtpd.controller import Controller

        self.outdir = outdir
        self.count = 0
        self.lock = threading.Lock()
        outdir.mkdir(parents=True, exist_ok=True)
        capture = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                with capture.lock:
                    capture.count += 1
                    rcpt = re.sub(r"[^A-Za-z0-9@._-]", "_", envelope.rcpt_tos[0])
                    path = capture.outdir / f"{capture.count:02d}-{rcpt}.eml"
                path.write_bytes(envelope.original_content or envelope.content)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def _message(sender: str, name: str, subject: str, body: str, when: dt.datetime, attachments=()) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = USER
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain=sender.partition("@")[2])
    msg.set_content(body)
    for filename, data, ctype in attachments:
        msg.add_attachment(data, maintype=ctype[0], subtype=ctype[1], filename=filename)
    return bytes(msg)


def _foxmail_gbk(sender: str, name: str, subject: str, filename: str, data: bytes, when: dt.datetime) -> bytes:
    """As Foxmail sends it: GBK text labelled gb2312, the file name as an encoded word in filename=."""
    enc = lambda s: "=?gb2312?B?" + base64.b64encode(s.encode("gb18030")).decode() + "?="  # noqa: E731
    payload = base64.encodebytes(data).decode()
    return (
        f"From: {enc(name)} <{sender}>\r\nTo: {USER}\r\nSubject: {enc(subject)}\r\nDate: {format_datetime(when)}\r\n"
        f"Message-ID: {make_msgid(domain='foxmail.example')}\r\nX-Mailer: Foxmail 7.2\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="----=_NextPart_demo"\r\n\r\n------=_NextPart_demo\r\n'
        'Content-Type: text/plain; charset="gb2312"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + base64.b64encode("附件是我单位台账，晚交了几天，请谅解。".encode("gb18030")).decode()
        + "\r\n------=_NextPart_demo\r\n"
        f'Content-Type: application/octet-stream; name="{enc(filename)}"\r\nContent-Transfer-Encoding: base64\r\n'
        f'Content-Disposition: attachment; filename="{enc(filename)}"\r\n\r\n{payload}\r\n------=_NextPart_demo--\r\n'
    ).encode("ascii")


def sample_messages(cfg) -> list[tuple[str, bytes, dt.datetime]]:
    """(what it shows, raw message, server receive time) for a small, realistic 年中 season."""

    def filled(unit: str, skip=()) -> dict[int, str]:
        tasks = cfg.roster.tasks_of(unit, cfg.ledger)
        return {t: f"已按要求落实：通过政府网站和政务新媒体发布相关信息{t + 3}条，工作台账已建立。" for t in tasks if t not in skip}

    def form(unit: str, **kw) -> bytes:
        return render_form(cfg, unit, **kw)

    d = lambda day, hour=10: dt.datetime(2023, 8, day, hour, 0, tzinfo=TZ)  # noqa: E731
    mz = cfg.roster.get("民政局")
    xj = cfg.roster.get("兴泾镇")
    sf = cfg.roster.get("司法局")
    jy = cfg.roster.get("教育局")
    out = [
        ("民政局按时报送完整台账", _message(mz.emails[0], "民政局 张敏", "民政局2023年年中台账报送", "您好，附件为我局台账，请查收。", d(10),
            [("西夏区民政局-任务落实台账.docx", form("民政局", progress=filled("民政局"), contact="张敏", phone="0951-5012345"), DOCX)]), d(10)),
        ("兴泾镇按时报送，但有几项没填", _message(xj.emails[0], "兴泾镇党政办", "兴泾镇台账", "请查收", d(14, 16),
            [("兴泾镇台账.docx", form("兴泾镇", progress=filled("兴泾镇", skip=(20, 21, 22)), contact="马丽", phone="13800000000"), DOCX)]), d(14, 16)),
        ("司法局逾期报送（Foxmail，GBK 编码）", _foxmail_gbk(sf.emails[0], "司法局 李强", "司法局报送台账（逾期）", "司法局任务落实台账.docx",
            form("司法局", progress=filled("司法局"), contact="李强", phone="0951-5098765"), d(18, 9)), d(18, 9)),
        ("教育局误发了 PDF", _message(jy.emails[0], "教育局办公室", "教育局台账", "见附件", d(12),
            [("教育局台账.pdf", b"%PDF-1.4\n% demo\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n", ("application", "pdf"))]), d(12)),
        ("人社局工作人员用个人 QQ 邮箱报送", _message("123456789@qq.example", "小王", "人社局年中台账", "代我局报送", d(15, 11),
            [("台账.docx", form("人力资源和社会保障局", progress=filled("人力资源和社会保障局"), contact="王芳", phone="0951-5066666"), DOCX)]), d(15, 11)),
        ("陌生地址发来的推销邮件", _message("sales@ads.example", "某公司", "办公用品优惠", "您好，我司……", d(11)), d(11)),
        ("对方邮箱的自动回复", _message(mz.emails[0], "民政局 张敏", "自动回复：休假中", "我正在休假，8月20日返回。", d(10, 11)), d(10, 11)),
    ]
    return out


def _append(port: int, raw: bytes, when: dt.datetime) -> None:
    client = imaplib.IMAP4("127.0.0.1", port)
    try:
        client.login(USER, PASSWORD)
        client.append("INBOX", None, imaplib.Time2Internaldate(when.timestamp()), raw)
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001
            pass


def demo_config_text(source: Path, demo_dir: Path, imap_port: int, smtp_port: int) -> str:
    """The operator's config.toml (roster and rounds) pointed at the local servers."""
    text = source.read_text(encoding="utf-8")
    start = text.find("[[rounds]]")
    if start < 0:
        raise MailbotError(f"{source} 中没有 [[rounds]]：演示需要完整的配置文件")
    head = f"""# Written by `mailbot demo`: the local servers of the demo, and the roster and rounds of {source.name}.
[bot]
state_dir = "{demo_dir / 'state'}"
timezone = "Asia/Shanghai"
poll_interval_seconds = 2
outbox_interval_seconds = 2
reply_max_age_days = 100000

[imap]
host = "127.0.0.1"
port = {imap_port}
security = "plain"
user = "{USER}"
password_env = "MAILBOT_DEMO_PASSWORD"
folders = ["INBOX"]

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "plain"
user = ""
password_env = "MAILBOT_DEMO_PASSWORD"
from = "{USER}"

[coordinator]
emails = ["coordinator@demo.example"]

"""
    return head + text[start:]


def run_demo(config_path: Path, out=sys.stdout, timeout: float = 90) -> int:
    """Run the demo; everything it writes goes under <state_dir>/demo. Returns an exit code."""
    import importlib.util

    missing = [m for m in ("aiosmtpd", "pymap") if importlib.util.find_spec(m) is None]
    if missing:
        raise MailbotError(f"演示需要本地邮件服务器组件（{'、'.join(missing)}）：请运行 ./scripts/demo，或 pip install 'mailbot[demo]'")
    base_cfg = load_config(config_path)
    demo_dir = base_cfg.state_dir / "demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    (demo_dir / "state").mkdir(parents=True)
    imap_port = free_port()
    smtp = CaptureSmtp(demo_dir / "replies")
    cfg_file = demo_dir / "config.toml"
    cfg_file.write_text(demo_config_text(base_cfg.path, demo_dir, imap_port, smtp.port), encoding="utf-8")
    cfg = load_config(cfg_file)
    env = dict(os.environ, MAILBOT_DEMO_PASSWORD=PASSWORD, PYTHONUNBUFFERED="1")
    pymap = subprocess.Popen(
        [sys.executable, "-c", "from pymap.main import main; main()", "--host", "127.0.0.1", "--port", str(imap_port), "--no-tls",
         "dict", "--demo-user", USER, "--demo-password", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    daemon = None
    try:
        wait_for_port(imap_port)
        smtp.start()
        print(f"本地 IMAP 服务器（pymap）127.0.0.1:{imap_port}，本地 SMTP 服务器（aiosmtpd）127.0.0.1:{smtp.port}", file=out)
        samples = sample_messages(cfg)
        for label, raw, when in samples:
            _append(imap_port, raw, when)
        print(f"已向演示邮箱投递 {len(samples)} 封邮件：" + "；".join(label for label, _r, _w in samples), file=out)

        log_path = demo_dir / "daemon.log"
        with open(log_path, "wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "mailbot.cli", "--config", str(cfg_file), "run"], stdout=log, stderr=subprocess.STDOUT, env=env
            )
            print(f"守护进程已启动（mailbot run，PID {daemon.pid}），日志：{log_path}", file=out)
            expected = _wait_until_done(cfg, daemon, len(samples), timeout)
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=30)
        print(f"已发出 SIGTERM，守护进程正常退出（退出码 {code}）。", file=out)
        _report(cfg, smtp.outdir, out)
        print(explore_text(cfg_file), file=out)
        return 0 if expected else 1
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        smtp.stop()
        try:
            os.killpg(pymap.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        pymap.wait(timeout=10)


def _shown(path: Path) -> str:
    """A path as the user can type it here: relative to the current directory when inside it."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def explore_text(cfg_file: Path) -> str:
    """The commands that look at the demo's data: every command needs the demo's own --config,
    else it reads ./config.toml and an empty state directory."""
    exe = Path(sys.executable).with_name("mailbot")
    cmd = f"{shlex.quote(_shown(exe)) if exe.exists() else 'mailbot'} --config {shlex.quote(_shown(cfg_file))}"
    when = "--now 2023-08-20T09:00+08:00"  # the demo's season; today every round would be long past
    return "\n".join([
        "",
        f"演示的数据在 {_shown(cfg_file.parent)}。查看它时每条命令都要加上 --config {shlex.quote(_shown(cfg_file))}"
        "（不加则读取当前目录的 config.toml 和它的空 state 目录）：",
        f"  {cmd} {when} status --tasks",
        f"  {cmd} inbox",
        f"  {cmd} export --format xlsx -o 演示汇总台账.xlsx",
        f"  {cmd} {when} notices",
    ])


def _wait_until_done(cfg, daemon: subprocess.Popen, n_messages: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise MailbotError(f"守护进程意外退出（退出码 {daemon.returncode}），请查看 {cfg.state_dir.parent / 'daemon.log'}")
        if cfg.db_path.exists():
            db = store.open_db(cfg.db_path)
            try:
                handled = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
                pending = db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
            finally:
                db.close()
            if handled >= n_messages and pending == 0:
                return True
        time.sleep(0.5)
    return False


def _report(cfg, replies: Path, out) -> None:
    from .cli import render_status
    from .status import status_table

    db = store.open_db(cfg.db_path)
    labels = {"accepted": "已登记", "duplicate": "重复", "quarantined": "已隔离", "rejected": "已退回", "ignored": "已忽略"}
    print("\n处理结果：", file=out)
    for row in db.query("SELECT id, from_addr, subject, status, unit, late, verified, reason FROM messages ORDER BY id"):
        extra = ""
        if row["status"] == "accepted":
            extra = ("逾期" if row["late"] else "按时") + ("" if row["verified"] else "，发件人未登记：待核实，回执发往单位登记邮箱")
        else:
            extra = row["reason"] or ""
        print(f"  #{row['id']} {row['from_addr']}「{row['subject']}」→ {labels[row['status']]} {row['unit'] or ''} {extra}", file=out)
    files = sorted(replies.glob("*.eml"))
    print(f"\n系统发出的邮件（{len(files)} 封，已保存为 .eml 文件）：", file=out)
    for path in files:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        print(f"  {path}\n      收件人：{msg['To']}{'  抄送：' + msg['Cc'] if msg['Cc'] else ''}\n      主题：{msg['Subject']}", file=out)
    print("\n报送情况（mailbot status，按 2023-08-20 计）：", file=out)
    table = status_table(cfg, db, [cfg.rounds[0]], dt.datetime(2023, 8, 20, 9, 0, tzinfo=TZ))
    lines = render_status(table).splitlines()
    shown = [lines[0]] + [l for l in lines[1:-1] if "未报送" not in l] + [f"  …（其余 {table['rounds'][0]['counts']['missing']} 个单位未报送）", lines[-1]]
    print("\n".join(shown), file=out)
    db.close()
    if files:
        first = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
        print(f"\n第一封回执正文（{files[0].name}）：\n", file=out)
        print(first.get_body(("plain",)).get_content(), file=out)
