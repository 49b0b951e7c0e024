"""Parse worker processes: every analysis of a message runs in one, under a deadline and a memory cap.

DESIGN invariant 8 (bounded work): a parse is limited in wall-clock time and memory
from *outside* the parser. ``WorkerPool`` (used by `mailbox.Preparers` and by
`prepare_bounded`) keeps a few long-lived spawned processes, gives each one message
at a time and kills exactly the one that overruns its deadline (SIGKILL to its
process group and to every process it started), then starts a fresh one. Each worker
caps its own address space (RLIMIT_AS) before it reads anything, so a document that
explodes in memory fails in that worker alone. LibreOffice never runs in a worker:
a worker asks the parent to convert a legacy file (the parent's warm converter, with
its own timeout) and the worker's clock stops meanwhile.

A worker runs `intake.prepare` (archive, decode, parse; no database, no mail
templates), so it loads neither sqlite-utils, Jinja2 nor imap-tools: each worker
costs its share of memory on a small server. The parent's side below uses the
standard library only.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import wait as wait_for

log = logging.getLogger(__name__)

_CFG = None
_CONN = None  # in a worker: its end of the pipe to the parent

DEFAULT_TIMEOUT = 60  # [bot] parse_timeout_seconds
DEFAULT_MEMORY_MB = 1024  # [bot] parse_memory_mb
READY_TIMEOUT = 60  # seconds a new worker may take to start (imports on a loaded machine)
START_FAILURES = 3  # workers in a row that fail to start before the pool gives up
# A message this small may wait in a busy worker's pipe: it fits in the socket's buffer (about
# 200 KB by default), so sending it never blocks the dispatcher; a larger one waits for an idle worker.
PREFETCH_BYTES = 128 * 1024


# --- the worker's side ---------------------------------------------------------------------------------


def init(cfg, log_level: int) -> None:
    """Ctrl-C in a terminal reaches the whole process group; it is for the parent, which
    finishes the message in hand. SIGTERM keeps its default: a pool ends its workers
    with it, and the service's KillMode=mixed sends the daemon's SIGTERM to the daemon alone."""
    global _CFG
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    _CFG = cfg


def prepare(raw: bytes, kwargs: dict):
    from . import intake

    return intake.prepare(_CFG, raw, **kwargs)


def serve(conn, cfg, log_level: int, memory_mb: int) -> None:
    """A worker process (``WorkerPool``): one message at a time, until the parent says stop.

    Messages from the parent: ``("task", task, raw, kwargs)`` (the next one may arrive while this
    one runs) or ``None`` (stop). To the parent:
    ``("ready", pid)``; ``("done", task, prepared, rss_mb, peak_mb)``; ``("failed", task, code, what, peak_mb)``;
    ``("raise", task, OSError)`` (the state directory failed: the caller sees the error itself);
    ``("convert", task, kind, data, timeout)``, answered by ``("converted", docx bytes)`` or
    ``("convert_error", ReportError)``.
    """
    global _CONN
    try:
        os.setpgid(0, 0)  # a process group of its own: killed as one, with anything it started
    except OSError:
        pass
    init(cfg, log_level)
    _limit_memory(memory_mb)
    from . import intake, reports

    _CONN = conn
    reports.convert_to_docx = _convert_via_parent  # LibreOffice runs in the parent (see the module docstring)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = _PENDING.popleft() if _PENDING else conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        _tag, task, raw, kwargs = msg
        msg = None
        _Task.current = task
        out = _run(intake, task, raw, kwargs, memory_mb)
        raw = None
        try:
            conn.send(out)
        except MemoryError:
            conn.send(("failed", task, "too_complex", _memory_reason(memory_mb), _peak_mb()))
        except Exception as err:  # noqa: BLE001 - e.g. a result that does not pickle
            log.exception("cannot return the prepared message")
            conn.send(("failed", task, "internal_error", f"解析结果无法传回（{type(err).__name__}）", _peak_mb()))
        del out


class _Task:
    current = None


_PENDING: collections.deque = collections.deque()  # what the parent sent while a conversion was awaited


def _run(intake, task, raw: bytes, kwargs: dict, memory_mb: int) -> tuple:
    try:
        prepared = intake.prepare(_CFG, raw, **kwargs)
    except MemoryError:
        return ("failed", task, "too_complex", _memory_reason(memory_mb), _peak_mb())
    except OSError as err:  # the state directory (the archive): our trouble, not the message's; the parent raises it
        return ("raise", task, err)
    except Exception as err:  # noqa: BLE001 - prepare records its own failures; this is a bug
        log.exception("prepare failed")
        return ("failed", task, "internal_error", f"处理时发生内部错误（{type(err).__name__}）", _peak_mb())
    result = prepared.analysis[0] if prepared.analysis else None
    if result is not None and result.reason_code == "internal_error" and "MemoryError" in (result.reason or ""):
        # intake.prepare caught it (as any exception): it is the memory cap, and says so
        return ("failed", task, "too_complex", _memory_reason(memory_mb), _peak_mb())
    return ("done", task, prepared, _rss_mb(), _peak_mb())


def _memory_reason(memory_mb: int) -> str:
    return f"邮件处理所需内存超过上限（{memory_mb} MB），附件可能过于复杂或带有攻击性内容"


def _convert_via_parent(data: bytes, kind: str, timeout: float = 120) -> bytes:
    _CONN.send(("convert", _Task.current, kind, data, timeout))
    while True:
        reply = _CONN.recv()
        if reply is None or reply[0] == "task":  # the next message, queued ahead of the answer
            _PENDING.append(reply)
            continue
        if reply[0] == "converted":
            return reply[1]
        raise reply[1]


def _limit_memory(memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    try:
        import resource

        cap = memory_mb * 1024 * 1024
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard if hard != resource.RLIM_INFINITY else cap))
    except (ImportError, ValueError, OSError) as err:  # not Linux: the deadline still holds
        log.warning("cannot cap the parse worker's memory: %s", err)


def _rss_mb(field: str = "VmRSS:") -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _peak_mb() -> float:
    """This worker's peak RSS so far (VmHWM: since its exec, unlike ru_maxrss, which counts the parent's pages at fork)."""
    return _rss_mb("VmHWM:")


def _die_with_parent() -> None:
    """A SIGKILLed (or OOM-killed) daemon must not leave its workers behind. Linux delivers SIGKILL to this process when
    the thread that started it exits (the pool's dispatcher thread, which outlives its workers)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: an idle worker still ends on its pipe's EOF
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before prctl took effect
        os._exit(1)


# --- the parent's side -----------------------------------------------------------------------------------


class AnalysisFailed(Exception):
    """A message whose analysis did not finish: ``code`` (timeout, too_complex, internal_error)
    and ``what``, a reason in Chinese for the coordinator (see intake.prepare_failed)."""

    def __init__(self, code: str, what: str):
        super().__init__(what)
        self.code = code
        self.what = what


class PoolUnavailable(Exception):
    """No worker process could be started (a broken installation): the caller decides."""


def limits(cfg) -> tuple[float, int]:
    """(parse_timeout_seconds, parse_memory_mb) from [bot], read defensively."""
    bot = getattr(cfg, "bot", None) or {}
    timeout = bot.get("parse_timeout_seconds", DEFAULT_TIMEOUT)
    memory = bot.get("parse_memory_mb", DEFAULT_MEMORY_MB)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        timeout = DEFAULT_TIMEOUT
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 0:
        memory = DEFAULT_MEMORY_MB
    return float(timeout), memory


class _Worker:
    __slots__ = ("proc", "conn", "pid", "ready", "born", "task", "queued", "deadline", "converting", "conversions", "done", "retiring")

    def __init__(self, proc, conn):
        self.proc, self.conn, self.pid = proc, conn, proc.pid
        self.ready = False
        self.born = time.monotonic()
        self.task: _Job | None = None  # the message it works on (its deadline runs)
        self.queued: _Job | None = None  # the next one, already in its pipe (it starts when the task ends)
        self.retiring = False  # to be replaced once idle (grew too big, or hit its memory cap)
        self.deadline = 0.0
        self.converting: float | None = None  # when the parent started converting a file for it
        self.conversions = 0
        self.done = 0


class _Job:
    __slots__ = ("id", "future", "raw", "kwargs", "attempts")

    def __init__(self, job_id: int, future: Future, raw: bytes, kwargs: dict):
        self.id, self.future, self.raw, self.kwargs, self.attempts = job_id, future, raw, kwargs, 0


class WorkerPool:
    """Up to ``size`` spawned worker processes, started when there is work and kept until ``close``.

    ``submit`` returns a Future that always completes: with the prepared message, or with
    ``AnalysisFailed`` (deadline passed: the worker is killed; the worker died twice on the
    message; its memory cap was hit), ``PoolUnavailable``, or the ``OSError`` of a state
    directory that could not be written (as `intake.prepare` would raise it). One dispatcher thread owns the
    workers: it hands out messages in the order they were submitted, answers conversion
    requests (in threads of their own), enforces each message's deadline and replaces
    workers that were killed, died or grew too big. A message is retried once in a fresh
    worker when its worker died; never after a timeout (that would cost the deadline again).
    """

    def __init__(self, cfg, size: int, *, timeout: float | None = None, memory_mb: int | None = None, log_level: int | None = None):
        self.cfg = cfg
        self.size = max(1, size)
        default_timeout, default_memory = limits(cfg)
        self.timeout = default_timeout if timeout is None else timeout
        self.memory_mb = default_memory if memory_mb is None else memory_mb
        bot = getattr(cfg, "bot", None) or {}
        self.conversion_timeout = float(bot.get("conversion_timeout_seconds", 120) or 120)
        conversions = bot.get("max_conversions_per_message", 3)
        self.max_conversions = conversions if isinstance(conversions, int) and conversions > 0 else 3
        self.log_level = logging.getLogger().getEffectiveLevel() if log_level is None else log_level
        self._ctx = multiprocessing.get_context("spawn")
        self._actions: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._ids = itertools.count(1)
        self._queue: collections.deque[_Job] = collections.deque()
        self._jobs: set[_Job] = set()  # every job not yet settled: none is left waiting, whatever happens
        self._workers: list[_Worker] = []
        self._start_failures = 0
        self._broken: str | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.started = 0  # workers started, over the pool's life (tests, logs)
        self.killed = 0  # workers killed at their deadline
        self.prefetched = 0  # messages queued in a busy worker's pipe

    # -- the caller's side ------------------------------------------------------------------------
    def submit(self, raw: bytes, kwargs: dict) -> Future:
        future: Future = Future()
        job = _Job(next(self._ids), future, raw, kwargs)
        with self._lock:
            if self._closing:
                raise RuntimeError("pool closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="parse-dispatcher", daemon=True)
                self._thread.start()
        self._actions.put(("job", job))
        self._wake()
        return future

    def close(self) -> None:
        """Stop every worker (an idle one exits; a busy one is killed: nobody waits for it) and the dispatcher."""
        with self._lock:
            self._closing = True
            thread = self._thread
        if thread is not None:
            self._actions.put(("stop", None))
            self._wake()
            thread.join()
        with self._lock:  # a conversion thread may still finish later: it must not write to a reused fd
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), None, None
        for fd in fds:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def pids(self) -> list[int]:
        return [w.pid for w in list(self._workers)]

    # -- the dispatcher thread --------------------------------------------------------------------
    def _wake(self) -> None:
        with self._lock:
            if self._wake_w is None:
                return  # closed
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass  # already awake (a full pipe)

    def _run(self) -> None:
        try:
            while True:
                if self._take_actions():
                    break
                self._assign()
                self._wait_once()
                self._enforce_deadlines()
        except BaseException as err:  # noqa: BLE001 - a bug here must not leave the poll thread waiting forever
            log.exception("parse worker dispatcher failed")
            self._broken = f"dispatcher failed: {err!r}"
            self._fail_queued()
        finally:
            try:
                self._stop_workers()
            finally:
                for job in list(self._jobs):
                    self._settle(job, PoolUnavailable(self._broken or "pool closed"))

    def _take_actions(self) -> bool:
        """Apply what other threads asked for; True when the pool is to stop."""
        stop = False
        while True:
            try:
                kind, item = self._actions.get_nowait()
            except queue.Empty:
                return stop
            if kind == "job":
                self._jobs.add(item)
                self._queue.append(item)
            elif kind == "converted":
                worker, job_id, reply, elapsed = item
                if worker in self._workers and worker.task is not None and worker.task.id == job_id:
                    worker.converting = None
                    worker.deadline += elapsed  # the worker's clock stood still while the parent converted
                    if not self._send(worker, reply):
                        self._lost(worker)
            elif kind == "stop":
                stop = True

    def _next_job(self) -> _Job | None:
        """The oldest queued job still wanted (one cancelled while queued is dropped: the poll stopped)."""
        while self._queue:
            job = self._queue.popleft()
            if job.future.running() or job.future.set_running_or_notify_cancel():
                return job
            self._jobs.discard(job)
        return None

    def _assign(self) -> None:
        """Queued messages to idle workers, in order; start workers while messages wait for one; when
        every worker is busy, queue one more small message in each one's pipe, so that it goes straight
        on to it (its deadline starts then) instead of waiting for this thread."""
        while self._queue and not self._broken:
            idle = next((w for w in self._workers if w.ready and w.task is None), None)
            if idle is None:
                break
            job = self._next_job()
            if job is None:
                break
            idle.task, idle.queued = job, None
            self._started(idle)
            if not self._send(idle, ("task", job.id, job.raw, job.kwargs)):
                self._lost(idle)
        if self._broken:
            self._fail_queued()
            return
        starting = sum(1 for w in self._workers if not w.ready)
        while self._queue and len(self._workers) < self.size and starting < len(self._queue) and not self._broken:
            self._spawn()
            starting += 1
        if starting or len(self._workers) < self.size:
            return
        for w in list(self._workers):
            if not self._queue:
                break
            if w.task is None or w.queued is not None or w.converting is not None or w.retiring or len(self._queue[0].raw) > PREFETCH_BYTES:
                continue
            job = self._next_job()
            if job is None:
                break
            w.queued = job
            self.prefetched += 1
            if not self._send(w, ("task", job.id, job.raw, job.kwargs)):
                self._lost(w)

    def _started(self, w: _Worker) -> None:
        w.deadline = time.monotonic() + self.timeout
        w.conversions = 0
        w.converting = None

    def _advance(self, w: _Worker) -> None:
        """The worker's task ended and it is still healthy: on to the message in its pipe, if any."""
        w.task, w.queued = w.queued, None
        if w.task is not None:
            self._started(w)
        elif w.retiring:
            self._retire(w)

    def _spawn(self) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=serve, args=(child_conn, self.cfg, self.log_level, self.memory_mb), name="mailbot-parse", daemon=True,
        )
        try:
            proc.start()
        except OSError as err:
            parent_conn.close()
            child_conn.close()
            self._start_failed(f"cannot start a parse worker: {err}")
            return
        child_conn.close()
        self._workers.append(_Worker(proc, parent_conn))
        self.started += 1

    def _start_failed(self, why: str) -> None:
        self._start_failures += 1
        log.error("%s (%d in a row)", why, self._start_failures)
        if self._start_failures >= START_FAILURES:
            self._broken = why
            self._fail_queued()

    def _fail_queued(self) -> None:
        while self._queue:
            self._settle(self._queue.popleft(), PoolUnavailable(self._broken or "no parse worker"))

    def _settle(self, job: _Job, error: BaseException | None = None, result=None) -> None:
        """Complete a job's future (once; a cancelled one stays cancelled)."""
        self._jobs.discard(job)
        future = job.future
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def _wait_once(self) -> None:
        now = time.monotonic()
        deadlines = [w.deadline for w in self._workers if w.task is not None and w.converting is None]
        deadlines += [w.born + READY_TIMEOUT for w in self._workers if not w.ready]
        deadlines += [w.converting + 2 * self.conversion_timeout + 60 for w in self._workers if w.converting is not None]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        watched = [self._wake_r]
        for w in self._workers:
            watched += [w.conn, w.proc.sentinel]
        ready = wait_for(watched, timeout)
        if self._wake_r in ready:
            try:
                os.read(self._wake_r, 4096)
            except OSError:
                pass
        for w in list(self._workers):
            if w.conn in ready:
                self._receive(w)
        for w in list(self._workers):
            if w in self._workers and w.proc.sentinel in ready and not w.conn.poll():
                self._lost(w)

    def _receive(self, w: _Worker) -> None:
        try:
            while w in self._workers and w.conn.poll():
                msg = w.conn.recv()
                self._handle(w, msg)
        except (EOFError, OSError):
            self._lost(w)
        except Exception:  # noqa: BLE001 - a message that does not unpickle: that worker's job fails
            log.exception("unreadable message from parse worker %s", w.pid)
            self._kill(w)
            self._finish(w, AnalysisFailed("internal_error", "解析进程返回的结果无法读取"))

    def _handle(self, w: _Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            w.ready = True
            self._start_failures = 0
            return
        job = w.task
        if job is None or msg[1] != job.id:
            return  # from a job already given up
        if kind in ("done", "failed"):
            job.future.worker_peak_mb = msg[-1]  # for benchmarks and tests
        if kind == "done":
            _kind, _id, prepared, rss_mb, _peak = msg
            w.done += 1
            self._settle(job, result=prepared)
            if self.memory_mb and rss_mb > self.memory_mb / 2 and not w.retiring:
                log.info("parse worker %s holds %.0f MB after a large message: replacing it", w.pid, rss_mb)
                w.retiring = True
            self._advance(w)
        elif kind == "raise":  # e.g. the archive could not be written: the caller handles it as before
            self._settle(job, msg[2])
            self._advance(w)
        elif kind == "failed":
            _kind, _id, code, what, _peak = msg
            self._settle(job, AnalysisFailed(code, what))
            if code == "too_complex":
                w.retiring = True  # after a MemoryError its heap is not to be trusted
            self._advance(w)
        elif kind == "convert":
            _kind, _id, doc_kind, data, timeout = msg
            w.conversions += 1
            if w.conversions > self.max_conversions:
                from .errors import ReportError

                self._send(w, ("convert_error", ReportError("邮件中需要转换格式的旧版文档过多：请只附上台账 Word 文档（.docx）重新发送", "too_many_conversions")))
                return
            w.converting = time.monotonic()
            threading.Thread(
                target=self._convert, args=(w, job.id, doc_kind, data, min(float(timeout), self.conversion_timeout)),
                name="parse-convert", daemon=True,
            ).start()

    def _convert(self, w: _Worker, job_id: int, kind: str, data: bytes, timeout: float) -> None:
        """A legacy file converted for a worker, in the parent: warm LibreOffice when the daemon runs one."""
        from . import convert
        from .errors import ReportError

        started = time.monotonic()
        try:
            reply = ("converted", convert.convert_to_docx(data, kind, timeout=timeout))
        except ReportError as err:
            reply = ("convert_error", err)
        except Exception as err:  # noqa: BLE001 - the conversion failed; the message still ends with a reason
            log.exception("conversion for a parse worker failed")
            reply = ("convert_error", ReportError(f"文档无法转换（{type(err).__name__}）：请在 Word 或 WPS 中打开后「另存为」Word 文档（.docx）再发送", "conversion_failed"))
        self._actions.put(("converted", (w, job_id, reply, time.monotonic() - started)))
        self._wake()

    def _send(self, w: _Worker, msg) -> bool:
        try:
            w.conn.send(msg)
            return True
        except (OSError, EOFError, ValueError):
            return False

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for w in list(self._workers):
            if not w.ready and now > w.born + READY_TIMEOUT:
                log.error("parse worker %s did not start within %d s: killed", w.pid, READY_TIMEOUT)
                self._kill(w)
                self._start_failed("parse workers do not start")
            elif w.task is not None and w.converting is None and now > w.deadline:
                uid = w.task.kwargs.get("uid")
                log.error("message UID %s: parse worker %s passed its %.0f s deadline: killed", uid, w.pid, self.timeout)
                self._kill(w)
                self.killed += 1
                self._finish(w, AnalysisFailed(
                    "timeout", f"邮件处理超时（{self.timeout:.0f} 秒内未能完成，已强制终止），附件可能过于复杂或带有攻击性内容",
                ))
            elif w.converting is not None and now > w.converting + 2 * self.conversion_timeout + 60:
                log.error("a conversion for parse worker %s did not end: the worker is killed", w.pid)
                self._kill(w)
                self.killed += 1
                self._finish(w, AnalysisFailed("timeout", "文档格式转换超时，已强制终止"))

    def _finish(self, w: _Worker, error: BaseException) -> None:
        job, w.task = w.task, None
        if job is not None:
            self._settle(job, error)

    def _lost(self, w: _Worker) -> None:
        """A worker that died (crash, OOM killer, a signal): its message is retried once in a fresh worker."""
        if w not in self._workers:
            return
        self._kill(w)
        code = w.proc.exitcode
        job, w.task = w.task, None
        if not w.ready:
            self._start_failed(f"a parse worker exited while starting (exit code {code})")
        if job is None or job.future.done():
            if job is not None:
                self._jobs.discard(job)
            return
        job.attempts += 1
        uid = job.kwargs.get("uid")
        if job.attempts < 2:
            log.warning("parse worker %s died (exit code %s) on message UID %s: retrying it in a fresh worker", w.pid, code, uid)
            self._queue.appendleft(job)
        else:
            log.error("message UID %s kills the parse worker (exit code %s) again: given up", uid, code)
            self._settle(job, AnalysisFailed("too_complex", "解析进程异常退出（两次），附件可能已损坏、过于复杂或带有攻击性内容"))

    def _retire(self, w: _Worker) -> None:
        """Let an idle worker go (it exits on None); a fresh one starts when there is work."""
        if w in self._workers and w.task is None and w.queued is None:
            self._workers.remove(w)
            self._send(w, None)
            self._reap(w, 5)

    def _reap(self, w: _Worker, wait: float) -> None:
        """Wait for a worker told to stop; kill it if it does not, and whatever it left in its group."""
        w.proc.join(timeout=wait)
        if w.proc.exitcode is None:
            _kill_tree(w.pid)
            w.proc.join(timeout=5)
        else:
            try:
                os.killpg(w.pid, signal.SIGKILL)  # its group outlives it only if something it started is still there
            except (ProcessLookupError, PermissionError, OSError):
                pass
        try:
            w.conn.close()
        except OSError:
            pass

    def _kill(self, w: _Worker) -> None:
        """SIGKILL a worker (and all it started); the message queued in its pipe goes back to the front."""
        if w in self._workers:
            self._workers.remove(w)
        if w.queued is not None:
            self._queue.appendleft(w.queued)
            w.queued = None
        _kill_tree(w.pid)
        w.proc.join(timeout=5)
        try:
            w.conn.close()
        except OSError:
            pass

    def _stop_workers(self) -> None:
        self._closing = True
        idle = [w for w in self._workers if w.task is None and w.ready]
        for w in idle:
            self._send(w, None)
        deadline = time.monotonic() + 2
        for w in idle:
            self._workers.remove(w)
            self._reap(w, max(0.0, deadline - time.monotonic()))
        for w in list(self._workers):  # busy or still starting: nobody waits for them any more
            self._kill(w)
            if w.task is not None:
                self._settle(w.task, PoolUnavailable("pool closed"))
        while self._queue:
            job = self._queue.popleft()
            if not job.future.cancel():
                self._settle(job, PoolUnavailable("pool closed"))
            self._jobs.discard(job)


def _kill_tree(pid: int) -> None:
    """SIGKILL a worker and everything it started: its process group (it made itself the leader)
    and any descendant that moved to a group or session of its own (a cold LibreOffice does)."""
    try:
        os.kill(pid, signal.SIGSTOP)  # no new children while we look
    except (ProcessLookupError, PermissionError):
        pass
    own_group = os.getpgrp()
    for p in [pid, *_descendants(pid)]:
        try:
            group = os.getpgid(p)
        except (ProcessLookupError, PermissionError):
            continue
        try:
            if group != own_group and group != 0:
                os.killpg(group, signal.SIGKILL)
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc; elsewhere none are found)."""
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    kids = [int(c) for c in fh.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


def prepare_bounded(cfg, raw: bytes, **kwargs):
    """`intake.prepare` in one worker process with the daemon's limits (for `mailbot ingest`,
    `accept`, `reprocess`): what the daemon would record, also for a hostile message.
    Costs one process start (about 0.3 s)."""
    from . import intake

    pool = WorkerPool(cfg, 1)
    try:
        try:
            return pool.submit(raw, kwargs).result()
        except AnalysisFailed as failed:
            return intake.prepare_failed(cfg, raw, failed.what, code=failed.code, **kwargs)
    finally:
        pool.close()
