"""Every number in README's results table is read from the docs/results/*.json
file and key its row names (files written by the bench/ scripts).

A row is ``| what | value | [FILE.json](docs/results/FILE.json) `KEY` |``.
KEY walks the JSON object with dots; a key that itself holds dots
(``disco_0.2``) or slashes (``single/float32``) is matched whole, and a path
that could be read two ways is an error. The value is the JSON number as
written with the shown number of decimals: ``88.4 %`` is 100 x the number,
``0.20x`` and ``40.2 ms`` are the number itself, ``yes``/``no`` a boolean.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (?P<what>.+?) \| (?P<value>[^|]+?) \| \[[^\]]+\]\((?P<file>docs/results/[\w.-]+\.json)\) "
                 r"`(?P<key>[^`]+)` \|$")
VALUE = re.compile(r"^(?P<number>-?\d+(?:\.(?P<decimals>\d+))?)(?P<unit> %|x| ms)?$")


def results_table() -> list:
    """The rows of the first table under README's "## Results" heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    table = []
    for line in lines[start + 2:]:  # below the header and its rule
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def lookup(data, key: str):
    parts = key.split(".")

    def walk(node, i):
        if i == len(parts):
            return [node]
        found = []
        for j in range(i + 1, len(parts) + 1):
            name = ".".join(parts[i:j])
            if isinstance(node, dict) and name in node:
                found += walk(node[name], j)
        return found

    found = walk(data, 0)
    assert len(found) == 1, f"key {key!r}: {len(found)} readings"
    return found[0]


def expected_text(value, shown: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    m = VALUE.match(shown)
    assert m, f"value {shown!r} is neither a number (optionally with ' %', 'x' or ' ms') nor yes/no"
    assert isinstance(value, (int, float)), f"the file holds {value!r}, not a number"
    decimals = len(m["decimals"] or "")
    unit = m["unit"] or ""
    number = value * 100 if unit == " %" else value
    return f"{number:.{decimals}f}{unit}"


def test_every_row_names_its_source():
    rows = results_table()
    assert len(rows) >= 10
    for row in rows:
        assert ROW.match(row), f"row does not name a docs/results JSON file and key: {row}"


def test_every_number_comes_from_its_file():
    cache: dict = {}
    mismatches = []
    for row in results_table():
        m = ROW.match(row)
        path = ROOT / m["file"]
        assert path.is_file(), m["file"]
        data = cache.setdefault(path, json.loads(path.read_text()))
        value = lookup(data, m["key"])
        shown = m["value"].strip()
        if expected_text(value, shown) != shown:
            mismatches.append(f"{m['file']} {m['key']}: README says {shown!r}, the file gives "
                              f"{expected_text(value, shown)!r} ({value!r})")
    assert not mismatches, "\n".join(mismatches)


def test_every_results_file_is_written_by_a_bench_script():
    for row in results_table():
        stem = Path(ROW.match(row)["file"]).stem
        # NAME.json comes from bench/NAME.py; NAME_PRESET.json (a preset's own
        # results, such as accuracy_comm_cpu_long) from bench/NAME.py too.
        name = stem
        while not (ROOT / "bench" / f"{name}.py").is_file() and "_" in name:
            name = name.rsplit("_", 1)[0]
        script = ROOT / "bench" / f"{name}.py"
        assert script.is_file(), f"docs/results/{stem}.json has no bench/{stem}.py"
        assert f"docs/results/{stem}.json" in script.read_text(), f"bench/{name}.py does not say it writes {stem}.json"
