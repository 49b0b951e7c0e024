"""Legacy-document conversion: LibreOffice started per file (cold) vs kept warm.

    .venv/bin/python bench/convert_speed.py [--files 20] [--rounds 3]

Makes N filled 30-task reports (mailbot.forms.render_form), saves them with
LibreOffice as a rotating mix of .doc (Word 97), .odt and .rtf, then converts each
back to .docx with

  cold  mailbot.convert.convert_to_docx as shipped: one soffice per file
  warm  the same call after convert.configure_warm(enabled=True): one long-lived
        soffice (mailbot.warm_convert) behind a UNO pipe

and, like the daemon's two prepare threads, the same N files from 2 threads at
once (cold runs two soffice in parallel; warm serialises on its one soffice).

Prints seconds per file (median and p90 over all rounds, the first warm file,
which pays soffice's start, apart), the cold/warm ratios, and the peak RSS of the
soffice processes (VmHWM, sampled every 20 ms for cold; read at the end for warm).
Every converted file is parsed, and warm output must parse exactly like cold.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbot import convert  # noqa: E402
from mailbot.config import load_config  # noqa: E402
from mailbot.forms import render_form  # noqa: E402
from mailbot.reports import parse_document  # noqa: E402
from mailbot.warm_convert import WarmConverter, find_uno_python  # noqa: E402

FILTERS = {"doc": "MS Word 97", "odt": "writer8", "rtf": "Rich Text Format"}
KINDS = ["doc", "odt", "rtf"]


def make_files(cfg, n: int, workdir: Path, soffice: str) -> list[tuple[str, bytes]]:
    """N legacy files saved by LibreOffice (warm, to save time) from filled forms; units, texts and formats vary."""
    units = [u.name for u in cfg.roster.units]
    gen = WarmConverter(soffice, idle_seconds=0)
    files = []
    try:
        for i in range(n):
            text = f"第{i}份：已按要求落实，发布相关信息{{n}}条，开展政策解读{{n}}次。\n下一步将继续加强信息发布审核。"
            docx = render_form(cfg, units[i % len(units)], progress={t.number: text.format(n=t.number + i) for t in cfg.ledger.tasks}, contact="张三", phone="0951-1234567")
            kind = KINDS[i % len(KINDS)]
            src, dst = workdir / f"src{i}.docx", workdir / f"file{i}.{kind}"
            src.write_bytes(docx)
            if kind == "doc":  # via .odt, as tests/docbuilder.to_legacy_doc: docx→doc directly flattens the table
                odt = workdir / f"via{i}.odt"
                gen.convert_file(str(src), str(odt), 120, FILTERS["odt"])
                src = odt
            gen.convert_file(str(src), str(dst), 120, FILTERS[kind])
            files.append((kind, dst.read_bytes()))
    finally:
        gen.close()
    return files


class PeakSampler:
    """Max VmHWM of soffice.bin processes whose command line mentions ``marker``, sampled every 20 ms."""

    def __init__(self, marker: str):
        self.marker = marker
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        cmd = fh.read()
                    if b"soffice.bin" not in cmd.split(b"\0", 1)[0] or self.marker.encode() not in cmd:
                        continue
                    with open(f"/proc/{pid}/status") as fh:
                        for line in fh:
                            if line.startswith("VmHWM:"):
                                self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                except OSError:
                    continue
            self._stop.wait(0.02)


def timed(kind: str, data: bytes) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    out = convert.convert_to_docx(data, kind)
    return time.perf_counter() - t0, out


def parsed(data: bytes, cfg) -> dict:
    return parse_document(data, cfg.ledger, cfg.roster).as_dict()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    soffice = convert.soffice_path()
    if not soffice:
        sys.exit("soffice not found: install LibreOffice (Debian: libreoffice-writer-nogui)")
    uno_py = find_uno_python(soffice)
    if not uno_py:
        sys.exit("no Python here can import uno (Debian: python3-uno): the warm path cannot run")

    cfg = load_config(ROOT / "config.toml")
    work = Path(tempfile.mkdtemp(prefix="mailbot-bench-convert-"))
    tempfile.tempdir = str(work)  # every profile (cold and warm) lives under here: the RSS sampler's marker
    try:
        files = make_files(cfg, args.files, work, soffice)
        counts = {k: sum(1 for kind, _ in files if kind == k) for k in KINDS}
        print(f"LibreOffice {soffice}; UNO python {uno_py}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
        print(f"{len(files)} files: " + ", ".join(f"{counts[k]} .{k}" for k in KINDS) + f"; {args.rounds} rounds\n")

        cold_t: list[float] = []
        cold_first: list[float] = []
        warm_t: list[float] = []
        warm_first: list[float] = []
        cold_peak = warm_peak = 0
        warm_rss_after_first: list[int] = []
        warm_rss_end: list[int] = []
        helper_rss: list[int] = []
        cold_thr: list[float] = []
        warm_thr: list[float] = []
        mismatches = 0
        reference = None

        for rnd in range(args.rounds):
            # (a) cold: soffice per file, as shipped
            convert.configure_warm(enabled=False)
            outs = []
            with PeakSampler(str(work)) as sampler:
                for i, (kind, data) in enumerate(files):
                    t, out = timed(kind, data)
                    (cold_first if i == 0 else cold_t).append(t)
                    outs.append(out)
            cold_peak = max(cold_peak, sampler.peak_kb)
            if reference is None:
                reference = [parsed(o, cfg) for o in outs]

            # (b) warm: one soffice for all N (no restart inside a round), started by the first file
            convert.configure_warm(enabled=True, max_files=10_000, idle_seconds=0)
            for i, (kind, data) in enumerate(files):
                t, out = timed(kind, data)
                if i == 0:
                    warm_first.append(t)
                    w = convert.warm_converter()
                    warm_rss_after_first.append(sum(p["rss_kb"] for p in w.processes() if p["name"].startswith("soffice")))
                else:
                    warm_t.append(t)
                if parsed(out, cfg) != reference[i]:
                    mismatches += 1
            procs = convert.warm_converter().processes()
            warm_peak = max([warm_peak] + [p["hwm_kb"] for p in procs if p["name"].startswith("soffice")])
            warm_rss_end.append(sum(p["rss_kb"] for p in procs if p["name"].startswith("soffice")))
            helper_rss.append(sum(p["rss_kb"] for p in procs if not p["name"].startswith(("soffice", "oosplash"))))
            convert.shutdown_warm()

            # (c) the daemon's 2 prepare threads, N files each way (warm includes its start)
            for mode, bucket in (("cold", cold_thr), ("warm", warm_thr)):
                convert.configure_warm(enabled=(mode == "warm"), max_files=10_000, idle_seconds=0)
                t0 = time.perf_counter()
                with ThreadPoolExecutor(2) as pool:
                    list(pool.map(lambda f: convert.convert_to_docx(f[1], f[0]), files))
                bucket.append(time.perf_counter() - t0)
                convert.shutdown_warm()
            print(f"round {rnd + 1}: cold median {statistics.median(cold_t[-(len(files) - 1):]):.2f} s, warm median {statistics.median(warm_t[-(len(files) - 1):]):.3f} s, warm first {warm_first[-1]:.2f} s, 2 threads cold {cold_thr[-1]:.1f} s / warm {warm_thr[-1]:.1f} s", flush=True)

        convert.configure_warm(enabled=False)
        children_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        n = len(files)
        cm, wm = statistics.median(cold_t), statistics.median(warm_t)
        print()
        print(f"{'seconds per file':<34}{'median':>9}{'p90':>9}{'first file':>12}")
        print(f"{'(a) cold: soffice per file':<34}{cm:>9.3f}{pct(cold_t, 0.9):>9.3f}{statistics.median(cold_first):>12.3f}")
        print(f"{'(b) warm: one soffice, UNO pipe':<34}{wm:>9.3f}{pct(warm_t, 0.9):>9.3f}{statistics.median(warm_first):>12.3f}")
        print(f"ratio cold/warm per file (medians, after the first): {cm / wm:.1f}x")
        cold_total = statistics.median(cold_first) + (n - 1) * cm
        warm_total = statistics.median(warm_first) + (n - 1) * wm
        print(f"{n} files one after another, start included: cold {cold_total:.1f} s, warm {warm_total:.1f} s ({cold_total / warm_total:.1f}x)")
        print(f"{n} files on 2 threads (median of {args.rounds}): cold {statistics.median(cold_thr):.1f} s, warm {statistics.median(warm_thr):.1f} s ({statistics.median(cold_thr) / statistics.median(warm_thr):.1f}x)")
        print()
        print(f"peak RSS of soffice.bin, cold (max over all files, sampled): {cold_peak / 1024:.0f} MiB (getrusage children max: {children_maxrss / 1024:.0f} MiB)")
        print(f"peak RSS of soffice.bin, warm (VmHWM after {n} files): {warm_peak / 1024:.0f} MiB; "
              f"RSS after 1st file {statistics.median(warm_rss_after_first) / 1024:.0f} MiB, after {n}: {statistics.median(warm_rss_end) / 1024:.0f} MiB; "
              f"UNO helper {statistics.median(helper_rss) / 1024:.0f} MiB")
        print(f"warm output parses like cold: {'yes' if mismatches == 0 else f'NO ({mismatches} mismatches)'}")
    finally:
        convert.shutdown_warm()
        tempfile.tempdir = None
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
