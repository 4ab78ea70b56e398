"""Recipe `fixer` (seed 000, sections 3.1-3.2): small auxiliary modules at block boundaries of a frozen
base, trained on clean + adversarial pairs (crafted on the base) with focal CE and feature distillation.

The modules are attached with forward hooks on the base's tap modules, so the user's architecture is
never rewritten and the base weights stay byte-identical."""
from __future__ import annotations

import contextlib
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HardenError
from ..models import Classifier
from ..runtime import frozen
from ..training import TrainConfig, fit, focal_loss
from .base import Recipe, register_recipe, training_attack


class FixerModule(nn.Module):
    """Seed 000 table 7: h + delta * zeta(conv3x3(relu(conv1x1(h)))), channels C -> C/rho -> C. The last
    conv starts at zero so a fresh module is the identity. Table 7's final ReLU is left out: at taps
    whose features can be negative (e.g. after a BatchNorm) it would change the base model."""

    def __init__(self, channels: int, delta: float, activation: str, rho: int):
        super().__init__()
        if activation not in ("linear", "tanh"):
            raise HardenError(f"fixer activation must be linear or tanh, got {activation!r}.")
        hidden = max(1, channels // max(1, rho))
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 3, padding=1)
        nn.init.zeros_(self.expand.weight)
        nn.init.zeros_(self.expand.bias)
        self.delta, self.activation = float(delta), activation

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        phi = self.expand(F.relu(self.reduce(h)))
        if self.activation == "tanh":
            phi = torch.tanh(phi)
        return h + self.delta * phi


class FixerPatch(nn.Module):
    """The fixers of one model, keyed by tap; hooks apply them and can capture tap outputs."""

    def __init__(self, net: nn.Module, taps: list[dict[str, Any]], delta: float, activation: str, rho: int):
        super().__init__()
        self.tap_names = [t["module"] for t in taps]
        self.fixers = nn.ModuleDict({_key(t["module"]): FixerModule(t["num_chs"], delta, activation, rho)
                                     for t in taps})
        self.enabled = True
        self.captured: dict[str, torch.Tensor] | None = None
        self._handles = [net.get_submodule(name).register_forward_hook(_TapHook(self, name))
                         for name in self.tap_names]

    def at_tap(self, name: str, output: Any) -> torch.Tensor:
        """A tap's output with its fixer applied (when enabled), captured when capturing."""
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise HardenError(f"Tap {name!r} does not output an image-like (N, C, H, W) feature map; "
                              "choose convolutional taps with --set taps=...")
        if self.enabled:
            fixer = self.fixers[_key(name)]
            channels = fixer.reduce.in_channels
            if output.shape[1] == channels:
                output = fixer(output)
            elif output.shape[3] == channels:  # channels-last stages (timm's Swin: output_fmt NHWC), fixed as maps
                output = fixer(output.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            else:
                raise HardenError(f"Tap {name!r} outputs a map of shape {tuple(output.shape)}, with neither its first "
                                  f"nor its last axis the {channels} channels the tap declares; choose other taps "
                                  "with --set taps=...")
        if self.captured is not None:
            self.captured[name] = output
        return output

    @contextmanager
    def base_only(self) -> Iterator[None]:
        """Run the model as the unpatched base (delta = 0)."""
        prev, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = prev

    @contextmanager
    def capture(self) -> Iterator[dict[str, torch.Tensor]]:
        prev, self.captured = self.captured, {}
        try:
            yield self.captured
        finally:
            self.captured = prev


class _TapHook:
    """A tap's forward hook. An object, not a closure: a deep copy of the patched model (fix --time-budget's timing
    copies, a teacher) then hooks the copy's patch; a closure would keep calling this one's."""

    def __init__(self, patch: FixerPatch, name: str):
        self.patch, self.name = patch, name

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        return self.patch.at_tap(self.name, output)


def _key(module_name: str) -> str:
    return module_name.replace(".", "__")


def _map_taps(model: Classifier, taps: list[dict[str, Any]]) -> set[str]:
    """The taps whose module outputs a feature map, (N, C, H, W) or channels-last, in one probe forward of a zero batch:
    a transformer's stages (LeViT's, Hiera's) hold token sequences, which a fixer's convolutions cannot take."""
    outputs: dict[str, Any] = {}
    handles = [model.net.get_submodule(t["module"]).register_forward_hook(
        lambda mod, inputs, out, name=t["module"]: outputs.__setitem__(name, out)) for t in taps]
    p = next(model.net.parameters(), None)
    was = model.training
    try:
        model.eval()
        with torch.no_grad():  # through the model's own forward: a network fed through an adapter gets its input so
            model(torch.zeros(2, model.spec.in_chans, *model.spec.input_size, device=p.device if p is not None else "cpu"))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {t["module"] for t in taps if isinstance(outputs.get(t["module"]), torch.Tensor)
            and outputs[t["module"]].dim() == 4 and t["num_chs"] in (outputs[t["module"]].shape[1],
                                                                    outputs[t["module"]].shape[3])}


def select_taps(model: Classifier, spec: str) -> list[dict[str, Any]]:
    """'auto': every tap but the last (seed 000 puts fixers between blocks, none after the final one) that outputs a
    feature map; otherwise comma-separated tap indices or module names, each of which must."""
    taps = model.taps()
    if not taps:
        raise HardenError(f"Architecture {model.spec.arch!r} exposes no taps (feature_info); the fixer recipe "
                          "needs block boundaries.")
    if spec in ("auto", ""):
        chosen = taps[:-1] or taps
    else:
        by_name = {t["module"]: t for t in taps}
        chosen = []
        for item in (s.strip() for s in spec.split(",") if s.strip()):
            if item.isdigit() and int(item) < len(taps):
                chosen.append(taps[int(item)])
            elif item in by_name:
                chosen.append(by_name[item])
            else:
                listing = ", ".join(f"{i}:{t['module']}" for i, t in enumerate(taps))
                raise HardenError(f"Unknown tap {item!r}; the taps of {model.spec.arch} are {listing}.")
    maps = _map_taps(model, taps)
    if not maps:
        raise HardenError(f"The fixer recipe attaches its modules to feature maps (N, C, H, W), and none of "
                          f"{model.spec.arch}'s taps ({', '.join(t['module'] for t in taps)}) outputs one: its stages "
                          "hold token sequences. Harden it with the at recipe (the default), which trains the network "
                          "itself.")
    not_maps = [t["module"] for t in chosen if t["module"] not in maps]
    if spec in ("auto", ""):
        chosen = [t for t in chosen if t["module"] in maps] or [t for t in taps if t["module"] in maps][-1:]
    elif not_maps:
        listing = ", ".join(f"{i}:{t['module']}" for i, t in enumerate(taps) if t["module"] in maps)
        raise HardenError(f"Tap {not_maps[0]!r} of {model.spec.arch} does not output an image-like (N, C, H, W) "
                          f"feature map; the taps that do are {listing}.")
    return chosen


@register_recipe
class Fixer(Recipe):
    name = "fixer"

    def attach(self, model: Classifier, params: dict[str, Any]) -> None:
        taps = select_taps(model, str(params.get("taps", "auto")))
        model.patch = FixerPatch(model.net, taps, float(params["delta"]), str(params["activation"]),
                                 int(params["rho"]))
        model.spec.extra["taps"] = [t["module"] for t in taps]

    takes_unlabeled = True

    def train(self, model: Classifier, data, params: dict[str, Any], cfg: TrainConfig, device: torch.device,
              unlabeled=None):
        patch: FixerPatch = model.patch
        if unlabeled is not None:
            from ..data.unlabeled import MixedData
            data = MixedData.for_recipe(data, unlabeled, params, cfg)
        for p in model.net.parameters():  # the base is frozen: no gradient, BatchNorm in eval mode
            p.requires_grad_(False)
        attack = training_attack(params)
        lam, gamma = float(params["lambda"]), float(params["focal_gamma"])
        craft_on = str(params.get("craft_on", "base"))
        if craft_on not in ("base", "patched"):
            raise HardenError(f"fixer: craft_on must be base or patched, got {craft_on!r}.")
        gen = torch.Generator().manual_seed(cfg.seed)

        def step(m: Classifier, x: torch.Tensor, y: torch.Tensor):
            with torch.no_grad(), patch.base_only(), patch.capture() as base_clean:
                m(x)
            # eq. 2 (craft_on=base): the attack targets the base model g, the seed's transfer setting;
            # craft_on=patched: it targets the patched model itself, the white-box threat model
            with (patch.base_only() if craft_on == "base" else contextlib.nullcontext()), frozen(m):
                x_adv = attack.run(m, x, y, generator=gen).x_adv.detach()
            with patch.capture() as fc:
                logits_c = m(x)
            with patch.capture() as fa:
                logits_a = m(x_adv)
            # eq. 4: L2 distance at every tap to the base's clean features, for clean and adversarial input
            dist = sum(F.mse_loss(fc[t], base_clean[t]) + F.mse_loss(fa[t], base_clean[t]) for t in patch.tap_names)
            loss = focal_loss(logits_c, y, gamma) + focal_loss(logits_a, y, gamma) + lam * dist
            adv_acc = (logits_a.argmax(1) == y).float().mean()
            return loss, logits_c, {"adv_acc": adv_acc.detach(), "distill": dist.detach()}

        def train_mode(m: Classifier) -> None:
            m.eval()
            patch.train()

        return fit(model, data, cfg, device, step=step, params=patch.parameters(), train_mode=train_mode,
                   desc="fixer", carries={"attack": gen})
