"""Recipe `idfr` (seed 002, sections 3.1-3.3, algorithms 1-2, appendix tables 6-7): an input denoiser ID
in front of a frozen target model and a feature restorer FR on its embedding. The hardened model is
f_cls(FR(f_enc(ID(x)))), differentiable end to end, so white-box attacks go through the denoiser."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HardenError
from ..models import Classifier
from ..runtime import frozen
from ..training import TrainConfig, TrainResult, fit
from .base import Recipe, register_recipe, training_attack


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class InputDenoiser(nn.Module):
    """Table 6: conv+BN+ReLU layers 32-32-64-64-128; layer 6 (192 channels) reads layers 3 and 5, layer 8
    (96) reads layers 2 and 7; the last layer returns to the input's channels. Every conv is 3x3, stride 1,
    padding 1, so the output has the input's spatial size for any size, odd ones included.

    residual=True (harden's default for small data fractions) makes the last layer a zero-initialised conv
    added to the input: a fresh ID is the identity and the frozen classifier keeps its accuracy from the
    first step. residual=False is table 6 as printed (conv+BN+ReLU output), clipped to [0, 1]."""

    def __init__(self, chans: int, residual: bool = True):
        super().__init__()
        self.l1, self.l2, self.l3 = _cbr(chans, 32), _cbr(32, 32), _cbr(32, 64)
        self.l4, self.l5 = _cbr(64, 64), _cbr(64, 128)
        self.l6, self.l7 = _cbr(64 + 128, 192), _cbr(192, 64)
        self.l8 = _cbr(32 + 64, 96)
        self.residual = residual
        if residual:
            self.l9 = nn.Conv2d(96, chans, 3, padding=1)
            nn.init.zeros_(self.l9.weight)
            nn.init.zeros_(self.l9.bias)
        else:
            self.l9 = _cbr(96, chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1 = self.l1(x)
        a2 = self.l2(a1)
        a3 = self.l3(a2)
        a5 = self.l5(self.l4(a3))
        a7 = self.l7(self.l6(torch.cat([a3, a5], 1)))
        out = self.l9(self.l8(torch.cat([a2, a7], 1)))
        return (x + out).clamp(0, 1) if self.residual else out.clamp(0, 1)


def fr_widths(dim: int) -> list[int]:
    """Table 7 for a 512-d embedding: 256-128-32-128-256-512, i.e. D/2, D/4, D/16; capped for wide
    embeddings (a flattened conv map can be thousands wide) so the FR stays small."""
    w1, w2, w3 = min(dim // 2, 1024), min(dim // 4, 512), min(max(dim // 16, 8), 128)
    return [max(w1, 8), max(w2, 8), w3, max(w2, 8), max(w1, 8), dim]


class FeatureRestorer(nn.Module):
    """Table 7: six fully connected + ReLU layers, an autoencoder on the embedding. residual=True (default)
    adds its output to the embedding with the last layer zero-initialised (identity at the start)."""

    def __init__(self, dim: int, residual: bool = True):
        super().__init__()
        widths = fr_widths(dim)
        layers, prev = [], dim
        for i, w in enumerate(widths):
            layers.append(nn.Linear(prev, w))
            if not (residual and i == len(widths) - 1):
                layers.append(nn.ReLU())
            prev = w
        self.mlp = nn.Sequential(*layers)
        self.residual = residual
        if residual:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(h) if self.residual else self.mlp(h)


class IDFRPatch(nn.Module):
    def __init__(self, chans: int, dim: int, stage: str, residual: bool):
        super().__init__()
        self.denoiser = InputDenoiser(chans, residual)
        self.restorer = FeatureRestorer(dim, residual) if stage == "idfr" else None

    def forward_model(self, model: Classifier, x: torch.Tensor) -> torch.Tensor:
        h = model.embed(self.denoiser(x))
        return model.classify(self.restorer(h) if self.restorer is not None else h)


def enhanced(x: torch.Tensor, rounds: int, sigma: float, g: torch.Generator) -> torch.Tensor:
    """Multi-round Gaussian perturbation (Jeong & Shin 2020, section 3.2): `rounds` noisy copies."""
    noise = torch.randn((rounds, *x.shape), generator=g, device="cpu").to(x.device) * sigma
    return (x.unsqueeze(0) + noise).clamp(0, 1).flatten(0, 1)


@register_recipe
class IDFR(Recipe):
    name = "idfr"

    def attach(self, model: Classifier, params: dict[str, Any]) -> None:
        stage = str(params.get("stage", "idfr"))
        if stage not in ("id", "idfr"):
            raise HardenError(f"idfr stage must be id or idfr, got {stage!r}.")
        was_training = model.training
        model.eval()  # a probe of one image: BatchNorm must not be in training mode
        p = next(model.parameters(), None)  # fix loads the base on its device (CUDA) before attaching
        with torch.no_grad():
            dim = int(model.embed(torch.zeros(1, model.spec.in_chans, *model.spec.input_size,
                                              device=p.device if p is not None else "cpu")).shape[1])
        model.train(was_training)
        model.patch = IDFRPatch(model.spec.in_chans, dim, stage, bool(params.get("residual", True)))

    def train(self, model: Classifier, data, params: dict[str, Any], cfg: TrainConfig,
              device: torch.device) -> TrainResult:
        patch: IDFRPatch = model.patch
        for p in model.net.parameters():
            p.requires_grad_(False)
        attack = training_attack(params)
        gen = torch.Generator().manual_seed(cfg.seed)
        rounds, sigma = int(params["rounds"]), float(params["sigma"])

        def base_only(m: Classifier, x: torch.Tensor) -> torch.Tensor:
            return m.classify(m.embed(x))

        class _Base(nn.Module):  # the target model f as its own module, for the attack
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return base_only(self.m, x)

        target = _Base(model)

        def adversarial(x, y):
            with frozen(target):
                return attack.run(target, x, y, generator=gen).x_adv.detach()

        def id_step(m: Classifier, x: torch.Tensor, y: torch.Tensor):
            """Algorithm 1 / eq. 3: CE of the frozen classifier on ID(x') and ID(x_e)."""
            x_adv = adversarial(x, y)
            x_e = enhanced(x, rounds, sigma, gen)
            xb = torch.cat([x_adv, x_e])
            yb = torch.cat([y, y.repeat(rounds)])
            logits = base_only(m, patch.denoiser(xb))
            loss = F.cross_entropy(logits, yb)
            adv_acc = (logits[: len(x)].argmax(1) == y).float().mean()
            return loss, logits[len(x): 2 * len(x)], {"adv_acc": adv_acc.detach()}

        def fr_step(m: Classifier, x: torch.Tensor, y: torch.Tensor):
            """Algorithm 2 / eqs. 4-6: mix a clean embedding the classifier gets right with the embedding
            of the same image after attack + denoising, alpha ~ U(0, 1); CE of the frozen classifier on
            FR(mix). Every pair whose clean view is right is used (not only pairs whose denoised view is
            wrong), so small data fractions still give enough pairs."""
            x_adv = adversarial(x, y)
            with torch.no_grad():
                h_x = m.embed(x)
                h_t = m.embed(patch.denoiser(x_adv))
                keep = m.classify(h_x).argmax(1) == y
            if not keep.any():
                keep = torch.ones_like(keep)
            alpha = torch.rand(int(keep.sum()), 1, generator=gen, device="cpu").to(x.device)
            mix = alpha * h_x[keep] + (1 - alpha) * h_t[keep]
            logits = m.classify(patch.restorer(mix))
            loss = F.cross_entropy(logits, y[keep])
            with torch.no_grad():
                restored = (m.classify(patch.restorer(h_t)).argmax(1) == y).float().mean()
            return loss, m.classify(patch.restorer(h_x)), {"adv_acc": restored}

        def mode(train_part: nn.Module):
            def set_mode(m: Classifier) -> None:
                m.eval()
                train_part.train()
            return set_mode

        result = fit(model, data, cfg, device, step=id_step, params=patch.denoiser.parameters(),
                     train_mode=mode(patch.denoiser), desc="idfr: ID", carries={"attack": gen})
        if patch.restorer is None:
            return result
        for p in patch.denoiser.parameters():
            p.requires_grad_(False)
        fr_cfg = TrainConfig(**{**cfg.__dict__, "epochs": int(params["fr_epochs"]), "lr": float(params["fr_lr"])})
        fr = fit(model, data, fr_cfg, device, step=fr_step, params=patch.restorer.parameters(),
                 train_mode=mode(patch.restorer), desc="idfr: FR", carries={"attack": gen})
        return TrainResult(seconds=result.seconds + fr.seconds, history=result.history + fr.history,
                           input_seconds=result.input_seconds + fr.input_seconds)
