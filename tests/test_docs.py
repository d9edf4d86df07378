"""The docs' code runs as written: every ```python block of docs/*.md, in
order, one namespace per page (as a reader runs them), from a temporary
working directory; the concepts diagram's script draws its picture; and every
relative link of the docs and the README names a file that exists.

A block that must not run here says so in its fence, ```python no-test (the
oneDNN crash reproductions, which are meant to kill their process); such
blocks are rare and counted. Shell commands are ```bash and shown output or
layouts ```text; neither runs.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
KNOWN_INFO = {"python", "python no-test", "bash", "text", "json", ""}
MAX_NO_TEST = 3


def pages() -> list:
    return sorted(DOCS.glob("*.md"))


def blocks(page: Path) -> list:
    """[(info string, code)] of the page's fenced blocks, in order."""
    return [(m[1].strip(), m[2]) for m in FENCE.finditer(page.read_text())]


def runnable_pages() -> list:
    return [p for p in pages() if any(info == "python" for info, _ in blocks(p))]


def test_fences_are_known_and_skips_are_rare():
    skipped = 0
    for page in pages():
        for info, _ in blocks(page):
            assert info in KNOWN_INFO, f"{page.name}: fence ```{info} (runnable Python is ```python)"
            skipped += info == "python no-test"
    assert skipped <= MAX_NO_TEST, f"{skipped} blocks marked no-test; make them run instead"


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for info, code in blocks(page):
        if info == "python":
            exec(compile(code, str(page), "exec"), namespace)
    capsys.readouterr()


def test_concepts_figure_is_drawn_by_its_script(tmp_path):
    spec = importlib.util.spec_from_file_location("concepts_figure", DOCS / "figures" / "concepts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.draw(tmp_path / "concepts.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "figures/concepts.png" in (DOCS / "concepts.md").read_text()


def test_relative_links_resolve():
    missing = []
    for page in pages() + [ROOT / "README.md"]:
        text = FENCE.sub("", page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:|^#", target):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert not missing, "\n".join(missing)
