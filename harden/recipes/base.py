"""The recipe protocol. A recipe is one module: `attach` edits/extends a loaded base model (and is
replayed by `harden.load` from the checkpoint's metadata), `train` hardens it through the shared loop
(`harden.training.fit`). Defaults live in `recipes/<name>.toml`, each with its paper section."""
from __future__ import annotations

import os
import re
import sysconfig
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from ..data import Data
from ..errors import HardenError
from ..models import Classifier
from ..training import TrainConfig, TrainResult

RECIPES: dict[str, type["Recipe"]] = {}
# What `harden fix` runs without --recipe: the recipe that measurably hardens white-box (README, BENCHMARKS.md).
DEFAULT_RECIPE = "at"


def register_recipe(cls: type["Recipe"]) -> type["Recipe"]:
    RECIPES[cls.name] = cls
    return cls


class Recipe:
    name: ClassVar[str]

    def attach(self, model: Classifier, params: dict[str, Any]) -> None:
        """Add the recipe's modules to `model` (as `model.patch`) or edit it; deterministic in params."""
        raise NotImplementedError

    # whether `train` takes pseudo-labelled images (`fix --unlabeled`): `unlabeled` is then a Data whose training
    # labels are the base's
    takes_unlabeled: ClassVar[bool] = False

    def train(self, model: Classifier, data: Data, params: dict[str, Any], cfg: TrainConfig,
              device: torch.device, unlabeled: Data | None = None) -> TrainResult:
        raise NotImplementedError

    def auto_epochs(self, data_frac: float) -> int:
        """Epochs when the recipe file says epochs = "auto"."""
        raise HardenError(f"Recipe {self.name!r} has no automatic epoch count; set epochs in its file or --epochs.")

    def auto_batch_size(self, n_images: int) -> int:
        """Batch size when the recipe file says batch_size = "auto"; n_images is the training fraction's size."""
        raise HardenError(f"Recipe {self.name!r} has no automatic batch size; set batch_size in its file or "
                          "--batch-size.")

    def frozen_base(self) -> bool:
        """True when the base weights must stay unchanged (the patch alone can be exported)."""
        return True

    def auto_augment(self, data: Data) -> str:
        """What augment = "auto" means: pad + crop for grey digit-like data (flips change digits), seed 000's
        table 3 pipeline otherwise."""
        return "crop" if data.kind == "mnist-like" else "seed000"


CHECKOUT_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def recipes_dir() -> Path:
    """$HARDEN_RECIPES, else the checkout's `recipes/` (source and editable installs), else the copy a
    wheel installs under <prefix>/share/harden/recipes (pyproject's data-files)."""
    env = os.environ.get("HARDEN_RECIPES")
    if env:
        return Path(env)
    if (CHECKOUT_RECIPES / "fixer.toml").is_file():
        return CHECKOUT_RECIPES
    return Path(sysconfig.get_path("data")) / "share" / "harden" / "recipes"


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise HardenError(f"Recipe file {str(path)!r} is not valid TOML ({e}).") from None


# TrainConfig fields a recipe file's [train] section (or --set) may give
AUTO_TRAIN_KEYS = ("epochs", "batch_size")
TRAIN_KEYS = ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "schedule", "augment", "grad_clip", "ema",
              "extend")


def load_recipe_config(spec: str) -> dict[str, Any]:
    """`spec` is a recipe name (recipes/<name>.toml) or a path to a user's copy of a recipe file.
    Returns {'name', 'file', 'params': {...}, 'train': {...}}."""
    path = Path(spec)
    if not (spec.endswith(".toml") or path.exists()):
        path = recipes_dir() / f"{spec}.toml"
        if not path.exists():
            known = sorted(p.stem for p in recipes_dir().glob("*.toml"))
            raise HardenError(f"Unknown recipe {spec!r}; known recipes: {', '.join(known) or 'none'} "
                              "(or pass the path of a recipe .toml file).")
    elif not path.is_file():
        raise HardenError(f"Recipe file {spec!r} does not exist.")
    doc = _toml(path)
    name = str(doc.get("recipe", {}).get("name", path.stem))
    if name not in RECIPES:
        raise HardenError(f"Recipe file {str(path)!r} names recipe {name!r}, which harden does not have "
                          f"(known: {', '.join(sorted(RECIPES))}).")
    train = dict(doc.get("train", {}))
    unknown = sorted(set(train) - set(TRAIN_KEYS))
    if unknown:
        raise HardenError(f"Recipe file {str(path)!r} has unknown [train] keys {', '.join(unknown)}; "
                          f"[train] takes {', '.join(TRAIN_KEYS)}.")
    # the shared loop's defaults, so that --set weight_decay=... / grad_clip=... work for every recipe
    defaults = TrainConfig()
    train = {**{k: getattr(defaults, k) for k in TRAIN_KEYS}, **train}
    params = dict(doc.get("params", {}))
    by_kind = {str(k): dict(v) for k, v in doc.get("defaults", {}).items()}
    for kind, table in by_kind.items():
        unknown = sorted(k for k in table if k != "why" and k not in params and k not in train)
        if kind not in DATA_KINDS or unknown:
            raise HardenError(f"Recipe file {str(path)!r}: [defaults.{kind}] " + (
                f"sets unknown keys {', '.join(unknown)}" if unknown else
                f"names no kind of data harden knows ({', '.join(DATA_KINDS)})") + ".")
    return {"name": name, "file": str(path), "params": params, "train": train, "defaults": by_kind, "explicit": []}


DATA_KINDS = ("mnist-like", "cifar-like", "imagenet-like")  # Data.kind


def apply_kind_defaults(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """A recipe file's `[defaults.<kind>]`: settings measured better than the file's defaults for this kind of data
    (BENCHMARKS.md), applied unless the user set them (--set, --epochs ...). Returns what was applied and why."""
    table = dict(config.get("defaults", {}).get(kind, {}))
    why = str(table.pop("why", ""))
    if "attack" in table and "attack" in config.get("explicit", []):
        # the table's settings were measured together for its attack (FGSM-RS for twice the epochs): with another
        # attack chosen, none of them is the measured choice
        return {}
    applied = {}
    for key, value in table.items():
        if key in config.get("explicit", []):
            continue
        section = "params" if key in config["params"] else "train"
        config[section][key] = value
        applied[key] = value
    return {"kind": kind, "applied": applied, "why": why} if applied else {}


def resolve_auto(key: str, value: Any, auto: Callable[[], int]) -> int:
    """'auto' -> auto(); 'K*auto' -> round(K * auto()) (e.g. twice the epochs for a cheaper training attack);
    else the number given."""
    text = str(value).replace(" ", "").lower()
    if text == "auto":
        return auto()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\*auto", text)
    if m:
        return max(1, round(float(m.group(1)) * auto()))
    try:  # a recipe file's "auto" makes --set epochs=N a string
        number = int(value)
    except (TypeError, ValueError):
        raise HardenError(f"{key} must be a whole number, auto or K*auto, got {value!r}.") from None
    if number < 1:
        raise HardenError(f"{key} must be at least 1, got {number}.")
    return number


def apply_overrides(config: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """`--set key=value`: typed like the default it replaces; unknown keys are an error."""
    for item in sets:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise HardenError(f"--set {item!r} is not of the form key=value.")
        section = "params" if key in config["params"] else ("train" if key in config["train"] else None)
        if section is None:
            known = sorted(config["params"]) + sorted(config["train"])
            raise HardenError(f"Recipe {config['name']!r} has no setting {key!r}; its settings are {', '.join(known)}.")
        config[section][key] = _typed(value.strip(), config[section][key], key)
        config.setdefault("explicit", []).append(key)
    return config


def _typed(value: str, default: Any, key: str) -> Any:
    from ..attacks import parse_number
    if key in AUTO_TRAIN_KEYS and re.fullmatch(r"(\d+(\.\d+)?\*)?auto", value.lower().replace(" ", "")):
        return value.lower()  # resolved by harden.fix through the recipe's auto_epochs / auto_batch_size
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise HardenError(f"--set {key}= takes true or false, got {value!r}.")
        return value.lower() in ("true", "1", "yes")
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise HardenError(f"--set {key}= takes an integer, got {value!r}.") from None
    if isinstance(default, float) or isinstance(default, str) and _is_number(default):  # eps = "8/255"
        try:
            parse_number(value)
        except HardenError:
            raise HardenError(f"--set {key}= takes a number (its default: {default}), got {value!r}.") from None
        return parse_number(value) if isinstance(default, float) else value
    return value


def _is_number(text: str) -> bool:
    from ..attacks import parse_number
    try:
        parse_number(text)
    except HardenError:
        return False
    return True


def training_attack(params: dict[str, Any]):
    """The attack a recipe trains against: a registry preset at the recipe's eps; step 'auto' keeps the
    preset's step/eps ratio, 'eps/K' is eps divided by K, a number is absolute; `steps` and `restarts`
    override the preset's."""
    from ..attacks import build_attack, parse_number
    from ..report.curves import at_budget
    spec = str(params["attack"])
    attack = build_attack(spec, eps=parse_number(params["eps"]))
    if "eps" in attack.params and "eps" not in attack.explicit and attack.norm != "inf":
        # the recipe's eps is its training attack's budget in that attack's norm (pgd-l2: an L2 radius)
        attack = at_budget(attack, parse_number(params["eps"]))
    step = str(params.get("step", "auto")).replace(" ", "")
    if "step" in attack.params and step != "auto":
        # "eps/4": a step relative to the budget, so that changing eps keeps the attack able to reach it
        try:
            attack.params["step"] = attack.params["eps"] / parse_number(step[4:]) if step.startswith("eps/") \
                else parse_number(step)
        except HardenError:
            raise HardenError(f"--set step= takes auto, eps/K (the budget over K) or a number, got {step!r}.") from None
    for key in ("steps", "restarts"):
        if key in attack.params and key in params:
            attack.params[key] = int(params[key])
    if "early_stop" in attack.params:  # training wants the high-loss last iterate, not the first success
        attack.params["early_stop"] = False
    attack.check()  # --set eps=-0.1 or steps=0 would train against no attack
    return attack


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise HardenError(f"The checkpoint was hardened with recipe {name!r}, which this harden does not have.")
    return RECIPES[name]()
