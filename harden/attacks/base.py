"""The attack protocol: every attack is `Attack(**params).run(model, x, y) -> AttackOutput`, with x in
[0, 1] NCHW on the model's device. Presets cite their source; options override presets."""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import HardenError

ATTACKS: dict[str, type["Attack"]] = {}


def register_attack(cls: type["Attack"]) -> type["Attack"]:
    ATTACKS[cls.name] = cls
    return cls


@dataclass
class AttackOutput:
    x_adv: torch.Tensor
    # Image-level forward+backward passes the algorithm needs at these settings (its cost floor);
    # early-stopping attacks count what each image actually used.
    grad_passes: int
    forward_passes: int = 0  # extra forward-only passes
    extra_backward_passes: int = 0  # further backward passes that reuse one forward (per-class gradients)
    # multi-stage attacks (autoattack): the stages in order, and for each image the index of the stage whose
    # adversarial image it keeps (len(stages): none fooled it); a cascade never attacks an image again once fooled, so
    # this and x_adv give every stage's images (stage_images) without a copy of the batch per stage
    stages: list[str] | None = None
    fooled_at: torch.Tensor | None = None
    stage_seconds: dict[str, float] | None = None  # and the wall time each stage took

    def stage_images(self, x: torch.Tensor):
        """(stage, the adversarial images after it) for each stage in order; `x` the clean images."""
        for k, stage in enumerate(self.stages or []):
            yield stage, torch.where((self.fooled_at <= k).view(-1, *[1] * (x.dim() - 1)), self.x_adv, x)

    def floor_seconds(self, t_fwd_bwd: float, t_fwd: float) -> float:
        """The cost floor in seconds given per-image pass costs."""
        return (self.grad_passes * t_fwd_bwd + self.forward_passes * t_fwd
                + self.extra_backward_passes * max(t_fwd_bwd - t_fwd, 0.0))


class Attack:
    name: ClassVar[str]
    norm: ClassVar[str]  # "inf", "2" or "0": the norm its budget and its perturbation size are measured in
    minimal: ClassVar[bool] = False  # minimal-perturbation attack: robust when it fails or exceeds the budget
    single_step: ClassVar[bool] = False  # one gradient step (the FGSM family): weak beside an iterative attack
    defaults: ClassVar[dict[str, Any]]
    source: ClassVar[str]

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise HardenError(f"Attack {self.name!r} has no option {', '.join(unknown)}; its options are "
                              f"{', '.join(f'{k}={v}' for k, v in self.defaults.items())}.")
        self.params = {**self.defaults, **params}
        self.explicit = set(params)  # the options the user gave (the rest are preset)
        for k, v in self.params.items():
            dv = self.defaults[k]
            if isinstance(dv, bool):
                self.params[k] = bool(v)
            elif isinstance(dv, int) and not isinstance(dv, bool):
                if isinstance(v, float) and not v.is_integer():  # steps=1.5 ran one step before
                    raise HardenError(f"Attack {self.name!r}: {k} is a whole number, got {_fmt(v)}.")
                self.params[k] = int(v)
            elif isinstance(dv, float):
                self.params[k] = float(v)
            elif isinstance(dv, str):
                self.params[k] = str(v)
        self.check()

    # options whose value outside these ranges would run another attack than asked, or none (steps=0 is no attack)
    _AT_LEAST = {"steps": 1, "fab_steps": 1, "queries": 1, "search_steps": 1, "n_targets": 1, "eot": 1,
                 "restarts": 0, "nb_grads": 2, "confidence": 0.0, "overshoot": 0.0, "noise": 0.0, "max_l0": 0.0,
                 "pixels_per_step": 0}
    _POSITIVE = ("eps", "step", "alpha", "lr", "c", "gamma", "rho")

    def check(self) -> None:
        """Refuse option values that make no attack (a negative budget, zero steps) before any work is done."""
        for k, v in self.params.items():
            low = self._AT_LEAST.get(k)
            if (low is not None and v < low) or (k in self._POSITIVE and not v > 0) or v != v:
                bound = f">= {low}" if low is not None else "> 0"
                raise HardenError(f"Attack {self.name!r}: {k} must be {bound}, got {_fmt(v)}.")
        if self.params.get("eps", 0) > 1 and getattr(self, "norm", None) == "inf" and \
                str(self.params.get("norm", "linf")).lower() == "linf":
            raise HardenError(f"Attack {self.name!r}: an L-inf eps is in pixel units of [0, 1], got "
                              f"{_fmt(self.params['eps'])}{in_255_hint(self.params['eps'], 'eps=')}.")

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator | None = None) -> AttackOutput:
        raise NotImplementedError

    def stage_names(self) -> list[str]:
        """Stages whose robust accuracy the report gives separately (a cascade such as autoattack)."""
        return []

    # how many of the report's batches one run may take (run(..., chunk=batch) then attacks at most `chunk` images at
    # a time): a cascade runs each stage once over the images that every batch's earlier stages left robust, in full
    # batches, as the original AutoAttack does, rather than its whole sequence once per batch on a few images each
    batches_at_once: ClassVar[int] = 1
    # whether taking several batches pays only where a step's cost is its launches (a GPU), not its arithmetic: an
    # early-stopping attack's batch kept full (refill.py) runs its steps on full batches, which on a CPU are slower per
    # image than the smaller batches they replace (their activations leave the cache); the report then takes one batch
    # a run on the CPU
    launch_bound_only: ClassVar[bool] = False

    # where a long run says which stage it is in and how much of its work is done (the report's progress bar: a run
    # of a whole cascade over several batches can take minutes, with the bar at 0 and no ETA until it ends); None:
    # nobody listens
    notify: Callable[[str, float], None] | None = None

    def say(self, text: str, done: float = 0.0) -> None:
        """`done`: the share of this run's work finished, 0 to 1 (the bar moves by it within the run)."""
        if self.notify is not None:
            self.notify(text, done)

    def progressed(self, done: float) -> None:
        """The share of this run's work finished, with nothing to say beside the bar."""
        self.say("", done)

    def describe(self) -> str:
        ps = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.name}({ps})"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        frac = Fraction(v).limit_denominator(255)
        if frac.denominator == 255 and abs(float(frac) - v) < 1e-9:
            return f"{frac.numerator}/255"
        return f"{v:g}"
    return str(v)


def in_255_hint(value: float, flag: str) -> str:
    """Budgets written in 0-255 pixel steps (papers' '8' for 8/255): the fraction that was probably meant."""
    if 1 < value <= 255:
        return f" (in 0-255 steps that is {value:g}/255 = {value / 255:.4g}: write {flag}{value:g}/255)"
    return ""


def parse_number(text: str | float | int) -> float:
    """Accept 0.03, 8/255, 2e-3."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    try:
        if "/" in s:
            a, b = s.split("/", 1)
            return float(a) / float(b)
        return float(s)
    except (ValueError, ZeroDivisionError):
        raise HardenError(f"{text!r} is not a number (examples: 0.03, 8/255).") from None


def parse_attack_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'pgd:steps=50,step=0.005' -> ('pgd', {'steps': 50.0, 'step': 0.005})."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in ATTACKS:
        several = [w for w in re.split(r"[\s,;]+", name) if w]
        hint = (" Give one attack per --attack, repeating the flag (" + " ".join(f"--attack {w}" for w in several)
                + ")." if len(several) > 1 and all(w in ATTACKS for w in several) else "")
        raise HardenError(f"Unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}.{hint}")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        k, eq, v = item.partition("=")
        if not eq:
            raise HardenError(f"Attack option {item!r} in {spec!r} is not of the form key=value.")
        k, v = k.strip(), v.strip()
        if re.search(r"[:;]\s*[A-Za-z_]+\s*=", v):  # pgd:eps=16/255:steps=3
            raise HardenError(f"Attack option {item!r} in {spec!r} holds another option: separate an attack's options "
                              f"with commas ({name}:{re.sub(r'[:;](?=[A-Za-z_ ]+=)', ',', rest)}).")
        default = ATTACKS[name].defaults.get(k)
        if isinstance(default, str):  # a word option: norm=L2, loss=dlr, version=rand
            params[k] = v
        elif v.lower() in ("true", "false", "yes", "no"):
            params[k] = v.lower() in ("true", "yes")
        else:
            try:
                params[k] = parse_number(v)
            except HardenError:
                takes = ("true or false" if isinstance(default, bool) else
                         f"a number (its default: {_fmt(default)})" if default is not None else "a number")
                raise HardenError(f"Attack {name!r}: {k}={v!r} in {spec!r}: {k} takes {takes}.") from None
    return name, params


def build_attack(spec: str, eps: float | None = None) -> Attack:
    """`eps` is the L-inf budget: it reaches the L-inf attacks only (an L2 attack's eps comes from --eps-l2)."""
    name, params = parse_attack_spec(spec)
    cls = ATTACKS[name]
    given = set(params)
    if eps is not None and "eps" in cls.defaults and "eps" not in params and cls(**params).norm == "inf":
        params["eps"] = eps
    # A preset's step (or alpha) is tied to its eps (seed 000: 0.005 at 8/255); keep the ratio when only eps changes,
    # so that steps x step still reaches the boundary of a larger ball.
    for key in ("step", "alpha"):
        if "eps" in params and key in cls.defaults and key not in params:
            params[key] = cls.defaults[key] * params["eps"] / cls.defaults["eps"]
    atk = cls(**params)
    atk.explicit = given
    return atk


def norm_of(spec: str) -> str | None:
    """The norm of the attack a spec builds ("inf", "2", "0"), whatever its budget (built at a valid one, so that a
    bad eps elsewhere is said as such), or None for a spec that builds no attack."""
    from ..errors import HardenError
    try:
        return build_attack(str(spec), eps=0.01).norm
    except HardenError:
        return None


# ------------------------------------------------------------------ shared helpers

def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Z_y - max_{i != y} Z_i (C&W's f6 before clamping): negative means misclassified."""
    zy = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return zy - other


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    if norm == "inf":
        return flat.abs().amax(1)
    if norm == "2":
        return flat.norm(dim=1)
    if norm == "0":
        return (flat.abs() > 1e-6).sum(1).float()
    raise ValueError(norm)


def art_classifier(model: nn.Module, x_shape: tuple[int, ...], num_classes: int):
    """ART's PyTorchClassifier around a Classifier (which normalizes inside, so ART needs no
    preprocessing and keeps PGD on its PyTorch path). clip_values (0, 1): pixel units."""
    from art.estimators.classification import PyTorchClassifier
    device = next(model.parameters()).device
    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x_shape),
                             nb_classes=num_classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if device.type == "cuda" else "cpu")


def art_generate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, make_attack) -> torch.Tensor:
    """Run an ART evasion attack (`make_attack(classifier)`) on a batch; returns x_adv on x's device."""
    clf = art_classifier(model, tuple(x.shape[1:]), num_classes_of(model, x))
    x_adv = make_attack(clf).generate(to_numpy(x), y=to_numpy(y).astype(np.int64))
    return torch.from_numpy(x_adv).to(x.device)


def uniform_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None,
                  device: torch.device, normal: bool = False) -> torch.Tensor:
    """U(-1, 1) noise (N(0, 1) with normal=True) on `device`. Each row from its image's own stream where the generator
    knows its rows (row_streams.RowStreams: the report's, the same at any batch size and on any device); else on the
    CPU from the (CPU) generator, as before, and elsewhere from a device generator seeded by it, so that no
    host-to-device copy waits on the card (training draws every step)."""
    draw = torch.randn if normal else torch.rand
    from .row_streams import RowStreams
    if isinstance(generator, RowStreams) and len(generator.rows) == shape[0] and shape[0]:
        # each image from its own stream, drawn on the CPU: the same start on any card and at any batch size (a report
        # draws once a restart, not once a step: the copy is small beside the attack)
        out = generator.per_row(lambda g: draw(tuple(shape[1:]), generator=g)).to(device)
        return out if normal else out * 2 - 1
    if device.type == "cpu":
        out = draw(shape, generator=generator)
    else:
        gen = None
        if generator is not None:
            gen = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        out = draw(shape, generator=gen, device=device)
    return out if normal else out * 2 - 1


def normalized(v: torch.Tensor, norm: str) -> torch.Tensor:
    """Each row of v scaled to unit L-inf or L2 norm."""
    shape = (-1,) + (1,) * (v.dim() - 1)
    flat = v.flatten(1)
    n = flat.abs().amax(1) if norm == "inf" else flat.norm(dim=1)
    return v / (n.view(shape) + 1e-12)


def project(x_new: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """x_new brought back into the eps ball around x (L-inf: clipped; L2: scaled back) and into [0, 1]."""
    if norm == "inf":
        return torch.min(torch.max(x_new, x - eps), x + eps).clamp(0, 1)
    d = x_new - x
    n = d.flatten(1).norm(dim=1).view(-1, *[1] * (d.dim() - 1))
    return (x + d * torch.clamp(eps / (n + 1e-12), max=1.0)).clamp(0, 1)


def ascent_direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent step of unit size in the norm: sign(g) for L-inf, g / ||g||_2 for L2."""
    return g.sign() if norm == "inf" else normalized(g, norm)


def random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A random point of the eps ball around x, in [0, 1]: uniform in the L-inf cube (Madry et al.), on the L2
    sphere (Croce & Hein's APGD, Madry et al.'s robustness library)."""
    if norm == "inf":
        return (x + eps * uniform_noise(x.shape, generator, x.device)).clamp(0, 1)
    return (x + eps * normalized(uniform_noise(x.shape, generator, x.device, normal=True), norm)).clamp(0, 1)


def frozen_where(done: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Rows of `new`, except where `done` (an image already fooled), which keep `old`: images stay in the batch
    until the next synchronisation (host_sync.due) without moving."""
    return torch.where(done.view(-1, *[1] * (new.dim() - 1)), old, new)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def num_classes_of(model: nn.Module, x: torch.Tensor) -> int:
    spec = getattr(model, "spec", None)
    if spec is not None:
        return int(spec.num_classes)
    with torch.no_grad():
        return int(model(x[:1]).shape[1])
