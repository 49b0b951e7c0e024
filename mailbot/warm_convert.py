"""A warm LibreOffice: one soffice kept running between .doc/.wps/.odt/.rtf → .docx conversions.

Starting LibreOffice costs seconds per file; a running one converts a report in
well under a second. ``WarmConverter`` keeps one soffice alive between
conversions, safely:

* Two processes in a session (process group) of their own: a small helper (this
  file run with ``--serve`` by a Python that can ``import uno``: the system
  python3 on Debian, or LibreOffice's bundled one) and the soffice it starts.
  The daemon never imports UNO itself; it talks to the helper over the helper's
  stdin/stdout (one JSON object a line).
* soffice listens only on a UNO *pipe* (a Unix socket, /tmp/OSL_PIPE_<uid>_<random>,
  which only its owner can connect to), never on a network port.
* Each soffice gets a fresh private profile directory (and HOME), removed when it
  stops; the user's profile is never used. The profile blocks linked content
  (``write_profile_settings``) and the helper, with its soffice, runs in a network
  namespace of its own (``confine_network``): a document cannot reach any address.
* Every conversion has a deadline: when it passes, the whole process group is
  killed (SIGKILL) and ``WarmTimeout`` raised. A soffice that crashed, or failed
  on a file, is noticed (``WarmFailed``) and its group killed; the next conversion
  starts a new one.
* The worker is replaced after ``max_conversions`` conversions (bounding leaks)
  and stopped after ``idle_seconds`` without work (no memory held between deadlines).
* The helper kills its group when its parent goes away (stdin closed or
  re-parented), so a daemon killed hard leaves no soffice behind.

Callers (mailbot.convert) retry cold on any ``WarmError``. This file must stay
importable by a bare system Python (stdlib only, no mailbot imports): it is also
the helper's program, and the guard (``--guard``) of every cold conversion.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

DOCX_FILTER = "MS Word 2007 XML"
PROBE_TIMEOUT = 30.0
START_TIMEOUT = 60.0  # soffice's start (seconds normally); a conversion's own deadline may cut it shorter
STOP_GRACE = 5.0


class WarmError(Exception):
    """The warm path could not convert this file (the caller converts cold instead)."""


class WarmUnavailable(WarmError):
    """No Python here can import uno (or the warm path is disabled after repeated start failures)."""


class WarmTimeout(WarmError):
    """The conversion (or soffice's start) passed its deadline; the worker was killed."""


class WarmFailed(WarmError):
    """LibreOffice answered with an error, or the worker died."""


class WarmBusy(WarmError):
    """Another thread held the worker for too long."""


# --- finding a Python with UNO ------------------------------------------------------------

_probe_lock = threading.Lock()
_probe_cache: dict[tuple, str | None] = {}


def uno_python_candidates(soffice: str | None) -> list[str]:
    """Interpreters that may import uno: $MAILBOT_UNO_PYTHON alone when set; else LibreOffice's own, then the system's."""
    configured = os.environ.get("MAILBOT_UNO_PYTHON")
    if configured:
        return [configured]
    found: list[str] = []
    if soffice:
        program = os.path.dirname(os.path.realpath(soffice))
        found.append(os.path.join(program, "python"))  # upstream LibreOffice builds bundle one
    found += ["/usr/bin/python3", shutil.which("python3") or ""]
    out: list[str] = []
    for p in found:
        if p and p not in out and os.path.isfile(p) and os.access(p, os.X_OK):
            out.append(p)
    return out


def find_uno_python(soffice: str | None) -> str | None:
    """The first candidate for which ``python -I -c 'import uno'`` works; cached per process."""
    candidates = tuple(uno_python_candidates(soffice))
    with _probe_lock:
        if candidates in _probe_cache:
            return _probe_cache[candidates]
        chosen = None
        for py in candidates:
            try:
                ok = subprocess.run(
                    [py, "-I", "-c", "import uno"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=PROBE_TIMEOUT,
                ).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
            if ok:
                chosen = py
                break
        _probe_cache[candidates] = chosen
        return chosen


# --- the daemon's side --------------------------------------------------------------------


class WarmConverter:
    """One warm soffice (behind one helper), used by one conversion at a time.

    Thread-safe: a second thread waits up to ``busy_wait`` seconds for the worker,
    then gets ``WarmBusy`` (and converts cold, in parallel, as before).
    """

    def __init__(
        self,
        soffice: str,
        *,
        python: str | None = None,
        max_conversions: int = 50,
        idle_seconds: float = 300,
        busy_wait: float = 15,
        max_start_failures: int = 3,
    ):
        self.soffice = soffice
        self.python = python
        self.max_conversions = max(1, int(max_conversions))
        self.idle_seconds = float(idle_seconds)
        self.busy_wait = float(busy_wait)
        self.max_start_failures = max_start_failures
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._workdir: str | None = None
        self._pipe_name: str | None = None
        self._sockets: list[str] = []
        self._buf = b""
        self._count = 0
        self._start_failures = 0
        self._disabled: str | None = None
        self._idle_timer: threading.Timer | None = None
        self._seq = 0
        # Figures for logs, the benchmark and the tests.
        self.starts = 0
        self.conversions = 0
        self.soffice_pid: int | None = None
        self.confinement: str | None = None  # how the running soffice is kept off the network (see confine_network)

    # -- public -------------------------------------------------------------------------------

    @property
    def disabled(self) -> str | None:
        """Why the warm path is off for good in this process (None while it may be used)."""
        return self._disabled

    def convert_file(self, src: str, dst: str, timeout: float, filter_name: str = DOCX_FILTER) -> None:
        """Convert ``src`` (any type LibreOffice detects) to ``dst`` with the export filter; raise WarmError."""
        if self._disabled:
            raise WarmUnavailable(self._disabled)
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(0.0, min(self.busy_wait, timeout))):
            raise WarmBusy("the warm LibreOffice is busy with another file")
        try:
            self._cancel_idle_timer()
            if self._proc is not None and (
                self._proc.poll() is not None
                or (self.soffice_pid and not pid_alive(self.soffice_pid))
                or self._count >= self.max_conversions
            ):
                self._stop_locked()  # died while idle, or served its share: a fresh one (and profile)
            if self._proc is None:
                self._start_locked(deadline)
            self._seq += 1
            reply = self._request({"op": "convert", "id": self._seq, "src": src, "dst": dst, "filter": filter_name}, deadline)
            self._count += 1
            self.conversions += 1
            if not reply.get("ok") or not os.path.exists(dst) or os.path.getsize(dst) == 0:
                # A file LibreOffice choked on may have left it in any state (or dead): the
                # next conversion gets a fresh soffice and profile.
                self._stop_locked()
                raise WarmFailed(str(reply.get("error") or "LibreOffice wrote no output"))
        finally:
            self._arm_idle_timer()
            self._lock.release()

    def stop(self) -> None:
        """Stop the worker (politely, then by force) and remove its profile; the next conversion starts a new one."""
        with self._lock:
            self._cancel_idle_timer()
            self._stop_locked()

    def close(self) -> None:
        """Stop for good: later conversions raise WarmUnavailable."""
        with self._lock:
            self._disabled = "closed"
            self._cancel_idle_timer()
            self._stop_locked()

    def processes(self) -> list[dict]:
        """The worker's live processes: pid, name, VmRSS and VmHWM (peak) in KiB."""
        proc = self._proc
        return group_processes(proc.pid) if proc is not None else []

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- the worker's life ----------------------------------------------------------------------

    def _start_locked(self, deadline: float) -> None:
        if self.python is None:
            self.python = find_uno_python(self.soffice)
            if self.python is None:
                self._disabled = "no Python here can import uno (install python3-uno, or set MAILBOT_UNO_PYTHON)"
                raise WarmUnavailable(self._disabled)
        self._workdir = make_workdir("warm")
        self._pipe_name = "mailbot_" + uuid.uuid4().hex
        args = {"soffice": self.soffice, "profile": os.path.join(self._workdir, "profile"), "pipe": self._pipe_name, "home": self._workdir}
        log = open(os.path.join(self._workdir, "helper.log"), "wb")
        try:
            self._proc = subprocess.Popen(
                [self.python, "-I", os.path.abspath(__file__), "--serve", json.dumps(args)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=self._workdir,
                env=dict(os.environ, HOME=self._workdir), start_new_session=True,
            )
        except OSError as err:
            self._cleanup_dir()
            self._note_start_failure()
            raise WarmFailed(f"cannot start the UNO helper: {err}") from err
        finally:
            log.close()
        self._buf = b""
        self._count = 0
        self.starts += 1
        try:
            hello = self._read_reply(min(deadline, time.monotonic() + START_TIMEOUT))
        except WarmError:
            self._note_start_failure()
            raise
        if not hello.get("ready"):
            self._kill_locked()
            self._note_start_failure()
            raise WarmFailed(f"LibreOffice did not start: {hello.get('error') or hello}")
        self._start_failures = 0
        self.confinement = str(hello.get("confinement") or "unknown")
        self.soffice_pid = hello.get("soffice_pid")
        self._sockets = [str(p) for p in hello.get("sockets") or []]

    def _note_start_failure(self) -> None:
        self._start_failures += 1
        if self._start_failures >= self.max_start_failures:
            self._disabled = f"the warm LibreOffice failed to start {self._start_failures} times in a row"

    def _stop_locked(self) -> None:
        proc = self._proc
        if proc is None:
            self._cleanup_dir()
            return
        if proc.poll() is None:
            try:
                self._send({"op": "stop"})
                proc.wait(timeout=STOP_GRACE)
            except (WarmError, OSError, subprocess.TimeoutExpired):
                pass
        self._kill_locked()

    def _kill_locked(self) -> None:
        """SIGKILL the whole group (helper, oosplash, soffice.bin), reap, forget, clean up."""
        proc = self._proc
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        self._proc = None
        self.soffice_pid = None
        self._buf = b""
        # A killed soffice leaves its socket files in /tmp: remove ours (and only ours).
        remove_sockets(self._sockets + ([osl_pipe_path(self._pipe_name)] if self._pipe_name else []))
        self._sockets = []
        self._pipe_name = None
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # -- idle timer -------------------------------------------------------------------------

    def _arm_idle_timer(self) -> None:
        if self._proc is None or self.idle_seconds <= 0:
            return
        timer = threading.Timer(self.idle_seconds, self._idle_stop)
        timer.daemon = True
        timer.name = "warm-soffice-idle"
        self._idle_timer = timer
        timer.start()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_stop(self) -> None:
        if self._lock.acquire(blocking=False):  # in use again: that conversion re-arms the timer
            try:
                if self._idle_timer is threading.current_thread():
                    self._idle_timer = None
                    self._stop_locked()
            finally:
                self._lock.release()

    # -- talking to the helper ----------------------------------------------------------------

    def _send(self, obj: dict) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise WarmFailed("the worker is not running")
        try:
            proc.stdin.write(json.dumps(obj).encode() + b"\n")
            proc.stdin.flush()
        except (OSError, ValueError) as err:
            self._kill_locked()
            raise WarmFailed(f"the worker went away ({err})") from err

    def _request(self, obj: dict, deadline: float) -> dict:
        self._send(obj)
        reply = self._read_reply(deadline)
        if reply.get("id") != obj.get("id"):
            self._kill_locked()
            raise WarmFailed(f"the worker answered out of turn: {reply}")
        return reply

    def _read_reply(self, deadline: float) -> dict:
        """One JSON line from the helper before ``deadline``; kill the group on timeout or EOF."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill_locked()
                raise WarmTimeout("LibreOffice did not answer in time: killed")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                tail = self._helper_log_tail()
                self._kill_locked()
                raise WarmFailed("the worker died" + (f": {tail}" if tail else ""))
            self._buf += chunk
            if len(self._buf) > 1024 * 1024:
                self._kill_locked()
                raise WarmFailed("the worker sent garbage")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            self._kill_locked()
            raise WarmFailed("the worker sent garbage")
        return reply

    def _helper_log_tail(self) -> str:
        try:
            with open(os.path.join(self._workdir or "", "helper.log"), "rb") as fh:
                lines = fh.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
            return lines[-1] if lines else ""
        except OSError:
            return ""


def osl_pipe_path(name: str) -> str:
    """Where LibreOffice puts the Unix socket of ``--accept=pipe,name=NAME`` (always /tmp)."""
    return f"/tmp/OSL_PIPE_{os.getuid()}_{name}"


def socket_paths(pid: int) -> list[str]:
    """The /tmp/OSL_PIPE_* Unix sockets process ``pid`` listens on (its UNO pipe and its single-instance pipe)."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open("/proc/net/unix") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return []
    prefix = f"/tmp/OSL_PIPE_{os.getuid()}_"
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and fields[7].startswith(prefix) and fields[7] not in out:
            out.append(fields[7])
    return out


def remove_sockets(paths) -> None:
    prefix = f"/tmp/OSL_PIPE_{os.getuid()}_"
    for path in paths:
        if path and path.startswith(prefix) and "/" not in path[len(prefix):]:
            try:
                os.unlink(path)
            except OSError:
                pass


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")
    except (OSError, ValueError):
        return False


def group_processes(pgid: int) -> list[dict]:
    """Live processes of process group ``pgid`` from /proc (Linux), with VmRSS and VmHWM in KiB."""
    out = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            info = {"pid": pid, "name": stat[stat.index("(") + 1: stat.rindex(")")], "rss_kb": 0, "hwm_kb": 0}
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        info["rss_kb"] = int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        info["hwm_kb"] = int(line.split()[1])
            out.append(info)
        except (OSError, ValueError, IndexError):
            continue
    return out


# --- the helper (runs under a Python that has uno) -----------------------------------------


def _serve(args: dict) -> int:  # pragma: no cover - runs in the helper process
    # The protocol gets its own copy of stdout; fd 1 goes to the log, so a stray print
    # (ours, uno's) cannot corrupt a reply.
    confinement = confine_network()  # first: unsharing a user namespace needs a single-threaded process
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj).encode() + b"\n")
        out.flush()

    parent = os.getppid()
    watched: list[int] = []  # soffice.bin, once known
    sockets: list[str] = [osl_pipe_path(args["pipe"])]

    def teardown() -> None:
        # Kill the rest of the group, remove what soffice leaves behind, then die ourselves.
        me = os.getpid()
        for info in group_processes(os.getpgid(0)):
            if info["pid"] != me:
                try:
                    os.kill(info["pid"], signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.2)
        remove_sockets(sockets)
        if os.getppid() != parent:  # nobody is left to clean up after us
            shutil.rmtree(args["home"], ignore_errors=True)
        os.killpg(0, signal.SIGKILL)

    def guard() -> None:
        # The daemon died (even by SIGKILL, mid-conversion), or soffice did: take the whole
        # group down, so the daemon sees a dead worker and starts a new one.
        while True:
            time.sleep(0.5)
            if os.getppid() != parent or (watched and not pid_alive(watched[0])):
                teardown()

    threading.Thread(target=guard, daemon=True).start()

    try:
        import uno
        from com.sun.star.beans import PropertyValue
    except Exception as err:  # noqa: BLE001
        reply({"ready": False, "error": f"import uno failed: {err}"})
        return 2

    def props(**kw):
        items = []
        for name, value in kw.items():
            p = PropertyValue()
            p.Name, p.Value = name, value
            items.append(p)
        return tuple(items)

    profile = args["profile"]
    write_profile_settings(profile)
    cmd = [
        args["soffice"], "--headless", "--invisible", "--norestore", "--nologo", "--nolockcheck", "--nodefault",
        "-env:UserInstallation=" + uno.systemPathToFileUrl(profile),
        "--accept=pipe,name=%s;urp;StarOffice.ComponentContext" % args["pipe"],
    ]
    soffice = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, HOME=args["home"]),
    )
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    desktop = None
    last = None
    while soffice.poll() is None:
        try:
            ctx = resolver.resolve("uno:pipe,name=%s;urp;StarOffice.ComponentContext" % args["pipe"])
            desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
            break
        except Exception as err:  # noqa: BLE001 - NoConnectException until soffice listens
            last = err
            time.sleep(0.1)
    if desktop is None:
        reply({"ready": False, "error": f"soffice exited ({soffice.returncode}): {last}"})
        return 3
    soffice_bin = None
    for info in group_processes(os.getpgid(0)):
        if info["name"].startswith("soffice"):
            soffice_bin = info["pid"]
    if soffice_bin:
        watched.append(soffice_bin)
        sockets[:] = sorted(set(sockets) | set(socket_paths(soffice_bin)))
    reply({"ready": True, "soffice_pid": soffice_bin, "sockets": sockets, "confinement": confinement})

    # Never run document macros, never update links from the network, never ask anything.
    load_props = props(Hidden=True, ReadOnly=True, MacroExecutionMode=0, UpdateDocMode=0)
    for raw in sys.stdin.buffer:
        try:
            req = json.loads(raw)
        except ValueError:
            continue
        if req.get("op") == "stop":
            try:
                desktop.terminate()
            except Exception:  # noqa: BLE001
                pass
            try:
                soffice.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            return 0
        if req.get("op") != "convert":
            reply({"id": req.get("id"), "ok": False, "error": "unknown op"})
            continue
        doc = None
        try:
            doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(req["src"]), "_blank", 0, load_props)
            if doc is None:
                raise RuntimeError("LibreOffice could not load the file")
            doc.storeToURL(uno.systemPathToFileUrl(req["dst"]), props(FilterName=req.get("filter") or DOCX_FILTER, Overwrite=True))
            reply({"id": req.get("id"), "ok": True})
        except Exception as err:  # noqa: BLE001 - every failure goes back to the daemon
            dead = soffice.poll() is not None or "Disposed" in type(err).__name__ or "Binary URP bridge" in str(err)
            reply({"id": req.get("id"), "ok": False, "dead": dead, "error": f"{type(err).__name__}: {err}"[:500]})
            if dead:
                return 4
        finally:
            if doc is not None:
                try:
                    doc.close(True)
                except Exception:  # noqa: BLE001
                    try:
                        doc.dispose()
                    except Exception:  # noqa: BLE001
                        pass
    # stdin closed: the daemon is gone
    try:
        desktop.terminate()
        soffice.wait(timeout=5)
    except Exception:  # noqa: BLE001
        pass
    teardown()
    return 0


# --- confinement: no network, no linked content -------------------------------------------------

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1

# Written into every profile before LibreOffice first starts (registrymodifications.xcu, the
# user layer it reads at start-up), so that even without a network namespace a document cannot
# make it fetch anything:
# - BlockUntrustedRefererLinks: links from a document outside the trusted locations (there are
#   none) are not resolved: linked images and OLE objects (LibreOffice ≥ 4.2). It does not cover
#   everything: LibreOffice 7.4 still fetches a paragraph's linked background image, hence
# - a proxy for http, https and ftp that does not exist (127.0.0.1 port 1: refused at once, no
#   DNS lookup), with no exceptions: whatever still asks for a URL gets nothing;
# - Writer's "update links when loading": 0 = never (css.document.LinkUpdateModes.NEVER);
# - macros never run (security level 3 = very high, and execution disabled).
# tests/test_faults.py::test_each_protection_alone_blocks_the_links checks them without the namespace.
_NO_PROXY_HERE = "127.0.0.1"
PROFILE_SETTINGS = (
    ("/org.openoffice.Office.Common/Security/Scripting", "BlockUntrustedRefererLinks", "true"),
    ("/org.openoffice.Office.Common/Security/Scripting", "MacroSecurityLevel", "3"),
    ("/org.openoffice.Office.Common/Security/Scripting", "DisableMacrosExecution", "true"),
    ("/org.openoffice.Office.Writer/Content/Update", "Link", "0"),
    ("/org.openoffice.Inet/Settings", "ooInetProxyType", "1"),  # 1 = manual
    ("/org.openoffice.Inet/Settings", "ooInetNoProxy", ""),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyName", _NO_PROXY_HERE),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyPort", "1"),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyName", _NO_PROXY_HERE),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyPort", "1"),
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyName", _NO_PROXY_HERE),
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyPort", "1"),
)


def write_profile_settings(profile: str | os.PathLike) -> str:
    """Create a LibreOffice user installation at ``profile`` whose settings block linked content; return the .xcu path."""
    user = os.path.join(os.fspath(profile), "user")
    os.makedirs(user, exist_ok=True)
    items = "".join(
        f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse">' + (f"<value>{value}</value>" if value else "<value/>") + "</prop></item>\n"
        for path, name, value in PROFILE_SETTINGS
    )
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n' + items + "</oor:items>\n"
    )
    path = os.path.join(user, "registrymodifications.xcu")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def confine_network() -> str:
    """Move this process (and all it starts later) into a new, empty network namespace.

    Must run while the process has one thread. Returns what was achieved:
    "netns" (we had CAP_SYS_ADMIN: root), "userns+netns" (an unprivileged user maps
    itself into a user namespace of its own, which allows the network namespace), or
    "none: <why>". The new namespace has only a loopback device that is down: no
    address at all, 127.0.0.1 included, can be reached; Unix sockets in the file
    system (the UNO pipe) still work.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        unshare = libc.unshare
    except (OSError, AttributeError) as err:
        return f"none: no unshare() here ({err})"
    if unshare(CLONE_NEWNET) == 0:
        return "netns"
    first = os.strerror(ctypes.get_errno())
    uid, gid = os.getuid(), os.getgid()
    if unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return f"none: unshare(CLONE_NEWNET) {first}; with a user namespace: {os.strerror(ctypes.get_errno())}"
    try:  # keep our own uid/gid inside (files, /tmp/OSL_PIPE_<uid>_* names and signals stay as they were)
        for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"{uid} {uid} 1"), ("/proc/self/gid_map", f"{gid} {gid} 1")):
            with open(path, "w") as fh:
                fh.write(text)
    except OSError:
        pass  # unmapped ids show as "nobody" inside; the network is gone all the same
    return "userns+netns"


def set_parent_death_signal(signum: int) -> bool:
    """Linux: ``signum`` is delivered to this process when the thread that started it ends."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# --- work directories, named after their owner ------------------------------------------------

WORKDIR_PREFIX = "mailbot-lo-"
_OWNER_RE = re.compile(r"^mailbot-lo-(?:warm-)?(\d+)-(\d+)-")


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot, /proc/PID/stat field 22), None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def make_workdir(kind: str = "") -> str:
    """A private temporary directory named mailbot-lo-[KIND-]<pid>-<start time>-<random>.

    The owner's pid and start time in the name let a later process tell a leftover
    (its owner died, e.g. SIGKILLed mid-conversion) from a directory in use, even if
    the pid was reused (``mailbot.convert.sweep_conversion_temp``)."""
    pid = os.getpid()
    start = process_start_time(pid) or 0
    return tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{kind + '-' if kind else ''}{pid}-{start}-")


def workdir_owner(name: str) -> tuple[int, int] | None:
    """(pid, start time) of the process that made work directory ``name``; None for an older, untagged name."""
    m = _OWNER_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def kill_processes_using(directory: str) -> list[int]:
    """SIGKILL our own processes whose command line or working directory is inside ``directory`` (a stray soffice)."""
    directory = os.path.realpath(directory)
    me, uid, killed = os.getpid(), os.geteuid(), []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return killed
    needle = os.path.basename(directory).encode()
    for pid in pids:
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                cwd = ""
            if needle in cmdline or cwd == directory or cwd.startswith(directory + "/"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except (OSError, ValueError):
            continue
    end = time.monotonic() + 3
    while killed and time.monotonic() < end and any(pid_alive(p) for p in killed):
        time.sleep(0.05)
    return killed


# --- the guard of a cold conversion ---------------------------------------------------------------

GUARD_TAG = "mailbot-guard: "


class _ParentGone(BaseException):
    pass


def _guard(args: dict) -> int:  # pragma: no cover - runs in the guard process
    """Run one cold LibreOffice conversion so that it cannot reach the network and cannot outlive us.

    Started by mailbot.convert in a session of its own (so we lead the process group
    soffice and its children join). Reports its confinement on stderr, then runs the
    command; when the process that started us dies (even by SIGKILL: PR_SET_PDEATHSIG),
    when it sends SIGTERM, or when our own deadline passes, every process of the group is
    killed and the work directory removed: nothing is left running or on disk.
    """
    confinement = confine_network()
    parent, workdir = int(args["parent"]), args["workdir"]

    def on_term(_signum, _frame):
        raise _ParentGone()

    signal.signal(signal.SIGTERM, on_term)
    set_parent_death_signal(signal.SIGTERM)
    sys.stderr.write(GUARD_TAG + json.dumps({"confinement": confinement}) + "\n")
    sys.stderr.flush()
    rc = 1
    try:
        if os.getppid() != parent:  # died before the death signal was armed
            raise _ParentGone()
        proc = subprocess.Popen(args["cmd"], stdin=subprocess.DEVNULL)
        rc = proc.wait(timeout=float(args["timeout"]))
    except (_ParentGone, subprocess.TimeoutExpired):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        me = os.getpid()
        for info in group_processes(os.getpgid(0)):
            if info["pid"] != me:
                try:
                    os.kill(info["pid"], signal.SIGKILL)
                except OSError:
                    pass
        end = time.monotonic() + 3
        while time.monotonic() < end and any(p["pid"] != me for p in group_processes(os.getpgid(0))):
            time.sleep(0.05)
        if os.getppid() != parent:  # nobody is left to remove it
            shutil.rmtree(workdir, ignore_errors=True)
        return 137
    return rc


if __name__ == "__main__":  # pragma: no cover - the helper and the guard
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        sys.exit(_serve(json.loads(sys.argv[2])))
    if len(sys.argv) == 3 and sys.argv[1] == "--guard":
        sys.exit(_guard(json.loads(sys.argv[2])))
    sys.exit("usage: warm_convert.py --serve JSON | --guard JSON (started by mailbot, not by hand)")
