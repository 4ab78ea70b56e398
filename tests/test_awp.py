"""Adversarial weight perturbation (Wu et al. 2020): v has the stated size and direction and leaves BatchNorm's
running statistics alone; the shared loop applies the gradient found at w + v to w itself."""
import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harden.awp import WeightPerturbation
from harden.data import ImageData, to_tensor
from harden.training import TrainConfig, fit


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10))


def test_perturbation_size_direction_statistics_and_restore():
    net, gamma = _bn_net().train(), 0.01
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    before = copy.deepcopy(net.state_dict())
    loss_at_w = F.cross_entropy(net.eval()(x), y).item()
    net.train()
    awp = WeightPerturbation(net, gamma)
    awp.perturb(lambda: F.cross_entropy(net(x), y))
    after = net.state_dict()
    for name, w in before.items():
        diff = (after[name].float() - w.float())
        if name in ("0.weight", "5.weight"):  # conv and linear weights: moved by gamma of their own norm
            assert abs(diff.norm().item() - gamma * w.norm().item()) < 1e-5 * w.norm().item(), name
        else:  # biases, BatchNorm's affine parameters, running statistics and batch count: untouched
            assert torch.equal(after[name], w), name
    assert F.cross_entropy(net.eval()(x), y).item() > loss_at_w  # up the loss, not down
    awp.restore()
    for name, w in before.items():
        assert torch.allclose(net.state_dict()[name], w, atol=1e-7), name


def test_the_loop_applies_the_gradient_at_the_perturbed_weights():
    """One full-batch SGD step (Nesterov momentum 0.9, no weight decay: the first update is 1.9 lr g) through the
    shared loop with AWP equals w - 1.9 lr grad L(w + v), v computed here independently."""
    rng = np.random.default_rng(0)
    xs = rng.integers(0, 256, (32, 8, 8, 1), dtype=np.uint8)
    ys = (np.arange(32) % 10).astype(np.int64)
    data = ImageData(xs, ys, xs, ys, "synthetic", 10)
    init = _bn_net()
    net, gamma, lr = copy.deepcopy(init), 0.05, 0.1
    awp = WeightPerturbation(net, gamma)

    def step(m, x, y):
        awp.perturb(lambda: F.cross_entropy(m(x), y))
        z = m(x)
        return F.cross_entropy(z, y), z, {}

    cfg = TrainConfig(epochs=1, batch_size=32, lr=lr, optimizer="sgd", weight_decay=0.0, schedule="constant",
                      augment="none")
    fit(net, data, cfg, torch.device("cpu"), step=step, after_step=awp.restore)

    ref = copy.deepcopy(init).train()
    x, y = to_tensor(xs, torch.device("cpu")), torch.from_numpy(ys)
    weights = [p for p in ref.parameters() if p.dim() > 1]
    grads = torch.autograd.grad(F.cross_entropy(ref(x), y), weights)
    with torch.no_grad():
        vs = [gamma * p.norm() * g / g.norm() for p, g in zip(weights, grads, strict=True)]
        for p, v in zip(weights, vs, strict=True):
            p.add_(v)
    g_at_perturbed = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
    with torch.no_grad():
        for p, v in zip(weights, vs, strict=True):
            p.sub_(v)
    for (name, _), g, p0 in zip(ref.named_parameters(), g_at_perturbed, init.parameters(), strict=True):
        expected = p0 - 1.9 * lr * g
        assert torch.allclose(dict(net.named_parameters())[name], expected, atol=1e-5), name
    plain = copy.deepcopy(init)
    fit(plain, data, cfg, torch.device("cpu"))
    assert not torch.allclose(plain[0].weight, net[0].weight, atol=1e-5)  # AWP changed the update
