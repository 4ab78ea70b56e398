"""PGD in the L2 norm (Madry et al. 2018): steps along the normalised gradient of the cross-entropy, projected to the
L2 ball, in torch; the L-inf attack's loop (pgd.py) with its early stopping. eps 0.5 and step 0.1 are Madry et al.'s
robustness library's CIFAR-10 L2 settings; 50 steps as the report's L-inf PGD. ART's ProjectedGradientDescent with
norm=2 stays the reference in tests. The report gives a bounded L2 attack the report's L2 budget (--eps-l2)."""
from .base import Attack, AttackOutput, register_attack
from .pgd import pgd


@register_attack
class PGDL2(Attack):
    name = "pgd-l2"
    norm = "2"
    defaults = {"eps": 0.5, "step": 0.1, "steps": 50, "restarts": 0, "early_stop": True}
    source = "Madry et al. 2018, L2; eps 0.5, step 0.1 from Madry et al.'s robustness library (CIFAR-10 L2)"

    batches_at_once = 8  # as the L-inf PGD: its batch kept full from the run's later batches
    launch_bound_only = True  # on a CPU, full batches are slower per image (base.Attack)

    def run(self, model, x, y, generator=None, start=None, chunk=None):
        p = self.params
        x_adv, grad_passes, fwd = pgd(model, x, y, eps=p["eps"], step=p["step"], steps=p["steps"],
                                      restarts=p["restarts"], generator=generator, early_stop=p["early_stop"],
                                      start=start, norm="2", chunk=chunk, progress=self.progressed)
        return AttackOutput(x_adv, grad_passes=grad_passes, forward_passes=fwd)
