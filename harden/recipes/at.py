"""Recipe `at`: adversarial-training baseline (seed 000 section 4.4: all weights fine-tuned on clean and
adversarial pairs at every step, the examples crafted on the current model; Madry et al. PGD by default,
or Wong et al.'s FGSM with random start, or any registry preset).

ART's trainers (AdversarialTrainer, AdversarialTrainerMadryPGD, the FBF trainer) each run a loop of their
own: no clean+adversarial pairs under one focal loss, no data-fraction subsets, no shared progress or
metadata. So `at` is the shared loop with ART's attacks (PGD through ART) as its batch transform."""
from __future__ import annotations

import torch

from ..runtime import frozen
from .base import register_recipe, training_attack
from .finetune import FineTuneRecipe


@register_recipe
class AdversarialTraining(FineTuneRecipe):
    name = "at"

    def batch_transform(self, params, data, cfg, device):
        attack = training_attack(params)
        gen = torch.Generator().manual_seed(cfg.seed)

        def transform(m, x, y):
            with frozen(m):  # crafted on the current weights, BatchNorm in eval mode, no weight gradients
                x_adv = attack.run(m, x, y, generator=gen).x_adv.detach()
            with torch.no_grad():
                adv_acc = (m(x_adv).argmax(1) == y).float().mean() if params.get("log_adv_acc") else None
            extra = {"adv_acc": adv_acc} if adv_acc is not None else {}
            return torch.cat([x, x_adv]), torch.cat([y, y]), extra

        return transform
