"""DeepFool (Moosavi-Dezfooli et al. 2016), batched in torch: per iteration one forward and one backward
per candidate class (the true class and the clean prediction's top nb_grads - 1: with 1000 classes the others
cannot be the nearest boundary in practice, and a pass over all of them takes hours) for the still-unfooled images
only. Memory holds three gradients per image whatever nb_grads is (the nearest boundary so far is kept as the
classes are visited). ART's DeepFool loops in numpy (~7 s per 32x32 image on 2 cores here) and defaults to
overshoot 1e-6; the paper uses 0.02."""
import torch

from .base import Attack, AttackOutput, register_attack


@register_attack
class DeepFool(Attack):
    name = "deepfool"
    norm = "2"
    minimal = True
    defaults = {"steps": 100, "overshoot": 0.02, "nb_grads": 10}
    source = "seed 004 section 4.1 (at most 100 iterations); overshoot 0.02 from the DeepFool paper"

    def run(self, model, x, y, generator=None):
        p = self.params
        x_adv = x.clone()
        with torch.no_grad():
            logits0 = model(x)
        k = min(p["nb_grads"], logits0.shape[1])
        # Candidate classes: the top-k of the clean prediction, the true class first.
        order = logits0.scatter(1, y[:, None], float("inf")).argsort(1, descending=True)[:, :k]
        r_tot = torch.zeros_like(x)
        active = (logits0.argmax(1) == y)
        passes = extra = 0
        for _ in range(p["steps"]):
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xa = (x[idx] + (1 + p["overshoot"]) * r_tot[idx]).clamp(0, 1).requires_grad_(True)
            logits = model(xa)
            pred = logits.argmax(1)
            still = pred == y[idx]
            cand = order[idx]
            f = logits.gather(1, cand)  # (b, k); column 0 is the true class
            (g0,) = torch.autograd.grad(f[:, 0].sum(), xa, retain_graph=k > 1)
            best_dist = torch.full((len(idx),), float("inf"), device=x.device)
            best_w = torch.zeros_like(g0)
            best_wn = torch.ones(len(idx), device=x.device)
            shape = (-1, *[1] * (xa.dim() - 1))
            for j in range(1, k):  # the nearest linearised boundary, first one on ties (as argmin)
                (g,) = torch.autograd.grad(f[:, j].sum(), xa, retain_graph=j < k - 1)
                w = g - g0
                wn = w.flatten(1).norm(dim=1) + 1e-8
                dist = (f[:, j] - f[:, 0]).detach().abs() / wn
                better = dist < best_dist
                best_dist = torch.where(better, dist, best_dist)
                best_wn = torch.where(better, wn, best_wn)
                best_w = torch.where(better.view(shape), w, best_w)
            passes += len(idx)  # one forward+backward, then k-1 more backwards on the same graph
            extra += len(idx) * (k - 1)
            step = (best_dist + 1e-4)[:, None] * (best_w.flatten(1) / best_wn[:, None])
            step = step.view_as(xa) * still.view(shape)
            r_tot[idx] = r_tot[idx] + step
            active[idx] = still
        x_adv = (x + (1 + p["overshoot"]) * r_tot).clamp(0, 1)
        return AttackOutput(x_adv.detach(), grad_passes=passes, extra_backward_passes=extra)
