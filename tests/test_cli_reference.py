"""README's command-line reference lists exactly the verbs of
``paradis_cli.VERBS`` and, for each, exactly the flags ``paradis VERB --help``
prints: adding, removing or renaming a flag without updating the reference
fails here."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import paradis_cli

ROOT = Path(__file__).resolve().parents[1]


def reference() -> dict:
    """{verb: set of flags} from README's "## Command-line reference"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Command-line reference\n", 1)[1].split("\n## ", 1)[0]
    verbs = {}
    for block in re.split(r"^### ", section, flags=re.M)[1:]:
        m = re.match(r"`paradis ([a-z-]+)[^`]*`", block)
        assert m, f"a reference heading is not `paradis VERB ...`: {block.splitlines()[0]}"
        flags = set(re.findall(r"^\| `(--[a-z0-9-]+)", block, flags=re.M))
        verbs[m[1]] = flags
    return verbs


def help_flags(verb: str) -> set:
    """The options ``paradis VERB --help`` prints (argparse puts each invocation at two spaces)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        paradis_cli.main([verb, "--help"])
    assert exit_.value.code == 0
    flags = set(re.findall(r"^  (?:-\w, )?(--[a-z0-9-]+)", out.getvalue(), flags=re.M))
    return flags - {"--help"}


def test_reference_lists_every_verb():
    assert set(reference()) == set(paradis_cli.VERBS)


@pytest.mark.parametrize("verb", paradis_cli.VERBS)
def test_reference_lists_every_flag(verb):
    documented = reference().get(verb, set())
    actual = help_flags(verb)
    assert documented == actual, (f"paradis {verb}: undocumented {sorted(actual - documented)}, "
                                  f"documented but gone {sorted(documented - actual)}")
