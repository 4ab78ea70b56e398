"""`--json -` (and `--markdown -`, `--junit -`): a report written to standard output for a pipe
(`harden eval model.safetensors --json - | jq .values.pgd`). Standard output then holds that document alone: the
table, the notes, the "wrote ..." lines and GitHub's annotations go to standard error (GitHub reads workflow commands
from both)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console

from .errors import HardenError

STDOUT = "-"


def is_stdout(path: str | os.PathLike | None) -> bool:
    return path is not None and str(path) == STDOUT


def claim(console: Console, files_only: dict[str, object] | None = None, **documents: object) -> bool:
    """Check that at most one document goes to standard output and none that is a file by nature (`files_only`:
    --html, --plots); when one does, `console` prints to standard error. True when one does."""
    named = [f"--{k.replace('_', '-')}" for k, p in documents.items() if is_stdout(p)]
    files = [f"--{k.replace('_', '-')}" for k, p in (files_only or {}).items() if is_stdout(p)]
    if files:
        raise HardenError(f"{', '.join(files)} writes a file (an HTML page embeds its figures; --plots a folder); "
                          "'-' (standard output) is for --json, --markdown or --junit.")
    if len(named) > 1:
        raise HardenError(f"Only one output can go to standard output ('-'); {' and '.join(named)} both name it.")
    console.file = sys.stderr if named else None  # None: rich's default, standard output as it is at each print
    return bool(named)


def write(path: str | os.PathLike, text: str) -> None:
    """The document to standard output for '-', else to the file, atomically (temp file + rename)."""
    if is_stdout(path):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    from .checkpoint import atomic_write_bytes
    atomic_write_bytes(Path(path), text.encode())
