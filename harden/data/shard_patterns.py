"""Shards named by a pattern, as WebDataset and TFRecord pipelines name them: brace ranges (`imagenet-train-
{000000..001281}.tar`, several ranges, `{a,b}` choices) and shell globs (`shards/val-*.tar`, quoted so the shell leaves
them). The files a pattern names are read as the folder of those shards would be (split by the words in their names);
every file a brace range names must exist, as WebDataset's loader would fail on it later otherwise."""
from __future__ import annotations

import glob
import re
from pathlib import Path

from ..errors import HardenError

RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
CHOICE = re.compile(r"\{([^{}]*,[^{}]*)\}")
MAX_FILES = 1_000_000


def expand_braces(pattern: str) -> list[str]:
    """WebDataset's (braceexpand's) notation: `{000..012}` zero-padded to the first bound's width, `{a,b}` choices,
    expanded left to right."""
    r, c = RANGE.search(pattern), CHOICE.search(pattern)
    first = min((m for m in (r, c) if m is not None), key=lambda m: m.start(), default=None)
    if first is None:
        return [pattern]
    head, tail = pattern[:first.start()], pattern[first.end():]
    if first is r:
        lo, hi = first.group(1), first.group(2)
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        step = 1 if int(hi) >= int(lo) else -1
        if abs(int(hi) - int(lo)) >= MAX_FILES:
            raise HardenError(f"--data {pattern!r}: the range {first.group(0)} names over {MAX_FILES:,} files.")
        parts = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    else:
        parts = first.group(1).split(",")
    return [x for p in parts for x in expand_braces(head + p + tail)]


def is_pattern(spec: str) -> bool:
    return bool(RANGE.search(spec) or CHOICE.search(spec) or glob.has_magic(spec))


def on_disk(spec: str) -> bool:
    """Whether a checkpoint's recorded data is here: a path that exists, or a pattern (its shards are checked when
    read)."""
    return Path(spec).exists() or is_pattern(spec)


def pattern_files(spec: str) -> list[Path] | None:
    """The files `spec` names as a pattern (in the pattern's order; a glob's sorted); None where it is no pattern.
    An error where it names none, or a brace range names files that are not there."""
    if not is_pattern(spec):
        return None
    if RANGE.search(spec) or CHOICE.search(spec):
        named = [Path(p) for p in expand_braces(spec)]
        missing = [p for p in named if not p.is_file()]
        if missing and len(missing) == len(named):
            raise HardenError(f"--data {spec!r} names {len(named):,} shard(s), none of which exists (the first: "
                              f"{missing[0]}).")
        if missing:
            raise HardenError(f"--data {spec!r} names {len(named):,} shards, {len(missing):,} of which do not exist "
                              f"({', '.join(str(p) for p in missing[:3])}{', ...' if len(missing) > 3 else ''}).")
        return named
    found = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
    if not found:
        raise HardenError(f"--data {spec!r} is a pattern that matches no file.")
    return found


def pattern_source(spec: str, files: list[Path], columns=None):
    """OnDisk of the shards a pattern names: tar shards or TFRecord files, split by the words in their names."""
    from .sources import _tar_source, pick_splits, split_word
    from .tfrecord import is_tfrecord, refuse_compressed, tfrecord_source
    if all(f.suffix.lower() == ".tar" for f in files):
        by_word: dict[str, list[Path]] = {}
        for f in files:
            by_word.setdefault(split_word(f.name) or "", []).append(f)
        return _tar_source(spec, pick_splits(by_word))
    for f in files:
        refuse_compressed(f)
    if all(is_tfrecord(f) for f in files):
        return tfrecord_source(Path(spec), columns, files)
    kinds = sorted({f.suffix.lower() or f.name for f in files})
    raise HardenError(f"--data {spec!r} names {len(files):,} files ({', '.join(kinds[:4])}); a pattern names tar "
                      "shards or TFRecord files, all of one kind (a folder, list or table is given by its path).")
