"""`hf:org/name` (also timm's `hf-hub:org/name`): a model or dataset the Hugging Face libraries already downloaded,
read from their cache on this machine, never from the network. A model is its hub cache snapshot
(`$HF_HUB_CACHE/models--org--name/snapshots/<commit>/`: a timm or transformers folder); a dataset is its hub cache
snapshot (the repository's parquet files), else the folder `datasets.load_dataset` built (`$HF_DATASETS_CACHE/
org___name/`: Arrow files). `@revision` picks a branch, tag or commit the cache holds."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import HardenError

PREFIXES = ("hf:", "hf-hub:")


def is_hub_spec(spec: object) -> bool:
    return isinstance(spec, (str, os.PathLike)) and str(spec).startswith(PREFIXES)


def _home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def hub_cache() -> Path:
    return Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or _home() / "hub")


def datasets_cache() -> Path:
    return Path(os.environ.get("HF_DATASETS_CACHE") or _home() / "datasets")


# what a training state holds beside the model's weights, by the start of its files' names (accelerate's save_state:
# optimizer.bin, scheduler.bin, scaler.pt, sampler.bin, random_states_0.pkl; transformers' Trainer: rng_state.pth,
# training_args.bin)
NOT_WEIGHTS = ("optimizer", "scheduler", "scaler", "sampler", "random_states", "rng_state", "training_args")
STATE_MODEL_FILES = ("model.safetensors", "pytorch_model.bin")
_said_state: set[str] = set()


def _training_state_weights(path: Path) -> Path | None:
    """The one model weights file of a training-state folder (accelerate's save_state: model.safetensors beside
    optimizer.bin, scheduler.bin, random_states_0.pkl), else None (a second model's model_1.safetensors beside it:
    which one is the user's to say)."""
    try:
        names = {e.name for e in os.scandir(path) if e.is_file()}
    except OSError:
        return None
    if "config.json" in names or not any(n.lower().startswith(NOT_WEIGHTS) for n in names):
        return None
    models = [n for n in names if n in STATE_MODEL_FILES
              or (n.startswith(("model_", "pytorch_model_")) and n.endswith((".safetensors", ".bin")))]
    return path / models[0] if len(models) == 1 and models[0] in STATE_MODEL_FILES else None


def local(spec: str | os.PathLike, kind: str) -> str | os.PathLike:
    """The cached folder of an `hf:` spec (kind: 'model' or 'dataset'); for a model, the weights file of a training
    state's folder (accelerate's save_state); any other spec as given."""
    if not is_hub_spec(spec):
        if kind == "model" and os.path.isdir(spec):
            weights = _training_state_weights(Path(spec))
            if weights is not None:
                if str(weights) not in _said_state:
                    from .runtime import info
                    _said_state.add(str(weights))
                    info(f"{str(spec)!r} is a training state's folder (accelerate's save_state: the optimizer's and "
                         f"the random generators' states beside the model): its weights are {weights.name}")
                return weights
        return spec
    text = str(spec)
    name = text.split(":", 1)[1].strip("/")
    repo, _, revision = name.partition("@")
    if repo.count("/") > 1 or not repo:
        raise HardenError(f"{text!r}: an hf: name is org/name or name (a repository on the Hugging Face hub), with "
                          "@revision optional.")
    snapshot = _snapshot(hub_cache() / f"{kind}s--{repo.replace('/', '--')}", revision or "main")
    if snapshot is not None:
        return snapshot
    if kind == "dataset":
        built = datasets_cache() / repo.replace("/", "___")
        if built.is_dir() and not revision:
            return built
    where = f"{hub_cache()}" + (f" or {datasets_cache()}" if kind == "dataset" else "")
    fetch = f"huggingface-cli download {'--repo-type dataset ' if kind == 'dataset' else ''}{repo}"
    raise HardenError(f"{text!r} is not in the Hugging Face cache on this machine ({where}); harden never downloads. "
                      f"Fetch it where there is a network ({fetch}, or load it once with the library) and copy the "
                      "cache here, or pass its folder.")


def _snapshot(repo_dir: Path, revision: str) -> Path | None:
    """The snapshot a revision names: refs/<branch or tag> holds its commit; a commit is a snapshot's own name."""
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
        if (snapshots / commit).is_dir():
            return snapshots / commit
    if (snapshots / revision).is_dir():
        return snapshots / revision
    found = [p for p in snapshots.iterdir() if p.is_dir() and p.name.startswith(revision)] if len(revision) >= 7 else []
    if len(found) == 1:
        return found[0]
    if revision == "main":  # no refs/main (a cache copied without it): the one snapshot, or the newest
        every = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        return every[-1] if every else None
    return None


def hint(spec: str | os.PathLike, kind: str) -> str:
    """For a path that does not exist but reads as a hub repository (org/name): how to name it."""
    text = str(spec)
    parts = text.split("/")
    if is_hub_spec(text) or len(parts) != 2 or not all(parts) or Path(text).suffix or text.startswith((".", "~")):
        return ""
    try:
        local("hf:" + text, kind)
    except HardenError:
        return (f" If {text!r} is a Hugging Face repository, write hf:{text}: harden reads it from the Hugging Face "
                "cache on this machine (it never downloads).")
    return f" hf:{text} is in the Hugging Face cache on this machine: write that."
