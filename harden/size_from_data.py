"""A network that runs at no input size it was given or could guess (a state dict with --arch alone whose flatten
before a linear layer was sized for 32 x 64: no square size matches) is tried at the size of the images of --data,
the size it most likely trained at; taken where it runs there, and said."""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, TypeVar

from .checkpoint import SIZES_TRIED
from .errors import DoesNotRun
from .runtime import warn

T = TypeVar("T")


def data_size(data: str, data_flags) -> tuple[tuple[int, int], int] | None:
    """((height, width), channels) the data's images are read at with no model to say it (their own size where most
    share one, a shorter side of 224 at most); None where the data cannot be read so."""
    from .data import DataTarget, load_data
    from .errors import HardenError
    kw = data_flags.target_kwargs()
    kw.pop("test_size", None)
    try:
        found = load_data(data, DataTarget(**kw))
        return tuple(found.input_size), int(found.in_chans)
    except (HardenError, OSError, ValueError):
        return None


def at_data_size(call: Callable[[object], T], model_flags, data: str | None, data_flags, what: str,
                 hold: bool = True) -> tuple[T, object]:
    """(call(flags), flags): model_flags, or where the network runs at no size it was given or guessed and --data is
    given without --input-size, model_flags at the data's size (and its channels, for grey images where --in-chans
    is not given) if the network runs there. `hold`: the first call's warnings wait for its outcome (a load, whose
    assumed size is then not said if another is taken; not a whole run, whose warnings are said as they come)."""
    from .runtime import held_warnings
    error, first_words = None, []
    with held_warnings() if hold else contextlib.nullcontext([]) as held:
        try:
            result = call(model_flags)
        except DoesNotRun as e:
            error, first_words = e, list(held)
            held.clear()
    if error is None:
        for msg in held:
            warn(msg)
        return result, model_flags
    retried = None
    if error.size_assumed and data is not None and model_flags.input_size is None:
        retried = _at_data_size(call, model_flags, data, data_flags, what, hold)
    if retried is None:
        for msg in first_words:  # the first call's words, where nothing better was found
            warn(msg)
        raise error
    return retried


def _at_data_size(call: Callable[[object], T], model_flags, data: str, data_flags, what: str,
                  hold: bool) -> tuple[T, object] | None:
    """call at the data's size (then with its channels too, for grey images), or None where it runs at neither."""
    from .runtime import held_warnings
    found = data_size(data, data_flags)
    if found is None:
        return None
    (h, w), chans = found
    if h == w and h in SIZES_TRIED:
        return None  # tried already
    tries = [{"input_size": f"{h}x{w}"}]
    if chans != 3 and model_flags.in_chans is None:
        tries.append({"input_size": f"{h}x{w}", "in_chans": chans})
    for given in tries:
        flags = dataclasses.replace(model_flags, **given)
        flags_text = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
        taken = (f"{what} runs at no common square size, but at the size of the images of {data} ({h}x{w}): taken "
                 f"as its input size ({flags_text}; pass them to say so, or the size it was trained at)")
        if not hold:  # a whole run: said before it
            warn(taken)
        with held_warnings() if hold else contextlib.nullcontext([]) as held:
            try:
                result = call(flags)
            except DoesNotRun as e:
                if not e.size_may_help:  # it runs at the data's size, but not on a batch: that is what to say
                    raise
                held.clear()  # a size that does not run either: nothing of it to say
                continue
        for msg in held:
            warn(msg)
        if hold:
            warn(taken)
        return result, flags
    return None
