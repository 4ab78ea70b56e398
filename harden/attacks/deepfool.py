"""DeepFool (Moosavi-Dezfooli et al. 2016), batched in torch: per iteration one forward and one backward
per candidate class for the still-unfooled images only. ART's DeepFool loops in numpy (~7 s per 32x32
image on 2 cores here) and defaults to overshoot 1e-6; the paper uses 0.02."""
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
            grads = []
            for j in range(k):
                (g,) = torch.autograd.grad(f[:, j].sum(), xa, retain_graph=j < k - 1)
                grads.append(g)
            passes += len(idx)  # one forward+backward, then k-1 more backwards on the same graph
            extra += len(idx) * (k - 1)
            grads = torch.stack(grads, 1)  # (b, k, ...)
            w = grads[:, 1:] - grads[:, :1]
            fd = (f[:, 1:] - f[:, :1]).detach()
            wn = w.flatten(2).norm(dim=2) + 1e-8
            dist = fd.abs() / wn
            best = dist.argmin(1)
            ar = torch.arange(len(idx), device=x.device)
            step = (dist[ar, best] + 1e-4)[:, None] * (w[ar, best].flatten(1) / wn[ar, best][:, None])
            step = step.view_as(xa) * still.view(-1, *[1] * (xa.dim() - 1))
            r_tot[idx] = r_tot[idx] + step
            active[idx] = still
        x_adv = (x + (1 + p["overshoot"]) * r_tot).clamp(0, 1)
        return AttackOutput(x_adv.detach(), grad_passes=passes, extra_backward_passes=extra)
