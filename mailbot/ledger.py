"""The ledger (tasks) and the roster (units), and who is responsible for what."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from .errors import ConfigError

CHINESE_NUMERALS = "一二三四五六七八九十"

# Prefixes that units put before their name: 银川市西夏区民政局, 西夏区人民政府民政局 …
_NAME_PREFIXES = ("宁夏回族自治区", "宁夏", "银川市", "西夏区", "人民政府", "区")
_NAME_NOISE = re.compile(r"[（(【\[]\s*(盖章|公章|签章|章|单位盖章|加盖公章)\s*[)）】\]]|[_＿\s　:：·．.。,，;；、\-—]+")


def normalize_text(text: str) -> str:
    """NFKC (full-width → half-width), with all whitespace removed; for comparing, never for storing."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or ""))


def normalize_unit_name(text: str) -> str:
    """A unit name as people write it, reduced to a comparable key: no seal noise, prefixes or spaces."""
    key = _NAME_NOISE.sub("", unicodedata.normalize("NFKC", text or ""))
    changed = True
    while changed:
        changed = False
        for prefix in _NAME_PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix) + 1:
                key = key[len(prefix):]
                changed = True
    return key


@dataclass(frozen=True)
class Task:
    number: int
    section: int
    item: str
    content: str
    indicator: str
    units: str
    deadline: str


@dataclass(frozen=True)
class Section:
    number: int
    title: str

    @property
    def label(self) -> str:
        return f"{chinese_numeral(self.number)}、{self.title}"


def chinese_numeral(n: int) -> str:
    if 1 <= n <= 10:
        return CHINESE_NUMERALS[n - 1]
    if n < 20:
        return "十" + CHINESE_NUMERALS[n - 11]
    tens, ones = divmod(n, 10)
    return CHINESE_NUMERALS[tens - 1] + "十" + (CHINESE_NUMERALS[ones - 1] if ones else "")


class Ledger:
    """A year's task list (台账)."""

    def __init__(self, year: int, title: str, intro: str, sections: list[Section], tasks: list[Task]):
        self.year = year
        self.title = title
        self.intro = intro
        self.sections = sections
        self.tasks = tasks
        self.by_number = {t.number: t for t in tasks}

    @property
    def items(self) -> list[str]:
        """Key-work items (重点工作) in order of first appearance."""
        return list(dict.fromkeys(t.item for t in self.tasks))

    def task(self, number: int) -> Task | None:
        return self.by_number.get(number)

    @cached_property
    def _raw_content_keys(self) -> dict[str, int]:
        return {re.sub(r"\s+", "", t.content): t.number for t in self.tasks}

    @cached_property
    def _content_keys(self) -> list[tuple[str, int]]:
        return [(normalize_text(t.content), t.number) for t in self.tasks]

    def match_content(self, text: str) -> int | None:
        """The task whose 主要内容 this cell text is (tolerating edits); None when unsure."""
        exact = self._raw_content_keys.get(re.sub(r"\s+", "", text or ""))
        if exact is not None:
            return exact
        key = normalize_text(text)
        if len(key) < 6:
            return None
        for content, number in self._content_keys:
            if key == content:
                return number
        # A unit may trim or edit the text: accept a long shared prefix or containment.
        best, best_score = None, 0.0
        for content, number in self._content_keys:
            if key in content or content in key:
                score = min(len(key), len(content)) / max(len(key), len(content))
                score = max(score, 0.6) if min(len(key), len(content)) >= 12 else score
            else:
                common = 0
                for a, b in zip(key, content):
                    if a != b:
                        break
                    common += 1
                score = common / len(content) if common >= 10 else 0.0
            if score > best_score:
                best, best_score = number, score
        return best if best_score >= 0.3 else None

    def to_dict(self) -> dict:
        return {
            "year": self.year,
            "title": self.title,
            "intro": self.intro,
            "sections": [{"number": s.number, "title": s.title} for s in self.sections],
            "tasks": [t.__dict__.copy() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Ledger":
        sections = [Section(int(s["number"]), s["title"]) for s in data["sections"]]
        tasks = [
            Task(
                number=int(t["number"]),
                section=int(t["section"]),
                item=t["item"],
                content=t["content"],
                indicator=t.get("indicator", ""),
                units=t["units"],
                deadline=t.get("deadline", ""),
            )
            for t in data["tasks"]
        ]
        return cls(int(data.get("year", 0)), data.get("title", ""), data.get("intro", ""), sections, tasks)


def load_ledger(path: str | Path | None = None) -> Ledger:
    """The ledger from a JSON file, or the shipped 2023 Xixia ledger."""
    try:
        if path is None:
            text = resources.files("mailbot.data").joinpath("ledger_2023.json").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        return Ledger.from_dict(json.loads(text))
    except FileNotFoundError:
        raise ConfigError(f"[bot] ledger 指向的台账文件 {path} 不存在：请检查路径，或删除该行以使用内置的 2023 年台账") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"台账文件 {path or 'ledger_2023.json'} 格式不正确：{err}") from err


@dataclass(frozen=True)
class Unit:
    """A reporting unit (填报单位) from the roster."""

    name: str
    kind: str  # "department" | "town"
    emails: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def kind_label(self) -> str:
        return "部门" if self.kind == "department" else "镇街"


# How the 责任单位 column names groups of units.
_GROUPS = {"政府各部门": "department", "各部门": "department", "各镇街": "town", "各镇（街）": "town", "各镇(街)": "town"}


class Roster:
    """The units, looked up by name, alias or address."""

    def __init__(self, units: list[Unit]):
        self.units = units
        self.by_name = {u.name: u for u in units}
        self._keys: dict[str, Unit] = {}
        for unit in units:
            for name in (unit.name, *unit.aliases):
                self._keys.setdefault(normalize_unit_name(name), unit)
        self._responsible: dict[str, tuple[Unit, ...]] = {}
        self._tasks_by_unit: tuple | None = None  # (ledger, {unit name: task numbers})
        self._by_email: dict[str, list[Unit]] = {}
        for unit in units:
            for addr in unit.emails:
                self._by_email.setdefault(addr.lower(), []).append(unit)

    def __iter__(self):
        return iter(self.units)

    def __len__(self) -> int:
        return len(self.units)

    def get(self, name: str) -> Unit | None:
        return self.by_name.get(name)

    def by_email(self, address: str) -> list[Unit]:
        """Units registered with this address (usually one; a shared address may serve several)."""
        return list(self._by_email.get((address or "").strip().lower(), []))

    def match(self, text: str | None) -> Unit | None:
        """The unit that a name as written (填报单位, subject, file name) refers to, or None."""
        if not text:
            return None
        key = normalize_unit_name(text)
        if not key:
            return None
        if key in self._keys:
            return self._keys[key]
        # The name embedded in longer text: "西夏区民政局2023年中报送" → the known name inside.
        # Two different units named ("民政局、医疗保障局") is not a match.
        found = [(k, u) for k, u in self._keys.items() if len(k) >= 2 and k in key]
        found = [(k, u) for k, u in found if not any(k != k2 and k in k2 for k2, _u in found)]
        if len({u.name for _k, u in found}) == 1:
            return found[0][1]
        return None

    def responsible_units(self, task: Task) -> list[Unit]:
        """Who must report on a task, from its 责任单位 as written."""
        if task.units not in self._responsible:
            self._responsible[task.units] = tuple(self._resolve(task.units))
        return list(self._responsible[task.units])

    def _resolve(self, units_as_written: str) -> list[Unit]:
        result: dict[str, Unit] = {}
        for part in re.split(r"[、，,；;／/\s]+", units_as_written):
            part = part.strip()
            if not part:
                continue
            kind = _GROUPS.get(part)
            if kind:
                for unit in self.units:
                    if unit.kind == kind:
                        result.setdefault(unit.name, unit)
                continue
            unit = self.match(part)
            if unit:
                result.setdefault(unit.name, unit)
        order = {u.name: i for i, u in enumerate(self.units)}
        return sorted(result.values(), key=lambda u: order[u.name])

    def tasks_of(self, unit: Unit | str, ledger: Ledger) -> list[int]:
        """The task numbers a unit is responsible for."""
        name = unit if isinstance(unit, str) else unit.name
        if self._tasks_by_unit is None or self._tasks_by_unit[0] is not ledger:
            # Built once per ledger: at province scale (thousands of units) a scan per call is quadratic.
            by_unit: dict[str, list[int]] = {}
            for t in ledger.tasks:
                for u in self.responsible_units(t):
                    by_unit.setdefault(u.name, []).append(t.number)
            self._tasks_by_unit = (ledger, by_unit)
        return list(self._tasks_by_unit[1].get(name, ()))
