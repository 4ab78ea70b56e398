"""Networks written with torch's lazy layers, as d2l.ai writes every model (nn.LazyConv2d, nn.LazyBatchNorm2d,
nn.LazyLinear: their input sizes set by the first forward), load from a plain state dict with `--arch` alone: the
layers are sized from the file's weights, not by harden's first probe at an assumed 32 x 32 (which failed with
torch's "Can't access the shape of an uninitialized parameter")."""
import importlib.util
import textwrap

import pytest
import torch
from torch import nn

import harden
from harden.runtime import held_warnings

D2L = textwrap.dedent('''
    from torch import nn

    class LeNet(nn.Module):  # d2l.ai's LeNet (a batch norm added): every layer lazy, sized by its first forward
        def __init__(self, num_classes=10, width=6):
            super().__init__()
            self.net = nn.Sequential(
                nn.LazyConv2d(width, kernel_size=5, padding=2), nn.LazyBatchNorm2d(), nn.Sigmoid(), nn.AvgPool2d(2),
                nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(),
                nn.LazyLinear(84), nn.Sigmoid(), nn.LazyLinear(num_classes))

        def forward(self, X):
            return self.net(X)
''')


@pytest.fixture
def d2l(tmp_path):
    path = tmp_path / "d2l_models.py"
    path.write_text(D2L)
    spec = importlib.util.spec_from_file_location("d2l_models_written", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def trained_as_d2l(module, **kw) -> nn.Module:
    """A LeNet as d2l's code leaves it: initialised by a forward of Fashion-MNIST's 28 x 28 grey images, its batch
    norm's running statistics moved off their start."""
    torch.manual_seed(0)
    net = module.LeNet(**kw)
    net(torch.rand(8, 1, 28, 28))
    return net.eval()


@pytest.mark.parametrize("saved,said", [
    ("plain", None),
    ("DataParallel", None),
    ("5 classes", "--num-classes 5, from the file's head"),
    ("width 8", "built with width=8"),
])
def test_lazy_layers_take_the_file_s_shapes(d2l, tmp_path, saved, said):
    path, module = d2l
    kw = {"num_classes": 5} if saved == "5 classes" else {"width": 8} if saved == "width 8" else {}
    net = trained_as_d2l(module, **kw)
    state = nn.DataParallel(net).state_dict() if saved == "DataParallel" else net.state_dict()
    torch.save({"model": state, "epoch": 10}, tmp_path / "lenet.pth")
    with held_warnings() as words:
        model = harden.load(tmp_path / "lenet.pth", arch=f"{path}:LeNet", mean=(0.0,), std=(1.0,))
    assert (model.spec.input_size, model.spec.in_chans, model.spec.num_classes) == ((28, 28), 1, kw.get("num_classes", 10))
    assert "runs only at some: --input-size 28" in " ".join(words)  # found by running, as for any fixed flatten
    if said:
        assert said in " ".join(words), words
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), net(x), atol=1e-6)
    layers = list(model.net.modules())
    assert not any("Lazy" in type(m).__name__ for m in layers)
    # sized by their own code: the counts a forward sets (load_state_dict leaves them 0; SyncBatchNorm reads them)
    assert [m.in_channels for m in layers if isinstance(m, nn.Conv2d)] == [1, kw.get("width", 6)]
    assert [m.in_features for m in layers if isinstance(m, nn.Linear)] == [16 * 5 * 5, 84]
    assert [m.num_features for m in layers if isinstance(m, nn.BatchNorm2d)] == [kw.get("width", 6)]
    again = harden.load(harden.save(model, tmp_path / "lenet.safetensors"))  # no flags: the metadata says them
    with torch.no_grad():
        assert torch.allclose(again.eval()(x), net(x), atol=1e-6)


def test_a_lazy_network_evaluates_from_the_command_line(d2l, tmp_path, cli):
    path, module = d2l
    torch.save(trained_as_d2l(module).state_dict(), tmp_path / "lenet.params")  # d2l's own name for its files
    data = tmp_path / "fashion.npz"
    g = torch.Generator().manual_seed(2)
    import numpy as np
    np.savez(data, x_train=torch.randint(0, 256, (40, 28, 28), generator=g).numpy().astype(np.uint8),
             y_train=np.arange(40) % 10, x_test=torch.randint(0, 256, (20, 28, 28), generator=g).numpy().astype(np.uint8),
             y_test=np.arange(20) % 10)
    code, out, err = cli("eval", tmp_path / "lenet.params", "--arch", f"{path}:LeNet", "--data", data, "--mean", "0",
                         "--std", "1", "--n", "10", "--attack", "fgsm", "--no-masking-checks", "--no-metrics")
    assert code == 0, err
    assert "fgsm" in out and "uninitialized" not in err
