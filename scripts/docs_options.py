"""Keep the option tables of README.md and docs/*.md identical to ``--help``.

Each table sits between ``<!-- BEGIN options: COMMAND -->`` and ``<!-- END options: COMMAND -->``
and is generated from the click command itself (the same help records ``--help`` prints), so a
default or a message lives only in the code.

    python scripts/docs_options.py           # rewrite the tables in place
    python scripts/docs_options.py --check   # exit 1 (and show the drift) if a table is stale
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import List

import click

from bigshuf.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- BEGIN options: (\S+) -->\n)(.*?)(<!-- END options: \2 -->)", re.S)


def table(command: str) -> str:
    """The markdown table of ``bigshuf COMMAND``'s options, from its help records."""
    cmd = main.get_command(click.Context(main), command)
    ctx = click.Context(cmd, info_name=command, parent=click.Context(main, info_name="bigshuf"))
    rows: List[str] = ["| option | meaning |", "|---|---|"]
    for param in cmd.get_params(ctx):
        record = None if isinstance(param, click.Argument) else param.get_help_record(ctx)
        if record is None:
            continue
        opts, text = record
        text = " ".join(text.split()).replace("|", "\\|")
        rows.append(f"| `{opts}` | {text} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + table(m.group(2)) + m.group(4), text)


def main_(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a table differs from --help")
    args = ap.parse_args(argv)
    stale = 0
    for path in DOCS:
        old = path.read_text(encoding="utf-8")
        new = render(old)
        if new == old:
            continue
        if args.check:
            stale += 1
            rel = path.relative_to(ROOT)
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       f"{rel} (committed)", f"{rel} (from --help)"))
        else:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path.relative_to(ROOT)}")
    if stale:
        print(f"{stale} file(s) have option tables that differ from --help: "
              "run python scripts/docs_options.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
