"""The warm LibreOffice (mailbot.warm_convert, convert.configure_warm) against the real soffice.

What must hold: output parses like the original; each conversion has a deadline
and a hung soffice is killed; a crashed one is replaced and the file converted
cold; the worker is replaced after K files and stopped when idle; its profile is
private; nothing listens on a network port; nothing survives a daemon killed
hard; without UNO everything still converts, cold.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, needs_soffice
from mailbot import convert
from mailbot.config import load_config
from mailbot.forms import render_form
from mailbot.reports import parse_document
from mailbot.warm_convert import WarmBusy, WarmConverter, WarmTimeout, find_uno_python, group_processes, pid_alive

SOFFICE = convert.soffice_path()
pytestmark = [
    needs_soffice,
    pytest.mark.skipif(SOFFICE is None or find_uno_python(SOFFICE) is None, reason="no Python with uno (python3-uno)"),
]

UNIT, CONTACT, PHONE = "民政局", "张三", "0951-1234567"
FILTERS = {"odt": "writer8", "doc": "MS Word 97", "rtf": "Rich Text Format"}


@pytest.fixture(scope="module")
def cfg():
    return load_config(ROOT / "config.toml")


@pytest.fixture(scope="module")
def gen():
    """One warm converter for the module (never idles out on its own)."""
    w = WarmConverter(SOFFICE, idle_seconds=0)
    yield w
    w.close()
    assert not w.processes()


@pytest.fixture(scope="module")
def original(cfg, tmp_path_factory) -> Path:
    progress = {t.number: f"第{t.number}项已落实。" for t in cfg.ledger.tasks}
    path = tmp_path_factory.mktemp("warm") / "report.docx"
    path.write_bytes(render_form(cfg, UNIT, progress=progress, contact=CONTACT, phone=PHONE))
    return path


@pytest.fixture(scope="module")
def legacy(gen, original) -> dict[str, bytes]:
    """The report saved by LibreOffice as .odt, .doc (from that .odt: docx→doc flattens the table) and .rtf."""
    d = original.parent
    gen.convert_file(str(original), str(d / "r.odt"), 120, FILTERS["odt"])
    gen.convert_file(str(d / "r.odt"), str(d / "r.doc"), 120, FILTERS["doc"])
    gen.convert_file(str(original), str(d / "r.rtf"), 120, FILTERS["rtf"])
    return {k: (d / f"r.{k}").read_bytes() for k in ("odt", "doc", "rtf")}


@pytest.fixture(scope="module")
def warm_on():
    """convert_to_docx as in the daemon: warm (one converter for the module, started by its first file)."""
    convert.configure_warm(enabled=True, max_files=50, idle_seconds=0)
    yield
    convert.shutdown_warm()
    convert.configure_warm(enabled=False)


def essentials(data: bytes, cfg) -> tuple:
    d = parse_document(data, cfg.ledger, cfg.roster).as_dict()
    return d["unit"], d["contact"], d["phone"], d["entries"]


def wait_gone(pgid: int, seconds: float = 10) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not group_processes(pgid):
            return True
        time.sleep(0.1)
    return False


def listening_inet_inodes() -> set[str]:
    inodes = set()
    for name in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9:
                inodes.add(fields[9])
    return inodes


# --------------------------------------------------------------------------- the warm path works


def test_daemon_path_converts_each_kind_warm(warm_on, legacy, original, cfg):
    want = essentials(original.read_bytes(), cfg)
    for kind in ("doc", "odt", "rtf"):
        out = convert.convert_to_docx(legacy[kind], kind)
        assert convert.sniff(out) == "docx"
        assert essentials(out, cfg) == want, kind
    w = convert.warm_converter()
    assert (w.starts, w.conversions) == (1, 3)  # really warm: one soffice, no cold fallback


def test_soffice_killed_mid_conversion_is_retried_cold(warm_on, legacy, original, cfg, caplog):
    convert.convert_to_docx(legacy["odt"], "odt")  # running (already, after the test above)
    w = convert.warm_converter()
    group, pid = w._proc.pid, w.soffice_pid
    os.kill(pid, signal.SIGSTOP)  # so the next conversion is surely under way when it dies

    def kill_later():
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill_later).start()
    with caplog.at_level("WARNING", logger="mailbot.convert"):
        out = convert.convert_to_docx(legacy["doc"], "doc", timeout=60)
    assert essentials(out, cfg) == essentials(original.read_bytes(), cfg)
    assert "converting it cold" in caplog.text
    assert wait_gone(group)
    assert not w.running  # the next conversion starts a new one


def test_private_profile_and_no_network_port(gen, legacy):
    procs = gen.processes()
    soffice = [p for p in procs if p["name"] == "soffice.bin"]
    assert len(soffice) == 1
    pid = soffice[0]["pid"]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    profile = [a for a in cmdline if a.startswith(b"-env:UserInstallation=")]
    assert len(profile) == 1 and b"mailbot-lo-warm-" in profile[0], cmdline
    assert any(a.startswith(b"--accept=pipe,name=mailbot_") for a in cmdline), cmdline
    sockets = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
               if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    assert sockets and not sockets & listening_inet_inodes()


# --------------------------------------------------------------------------- failures


def test_crashed_soffice_is_replaced(gen, legacy, tmp_path):
    gen.convert_file(_src(tmp_path, legacy, "odt"), str(tmp_path / "a.docx"), 120)
    old_group, starts, sockets = gen._proc.pid, gen.starts, list(gen._sockets)
    assert any("SingleOfficeIPC" in p for p in sockets) and any("_mailbot_" in p for p in sockets), sockets
    os.kill(gen.soffice_pid, signal.SIGKILL)  # crashes while idle...
    end = time.monotonic() + 5
    while pid_alive(gen.soffice_pid) and time.monotonic() < end:
        time.sleep(0.05)
    gen.convert_file(_src(tmp_path, legacy, "doc"), str(tmp_path / "b.docx"), 120)  # ...is noticed before use
    assert (tmp_path / "b.docx").stat().st_size > 0
    assert gen.starts == starts + 1
    assert wait_gone(old_group)
    assert not any(os.path.exists(p) for p in sockets)  # no stale socket files left in /tmp


def test_hung_soffice_times_out_and_is_killed(gen, legacy, tmp_path):
    gen.convert_file(_src(tmp_path, legacy, "odt"), str(tmp_path / "a.docx"), 120)
    group, pid = gen._proc.pid, gen.soffice_pid
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    with pytest.raises(WarmTimeout):
        gen.convert_file(_src(tmp_path, legacy, "doc"), str(tmp_path / "b.docx"), 2)
    assert time.monotonic() - t0 < 8
    assert not gen.running and wait_gone(group)  # the next conversion starts a fresh one (next test)


def test_worker_replaced_after_k_files_and_stopped_when_idle(gen, legacy, tmp_path):
    gen.convert_file(_src(tmp_path, legacy, "rtf"), str(tmp_path / "k.docx"), 120)  # surely running
    gen.max_conversions, starts = gen._count + 1, gen.starts  # one more file for this soffice
    dirs = []
    try:
        for i in range(2):
            gen.convert_file(_src(tmp_path, legacy, "rtf"), str(tmp_path / f"k{i}.docx"), 120)
            dirs.append(gen._workdir)
    finally:
        gen.max_conversions = 50
    assert gen.starts == starts + 1
    assert dirs[0] != dirs[1] and not os.path.exists(dirs[0])  # replaced, old profile removed
    group = gen._proc.pid
    gen.idle_seconds = 0.5
    try:
        gen.convert_file(_src(tmp_path, legacy, "rtf"), str(tmp_path / "idle.docx"), 120)
        time.sleep(1.5)
        assert not gen.running and wait_gone(group) and not os.path.exists(dirs[1])
    finally:
        gen.idle_seconds = 0


def test_second_thread_does_not_wait_forever(gen, legacy, tmp_path):
    gen.busy_wait = 0.2
    gen._lock.acquire()
    try:
        with pytest.raises(WarmBusy):
            gen.convert_file(_src(tmp_path, legacy, "rtf"), str(tmp_path / "x.docx"), 120)
    finally:
        gen._lock.release()
        gen.busy_wait = 15


def test_nothing_survives_a_daemon_killed_hard(legacy, tmp_path):
    src = _src(tmp_path, legacy, "odt")
    code = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from mailbot.warm_convert import WarmConverter\n"
        "w = WarmConverter(%r, idle_seconds=0)\n"
        "w.convert_file(%r, %r, 120)\n"
        "print(w._proc.pid, w._workdir, *w._sockets, flush=True)\n"
        "time.sleep(120)\n"
    ) % (str(ROOT), SOFFICE, src, str(tmp_path / "o.docx"))
    daemon = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        group, workdir, *sockets = daemon.stdout.readline().split()
        group = int(group)
        assert any(p["name"] == "soffice.bin" for p in group_processes(group))
    finally:
        daemon.kill()
        daemon.wait()
    assert wait_gone(group, 10)  # the helper's guard took soffice down
    assert sockets and not any(os.path.exists(p) for p in sockets)
    assert not os.path.exists(workdir)  # and removed the profile


# --------------------------------------------------------------------------- fallback and settings


def test_without_uno_everything_converts_cold(monkeypatch, warm_on, legacy, original, cfg):
    monkeypatch.setenv("MAILBOT_UNO_PYTHON", sys.executable)  # the venv's python: no uno under -I
    convert.configure_warm(enabled=True, max_files=50, idle_seconds=1)  # a new converter, which probes again
    try:
        out = convert.convert_to_docx(legacy["doc"], "doc")
        assert essentials(out, cfg) == essentials(original.read_bytes(), cfg)
        w = convert.warm_converter()
        assert w.disabled and "uno" in w.disabled and w.starts == 0
        assert convert._warm_converter(SOFFICE) is None  # later files go straight to cold
    finally:
        convert.configure_warm(enabled=True, max_files=50, idle_seconds=0)


def test_configure_warm_reads_config_defensively():
    try:
        convert.configure_warm(SimpleNamespace(bot={}))
        assert convert._warm_settings == {"enabled": False, "max_files": 50, "idle_seconds": 300.0}
        convert.configure_warm(SimpleNamespace(bot={"warm_conversion": True, "warm_conversion_max_files": "x", "warm_conversion_idle_seconds": -1}))
        assert convert._warm_settings == {"enabled": True, "max_files": 50, "idle_seconds": 300.0}
        convert.configure_warm(SimpleNamespace(bot={"warm_conversion": True, "warm_conversion_max_files": 7, "warm_conversion_idle_seconds": 60}))
        assert convert._warm_settings == {"enabled": True, "max_files": 7, "idle_seconds": 60.0}
        convert.configure_warm(object())  # no .bot at all
        assert convert._warm_settings["enabled"] is False
    finally:
        convert.configure_warm(enabled=False)


def _src(tmp_path: Path, legacy: dict[str, bytes], kind: str) -> str:
    path = tmp_path / f"in.{kind}"
    path.write_bytes(legacy[kind])
    return str(path)
