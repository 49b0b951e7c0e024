"""Issue 11, LibreOffice and faults: what outsiders and a broken server must not be able to do.

1. A document cannot make LibreOffice reach the network (SSRF): a probe HTTP server on
   127.0.0.1 sees no request from the cold or the warm path; a control run of plain
   LibreOffice on the same file does reach it (so these tests can fail).
2. A conversion whose process is SIGKILLed leaves no LibreOffice running and no files;
   what a process killed outright with its guard leaves is swept at the next start.
3. A database deleted under a running `mailbot run` stops it from taking mail (one line
   per cycle, one alert mailed directly); `run` then refuses an empty database next to a
   non-empty archive; `reindex`, moved into place, is accepted and nothing is sent twice.
4. A state directory that is read-only or full, or a database that cannot be written:
   one Chinese line per cycle, no traceback, one alert a day, caught up afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import http.server
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import mailbuilder as mb
import pytest
from conftest import ROOT, SHANGHAI, needs_soffice
from servers import *  # noqa: F401,F403 - fixtures: dovecot, mailbox, smtp_server
from servers import free_port, real_clock_env
from test_daemon import live, report, write_config  # noqa: F401 - the same live-server setup

from mailbot import convert, daemon, store, warm_convert
from mailbot.outbox import queue_mail
from mailbot.warm_convert import find_uno_python, pid_alive

SOFFICE = convert.soffice_path()
needs_uno = pytest.mark.skipif(SOFFICE is None or find_uno_python(SOFFICE) is None, reason="no Python with uno (python3-uno)")
needs_dovecot = pytest.mark.skipif(
    shutil.which("dovecot") is None and not os.path.exists("/usr/sbin/dovecot"), reason="dovecot is not installed"
)


def wait_until(check, seconds: float = 10, step: float = 0.05) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(step)
    return bool(check())


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if text.encode() in fh.read() and pid_alive(pid):
                    found.append(pid)
        except OSError:
            continue
    return found


# =============================================================================== 1. no network


class Probe:
    """An HTTP server on 127.0.0.1 that records every request (an internal service a document must not reach)."""

    def __init__(self):
        self.hits: list[tuple[str, str]] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                hits.append((self.command, self.path))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_OPTIONS = do_POST = do_PROPFIND = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> set[str]:
        return {path.split("/")[1] for _method, path in self.hits}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def probe():
    p = Probe()
    yield p
    p.close()


ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'office:version="1.2"'
)


def linked_odt(base: str) -> bytes:
    """An .odt (a zip: mimetype, content.xml, META-INF/manifest.xml) with three links LibreOffice 7.4 fetches
    on load by default: an image (/img), an OLE object (/ole) and a paragraph background (/bg)."""
    link = 'xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"'
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ODF_NS}><office:automatic-styles>'
        '<style:style style:name="P1" style:family="paragraph"><style:paragraph-properties>'
        f'<style:background-image xlink:href="{base}/bg/x.png" xlink:type="simple" xlink:actuate="onLoad"/>'
        "</style:paragraph-properties></style:style></office:automatic-styles><office:body><office:text>"
        '<text:p text:style-name="P1">民政局 进展落实情况'
        f'<draw:frame draw:name="i1" text:anchor-type="as-char" svg:width="1cm" svg:height="1cm"><draw:image xlink:href="{base}/img/x.png" {link}/></draw:frame>'
        f'<draw:frame draw:name="o1" text:anchor-type="as-char" svg:width="1cm" svg:height="1cm"><draw:object xlink:href="{base}/ole/x" {link}/></draw:frame>'
        "</text:p></office:text></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text")  # first, stored
        zf.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
    data = buf.getvalue()
    assert convert.sniff(data) == "odt"
    return data


def soffice_command(src: Path, profile: Path, outdir: Path) -> list[str]:
    return [SOFFICE, "--headless", "--norestore", "--nologo", "--nolockcheck", f"-env:UserInstallation={profile.as_uri()}",
            "--convert-to", "docx:MS Word 2007 XML", "--outdir", str(outdir), str(src)]


@needs_soffice
def test_control_plain_libreoffice_fetches_the_links(probe, tmp_path):
    """The attack as reported: LibreOffice with a bare profile and the network sends OPTIONS, HEAD and GET."""
    src = tmp_path / "r.odt"
    src.write_bytes(linked_odt(probe.url))
    subprocess.run(soffice_command(src, tmp_path / "bare", tmp_path / "out"), capture_output=True, timeout=180,
                   env=dict(os.environ, HOME=str(tmp_path)), start_new_session=True)
    assert (tmp_path / "out" / "r.docx").exists()
    assert "img" in probe.paths(), probe.hits  # LibreOffice 7.4: /img, /ole and /bg, each OPTIONS, HEAD, GET
    assert {"OPTIONS", "HEAD", "GET"} <= {method for method, _ in probe.hits}


@needs_soffice
def test_cold_conversion_reaches_no_network(probe, caplog):
    convert.configure_warm(enabled=False)
    convert._confinement_logged.clear()
    with caplog.at_level("INFO", logger="mailbot.convert"):
        out = convert.convert_to_docx(linked_odt(probe.url), "odt", timeout=120)
    assert convert.sniff(out) == "docx"
    assert probe.hits == []
    assert "cold conversions: LibreOffice runs without network access" in caplog.text  # which protection is active


@needs_uno
def test_warm_conversion_reaches_no_network(probe, caplog):
    convert._confinement_logged.clear()
    convert.configure_warm(enabled=True, max_files=50, idle_seconds=0)
    try:
        with caplog.at_level("INFO", logger="mailbot.convert"):
            out = convert.convert_to_docx(linked_odt(probe.url), "odt", timeout=120)
        w = convert.warm_converter()
        assert (w.starts, w.conversions) == (1, 1)  # converted warm, not by the cold fallback
        assert w.confinement in ("netns", "userns+netns")
        # the warm soffice really lives in another network namespace than the daemon
        assert os.readlink(f"/proc/{w.soffice_pid}/ns/net") != os.readlink("/proc/self/ns/net")
    finally:
        convert.shutdown_warm()
        convert.configure_warm(enabled=False)
    assert convert.sniff(out) == "docx"
    assert probe.hits == []
    assert "warm conversions: LibreOffice runs without network access" in caplog.text


@needs_soffice
def test_each_protection_alone_blocks_the_links(probe, tmp_path):
    """Both layers hold on their own: the profile settings without a namespace, the namespace with a bare profile."""
    src = tmp_path / "r.odt"
    src.write_bytes(linked_odt(probe.url))
    env = dict(os.environ, HOME=str(tmp_path))
    # the profile alone, network available
    locked = tmp_path / "locked"
    warm_convert.write_profile_settings(locked)
    subprocess.run(soffice_command(src, locked, tmp_path / "a"), capture_output=True, timeout=180, env=env, start_new_session=True)
    assert (tmp_path / "a" / "r.docx").exists() and probe.hits == []
    # the network namespace alone (the guard as cold conversions run it), bare profile
    work = Path(warm_convert.make_workdir())
    try:
        guard = convert._guard_command(soffice_command(src, tmp_path / "bare1", tmp_path / "b"), str(work), 120)
        done = subprocess.run(guard, capture_output=True, timeout=180, env=env, start_new_session=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert done.returncode == 0 and (tmp_path / "b" / "r.docx").exists(), done.stderr
    assert convert._guard_report(done.stderr)[0] in ("netns", "userns+netns")
    assert probe.hits == []
    # control, same file and probe: neither layer, and the links are fetched
    subprocess.run(soffice_command(src, tmp_path / "bare2", tmp_path / "c"), capture_output=True, timeout=180, env=env, start_new_session=True)
    assert probe.hits


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not os.access("/usr/bin/python3", os.X_OK),
                    reason="needs root (to become an unprivileged user), setpriv and /usr/bin/python3")
def test_an_unprivileged_service_user_gets_a_network_namespace_too(probe):
    """The service runs as user `mailbot`: an unprivileged user namespace gives it the same confinement."""
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    reach = ["/usr/bin/python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {probe.port}), timeout=3)"]
    assert subprocess.run(as_nobody + reach, capture_output=True, timeout=30).returncode == 0  # control: nobody can connect
    work = tempfile.mkdtemp(prefix="mailbot-faults-")
    os.chmod(work, 0o777)
    try:
        args = {"cmd": reach, "parent": os.getpid(), "workdir": work, "timeout": 30}
        guard = as_nobody + ["/usr/bin/python3", "-I", "-S", warm_convert.__file__, "--guard", json.dumps(args)]
        done = subprocess.run(guard, capture_output=True, text=True, timeout=60, start_new_session=True, cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert '"confinement": "userns+netns"' in done.stderr, done.stderr
    assert done.returncode != 0 and "Network is unreachable" in done.stderr


# =============================================================================== 2. killed conversions


FAKE_SOFFICE = """#!{python}
# Like LibreOffice's launcher (oosplash): a child does the work ("soffice.bin") and is waited for.
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "fake-soffice.bin", *sys.argv[1:]])
with open(os.environ["FAKE_SOFFICE_PIDS"] + ".tmp", "w") as fh:
    fh.write(f"{{os.getpid()}} {{child.pid}}")
os.replace(os.environ["FAKE_SOFFICE_PIDS"] + ".tmp", os.environ["FAKE_SOFFICE_PIDS"])
child.wait()
"""

CONVERTER = "import sys; sys.path.insert(0, {root!r}); from mailbot import convert; convert.convert_to_docx({data!r}, {kind!r}, timeout=600)"


def start_converter(tmp_path: Path, *, soffice: str | None = None, data: bytes = b"{\\rtf1 x}", kind: str = "rtf"):
    """A process converting a file (a fake, never-ending LibreOffice unless ``soffice`` is the real one), with its own TMPDIR."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmpdir), FAKE_SOFFICE_PIDS=str(tmp_path / "pids"))
    if soffice is None:
        fake = tmp_path / "soffice"
        fake.write_text(FAKE_SOFFICE.format(python=sys.executable))
        fake.chmod(0o755)
        soffice = str(fake)
    env["MAILBOT_SOFFICE"] = soffice
    proc = subprocess.Popen([sys.executable, "-c", CONVERTER.format(root=str(ROOT), data=data, kind=kind)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, tmpdir, env


def workdir_of(tmpdir: Path, proc) -> Path:
    assert wait_until(lambda: list(tmpdir.glob(f"mailbot-lo-{proc.pid}-*")), 30)
    [workdir] = tmpdir.glob(f"mailbot-lo-{proc.pid}-*")
    return workdir


def fake_pids(tmp_path: Path) -> tuple[int, int]:
    assert wait_until(lambda: (tmp_path / "pids").exists(), 30)
    launcher, worker = map(int, (tmp_path / "pids").read_text().split())
    return launcher, worker


def test_a_killed_converter_takes_soffice_and_its_files_with_it(tmp_path):
    proc, tmpdir, _env = start_converter(tmp_path)
    try:
        launcher, worker = fake_pids(tmp_path)
        workdir = workdir_of(tmpdir, proc)
        guard = os.getpgid(launcher)  # the guard leads the conversion's process group (its own session)
        assert guard not in (proc.pid, launcher) and pid_alive(worker)
        assert (workdir / "profile" / "user" / "registrymodifications.xcu").exists()
    finally:
        proc.kill()  # SIGKILL mid-conversion, as in the report (`poll --once` killed 23 times)
        proc.wait()
    assert wait_until(lambda: not pid_alive(launcher) and not pid_alive(worker) and not pid_alive(guard), 10)
    assert wait_until(lambda: not workdir.exists(), 10)
    assert list(tmpdir.iterdir()) == []


def test_next_start_sweeps_what_a_conversion_killed_outright_left(tmp_path, monkeypatch):
    proc, tmpdir, env = start_converter(tmp_path)
    launcher, worker = fake_pids(tmp_path)
    workdir = workdir_of(tmpdir, proc)
    os.kill(os.getpgid(launcher), signal.SIGKILL)  # the guard and the converter killed at once: no one cleans up
    proc.kill()
    proc.wait()
    time.sleep(0.5)
    assert pid_alive(worker) and workdir.exists()  # an orphaned "soffice" and a copy of the attachment
    # the next start (`mailbot poll` here; `mailbot run` does the same first) sweeps them
    closed = SimpleNamespace(port=free_port(), ssl_port=free_port())
    cfg = write_config(tmp_path, closed, "bot@example.test", SimpleNamespace(port=free_port()))
    env.update(TEST_IMAP_PASSWORD="x", TEST_SMTP_PASSWORD="x")
    done = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg.path), "poll"], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert "removed 1 LibreOffice work directories" in done.stderr
    assert not workdir.exists()
    assert wait_until(lambda: not pid_alive(worker) and not pid_alive(launcher), 10)


def test_the_guard_keeps_the_deadline_when_no_one_else_does(tmp_path):
    """The timeout holds even if the process that started the conversion is stuck or gone: the guard kills at its own deadline."""
    work = Path(warm_convert.make_workdir())
    try:
        args = {"cmd": [sys.executable, "-c", "import time; time.sleep(600)"], "parent": os.getpid(), "workdir": str(work), "timeout": 1}
        guard = [sys.executable, "-I", "-S", warm_convert.__file__, "--guard", json.dumps(args)]
        t0 = time.monotonic()
        done = subprocess.run(guard, capture_output=True, timeout=60, start_new_session=True)
        assert done.returncode == 137 and time.monotonic() - t0 < 10
        assert not processes_mentioning("time.sleep(600)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_sweep_leaves_the_work_of_live_processes_alone(tmp_path):
    mine = Path(warm_convert.make_workdir())  # this (live) process's
    try:
        other = tmp_path / "mailbot-lo-1-999999999999-x"  # pid 1 now, but another start time: its owner is gone
        other.mkdir()
        old = tmp_path / "mailbot-lo-oldstyle"  # an older mailbot's untagged directory
        old.mkdir()
        live_copy = tmp_path / mine.name
        live_copy.mkdir()
        assert convert.sweep_conversion_temp(older_than=3600, tmpdir=tmp_path) == 1  # the dead owner's only
        assert live_copy.exists() and old.exists() and not other.exists()
        os.utime(old, (time.time() - 7200, time.time() - 7200))
        assert convert.sweep_conversion_temp(older_than=3600, tmpdir=tmp_path) == 1 and not old.exists()
    finally:
        shutil.rmtree(mine, ignore_errors=True)


@needs_soffice
def test_real_soffice_killed_mid_conversion_leaves_nothing(tmp_path):
    proc, tmpdir, _env = start_converter(tmp_path, soffice=SOFFICE, data=linked_odt("http://127.0.0.1:9"), kind="odt")
    try:
        workdir = workdir_of(tmpdir, proc)
        assert wait_until(lambda: any(_name(p) == "soffice.bin" for p in processes_mentioning(workdir.name)), 60)
        for pid in processes_mentioning(workdir.name):
            if _name(pid) == "soffice.bin":
                os.kill(pid, signal.SIGSTOP)  # hung: the conversion cannot finish before the kill
    finally:
        proc.kill()
        proc.wait()
    assert wait_until(lambda: not processes_mentioning(workdir.name), 15), processes_mentioning(workdir.name)
    assert wait_until(lambda: not workdir.exists(), 15)


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# =============================================================================== 3. the database's identity


def _archive_something(cfg) -> None:
    d = cfg.state_dir / "archive" / "ab"
    d.mkdir(parents=True, exist_ok=True)
    (d / ("ab" + "0" * 62 + ".eml")).write_bytes(b"Subject: x\r\n\r\nx\r\n")


def _remove_db(cfg) -> None:
    for suffix in ("", "-wal", "-shm"):
        cfg.db_path.with_name(cfg.db_path.name + suffix).unlink(missing_ok=True)


def test_database_identity_rules(cfg, caplog):
    first = daemon.establish_database(cfg)  # a new installation: nothing ever received
    assert daemon.db_id_file(cfg).read_text().strip() == first
    assert daemon.establish_database(cfg) == first
    _archive_something(cfg)  # killed after archiving the very first mail, before recording it: still ours
    assert daemon.establish_database(cfg) == first
    _remove_db(cfg)  # deleted: refused, and not created again
    with pytest.raises(daemon.DatabaseProblem, match="不存在.*mailbot reindex"):
        daemon.establish_database(cfg)
    assert not cfg.db_path.exists()
    store.open_db(cfg.db_path).close()  # empty (as `mailbot run`, `check` or `status` leave it): refused
    with pytest.raises(daemon.DatabaseProblem, match="新建的空数据库"):
        daemon.establish_database(cfg)
    db = store.open_db(cfg.db_path)  # a database with messages (what `reindex` writes, or a backup): taken
    with store.write_transaction(db):
        store.insert(db, "messages", {"sha256": "ab", "status": "accepted", "received_at": "2023-08-10T02:00:00+00:00",
                                      "processed_at": "2023-08-10T02:00:00+00:00"})
    db.close()
    with caplog.at_level("WARNING", logger="mailbot"):
        second = daemon.establish_database(cfg)
    assert second != first and daemon.db_id_file(cfg).read_text().strip() == second
    assert "taken as a rebuilt (reindex) or restored database" in caplog.text
    # under a running daemon, any change is refused
    db = daemon.open_watched(cfg, second)
    db.close()
    with pytest.raises(daemon.DatabaseProblem, match="被替换"):
        daemon.open_watched(cfg, first)
    _remove_db(cfg)
    with pytest.raises(daemon.DatabaseProblem, match="不见了"):
        daemon.open_watched(cfg, second)
    assert not cfg.db_path.exists()


@needs_dovecot
def test_database_deleted_under_a_running_daemon(tmp_path, dovecot, mailbox, smtp_server, make_report):
    user, pw = mailbox
    cfg = write_config(tmp_path, dovecot, user, smtp_server, extra="poll_interval_seconds = 1\noutbox_interval_seconds = 1")
    with open(cfg.path, "a", encoding="utf-8") as fh:
        fh.write('\n[notices]\nquiet_hours = ""\n')  # the daemon runs on the wall clock: alerts at any hour
    env = dict(real_clock_env(), TEST_IMAP_PASSWORD=pw, TEST_SMTP_PASSWORD="unused")
    cli = [sys.executable, "-m", "mailbot.cli", "--config", str(cfg.path)]
    units = {"mzj@xixia.example": "民政局", "sfj@xixia.example": "司法局", "xjz@xixia.example": "兴泾镇"}
    for sender in list(units)[:2]:
        dovecot.append(user, pw, mb.simple(sender=sender, subject=units[sender], attachments=[("a.docx", report(make_report, unit=units[sender]))]))

    def receipts() -> list[str]:
        return sorted(m.rcpt_tos[0] for m in smtp_server.messages if m.rcpt_tos[0] in units)

    def alerts() -> list:
        return [m for m in smtp_server.messages if "数据库" in str(m.message["Subject"])]

    log1 = tmp_path / "run1.log"
    with open(log1, "wb") as out:
        run1 = subprocess.Popen([*cli, "run"], env=env, cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: len(receipts()) == 2, 60), log1.read_text()
        _remove_db(cfg)  # the attack: mailbot.db, -wal and -shm deleted under the running daemon
        dovecot.append(user, pw, mb.simple(sender="xjz@xixia.example", subject="兴泾镇", attachments=[("c.docx", report(make_report, unit="兴泾镇"))]))
        assert wait_until(lambda: len(alerts()) == 1, 30), log1.read_text()
        time.sleep(4)  # several more cycles
    finally:
        run1.send_signal(signal.SIGTERM)
        run1.wait(timeout=60)
    text = log1.read_text()
    assert not cfg.db_path.exists()  # no fresh database, no INBOX taken again
    assert receipts() == ["mzj@xixia.example", "sfj@xixia.example"]  # nothing re-sent, the new mail not taken
    [alert] = alerts()
    assert alert.rcpt_tos == ["duchashi@xixia.example"] and "mailbot reindex" in alert.message.get_body(("plain",)).get_content()
    lines = [ln for ln in text.splitlines() if "不见了" in ln]
    assert len(lines) >= 3 and all(" ERROR " in ln for ln in lines)  # a line every cycle …
    assert "Traceback" not in text and "raised an exception" not in text  # … and never apscheduler's traceback

    # started again: refused in one line, and the alert (already mailed today) not repeated
    again = subprocess.run([*cli, "run"], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    [line] = [ln for ln in again.stderr.splitlines() if ln.startswith("错误：")]
    assert "mailbot reindex" in line and "归档" in line
    assert len(smtp_server.messages) == 3
    # the operator does what the line says: reindex, move the rebuilt database in, start again
    rebuilt = subprocess.run([*cli, "reindex"], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    _remove_db(cfg)
    os.replace(cfg.state_dir / "mailbot-reindexed.db", cfg.db_path)
    log3 = tmp_path / "run3.log"
    with open(log3, "wb") as out:
        run3 = subprocess.Popen([*cli, "run"], env=env, cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: len(receipts()) == 3, 60), log3.read_text()
        time.sleep(3)
    finally:
        run3.send_signal(signal.SIGTERM)
        run3.wait(timeout=60)
    assert receipts() == ["mzj@xixia.example", "sfj@xixia.example", "xjz@xixia.example"]  # each exactly once
    assert "taken as a rebuilt (reindex) or restored database" in log3.read_text()
    assert "Traceback" not in log3.read_text()


def test_poll_refuses_an_empty_database_next_to_the_archive_in_one_line(cfg_path, cfg):
    daemon.establish_database(cfg)
    _archive_something(cfg)
    _remove_db(cfg)
    store.open_db(cfg.db_path).close()
    done = subprocess.run([sys.executable, "-m", "mailbot.cli", "--config", str(cfg_path), "poll"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("错误：") and "mailbot reindex" in done.stderr


# =============================================================================== 4. state-directory faults


FAULTS = {
    "read-only": (lambda cfg: sqlite3.OperationalError("attempt to write a readonly database"), "只读"),
    "disk I/O": (lambda cfg: sqlite3.OperationalError("disk I/O error"), "读写出错"),
    "disk full": (lambda cfg: sqlite3.OperationalError("database or disk is full"), "磁盘已满"),
    "EROFS": (lambda cfg: OSError(errno.EROFS, "Read-only file system", str(cfg.db_path)), "无法写入状态目录"),
}
JOBS = (("poll", daemon.poll_job), ("outbox", daemon.outbox_job), ("notices", daemon.notices_job))


def _inject(monkeypatch, where: str, make) -> None:
    if where == "open":  # the database cannot even be opened (read-only directory, -shm not creatable …)
        def broken_open(path):
            raise make()
        monkeypatch.setattr(store, "open_existing_db", broken_open)
    else:  # it opens and reads, but every write fails (full disk, read-only file, failing disk)
        @contextlib.contextmanager
        def broken_write(db):
            raise make()
            yield db  # never reached: makes this a generator
        monkeypatch.setattr(store, "write_transaction", broken_write)


@needs_dovecot
@pytest.mark.parametrize("where", ["open", "write"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_state_fault_one_line_per_cycle_one_alert_per_day(live,  # noqa: F811 - the fixture
                                                         make_report, clock, monkeypatch, caplog, where, fault):
    cfg, dovecot, user, pw, smtp = live
    make, word = FAULTS[fault]
    days = [dt.datetime(2023, 8, 8, 9, 30, tzinfo=SHANGHAI), dt.datetime(2023, 8, 9, 9, 30, tzinfo=SHANGHAI)]
    clock.set(days[0].astimezone(dt.UTC))  # a reminder is due (7 days before 15 Aug): the notices job writes
    dovecot.append(user, pw, mb.simple(attachments=[("a.docx", report(make_report))]))  # the poll job has mail to record
    db_id = daemon.establish_database(cfg)
    db = store.open_db(cfg.db_path)
    with store.write_transaction(db):  # and the outbox job has a mail to send
        queue_mail(db, cfg, dedupe_key="test:pending", kind="reminder", to=["mzj@xixia.example"], subject="待发提醒",
                   template="alert", context={"text": "x", "coordinator": False})
    db.close()
    with pytest.MonkeyPatch.context() as mp:
        _inject(mp, where, lambda: make(cfg))
        for day in days:
            for cycle in range(3):
                clock.set((day + dt.timedelta(minutes=2 * cycle)).astimezone(dt.UTC))
                daemon._fault_lines.clear()  # a poll interval has passed
                caplog.clear()
                with caplog.at_level("INFO", logger="mailbot"):
                    for name, job in JOBS:
                        daemon._run_job(cfg, name, job, None, db_id)
                errors = [r for r in caplog.records if r.levelname == "ERROR"]
                assert len(errors) == 1, [r.getMessage() for r in errors]  # one line per cycle, for all three jobs
                assert word in errors[0].getMessage() and "邮件未丢失" in errors[0].getMessage()
                assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text
    mailed = smtp.wait_for(2)
    time.sleep(0.5)
    assert len(smtp.messages) == 2  # nothing else went out: no receipt, no reminder, no duplicate
    assert [m.rcpt_tos for m in mailed] == [["duchashi@xixia.example"]] * 2  # one alert per day
    assert all("服务器存储故障" in str(m.message["Subject"]) for m in mailed)
    # the fault goes away: the next cycle catches up (the report recorded, its receipt and the mail waiting sent)
    daemon._fault_lines.clear()
    for name, job in JOBS[:2]:
        daemon._run_job(cfg, name, job, None, db_id)
    got = smtp.wait_for(4)
    assert sorted(m.rcpt_tos[0] for m in got[2:]) == ["mzj@xixia.example", "mzj@xixia.example"]


def test_jobs_never_reach_apscheduler_with_an_exception(cfg, monkeypatch):
    """Under the real scheduler, a job whose database cannot be opened ends in our line, not in EVENT_JOB_ERROR."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
    from apscheduler.schedulers.background import BackgroundScheduler

    db_id = daemon.establish_database(cfg)
    monkeypatch.setattr(store, "open_existing_db", lambda path: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error")))
    monkeypatch.setattr(daemon, "_send_direct", lambda *a: None)
    events, done = [], threading.Event()

    def listener(event):
        events.append(event.code)
        if len(events) == len(JOBS):
            done.set()

    scheduler = BackgroundScheduler()
    scheduler.add_listener(listener, EVENT_JOB_ERROR | EVENT_JOB_EXECUTED)
    for name, job in JOBS:
        scheduler.add_job(daemon._run_job, args=(cfg, name, job, None, db_id), id=name)
    scheduler.start()
    try:
        assert done.wait(30)
    finally:
        scheduler.shutdown()
    assert events == [EVENT_JOB_EXECUTED] * len(JOBS)


def test_daemon_starting_on_a_broken_state_directory_keeps_running_and_says_so(cfg, monkeypatch, caplog):
    """A read-only or full state directory at start-up: one line and one alert, and the jobs resume once it is fixed."""
    known = daemon.establish_database(cfg)
    sent = []
    monkeypatch.setattr(daemon, "_send_direct", lambda cfg, key, subject, text: sent.append((key, subject)))
    monkeypatch.setattr(daemon, "_direct_alert", _office_hours(daemon._direct_alert))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store, "open_existing_db", lambda path: (_ for _ in ()).throw(sqlite3.OperationalError("unable to open database file")))
        with caplog.at_level("INFO", logger="mailbot"):
            assert daemon._start_database(cfg) == known  # the sidecar says which database belongs here
            daemon._run_job(cfg, "poll", daemon.poll_job, None, known)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "无法打开数据库" in errors[0].getMessage() and not any(r.exc_info for r in caplog.records)
    assert [subject for _key, subject in sent] == ["【台账机器人】服务器存储故障，需要处理"]
    db = daemon.open_watched(cfg, known)  # fixed: the same identity, the jobs work again
    db.close()


def _office_hours(real):
    def at_ten(cfg, key, subject, text, now, **kw):
        ten = dt.datetime.combine(dt.date(2023, 8, 8), dt.time(10), SHANGHAI)
        return real(cfg, key, subject, text, ten, **kw)
    return at_ten


def test_file_errors_are_told_apart_from_network_errors(cfg):
    import ssl

    assert daemon._is_file_error(OSError(errno.ENOSPC, "No space left on device"))
    assert daemon._is_file_error(PermissionError(errno.EACCES, "Permission denied", str(cfg.state_dir / "x")))
    assert not daemon._is_file_error(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER]"))  # errno 1 is OpenSSL's, not EPERM
    assert not daemon._is_file_error(ssl.SSLError(5, "EOF occurred in violation of protocol"))
    assert not daemon._is_file_error(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert daemon.state_fault_text(cfg, ValueError("x")) is None
