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
_document: list = [None]  # the standard output the document goes to, while everything else's is standard error


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
    if named and _document[0] is None:
        # a network's own prints (a forward's `print(x.shape)`, a module that prints on import) and any library's
        # go to standard error too, so that standard output holds the document alone
        _document[0], sys.stdout = sys.stdout, sys.stderr
    return bool(named)


def release() -> None:
    """Standard output back as it was before `claim` sent other prints to standard error (the end of a command)."""
    if _document[0] is not None:
        sys.stdout, _document[0] = _document[0], None


def write(path: str | os.PathLike, text: str) -> None:
    """The document to standard output for '-', else to the file, atomically (temp file + rename)."""
    if is_stdout(path):
        out = _document[0] or sys.stdout
        out.write(text if text.endswith("\n") else text + "\n")
        out.flush()
        return
    from .checkpoint import atomic_write_bytes
    atomic_write_bytes(Path(path), text.encode())
