"""Real servers for tests: a private Dovecot IMAP server and an aiosmtpd SMTP sink.

Everything listens on 127.0.0.1 on free ports.  Import the fixtures with
``from servers import *`` (conftest puts tests/ on sys.path).

Dovecot
    ``Dovecot(directory)`` writes a config, a self-signed cert and a passwd-file
    and runs ``dovecot -F -c <conf>`` in its own process group.  Mail is stored
    as ``nobody`` (Dovecot refuses uid 0 for mail), so the instance lives in a
    world-traversable directory under /tmp (pytest's /tmp/pytest-of-root is
    0700 and pytest re-tightens it); ``directory`` gets a symlink to it while
    it runs and a copy of the log when it is cleaned up.

SmtpServer
    aiosmtpd ``Controller`` capturing every message in ``messages``; optional
    STARTTLS (required) and AUTH (required); ``fail_with`` / ``drop_connection``
    can be flipped at any time to simulate a refusing or flaky server.
"""

from __future__ import annotations

import atexit
import email
import email.policy
import imaplib
import logging
import os
import pwd
import grp
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Iterator

import pytest

__all__ = [
    "Dovecot",
    "SmtpServer",
    "CapturedMessage",
    "free_port",
    "make_self_signed_cert",
    "client_ssl_context",
    "dovecot",
    "mailbox",
    "smtp_server",
    "smtp_server_tls_auth",
]

DOVECOT_BIN = shutil.which("dovecot") or "/usr/sbin/dovecot"
OPENSSL_BIN = shutil.which("openssl") or "/usr/bin/openssl"
HOST = "127.0.0.1"

_live_instances: "weakref.WeakSet" = weakref.WeakSet()


# --------------------------------------------------------------------------- helpers


def write_bench_config(path: Path, *, state_dir: Path, imap_port: int, user: str, password_env: str) -> Path:
    """A mailbot config for the benchmarks: a plain-IMAP Dovecot on loopback, no SMTP (replies
    stay queued), the shipped rounds and roster defaults."""
    shipped = (Path(__file__).resolve().parent.parent / "config.toml").read_text(encoding="utf-8")
    path.write_text(
        f'[bot]\nstate_dir = "{state_dir}"\n\n[imap]\nhost = "{HOST}"\nport = {imap_port}\nsecurity = "plain"\n'
        f'user = "{user}"\npassword_env = "{password_env}"\n\n[smtp]\nhost = "{HOST}"\nport = 9\nsecurity = "plain"\n'
        f'from = "{user}"\n\n' + shipped[shipped.index("[[rounds]]"):],
        encoding="utf-8",
    )
    return path


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _free_ports(n: int, host: str = HOST) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def real_clock_env() -> dict[str, str]:
    """The environment without libfaketime: the test process may run on a faked clock (to prove the
    suite passes at any hour), but Dovecot hangs under faketime, so the servers keep the real one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKETIME")}
    preload = [p for p in env.get("LD_PRELOAD", "").split() if "faketime" not in p]
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    return env


def make_self_signed_cert(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """Write ``<name>.crt`` / ``<name>.key`` (EC P-256, CN=localhost, SAN localhost + 127.0.0.1)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            OPENSSL_BIN, "req", "-x509", "-nodes", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert), "-days", "3650",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    return cert, key


def client_ssl_context(cafile: str | os.PathLike | None = None) -> ssl.SSLContext:
    """A client context: verifying against ``cafile`` if given, otherwise not verifying at all."""
    if cafile:
        return ssl.create_default_context(cafile=str(cafile))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _wait_port(host: str, port: int, deadline: float, banner: bytes | None = None,
               proc: subprocess.Popen | None = None) -> bool:
    """True once ``port`` accepts a connection (and sends a line starting with ``banner``);
    False at ``deadline`` or as soon as ``proc`` has exited."""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                if banner is None:
                    return True
                s.settimeout(min(0.5, max(0.05, deadline - time.monotonic())))
                if s.recv(256).startswith(banner):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def _pgroup_alive(pgid: int, ignore: int | None = None) -> bool:
    """Does process group ``pgid`` have a live (non-zombie) member other than ``ignore``?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(…, 0) also succeeds for zombies; look at /proc for live members.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()
        # rest[0] = state, rest[1] = ppid, rest[2] = pgrp
        if int(rest[2]) == pgid and rest[0] != b"Z" and int(entry) != ignore:
            return True
    return False


# --------------------------------------------------------------------------- Dovecot


DOVECOT_CONF = """\
# private test instance -- generated by tests/servers.py
listen = {host}
protocols = imap
instance_name = {instance}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
debug_log_path = {root}/dovecot.log
{users}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
imap_id_log = *
mail_fsync = never
mail_max_userip_connections = 50

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir

namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
}}

service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {ssl_port}
    ssl = yes
  }}
{login_extra}}}
# no growing per-IP delay (2 s, 4 s, 8 s...) after failed logins from 127.0.0.1
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{anvil_extra}}}
"""


class _PortTaken(RuntimeError):
    pass


class Dovecot:
    """A private Dovecot 2.3 IMAP server on 127.0.0.1 (plain+STARTTLS on ``port``, IMAPS on ``ssl_port``)."""

    def __init__(self, directory: str | os.PathLike, host: str = HOST):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port, self.ssl_port = _free_ports(2, host)
        # Short, world-traversable root: the mail processes run as `nobody` and the
        # unix sockets in base_dir must stay below the 108-byte sun_path limit.
        self.root = Path(tempfile.mkdtemp(prefix="mbdove-"))
        os.chmod(self.root, 0o755)
        for sub in ("run", "state", "home"):
            (self.root / sub).mkdir()
        self.passwd_path = self.root / "passwd"
        self.passwd_path.write_text("", encoding="utf-8")
        os.chmod(self.passwd_path, 0o644)
        self.log_path = self.root / "dovecot.log"
        cert, key = make_self_signed_cert(self.root, "dovecot")
        self.cafile = str(cert)
        self.certfile, self.keyfile = str(cert), str(key)
        self.passwords: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None

        self._is_root = os.geteuid() == 0
        if self._is_root:
            self.mail_uid, self.mail_gid = pwd.getpwnam("nobody").pw_uid, self._nogroup_gid()
            os.chown(self.root / "home", self.mail_uid, self.mail_gid)
            users = ""
            login_extra = anvil_extra = ""
        else:  # unprivileged: everything runs as the current user, no chroot
            me = pwd.getpwuid(os.geteuid()).pw_name
            self.mail_uid, self.mail_gid = os.geteuid(), os.getegid()
            users = (
                f"default_internal_user = {me}\ndefault_internal_group = {grp.getgrgid(os.getegid()).gr_name}\n"
                f"default_login_user = {me}\n"
            )
            login_extra = "  chroot =\n"
            anvil_extra = "  chroot =\n"
        self._users, self._login_extra, self._anvil_extra = users, login_extra, anvil_extra
        self.conf_path = self.root / "dovecot.conf"
        self._write_conf()
        self._ever_started = False
        link = self.directory / "dovecot-root"
        if not link.exists() and not link.is_symlink():
            link.symlink_to(self.root)
        _live_instances.add(self)

    def _write_conf(self) -> None:
        self.conf_path.write_text(
            DOVECOT_CONF.format(
                host=self.host,
                port=self.port,
                ssl_port=self.ssl_port,
                root=self.root,
                cert=self.certfile,
                key=self.keyfile,
                instance=f"mailbot-test-{self.port}",
                users=self._users,
                mail_uid=self.mail_uid,
                mail_gid=self.mail_gid,
                login_extra=self._login_extra,
                anvil_extra=self._anvil_extra,
            ),
            encoding="utf-8",
        )

    @staticmethod
    def _nogroup_gid() -> int:
        for name in ("nogroup", "nobody"):
            try:
                return grp.getgrnam(name).gr_gid
            except KeyError:
                pass
        return pwd.getpwnam("nobody").pw_gid

    def __repr__(self) -> str:
        return f"<Dovecot {self.host}:{self.port}/{self.ssl_port} root={self.root}>"

    # ---------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> "Dovecot":
        if self.running:
            return self
        for attempt in range(3):
            try:
                self._start(timeout)
            except _PortTaken:
                if self._ever_started or attempt == 2:
                    raise
                # the free ports were grabbed by someone else meanwhile: pick new ones
                self.port, self.ssl_port = _free_ports(2, self.host)
                self._write_conf()
                continue
            self._ever_started = True
            return self
        return self

    def _start(self, timeout: float) -> None:
        # a stale pid file (e.g. after a SIGKILL) makes the master refuse to start
        (self.root / "run" / "master.pid").unlink(missing_ok=True)
        with open(self.root / "dovecot.stdout", "ab") as out:
            self.proc = subprocess.Popen(
                [DOVECOT_BIN, "-F", "-c", str(self.conf_path)],
                env=real_clock_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() can signal every child
            )
        deadline = time.monotonic() + timeout
        # The master binds every listener before forking anything (or dies with
        # "Failed to start listeners"), so a greeting on the plain port means the
        # IMAPS port is up too.
        ok = _wait_port(self.host, self.port, deadline, b"* OK", self.proc)
        if not ok or not self.running:
            code = self.proc.poll()
            self.stop()
            message = (
                f"dovecot did not come up on {self.host}:{self.port} (exit code {code}); log tail:\n"
                + self._tail()
            )
            if "Address already in use" in message:
                raise _PortTaken(message)
            raise RuntimeError(message)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the whole process group (master, imap, imap-login, auth, log...) and reap it.

        Signalling only the master is slow (it sleeps ~1 s) and leaves imap processes
        with connected clients running after it exits.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session=True: the master leads its own group
        # Repeat the SIGTERM until the group is gone: a child the master forks while
        # shutting down (e.g. imap-login for a pending connection) would otherwise
        # miss it, and the master then waits 6 s for that child before exiting.
        # Once every child has exited the master sometimes still sleeps ~1 s before it
        # reaps them and exits; nothing is left to flush then, so it gets a SIGKILL.
        started = time.monotonic()
        deadline = started + timeout
        while _pgroup_alive(pgid) and time.monotonic() < deadline:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                break
            try:
                proc.wait(0.05)
            except subprocess.TimeoutExpired:
                if time.monotonic() - started > 0.3 and not _pgroup_alive(pgid, ignore=proc.pid):
                    proc.kill()
        if _pgroup_alive(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        (self.root / "run" / "master.pid").unlink(missing_ok=True)

    def restart(self) -> "Dovecot":
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop, copy the log next to the pytest dir and remove the private root."""
        self.stop()
        try:
            if self.log_path.exists():
                shutil.copyfile(self.log_path, self.directory / "dovecot.log")
            link = self.directory / "dovecot-root"
            if link.is_symlink():
                link.unlink()
        except OSError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
        _live_instances.discard(self)

    def __enter__(self) -> "Dovecot":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # ---------------------------------------------------------------- logs

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _tail(self, n: int = 40) -> str:
        text = self.log_text()
        try:
            text += (self.root / "dovecot.stdout").read_text(errors="replace")
        except OSError:
            pass
        return "\n".join(text.splitlines()[-n:])

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> str:
        """Wait until ``needle`` shows up in the log (the log process writes asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in dovecot log; tail:\n{self._tail()}")
            time.sleep(0.02)

    # ---------------------------------------------------------------- users and mail

    def add_user(self, user: str, password: str) -> None:
        if ":" in user or "\n" in user or "\n" in password:
            raise ValueError("user/password unusable in a passwd-file")
        self.passwords[user] = password
        lines = [f"{u}:{{PLAIN}}{p}" for u, p in self.passwords.items()]
        tmp = self.passwd_path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.passwd_path)  # passwd-file is re-read when it changes
        home = self.root / "home" / user
        home.mkdir(exist_ok=True)
        if self._is_root:
            os.chown(home, self.mail_uid, self.mail_gid)

    @contextmanager
    def imap(self, user: str, password: str | None = None) -> Iterator[imaplib.IMAP4]:
        """A logged-in imaplib client on the plain port."""
        if password is None:
            password = self.passwords[user]
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            client.login(user, password)
            yield client
        finally:
            try:
                client.logout()
            except Exception:
                pass

    @staticmethod
    def _check(typ: str, data, what: str):
        if typ != "OK":
            raise RuntimeError(f"IMAP {what} failed: {typ} {data!r}")
        return data

    @staticmethod
    def quote(name: str) -> str:
        """An IMAP quoted string (mailbox names with UTF-7 already applied by the caller)."""
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def append(
        self,
        user: str,
        password: str | None,
        raw: bytes | str | EmailMessage,
        folder: str = "INBOX",
        flags: tuple[str, ...] | list[str] | str = (),
        date: datetime | None = None,
    ) -> int | None:
        """APPEND ``raw`` to ``folder``; returns the new UID (from APPENDUID) or None."""
        if isinstance(raw, EmailMessage):
            raw = raw.as_bytes(policy=email.policy.SMTP)
        elif isinstance(raw, str):
            raw = raw.encode("utf-8")
        if b"\r\n" not in raw:
            raw = raw.replace(b"\n", b"\r\n")
        if isinstance(flags, str):
            flags = (flags,)
        flag_str = "(" + " ".join(flags) + ")" if flags else None
        date_str = imaplib.Time2Internaldate(date) if date is not None else None
        with self.imap(user, password) as c:
            data = self._check(*c.append(self.quote(folder), flag_str, date_str, raw), "APPEND")
        text = data[0].decode() if data and isinstance(data[0], bytes) else str(data)
        if "APPENDUID" in text:
            return int(text.split("APPENDUID", 1)[1].split("]", 1)[0].split()[1])
        return None

    def create_folder(self, user: str, password: str | None, name: str) -> None:
        with self.imap(user, password) as c:
            self._check(*c.create(self.quote(name)), "CREATE")

    def delete_folder(self, user: str, password: str | None, name: str) -> None:
        with self.imap(user, password) as c:
            self._check(*c.delete(self.quote(name)), "DELETE")

    def uidvalidity(self, user: str, password: str | None, folder: str = "INBOX") -> int:
        with self.imap(user, password) as c:
            data = self._check(*c.status(self.quote(folder), "(UIDVALIDITY)"), "STATUS")
        return int(data[0].decode().split("UIDVALIDITY", 1)[1].strip(" )"))

    def messages(self, user: str, password: str | None, folder: str = "INBOX") -> list[dict]:
        """[{uid, flags, internaldate, raw}] of every message in ``folder`` (read-only: flags untouched)."""
        out = []
        with self.imap(user, password) as c:
            self._check(*c.select(self.quote(folder), readonly=True), "SELECT")
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            self._check(typ, data, "FETCH")
            for item in data:
                if not isinstance(item, tuple):
                    continue
                meta = item[0]
                uid = int(meta.split(b"UID ", 1)[1].split()[0].strip(b")"))
                flags = tuple(f.decode() for f in imaplib.ParseFlags(meta))
                tt = imaplib.Internaldate2tuple(meta)
                when = datetime.fromtimestamp(time.mktime(tt)).astimezone() if tt else None
                out.append({"uid": uid, "flags": flags, "internaldate": when, "raw": item[1]})
        return out

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """On-disk Maildir++ directory of an ASCII-named folder."""
        base = self.root / "home" / user / "Maildir"
        return base if folder.upper() == "INBOX" else base / ("." + folder.replace("/", "."))

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> None:
        """Give ``folder`` (INBOX too, which cannot be deleted) a new UIDVALIDITY, keeping its mail.

        Stops the server, removes the folder's dovecot-uidlist and index files and starts
        it again: Dovecot renumbers the messages from UID 1 under a fresh UIDVALIDITY.
        """
        was_running = self.running
        self.stop()
        directory = self.maildir(user, folder)
        for f in directory.iterdir():
            if f.name == "dovecot-uidlist" or f.name.startswith("dovecot.index"):
                f.unlink()
        if was_running:
            self.start()

    def folders(self, user: str, password: str | None) -> list[str]:
        with self.imap(user, password) as c:
            data = self._check(*c.list(), "LIST")
        names = []
        for line in data:
            if not line:
                continue
            name = line.decode().rsplit(' "/" ', 1)[-1]
            names.append(name.strip('"'))
        return names


def _stop_leftovers() -> None:
    for inst in list(_live_instances):
        try:
            inst.cleanup()
        except Exception:
            pass


atexit.register(_stop_leftovers)


# --------------------------------------------------------------------------- SMTP


class _NoLoginDataWarning(logging.Filter):
    """aiosmtpd 1.4 logs "Session.login_data is deprecated" on every successful AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_NoLoginDataWarning())


@dataclass
class CapturedMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # exactly as received after DATA (dot-unstuffed, CRLF line ends)
    message: EmailMessage
    peer: tuple | None = None
    tls: bool = False
    auth_user: str | None = None
    mail_options: list[str] = field(default_factory=list)


class _Handler:
    def __init__(self, owner: "SmtpServer"):
        self.owner = owner

    async def handle_DATA(self, server, session, envelope):
        owner = self.owner
        if owner.drop_connection == "data":
            owner._abort(server)
            return "421 4.4.2 connection dropped"
        with owner._cond:
            owner.attempts += 1
            fail = owner.fail_with
            if fail is not None:
                if owner.fail_times is not None:
                    owner.fail_times -= 1
                    if owner.fail_times <= 0:
                        owner.fail_with = owner.fail_times = None
                owner.refused.append((envelope.mail_from, list(envelope.rcpt_tos), fail))
        if fail is not None:
            code, text = fail
            return f"{int(code)} {text}"
        raw = envelope.original_content if envelope.original_content is not None else envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        login = getattr(session, "auth_data", None)
        msg = CapturedMessage(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(raw),
            message=email.message_from_bytes(bytes(raw), policy=email.policy.default),
            peer=session.peer,
            tls=session.ssl is not None,
            auth_user=login if isinstance(login, str) else None,
            mail_options=list(envelope.mail_options),
        )
        with owner._cond:
            owner.messages.append(msg)
            owner._cond.notify_all()
        return "250 2.0.0 OK queued"


class SmtpServer:
    """aiosmtpd sink on 127.0.0.1.

    ``starttls=True`` advertises STARTTLS and requires it before MAIL;
    ``auth=(user, password)`` requires AUTH PLAIN/LOGIN (only offered after
    STARTTLS when ``starttls`` is on).  Settable at any time:

    * ``fail_with = (451, "4.3.0 try later")`` -- DATA is answered with that reply
      (``fail_times = n`` clears it automatically after n refusals);
    * ``drop_connection = True`` (or ``"connect"``) -- new connections are reset
      right away; ``"data"`` -- reset after the message was sent, before the reply.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, starttls: bool = False,
                 auth: tuple[str, str] | None = None, host: str = HOST, smtputf8: bool = False):
        self.host = host
        self.port = 0
        self.starttls = starttls
        self.auth = auth
        self.smtputf8 = smtputf8
        self.messages: list[CapturedMessage] = []
        self.refused: list[tuple] = []
        self.attempts = 0  # DATA commands seen (accepted + refused)
        self.auth_attempts: list[tuple[str, str, bool]] = []  # (mechanism, login, ok)
        self.fail_with: tuple[int, str] | None = None
        self.fail_times: int | None = None
        self.drop_connection: bool | str = False
        self._cond = threading.Condition()
        self._controller = None
        self._tmp = None
        self.cafile = self.certfile = self.keyfile = None
        if starttls:
            if directory is None:
                self._tmp = tempfile.mkdtemp(prefix="mbsmtp-")
                directory = self._tmp
            cert, key = make_self_signed_cert(Path(directory), "smtp")
            self.cafile = self.certfile = str(cert)
            self.keyfile = str(key)

    def __repr__(self) -> str:
        return f"<SmtpServer {self.host}:{self.port} starttls={self.starttls} auth={bool(self.auth)}>"

    # ---------------------------------------------------------------- aiosmtpd glue

    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = False
        login = ""
        if isinstance(auth_data, LoginPassword) and self.auth is not None:
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            ok = (login, password) == tuple(self.auth)
        with self._cond:
            self.auth_attempts.append((mechanism, login, ok))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    @staticmethod
    def _abort(server) -> None:
        transport = getattr(server, "transport", None)
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()

    def _make_controller(self, port: int):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP

        owner = self

        class _SMTP(SMTP):
            def connection_made(self, transport):
                super().connection_made(transport)
                if owner.drop_connection in (True, "connect"):
                    owner._abort(self)

        class _Controller(Controller):
            def factory(self):
                return _SMTP(self.handler, **self.SMTP_kwargs)

        kwargs: dict = {"enable_SMTPUTF8": self.smtputf8, "ident": "mailbot-test-smtp"}
        if self.starttls:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.certfile, self.keyfile)
            kwargs.update(tls_context=tls, require_starttls=True)
        if self.auth is not None:
            kwargs.update(
                auth_required=True,
                auth_require_tls=self.starttls,
                authenticator=self._authenticator,
            )
        else:
            kwargs.update(auth_require_tls=False)
        return _Controller(_Handler(self), hostname=self.host, port=port, ready_timeout=5, **kwargs)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "SmtpServer":
        if self._controller is not None:
            return self
        last: Exception | None = None
        for _ in range(5):  # free_port() can race with another process
            port = self.port or free_port(self.host)
            controller = self._make_controller(port)
            try:
                controller.start()
            except Exception as exc:  # noqa: BLE001
                last = exc
                try:
                    controller.stop()
                except Exception:
                    pass
                if self.port:
                    break
                continue
            self._controller, self.port = controller, port
            return self
        raise RuntimeError(f"could not start SMTP server: {last!r}")

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "SmtpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- inspection

    def wait_for(self, n: int = 1, timeout: float = 10.0) -> list[CapturedMessage]:
        """Wait until at least ``n`` messages were captured; returns a copy of ``messages``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} message(s) on {self!r}, got {len(self.messages)} "
                        f"(refused {len(self.refused)})"
                    )
                self._cond.wait(left)
            return list(self.messages)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()
            self.refused.clear()
            self.attempts = 0


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def dovecot(tmp_path_factory) -> Iterator[Dovecot]:
    """A fresh, started Dovecot (function scope: ~0.05 s to start, ~0.01-0.35 s to stop)."""
    server = Dovecot(tmp_path_factory.mktemp("dovecot"))
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


_user_counter = iter(range(1, 1_000_000))


@pytest.fixture
def mailbox(dovecot) -> tuple[str, str]:
    """(user, password) of a fresh account on ``dovecot``."""
    n = next(_user_counter)
    user, password = f"user{n}@example.test", f"pw-{n}-{os.urandom(4).hex()}"
    dovecot.add_user(user, password)
    return user, password


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """Plain SMTP sink, no TLS, no AUTH."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server_tls_auth(tmp_path_factory) -> Iterator[SmtpServer]:
    """SMTP sink requiring STARTTLS and then AUTH as ("mailbot@example.test", "smtp-secret")."""
    server = SmtpServer(tmp_path_factory.mktemp("smtp"), starttls=True,
                        auth=("mailbot@example.test", "smtp-secret"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
