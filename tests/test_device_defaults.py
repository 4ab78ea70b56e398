"""Device defaults: the CPU keeps its measured settings; the CUDA probe's arithmetic is checked with a fake card."""
import torch

from harden.device_defaults import attack_batch_size, has_convolutions, prepare_for_device


def test_cpu_defaults_unchanged(digits_model):
    cpu = torch.device("cpu")
    assert attack_batch_size(digits_model, cpu, None, (1, 8, 8)) == 128
    assert attack_batch_size(digits_model, cpu, 300, (1, 8, 8)) == 300
    w = next(p for p in digits_model.parameters() if p.dim() == 4)
    prepare_for_device(digits_model, cpu)
    assert has_convolutions(digits_model) and w.is_contiguous()  # no channels_last on the CPU


def test_cuda_probe_picks_the_largest_power_of_two_that_fits(digits_model, monkeypatch):
    """A fake card: 1 GiB free, and the probe's forward+backward peaks at 2 MiB per image -> half of 1 GiB holds 256
    images -> 256; with 64 GiB free the batch stops at 2048."""
    cuda = torch.device("cuda")
    state = {"free": 1 << 30}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (state["free"], 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 32 * (2 << 20))
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *s, device=None, **k: real_rand(*s, **k))
    assert attack_batch_size(digits_model, cuda, None, (1, 8, 8)) == 256
    state["free"] = 64 << 30
    assert attack_batch_size(digits_model, cuda, None, (1, 8, 8)) == 2048
    assert attack_batch_size(digits_model, cuda, 64, (1, 8, 8)) == 64


def test_the_cpu_batch_shrinks_with_the_activations_an_image_keeps(monkeypatch):
    """The probe counts what autograd keeps for an input gradient, each storage once, no weight: for conv -> ReLU ->
    conv that is the input (conv1 saves it) and ReLU's output (saved by ReLU and by conv2: one storage). The batch is
    the largest power of two up to 128 whose activations fit the CPU's share; a network whose forward fails keeps 128."""
    from torch import nn

    from harden import device_defaults as dd
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 4, 3, padding=1))
    assert dd.activation_bytes_per_image(net, (3, 64, 64)) == (3 + 16) * 64 * 64 * 4
    assert all(p.requires_grad for p in net.parameters()) and net.training  # given back as it was
    per_image = (3 + 16) * 224 * 224 * 4  # 3.8 MB at 224 px
    monkeypatch.setattr(dd, "CPU_ACTIVATION_BYTES", 40 * per_image)
    assert dd.cpu_attack_batch(net, (3, 224, 224)) == 32
    assert dd.cpu_attack_batch(net, (3, 32, 32)) == 128  # 49x fewer bytes an image
    monkeypatch.setattr(dd, "CPU_ACTIVATION_BYTES", per_image // 2)
    assert dd.cpu_attack_batch(net, (3, 224, 224)) == 1
    cpu = torch.device("cpu")
    assert attack_batch_size(net, cpu, 300, (3, 224, 224)) == 300  # asked for: as asked
    assert dd.cpu_attack_batch(net, (1, 224, 224)) == dd.CPU_ATTACK_BATCH  # a forward that fails: the report says it
