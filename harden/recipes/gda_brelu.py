"""Recipe `gda-brelu` (seed 004, sections 3 and 4.1): every ReLU becomes a bounded ReLU
BReLU_t(x) = min(max(x, 0), t), and training adds N Gaussian-noised copies of each image.

BReLU_t is exactly torch's Hardtanh(0, t), so the swap is plain module replacement (no new layer); it
is stored in the checkpoint's metadata and replayed by `harden.load`. The Gaussian copies come from
ART's GaussianAugmentation."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import HardenError
from ..models import Classifier
from .base import register_recipe
from .finetune import FineTuneRecipe


def _functional_relus(net: nn.Module) -> int:
    """Count ReLUs called as functions (F.relu, torch.relu, x.relu()); -1 when the net cannot be traced."""
    import torch.fx
    try:
        graph = torch.fx.symbolic_trace(net).graph
    except Exception:  # dynamic control flow: cannot prove either way
        return -1
    fns = {torch.relu, torch.relu_, nn.functional.relu}
    return sum(1 for n in graph.nodes if (n.op == "call_function" and n.target in fns)
               or (n.op == "call_method" and n.target in ("relu", "relu_")))


def swap_relus(net: nn.Module, t: float) -> int:
    """Replace every nn.ReLU module by Hardtanh(0, t) = BReLU_t; returns how many were swapped."""
    functional = _functional_relus(net)
    if functional > 0:
        raise HardenError(f"This architecture calls ReLU as a function in {functional} place(s) (F.relu / "
                          "torch.relu), which cannot be swapped for a bounded ReLU without rewriting its code; "
                          "gda-brelu needs ReLU modules. Use --set brelu=false for Gaussian augmentation alone.")
    count = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.ReLU:  # ReLU6 and friends are other activations: left alone
                setattr(parent, name, nn.Hardtanh(0.0, float(t)))
                count += 1
    if count == 0:
        raise HardenError("The architecture has no nn.ReLU module to swap for a bounded ReLU; "
                          "use --set brelu=false for Gaussian augmentation alone.")
    return count


def default_sigma(kind: str) -> float:
    """Seed 004 section 4.1: sigma 0.3 for MNIST, 0.05 for CIFAR-10."""
    return 0.3 if kind == "mnist-like" else 0.05


@register_recipe
class GdaBrelu(FineTuneRecipe):
    name = "gda-brelu"

    def attach(self, model: Classifier, params) -> None:
        if params.get("brelu", True):
            model.spec.extra["brelu_swapped"] = swap_relus(model.net, float(params["t"]))

    def batch_transform(self, params, data, cfg, device):
        from art.defences.preprocessor import GaussianAugmentation

        from ..attacks import parse_number
        if not params.get("gda", True):
            return lambda m, x, y: (x, y, {})
        sigma = default_sigma(data.kind) if str(params["sigma"]) == "auto" else parse_number(params["sigma"])
        copies = int(params["copies"])
        if copies < 1:
            raise HardenError(f"gda-brelu copies must be at least 1, got {copies}.")
        gda = GaussianAugmentation(sigma=sigma, augmentation=True, ratio=float(copies), clip_values=(0.0, 1.0))
        rng_state = np.random.default_rng(cfg.seed)

        def transform(m, x, y):
            np.random.seed(int(rng_state.integers(2**31)))  # ART draws from numpy's global generator
            xa, ya = gda(x.detach().cpu().numpy(), y.cpu().numpy())
            return torch.from_numpy(xa).to(x.device), torch.from_numpy(ya).long().to(y.device), {}

        transform.carries = {"gda": rng_state}
        return transform
