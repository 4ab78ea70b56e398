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
