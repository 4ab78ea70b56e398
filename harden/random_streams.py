"""The random streams a training run draws from, as plain data and back: what a saved run keeps (resume.py) so that it
continues with the draws an uninterrupted run makes."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

def random_state(stream: Any) -> Any:
    """A random stream's state as plain data: a torch or numpy Generator, Python's Random, albumentations' pipeline
    (each transform draws from its own generators), or a list of counters a step closure keeps."""
    if isinstance(stream, torch.Generator):
        return stream.get_state()
    if isinstance(stream, np.random.Generator):
        return stream.bit_generator.state
    if isinstance(stream, random.Random):
        return stream.getstate()
    if isinstance(stream, list):
        return list(stream)
    if stream is None:
        return None
    if hasattr(stream, "random_generator") and hasattr(stream, "py_random"):  # albumentations
        return {"numpy": stream.random_generator.bit_generator.state, "python": stream.py_random.getstate(),
                "parts": [random_state(t) for t in getattr(stream, "transforms", [])]}
    raise TypeError(f"internal error: no random state for {type(stream).__name__}")


def set_random_state(stream: Any, state: Any) -> None:
    if isinstance(stream, torch.Generator):
        stream.set_state(state)
    elif isinstance(stream, np.random.Generator):
        stream.bit_generator.state = state
    elif isinstance(stream, random.Random):
        stream.setstate(state)
    elif isinstance(stream, list):
        stream[:] = state
    elif stream is not None:
        stream.random_generator.bit_generator.state = state["numpy"]
        stream.py_random.setstate(state["python"])
        for t, s in zip(getattr(stream, "transforms", []), state["parts"], strict=True):
            set_random_state(t, s)


def global_random_state() -> dict[str, Any]:
    """torch's (CPU and CUDA), numpy's and Python's global streams: dropout, drop-path, anything seeded globally."""
    legacy = np.random.get_state(legacy=False)
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
            else None,
            "numpy": {**legacy, "state": {"key": torch.from_numpy(legacy["state"]["key"].astype(np.int64)),
                                          "pos": int(legacy["state"]["pos"])}},
            "python": random.getstate()}


def set_global_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    legacy = dict(state["numpy"])
    legacy["state"] = {"key": legacy["state"]["key"].numpy().astype(np.uint32), "pos": legacy["state"]["pos"]}
    np.random.set_state(legacy)
    random.setstate(state["python"])

