"""What a file really is (by its bytes), zip safety checks, and legacy .doc/.wps conversion.

Everything here treats its input as hostile: file types come from magic bytes,
never from the name; zip archives are checked (member count, declared sizes,
compression ratio) before anything is decompressed; LibreOffice runs with its own
profile, in its own process group, under a timeout: started per file (cold), or,
in the daemon when ``configure_warm`` turned it on, kept warm between files
(mailbot.warm_convert) with a cold retry whenever the warm path fails.

LibreOffice cannot reach the network: it runs in a network namespace of its own
(``warm_convert.confine_network``; root or an unprivileged user namespace), and its
profile blocks linked content (``warm_convert.write_profile_settings``), so a
document's linked image or object is never fetched (no SSRF). A cold conversion runs
under a guard process that kills it, and removes its files, when the process that
started it dies; leftovers of processes killed outright are swept
(``sweep_conversion_temp``) at the next start and before a process's first conversion.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import warm_convert
from .errors import ConversionError, ReportError
from .warm_convert import WarmBusy, WarmConverter, WarmError, WarmUnavailable

log = logging.getLogger(__name__)

SAVE_AS_DOCX = "请在 Word 或 WPS 中打开后「另存为」Word 文档（.docx）再发送"


@dataclass(frozen=True)
class ZipLimits:
    max_members: int = 2000
    max_member_bytes: int = 32 * 1024 * 1024  # a ledger form's largest part (an embedded image) is far below
    max_total_bytes: int = 200 * 1024 * 1024
    max_ratio: int = 200  # uncompressed / compressed, for members over 1 MiB

    def check(self, zf: zipfile.ZipFile, what: str = "文件") -> None:
        """Refuse an archive whose central directory promises too much (zip bomb) before reading it."""
        infos = zf.infolist()
        if len(infos) > self.max_members:
            raise ReportError(f"{what}包含 {len(infos)} 个内部文件，超过上限 {self.max_members}，疑似恶意文件，已拒收", "zip_bomb")
        total = 0
        for info in infos:
            if info.file_size > self.max_member_bytes:
                raise ReportError(f"{what}中的「{info.filename}」解压后达 {info.file_size} 字节，超过上限，疑似压缩炸弹，已拒收", "zip_bomb")
            if info.file_size > 1024 * 1024 and info.file_size > self.max_ratio * max(info.compress_size, 1):
                raise ReportError(f"{what}中的「{info.filename}」压缩比异常（疑似压缩炸弹），已拒收", "zip_bomb")
            total += info.file_size
        if total > self.max_total_bytes:
            raise ReportError(f"{what}解压后总大小 {total} 字节，超过上限，已拒收", "zip_bomb")


DEFAULT_ZIP_LIMITS = ZipLimits()


def read_member(zf: zipfile.ZipFile, name: str | zipfile.ZipInfo, limit: int) -> bytes | None:
    """One member's bytes, never more than ``limit`` (declared sizes can lie); None when absent."""
    if isinstance(name, zipfile.ZipInfo):
        info = name
    else:
        try:
            info = zf.getinfo(name)
        except KeyError:
            return None
    name = info.filename
    if info.file_size > limit:
        raise ReportError(f"文件中的「{name}」过大（{info.file_size} 字节），已拒收", "too_large")
    try:
        with zf.open(info) as fh:
            # zipfile stops at the declared size, so never ask for more than that (a lying
            # header cannot make zlib inflate up to the limit first).
            data = fh.read(min(limit, info.file_size) + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as err:
        raise ReportError(f"文件已损坏，无法解压（{type(err).__name__}）：请重新保存后再发送", "corrupt") from err
    if len(data) > limit:
        raise ReportError(f"文件中的「{name}」解压后超过声明大小，疑似压缩炸弹，已拒收", "zip_bomb")
    return data


def open_zip(data: bytes, what: str = "文件", limits: ZipLimits = DEFAULT_ZIP_LIMITS, metadata_encoding: str | None = None) -> zipfile.ZipFile:
    """A ZipFile over bytes whose central directory passed the limits."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data), metadata_encoding=metadata_encoding) if metadata_encoding else zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise ReportError(f"{what}已损坏或不完整，无法打开：请重新保存后再发送", "corrupt") from err
    limits.check(zf, what)
    return zf


# --- file type by magic bytes -------------------------------------------------------------

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def sniff(data: bytes) -> str:
    """The kind of a file from its bytes.

    docx (incl. docm), odt, zip (any other archive), doc (Word 97–2003), wps (Kingsoft,
    or any other OLE file LibreOffice may read), encrypted, xls, ppt, word2003xml, rtf,
    html, pdf, image, rar, 7z, empty, unknown.
    """
    if not data:
        return "empty"
    head = data[:8]
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _sniff_zip(data)
    if head == OLE_MAGIC:
        return _sniff_ole(data)
    if head.startswith(b"%PDF"):
        return "pdf"
    if (
        head.startswith(b"\xff\xd8\xff")
        or head.startswith(b"\x89PNG")
        or head.startswith(b"GIF8")
        or head.startswith(b"BM")
        or head.startswith(b"II*\x00")
        or head.startswith(b"MM\x00*")
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
        or data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1")
    ):
        return "image"
    if head.startswith(b"Rar!"):
        return "rar"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"{\\rtf"):
        return "rtf"
    text_head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text_head.startswith(b"<?xml") or text_head.startswith(b"<w:worddocument") or text_head.startswith(b"<?mso"):
        if b"w:worddocument" in text_head or b"schemas.microsoft.com/office/word/2003" in text_head or b"word.document" in text_head:
            return "word2003xml"
        return "unknown"
    if re.match(rb"(?:(?:return-path|received|from|to|subject|date|message-id|mime-version|x-[a-z0-9-]+|delivered-to|reply-to|cc|content-type):[^\n]*\r?\n(?:[ \t][^\n]*\r?\n)*){2,}", text_head):
        if not text_head.startswith(b"mime-version:") or b"\nfrom:" in text_head or b"\nsubject:" in text_head:
            return "eml"  # a mail saved as a file (a forward "as attachment")
    if text_head.startswith(b"<html") or text_head.startswith(b"<!doctype html") or b"mime-version:" in text_head[:512]:
        return "html"
    return "unknown"


def _sniff_zip(data: bytes) -> str:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = set(zf.namelist()[:5000])
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return "zip"  # corrupt: open_zip will say so
    if "word/document.xml" in names or ("[Content_Types].xml" in names and any(n.startswith("word/") for n in names)):
        return "docx"
    if "mimetype" in names:
        try:
            mimetype = zf.read("mimetype")[:100] if zf.getinfo("mimetype").file_size < 200 else b""
        except Exception:  # noqa: BLE001 - any failure means "not an ODF file"
            mimetype = b""
        if mimetype.startswith(b"application/vnd.oasis.opendocument.text"):
            return "odt"
    if "[Content_Types].xml" in names:
        if any(n.startswith("xl/") for n in names):
            return "xlsx"
        if any(n.startswith("ppt/") for n in names):
            return "pptx"
    return "zip"


def _sniff_ole(data: bytes) -> str:
    import olefile

    try:
        ole = olefile.OleFileIO(io.BytesIO(data))
    except (OSError, ValueError, IndexError, TypeError, Exception):  # noqa: BLE001 - olefile raises many types on junk
        return "wps"  # let LibreOffice try; it reports failure as a conversion error
    try:
        streams = {"/".join(s).lower() for s in ole.listdir(streams=True, storages=True)}
        if "encryptedpackage" in streams or "encryptioninfo" in streams:
            return "encrypted"
        if "worddocument" in streams:
            try:
                fib = ole.openstream("WordDocument").read(12)
                # FibBase: flags at offset 0x0A, fEncrypted is bit 8 (0x0100).
                if len(fib) >= 12 and int.from_bytes(fib[10:12], "little") & 0x0100:
                    return "encrypted"
            except OSError:
                pass
            return "doc"
        if "workbook" in streams or "book" in streams:
            return "xls"
        if "powerpoint document" in streams:
            return "ppt"
        return "wps"
    finally:
        ole.close()


# Reasons, in plain Chinese, for files that are not a Word report at all.
REFUSALS = {
    "pdf": "附件是 PDF 文件，系统无法读取其中的表格：请发送填报好的 Word 文档（.docx），不要转成 PDF",
    "image": "附件是图片，系统无法读取其中的文字：请发送填报好的 Word 文档（.docx），不要拍照或截图",
    "encrypted": "附件是加密（设置了打开密码）的文档，系统无法打开：请取消密码保护后重新发送",
    "word2003xml": "附件是 Word 2003 XML 格式，系统无法读取：" + SAVE_AS_DOCX,
    "html": "附件是网页格式（.htm/.mht）的文档，系统无法读取：" + SAVE_AS_DOCX,
    "xls": "附件是 Excel 表格，不是台账 Word 文档：请使用下发的 Word 台账模板填报",
    "xlsx": "附件是 Excel 表格，不是台账 Word 文档：请使用下发的 Word 台账模板填报",
    "ppt": "附件是 PowerPoint 文件，不是台账 Word 文档：请使用下发的 Word 台账模板填报",
    "pptx": "附件是 PowerPoint 文件，不是台账 Word 文档：请使用下发的 Word 台账模板填报",
    "rar": "附件是 RAR 压缩包，系统无法解压：请直接附上 Word 文档，或改用 zip 压缩",
    "7z": "附件是 7z 压缩包，系统无法解压：请直接附上 Word 文档，或改用 zip 压缩",
    "empty": "附件是空文件（0 字节）：请重新附上填报好的 Word 文档",
    "unknown": "附件不是 Word 文档，系统无法识别其格式：请发送填报好的 Word 文档（.docx）",
    "eml": "附件是一封邮件，其中没有台账 Word 文档：请直接附上填报好的 .docx 文件",
}

NEEDS_CONVERSION = {"doc", "wps", "odt", "rtf"}
KIND_LABELS = {"doc": "Word 97-2003 (.doc)", "wps": "WPS (.wps)", "odt": "OpenDocument (.odt)", "rtf": "RTF"}


# --- LibreOffice ----------------------------------------------------------------------------


def soffice_path() -> str | None:
    configured = os.environ.get("MAILBOT_SOFFICE")
    if configured:
        return shutil.which(configured)  # None when that path does not exist or is not executable
    return shutil.which("soffice") or shutil.which("libreoffice")


def convert_to_docx(data: bytes, kind: str, timeout: float = 120) -> bytes:
    """Convert a legacy document to .docx bytes with LibreOffice headless.

    Cold (the default): each conversion starts its own soffice with its own user
    profile (concurrent runs sharing one fail silently) in its own process group,
    under a guard (``warm_convert --guard``) that keeps it off the network and kills
    it with us, killed whole on timeout. Warm (``configure_warm``, the daemon): a
    long-lived soffice (mailbot.warm_convert) converts it; on any trouble there
    (timeout, crash, refusal, no UNO) the file is converted once more cold. The input
    type is left for LibreOffice to detect (no forced filter), which is what .wps needs.
    """
    exe = soffice_path()
    label = KIND_LABELS.get(kind, kind)
    if not exe:
        raise ConversionError(
            f"附件是 {label} 旧格式文档，本服务器未安装 LibreOffice，无法转换：" + SAVE_AS_DOCX, "no_converter"
        )
    _sweep_once(timeout)
    suffix = {"doc": ".doc", "wps": ".wps", "odt": ".odt", "rtf": ".rtf"}.get(kind, ".bin")
    warm = _warm_converter(exe)
    if warm is not None:
        try:
            return _convert_warm(warm, data, suffix, timeout)
        except WarmUnavailable as err:
            log.warning("warm LibreOffice unavailable (%s): converting cold from now on", err)
        except WarmBusy:
            log.info("warm LibreOffice busy with another file: converting this %s file cold", label)
        except WarmError as err:
            log.warning("warm LibreOffice failed on a %s file (%s): converting it cold", label, err)
    return _convert_cold(exe, data, label, suffix, timeout)


def _convert_warm(warm: WarmConverter, data: bytes, suffix: str, timeout: float) -> bytes:
    tmp = warm_convert.make_workdir()
    try:
        src = Path(tmp) / f"report{suffix}"
        src.write_bytes(data)
        out = Path(tmp) / "report.docx"
        warm.convert_file(str(src), str(out), timeout)
        note_confinement(warm.confinement, "warm")
        return out.read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


GUARD_GRACE = 10  # seconds the guard waits past our own deadline before it kills soffice on its own


def _guard_command(cmd: list[str], workdir: str, timeout: float) -> list[str]:
    args = {"cmd": cmd, "parent": os.getpid(), "workdir": workdir, "timeout": timeout + GUARD_GRACE}
    # -I -S: the standard library only (the guard is warm_convert.py, which imports nothing else)
    return [sys.executable, "-I", "-S", os.path.abspath(warm_convert.__file__), "--guard", json.dumps(args)]


def _guard_report(err_text: bytes) -> tuple[str | None, list[str]]:
    """The guard's confinement line, and the other stderr lines (LibreOffice's own)."""
    confinement, rest = None, []
    for line in (err_text or b"").decode("utf-8", "replace").splitlines():
        if line.startswith(warm_convert.GUARD_TAG):
            try:
                confinement = str(json.loads(line[len(warm_convert.GUARD_TAG):]).get("confinement"))
            except (ValueError, AttributeError):
                pass
        elif line.strip():
            rest.append(line.strip())
    return confinement, rest


def _convert_cold(exe: str, data: bytes, label: str, suffix: str, timeout: float) -> bytes:
    tmp = warm_convert.make_workdir()
    try:
        tmpdir = Path(tmp)
        src = tmpdir / f"report{suffix}"
        src.write_bytes(data)
        outdir = tmpdir / "out"
        profile = tmpdir / "profile"
        warm_convert.write_profile_settings(profile)
        cmd = [
            exe,
            "--headless",
            "--norestore",
            "--nologo",
            "--nolockcheck",
            f"-env:UserInstallation={profile.as_uri()}",
            "--convert-to",
            "docx:MS Word 2007 XML",
            "--outdir",
            str(outdir),
            str(src),
        ]
        env = dict(os.environ, HOME=str(tmpdir))
        try:
            proc = subprocess.Popen(
                _guard_command(cmd, tmp, timeout), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env=env, cwd=tmp, start_new_session=True,
            )
        except OSError as err:
            raise ConversionError(f"无法启动 LibreOffice 转换 {label} 文档：" + SAVE_AS_DOCX, "conversion_failed") from err
        try:
            _out, err_text = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ConversionError(f"{label} 文档转换超时（{int(timeout)} 秒）：" + SAVE_AS_DOCX, "conversion_timeout") from None
        finally:
            _kill_group(proc)  # soffice may leave helpers behind
        confinement, lines = _guard_report(err_text)
        note_confinement(confinement, "cold")
        out = outdir / "report.docx"
        if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            raise ConversionError(
                f"{label} 文档无法转换（文件可能已损坏或加密）：" + SAVE_AS_DOCX, "conversion_failed"
            ) from RuntimeError((lines[-1:] or [""])[0])
        return out.read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


# --- which protection is active, and leftovers ------------------------------------------------

_confinement_lock = threading.Lock()
_confinement_logged: dict[str, str] = {}


def describe_confinement(confinement: str | None) -> str:
    """One line for the log: how LibreOffice is kept off the network."""
    links = "linked content blocked in its profile (BlockUntrustedRefererLinks, links never updated, a dead proxy for http/https/ftp, macros off)"
    if confinement in ("netns", "userns+netns"):
        how = "a network namespace of its own" + (" (unprivileged user namespace)" if confinement == "userns+netns" else "")
        return f"LibreOffice runs without network access: {how}; {links}"
    why = (confinement or "unknown")[len("none: "):] if (confinement or "").startswith("none: ") else (confinement or "unknown")
    return (
        f"LibreOffice runs WITH network access: no network namespace available here ({why}); only {links}. "
        "To add it: allow unprivileged user namespaces (user.max_user_namespaces > 0; Debian kernel.unprivileged_userns_clone=1; "
        "Ubuntu ≥ 23.10 kernel.apparmor_restrict_unprivileged_userns=0) and no RestrictNamespaces= in the systemd unit"
    )


def note_confinement(confinement: str | None, path: str) -> None:
    """Log once per process (and whenever it changes) which protection the cold or warm path has."""
    if confinement is None:
        return
    with _confinement_lock:
        if _confinement_logged.get(path) == confinement:
            return
        _confinement_logged[path] = confinement
    text = describe_confinement(confinement)
    if confinement.startswith("none"):
        log.warning("%s conversions: %s", path, text)
    else:
        log.info("%s conversions: %s", path, text)


def probe_confinement(timeout: float = 30) -> str:
    """Run the guard around /bin/true: what a conversion would get here ("netns", "userns+netns" or "none: …")."""
    tmp = warm_convert.make_workdir()
    try:
        true = shutil.which("true") or "/bin/true"
        proc = subprocess.run(
            _guard_command([true], tmp, timeout), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=timeout, start_new_session=True,
        )
        return _guard_report(proc.stderr)[0] or "none: the guard did not report"
    except (OSError, subprocess.SubprocessError) as err:
        return f"none: the guard did not run ({err})"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sweep_conversion_temp(older_than: float = 120, tmpdir: str | os.PathLike | None = None) -> int:
    """Remove the work directories (LibreOffice profile and a copy of the attachment) of conversions
    whose process is gone, after killing any LibreOffice still running from one. Returns how many.

    A directory names its owner (``warm_convert.make_workdir``: pid and start time), so one in use
    by a live process is never touched, however old; an untagged one (an older mailbot) goes when
    older than ``older_than`` seconds (the conversion timeout). Only our own directories (same uid).
    """
    base = Path(tmpdir or tempfile.gettempdir())
    removed = 0
    now = time.time()
    try:
        candidates = list(base.glob(warm_convert.WORKDIR_PREFIX + "*"))
    except OSError:
        return 0
    for d in candidates:
        try:
            st = d.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        owner = warm_convert.workdir_owner(d.name)
        if owner is not None:
            if warm_convert.process_start_time(owner[0]) == owner[1]:
                continue  # its process is alive: in use
        elif now - st.st_mtime < older_than:
            continue
        warm_convert.kill_processes_using(str(d))
        shutil.rmtree(d, ignore_errors=True)
        if not d.exists():
            removed += 1
    return removed


_swept_pids: set[int] = set()


def _sweep_once(timeout: float) -> None:
    """Before a process's first conversion (any command that converts): sweep what killed ones left."""
    pid = os.getpid()
    if pid in _swept_pids:
        return
    _swept_pids.add(pid)
    try:
        if n := sweep_conversion_temp(older_than=timeout):
            log.info("removed %d LibreOffice work directories left by conversions whose process was killed", n)
    except Exception as err:  # noqa: BLE001 - housekeeping must never stop a conversion
        log.warning("could not sweep old LibreOffice work directories: %s", err)


# --- the warm converter (daemon only) ---------------------------------------------------------

WARM_DEFAULTS = {"warm_conversion": False, "warm_conversion_max_files": 50, "warm_conversion_idle_seconds": 300}

_warm_lock = threading.Lock()
_warm_settings: dict = {"enabled": False, "max_files": 50, "idle_seconds": 300.0}
_warm: WarmConverter | None = None
_warm_hooks_installed = False


def configure_warm(cfg=None, *, enabled: bool | None = None, max_files: int | None = None, idle_seconds: float | None = None) -> None:
    """Turn the warm LibreOffice on or off for this process (the daemon and its parse workers).

    Reads ``[bot] warm_conversion`` / ``warm_conversion_max_files`` /
    ``warm_conversion_idle_seconds`` from ``cfg`` when given (defensively: missing or
    malformed keys take the defaults); keyword arguments win. Changing the settings
    stops a running worker.
    """
    bot = getattr(cfg, "bot", None) if cfg is not None else None
    bot = bot if isinstance(bot, dict) else {}
    want = bool(bot.get("warm_conversion", WARM_DEFAULTS["warm_conversion"])) if enabled is None else bool(enabled)
    files = bot.get("warm_conversion_max_files", WARM_DEFAULTS["warm_conversion_max_files"]) if max_files is None else max_files
    idle = bot.get("warm_conversion_idle_seconds", WARM_DEFAULTS["warm_conversion_idle_seconds"]) if idle_seconds is None else idle_seconds
    if isinstance(files, bool) or not isinstance(files, int) or files < 1:
        files = WARM_DEFAULTS["warm_conversion_max_files"]
    if isinstance(idle, bool) or not isinstance(idle, (int, float)) or idle < 0:
        idle = WARM_DEFAULTS["warm_conversion_idle_seconds"]
    settings = {"enabled": want, "max_files": int(files), "idle_seconds": float(idle)}
    with _warm_lock:
        if settings != _warm_settings:
            _warm_settings.update(settings)
            _stop_warm_locked()


def shutdown_warm() -> None:
    """Stop the warm LibreOffice, if one runs (at exit, and from tests)."""
    with _warm_lock:
        _stop_warm_locked()


def warm_converter() -> WarmConverter | None:
    """The current warm converter (for tests and the benchmark), if one was made."""
    return _warm


def _stop_warm_locked() -> None:
    global _warm
    if _warm is not None:
        try:
            _warm.close()
        finally:
            _warm = None


def _warm_converter(exe: str) -> WarmConverter | None:
    global _warm, _warm_hooks_installed
    if not _warm_settings["enabled"]:
        return None
    with _warm_lock:
        if _warm is not None and _warm.soffice != exe:
            _stop_warm_locked()
        if _warm is None:
            _warm = WarmConverter(exe, max_conversions=_warm_settings["max_files"], idle_seconds=_warm_settings["idle_seconds"])
            if not _warm_hooks_installed:
                # atexit in the daemon; multiprocessing's exit hook in spawned parse workers (which skip atexit)
                from multiprocessing import util as mp_util

                atexit.register(shutdown_warm)
                mp_util.Finalize(None, shutdown_warm, exitpriority=10)
                _warm_hooks_installed = True
        return None if _warm.disabled else _warm
