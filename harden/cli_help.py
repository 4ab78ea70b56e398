"""A command's `--help` laid out for the terminal it is read in.

typer's rich panels give each option's names, its `--no-...` form and its type a column of their own, as wide as
the widest of them: harden's longer options (`--masking-checks  --no-masking-checks`, `<int range> [x>=1]`) take
about 70 columns before any help text, so an 80-column terminal read each option's help 17 characters at a time,
one word a line. Below RICH_HELP_COLUMNS the same help is laid out as click's plain list (the help beside or under
each option, wrapped at 80); wider terminals keep the panels."""
from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand

# rich's panels leave harden's widest option tables (eval, fix) 40 columns of help at 120 (measured with typer 0.29)
RICH_HELP_COLUMNS = 120


def terminal_columns() -> int:
    """The width typer's rich help would be printed at: TERMINAL_WIDTH where set (typer reads it), else rich's own
    reading (COLUMNS, then the terminal; 80 when the output is not a terminal)."""
    try:
        return int(os.environ["TERMINAL_WIDTH"])
    except (KeyError, ValueError):
        return Console().width


class TerminalHelpCommand(TyperCommand):
    """A typer command whose help is click's plain layout on a terminal too narrow for rich's panels."""

    def format_help(self, ctx, formatter) -> None:
        if terminal_columns() >= RICH_HELP_COLUMNS:
            # a flag takes no value: typer's panels gave each a `<bool>` type, read as `--force true`
            flags = [p for p in self.get_params(ctx) if getattr(p, "is_flag", False) and p.metavar is None]
            for param in flags:
                param.metavar = ""
            try:
                return super().format_help(ctx, formatter)
            finally:
                for param in flags:
                    param.metavar = None
        # typer's switch to click's formatter, which prints help as written: rich's markup (`'^\\[a-z]+'`) as text
        mode, self.rich_markup_mode = self.rich_markup_mode, None
        written = [(p, p.help) for p in self.params if getattr(p, "help", None)]
        for param, text in written:
            param.help = Text.from_markup(text).plain
        try:
            return super().format_help(ctx, formatter)
        finally:
            self.rich_markup_mode = mode
            for param, text in written:
                param.help = text


class TerminalHelpTyper(typer.Typer):
    """typer.Typer whose commands are TerminalHelpCommand unless one names its own class."""

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or TerminalHelpCommand, **kwargs)
