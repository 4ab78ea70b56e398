"""Research code written for a GPU, loaded on a machine without one: its own `device='cuda'`, `.to(device)` with a
module-level `device = 'cuda'`, `torch.cuda.FloatTensor(...)` and `.type(torch.cuda.FloatTensor)`, in a module's top
level, a constructor, a forward, and a branch only training takes. Each could only raise here; harden makes those
tensors where the input is (harden/cuda_calls.py) and says so in the load notes."""
import sys

import pytest
import torch

import harden

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the calls go to the GPU where there is one")

# the architecture as the training script's repository writes it: a device constant, a normalising layer made on it
GPU_CODE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.cuda.set_device(0)  # a training script's top level: run while harden imports it
torch.backends.cudnn.benchmark = True
device = 'cuda'
OFFSET = torch.full((1,), 0.25).to(device)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1).to(device)

    def forward(self, x):
        return (x - self.mean) / self.std


class Net(nn.Module):
    def __init__(self, num_classes=4, noise=0.0):
        super().__init__()
        self.norm = Normalize([0.5, 0.4, 0.3], [0.25, 0.25, 0.25])
        self.register_buffer("scale", torch.ones(1, device=torch.cuda.current_device()))
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, num_classes)
        self.noise = noise

    def forward(self, x):
        x = self.norm(x)
        if self.training and self.noise:  # a noise-injection defence's training branch: the probe does not take it
            x = x + self.noise * torch.cuda.FloatTensor(x.size()).normal_()
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        mask = torch.ones(x.size(0), 1, 1, 1, device='cuda').type(torch.cuda.FloatTensor)
        torch.cuda.synchronize()  # timing code left in a forward
        mask = mask.to(torch.cuda.current_device())
        x = (x * mask).view(x.size(0), -1)
        return self.fc(x.to(device)) * self.scale + OFFSET


class FromBackbone(Net):  # a constructor that reads its self-supervised backbone from a file of its repository's
    def __init__(self, num_classes=4, backbone='./pretrained/simclr_conv.pth'):
        super().__init__(num_classes)
        state = torch.load(backbone, map_location='cpu')['state_dict']
        self.conv.load_state_dict({k.replace('module.', ''): v for k, v in state.items()})


class Shapeless(Net):  # past its GPU habit, a layer that does not fit: that is what is said
    def forward(self, x):
        x = self.norm(x).to(device)
        return self.fc(x.view(x.size(0), -1))
'''

CPU_TWIN = (GPU_CODE.replace("device = 'cuda'", "device = 'cpu'").replace("device='cuda'", "device='cpu'")
            .replace("torch.cuda.FloatTensor", "torch.FloatTensor").replace("torch.cuda.set_device(0)", "")
            .replace("device=torch.cuda.current_device()", "").replace("torch.cuda.synchronize()", "pass")
            .replace("mask.to(torch.cuda.current_device())", "mask"))


@pytest.fixture()
def code(tmp_path):
    gpu, cpu = tmp_path / "gpu_net.py", tmp_path / "cpu_net.py"
    gpu.write_text(GPU_CODE)
    cpu.write_text(CPU_TWIN)
    torch.manual_seed(0)
    twin = harden.create_model(f"{cpu}:Net", 4, 3, (16, 16))
    torch.save(twin.net.state_dict(), tmp_path / "net.pth")
    yield gpu, twin, tmp_path / "net.pth"
    for name in ("gpu_net", "cpu_net"):
        sys.modules.pop(name, None)


def test_a_network_written_for_the_gpu_runs_where_its_input_is(code):
    gpu, twin, weights = code
    model = harden.load(weights, arch=f"{gpu}:Net", num_classes=4, input_size=16)
    assert any("own moves to the GPU" in n and "the CPU" in n for n in model.load_notes), model.load_notes
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), twin(x), atol=1e-6)
    # gradients too: the attacks' input gradient goes through the same forward
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xr).sum(), xr)
    xt = x.clone().requires_grad_(True)
    (gt,) = torch.autograd.grad(twin(xt).sum(), xt)
    assert torch.allclose(g, gt, atol=1e-6)


def test_its_training_branch_runs_too(code):
    """The probe runs in eval mode: a branch only training takes (torch.cuda.FloatTensor noise) is met first by fix."""
    gpu, twin, weights = code
    model = harden.load(weights, arch=f"{gpu}:Net", num_classes=4, input_size=16, model_args={"noise": 0.1})
    model.train()
    out = model(torch.rand(4, 3, 16, 16))
    assert out.shape == (4, 4) and out.device.type == "cpu"
    model.eval()


def test_an_export_of_it_agrees_with_it(code, tmp_path):
    pytest.importorskip("onnxruntime")
    from harden.export import export_onnx
    gpu, twin, weights = code
    model = harden.load(weights, arch=f"{gpu}:Net", num_classes=4, input_size=16)
    check = export_onnx(model, tmp_path / "net.onnx", torch.rand(5, 3, 16, 16), "random pixels")
    assert check.ok and check.n == 5, check


def test_a_forward_that_raises_for_the_gpu_is_run_again_where_its_input_is(code, monkeypatch):
    """Where nothing in its files names the GPU (a device from elsewhere), the probe's CUDA error is what installs it."""
    import harden.cuda_calls as cc
    gpu, twin, weights = code
    monkeypatch.setattr(cc, "names_cuda", lambda net: False)
    model = harden.load(weights, arch=f"{gpu}:Net", num_classes=4, input_size=16)
    assert cc.keeps_forward_on(model.net)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), twin(x), atol=1e-6)


def test_past_its_gpu_habit_the_network_s_own_failure_is_said(code):
    gpu, _, weights = code
    with pytest.raises(harden.HardenError) as failed:
        harden.create_model(f"{gpu}:Shapeless", 4, 3, (16, 16))
    said = str(failed.value)
    assert "mat1 and mat2" in said and "GPU" not in said, said


def test_a_constructor_that_reads_a_file_its_repository_holds(code, tmp_path):
    """`torch.load('./pretrained/backbone.pth')['state_dict']` in a constructor: the file is not here, and the
    checkpoint supplies those weights; a checkpoint that lacks them is still refused, naming them."""
    gpu, twin, weights = code
    model = harden.load(weights, arch=f"{gpu}:FromBackbone", num_classes=4, input_size=16)
    assert any("simclr_conv.pth, a file it reads, absent here" in n for n in model.load_notes), model.load_notes
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), twin(x), atol=1e-6)
    head = {k: v for k, v in torch.load(weights).items() if not k.startswith("conv.")}
    torch.save(head, tmp_path / "head.pth")
    with pytest.raises(harden.HardenError, match="conv.weight"):
        harden.load(tmp_path / "head.pth", arch=f"{gpu}:FromBackbone", num_classes=4, input_size=16)
