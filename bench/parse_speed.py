"""Parse speed of a filled 30-task report: mailbot's parser vs python-docx, docx2python and the floor.

    .venv/bin/python bench/parse_speed.py [--repeat N]

The floor is the work no parser can skip: unzip word/document.xml and iterate its
w:t elements with lxml. Prints milliseconds per parse (median of N) and ratios.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import zipfile
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbot.config import load_config  # noqa: E402
from mailbot.forms import render_form  # noqa: E402
from mailbot.reports import parse_document  # noqa: E402

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def filled_report(cfg) -> bytes:
    text = "已按要求落实：通过政府网站和政务新媒体发布相关信息{n}条，开展政策解读{n}次，工作台账已建立并动态更新。\n下一步将继续加强信息发布审核，确保内容准确、及时。"
    return render_form(cfg, "民政局", progress={t.number: text.format(n=t.number) for t in cfg.ledger.tasks}, contact="张三", phone="0951-1234567")


def floor(data: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        root = etree.fromstring(zf.read("word/document.xml"))
    return sum(len(t.text or "") for t in root.iter(W + "t"))


def naive_python_docx(data: bytes) -> int:
    from docx import Document

    doc = Document(io.BytesIO(data))
    return sum(len(cell.text) for table in doc.tables for row in table.rows for cell in row.cells)


def docx2python_parse(data: bytes) -> int | None:
    try:
        from docx2python import docx2python
    except ImportError:
        return None
    with docx2python(io.BytesIO(data)) as result:
        return len(result.text)


def timeit(fn, data: bytes, repeat: int) -> float | None:
    if fn(data) is None:
        return None
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(data)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    cfg = load_config(ROOT / "config.toml")
    data = filled_report(cfg)
    report = parse_document(data, cfg.ledger, cfg.roster)
    assert len(report.filled) == 27, "the benchmark report must parse completely"
    results = {
        "floor (unzip + lxml w:t)": timeit(floor, data, args.repeat),
        "mailbot parse_document": timeit(lambda d: len(parse_document(d, cfg.ledger, cfg.roster).entries), data, args.repeat),
        "python-docx cell.text loop": timeit(naive_python_docx, data, args.repeat),
        "docx2python": timeit(docx2python_parse, data, max(5, args.repeat // 5)),
    }
    base = results["floor (unzip + lxml w:t)"]
    print(f"report: {len(data) / 1024:.1f} KB .docx, {len(report.entries)} task rows, median of {args.repeat} runs")
    for name, ms in results.items():
        if ms is None:
            print(f"  {name:<30} (not installed)")
        else:
            print(f"  {name:<30} {ms:8.2f} ms   {ms / base:5.2f}× floor")
    ratio = results["mailbot parse_document"] / base
    print(f"target: mailbot within 3× of the floor → {'met' if ratio <= 3 else 'NOT met'} ({ratio:.2f}×)")


if __name__ == "__main__":
    main()
