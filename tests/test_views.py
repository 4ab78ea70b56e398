"""Models written the way published code writes them: `x.view(x.size(0), -1)` (which needs a contiguous NCHW
activation), a log_softmax head, a built-in nn.Sequential with a view-flatten. Colour and grey, through eval, fix
with every recipe, apply and export."""
import numpy as np
import pytest
import torch
from torch import nn

import harden
from harden.checkpoint import apply_patch, save_patch
from harden.data import ImageData
from harden.export import export_onnx
from harden.recipes import get_recipe

NETS = '''
import torch
import torch.nn.functional as F
from torch import nn


class LeNetView(nn.Module):
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


class View(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class FlatMLP(nn.Module):  # MNIST tutorials' MLP: its training loop flattened the images (data.view(-1, 784))
    def __init__(self, num_classes=4, in_chans=1):
        super().__init__()
        self.fc1 = nn.Linear(in_chans * 16 * 16, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


class ChannelsLast(nn.Module):  # ported from TensorFlow: takes N x H x W x C and transposes it itself
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x.permute(0, 3, 1, 2))), 2)
        return self.fc(x.permute(0, 2, 3, 1).reshape(x.size(0), -1))


class ChannelsLastWide(ChannelsLast):  # the same at 16 high and 12 wide: a transposition would not fit its layer
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__(num_classes, in_chans)
        self.fc = nn.Linear(8 * 8 * 6, num_classes)


class ChannelsLastMnist(ChannelsLast):  # at MNIST's 28 pixels, which its file does not say
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__(num_classes, in_chans)
        self.fc = nn.Linear(8 * 14 * 14, num_classes)


class NoChannelAxis(nn.Module):  # trained on MNIST's N x 28 x 28 tensors as stored: adds the channel axis itself
    def __init__(self, num_classes=4, in_chans=1):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 14 * 14, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x.unsqueeze(1))), 2)
        return F.log_softmax(self.fc(x.view(x.size(0), -1)), dim=1)


class DictInput(LeNetView):  # Lightning-style code: forward(batch) reads the images from the batch dict
    def forward(self, batch):
        return super().forward(batch["image"])


class DictAdapter(nn.Module):  # what the refusal of DictInput says to write: its keys gain the prefix 'net.'
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__()
        self.net = DictInput(num_classes, in_chans)

    def forward(self, x):
        return self.net({"image": x})


class TwoInputs(LeNetView):  # a forward that takes more than the images
    def forward(self, x, t):
        return super().forward(x) + t


class OneAtATime(LeNetView):  # single-image inference code: the batch folded into the flatten
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.view(1, -1))))


class TupleNet(nn.Module):  # returns (logits, features), as many training codes do for a feature loss
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.fc = nn.Linear(8 * 16, num_classes)

    def forward(self, x):
        f = self.body(x).view(x.size(0), -1)
        return self.fc(f), f


class DictNet(TupleNet):  # a dict whose features have the scores' shape: the "logits" entry is the scores
    def forward(self, x):
        logits, f = super().forward(x)
        return {"features": f[:, :logits.shape[1]], "logits": logits}


class AuxNet(TupleNet):  # torchvision's Inception: scores in eval mode, (scores, aux scores) in train mode
    def forward(self, x):
        logits, f = super().forward(x)
        return (logits, logits.detach() * 0.5) if self.training else logits


def all_conv(num_classes=4, in_chans=3):  # ends in a 1x1 conv and a global pool: (N, K, 1, 1), never flattened
    return nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1),
                         nn.AdaptiveAvgPool2d(1))


class BinaryNet(nn.Module):  # one logit for a two-class problem
    def __init__(self, in_chans=3):
        super().__init__()
        self.fc = nn.Linear(in_chans * 16 * 16, 1)

    def forward(self, x):
        return self.fc(x.view(x.size(0), -1))


class Wide(nn.Module):  # a constructor with arguments of its own, as WideResNet(depth, widen_factor) has
    def __init__(self, num_classes=4, width=8, bias=True):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=bias)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).view(x.size(0), -1))


def ten_classes(in_chans=3):
    return nn.Sequential(View(), nn.Linear(in_chans * 16 * 16, 10))


class BinarySigmoid(BinaryNet):  # one probability, as BCELoss-trained code writes it
    def forward(self, x):
        return torch.sigmoid(super().forward(x))


class CudaInside(TupleNet):  # published code that assumes a GPU: asks CUDA for its card's properties
    def forward(self, x):
        logits, _ = super().forward(x)
        return logits * min(1, torch.cuda.get_device_properties(0).multi_processor_count)


class CudaDevice(TupleNet):  # research code's `device='cuda'` constructor argument, read in its forward
    def __init__(self, num_classes=4, in_chans=3, device="cuda"):
        super().__init__(num_classes, in_chans)
        self.device = device

    def forward(self, x):
        logits, _ = super().forward(x)
        return logits + torch.zeros(1, device=self.device)


class UseCuda(TupleNet):  # or a switch that defaults to the GPU
    def __init__(self, num_classes=4, in_chans=3, use_cuda=True):
        super().__init__(num_classes, in_chans)
        self.use_cuda = use_cuda

    def forward(self, x):
        logits, _ = super().forward(x)
        return logits.cuda() if self.use_cuda else logits


class CudaCalls(TupleNet):  # published code's .cuda() calls: in its constructor and its forward
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shift = torch.full((1,), 0.5).cuda()
        self.cuda()

    def forward(self, x):
        logits, _ = super().forward(x)
        return logits + self.shift + torch.zeros(1).cuda()


class LinearProbe(TupleNet):  # a frozen backbone written as linear-probe code writes it: under no_grad
    def forward(self, x):
        with torch.no_grad():
            f = self.body(x).view(x.size(0), -1)
        return self.fc(f)


class Squeezed(nn.Module):  # an all-convolutional net that ends in .squeeze(): a batch of one loses its axis
    def __init__(self, num_classes=4, in_chans=3):
        super().__init__()
        self.body = all_conv(num_classes, in_chans)

    def forward(self, x):
        return self.body(x).squeeze()


class Double(TupleNet):  # computes its scores in float64
    def forward(self, x):
        logits, _ = super().forward(x)
        return logits.double()


class SqueezedBinary(BinaryNet):  # one logit an image, squeezed to N
    def forward(self, x):
        return super().forward(x).squeeze()


class STN(nn.Module):  # pytorch's spatial transformer tutorial for MNIST: no class count, a layer after the head
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)
        self.localization = nn.Sequential(nn.Conv2d(1, 8, kernel_size=7), nn.MaxPool2d(2, stride=2), nn.ReLU(True),
                                          nn.Conv2d(8, 10, kernel_size=5), nn.MaxPool2d(2, stride=2), nn.ReLU(True))
        self.fc_loc = nn.Sequential(nn.Linear(10 * 3 * 3, 32), nn.ReLU(True), nn.Linear(32, 3 * 2))

    def forward(self, x):
        theta = self.fc_loc(self.localization(x).view(-1, 10 * 3 * 3)).view(-1, 2, 3)
        x = F.grid_sample(x, F.affine_grid(theta, x.size(), align_corners=False), align_corners=False)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.log_softmax(self.fc2(F.relu(self.fc1(x.view(-1, 320)))), dim=1)


class RowLSTM(nn.Module):  # sequential MNIST: each row of pixels a time step; no convolution to read channels from
    def __init__(self, num_classes=10):
        super().__init__()
        self.lstm = nn.LSTM(28, 32, batch_first=True)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        out, _ = self.lstm(x.view(x.size(0), 28, 28))
        return self.fc(out[:, -1])


class PairsOnly(TupleNet):  # reshapes by the batch it assumes: fails on one image (and on nothing else)
    def forward(self, x):
        logits, _ = super().forward(x)
        return logits.view(2, -1, logits.shape[1]).flatten(0, 1)


def bn1d_head(num_classes=4, in_chans=3):  # BatchNorm1d in the classifier: no batch statistics of one image
    return nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, num_classes))


def sequential(num_classes=4, in_chans=3):
    return nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), View(),
                         nn.Linear(16 * 4 * 4, num_classes))
'''

RECIPE_SETS = {"at": ["val_frac=0", "attack=fgsm-rs"], "fixer": [], "idfr": [], "gda-brelu": [], "patch-ft": []}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    path = tmp_path_factory.mktemp("views") / "published.py"
    path.write_text(NETS)
    return path


def _data(chans: int) -> ImageData:
    """16x16 images whose class is the brightest quadrant: learnable, so fixes train on a signal."""
    rng = np.random.default_rng(0)
    n = 48
    y = np.arange(n) % 4
    x = rng.integers(0, 90, (n, 16, 16, chans), dtype=np.uint8)
    for i, c in enumerate(y):
        r, k = divmod(int(c), 2)
        x[i, r * 8:(r + 1) * 8, k * 8:(k + 1) * 8] += 120
    return ImageData(x, y, x[:16], y[:16], f"quadrants-{chans}ch", 4)


@pytest.mark.parametrize("fn,chans", [("LeNetView", 1), ("sequential", 3), ("TupleNet", 3), ("all_conv", 1),
                                     ("FlatMLP", 1)])
def test_view_models_through_every_command(nets, fn, chans, tmp_path):
    data = _data(chans)
    base = harden.create_model(f"{nets}:{fn}", 4, chans, (16, 16), (0.3,), (0.3,))
    base_path = tmp_path / "base.safetensors"
    harden.save(base, base_path)
    report = harden.evaluate(base, data, attacks=["fgsm", "pgd:steps=3", "deepfool", "jsma"], n=8, metrics=False,
                             masking_checks=False, device="cpu")
    assert 0.0 <= report.clean_accuracy <= 1.0 and len(report.attacks) == 4
    for recipe, sets in RECIPE_SETS.items():
        if recipe == "gda-brelu" and fn in ("LeNetView", "TupleNet", "FlatMLP"):
            sets = ["brelu=false"]  # F.relu cannot be swapped for a bounded ReLU (gda-brelu says so and refuses)
        if recipe == "fixer" and fn == "FlatMLP":  # the fixer's denoisers sit at a convolutional network's taps
            with pytest.raises(harden.HardenError, match="exposes no taps"):
                harden.fix(base_path, data, recipe=recipe, data_frac=0.5, epochs=1, device="cpu", report=False)
            continue
        if recipe == "idfr" and fn == "all_conv":  # idfr's embedding is the input of a final nn.Linear
            with pytest.raises(harden.HardenError, match="no nn.Linear"):
                harden.fix(base_path, data, recipe=recipe, data_frac=0.5, epochs=1, device="cpu", report=False)
            continue
        result = harden.fix(base_path, data, recipe=recipe, sets=sets, data_frac=0.5, epochs=1, batch_size=8,
                            device="cpu", report=False)
        fixed = result.model
        x = torch.rand(3, chans, 16, 16)
        with torch.no_grad():
            assert fixed(x).shape == (3, 4)
        if get_recipe(recipe).frozen_base():  # patch out, apply back: the same outputs
            patch = save_patch(fixed, tmp_path / f"{recipe}.patch.safetensors",
                               {k: fixed.spec.extra[k] for k in ("recipe", "recipe_params", "base_sha256")})
            again = apply_patch(base_path, patch)
            with torch.no_grad():
                assert torch.allclose(again(x), fixed(x), atol=1e-6)
        check = export_onnx(fixed, tmp_path / f"{recipe}.onnx", x, "random pixels")
        assert check.ok, (recipe, check)
        after = harden.evaluate(fixed, data, attacks=["pgd:steps=3"], n=8, metrics=False, masking_checks=False,
                                device="cpu")
        assert after.n == 8


def test_a_network_fed_flattened_images_by_its_training_code(nets, tmp_path):
    """An MLP whose training loop flattened the images before calling it (no flatten in its forward), from a plain
    state dict, and a pickled nn.Sequential that starts with a Linear layer: each image is given as one row, said in
    the load notes; a caller that flattens them itself is served as before."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    state = {"fc1.weight": net[0].weight, "fc1.bias": net[0].bias, "fc2.weight": net[2].weight, "fc2.bias": net[2].bias}
    torch.save(state, tmp_path / "mlp.pt")
    torch.save(net, tmp_path / "seq.pt")
    x = torch.rand(3, 1, 16, 16)
    for path, arch in ((tmp_path / "mlp.pt", f"{nets}:FlatMLP"), (tmp_path / "seq.pt", None)):
        model = harden.load(path, arch=arch, in_chans=1, input_size=16)
        assert any("flattened them" in note for note in model.load_notes), model.load_notes
        expected = net(x.flatten(1))
        with torch.no_grad():
            got = model(x)
            assert torch.allclose(got.log_softmax(1) if arch else got, expected.log_softmax(1) if arch else expected,
                                  atol=1e-6)
            assert torch.equal(model.net(x.flatten(1)), model.net(x))
    # a module of the caller's is left as it is: the error says how to give it
    from harden.models.registry import from_module
    with pytest.raises(harden.HardenError, match=r"flattened them\): give nn.Sequential\(nn.Flatten\(\), model\)"):
        from_module(net, input_size=16, in_chans=1)


def test_a_network_ported_from_tensorflow_takes_its_images_channels_last(nets, tmp_path):
    """A network that takes N x H x W x C and transposes it itself (`x.permute(0, 3, 1, 2)`, as code ported from
    TensorFlow or JAX writes it), from a plain state dict at an unsaid size and at a non-square one: harden gives its
    images so, said in the load notes; a caller's own module is left as it is, the error saying how to give it."""
    from harden.models.registry import _build_net, ModelSpec
    torch.manual_seed(0)
    for fn, size in (("ChannelsLastMnist", None), ("ChannelsLastWide", (16, 12))):
        net = _build_net(ModelSpec(arch=f"{nets}:{fn}", num_classes=4, in_chans=3)).eval()
        torch.save(net.state_dict(), tmp_path / "nhwc.pt")
        model = harden.load(tmp_path / "nhwc.pt", arch=f"{nets}:{fn}", num_classes=4, input_size=size)
        assert tuple(model.spec.input_size) == (size or (28, 28)), model.spec.input_size
        assert any("channels-last" in note for note in model.load_notes), model.load_notes
        x = torch.rand(3, 3, *(size or (28, 28)))
        with torch.no_grad():
            assert torch.allclose(model(x), net(x.permute(0, 2, 3, 1)), atol=1e-6)
    from harden.models.registry import from_module
    with pytest.raises(harden.HardenError, match=r"channels-last .*\(x\.permute\(0, 2, 3, 1\)\)"):
        from_module(net, input_size=(16, 12), in_chans=3)
    # trained and exported through the same hook (the ONNX graph holds the transposition)
    base = harden.create_model(f"{nets}:ChannelsLast", 4, 3, (16, 16), (0.3,), (0.3,))
    fixed = harden.fix(base, _data(3), recipe="at", sets=RECIPE_SETS["at"], data_frac=0.5, epochs=1, batch_size=8,
                       device="cpu", report=False).model
    assert not torch.equal(fixed.net.conv1.weight, base.net.conv1.weight)
    check = export_onnx(fixed, tmp_path / "nhwc.onnx", torch.rand(3, 3, 16, 16), "random pixels")
    assert check.ok, check


def test_a_grey_network_that_adds_its_channel_axis_itself(nets, tmp_path):
    """`x.unsqueeze(1)` first in the forward (trained on MNIST's N x 28 x 28 tensors as stored), from a plain state
    dict at an unsaid size: given N x H x W, said; fix and its export run through the same hook."""
    from harden.models.registry import _build_net, ModelSpec
    torch.manual_seed(0)
    net = _build_net(ModelSpec(arch=f"{nets}:NoChannelAxis", num_classes=4, in_chans=1)).eval()
    torch.save(net.state_dict(), tmp_path / "grey.pt")
    model = harden.load(tmp_path / "grey.pt", arch=f"{nets}:NoChannelAxis", num_classes=4)
    assert tuple(model.spec.input_size) == (28, 28) and model.spec.in_chans == 1
    assert any("without a channel axis" in note for note in model.load_notes), model.load_notes
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x[:, 0]), atol=1e-6)
    check = export_onnx(model, tmp_path / "grey.onnx", x, "random pixels")
    assert check.ok, check


def test_a_network_that_cannot_take_one_image_still_loads(nets):
    """The load's second probe (one image, for `.squeeze()` endings) fails here; the load does not."""
    model = harden.create_model(f"{nets}:PairsOnly", 4, 3, (16, 16))
    assert model(torch.rand(4, 3, 16, 16)).shape == (4, 4)


@pytest.mark.parametrize("fn", ["Squeezed", "Double", "SqueezedBinary"])
def test_squeezed_and_double_scores_at_every_batch_size(nets, fn, tmp_path):
    """N x K float32 scores for a batch of one too (the metrics' and early-stopping attacks' last images), through
    eval with metrics, fix and export."""
    classes = 2 if fn == "SqueezedBinary" else 4
    model = harden.create_model(f"{nets}:{fn}", classes, 3, (16, 16), (0.3,), (0.3,))
    for n in (1, 3):
        out = model(torch.rand(n, 3, 16, 16))
        assert out.shape == (n, classes) and out.dtype == torch.float32
    data = _data(3)
    if classes == 2:
        data = ImageData(data.x_train, data.y_train % 2, data.x_test, data.y_test % 2, "halves", 2)
    report = harden.evaluate(model, data, attacks=["fgsm", "pgd:steps=3", "deepfool", "cw:steps=5"], n=12,
                             device="cpu")
    assert report.metrics["empirical_robustness"] >= 0
    fixed = harden.fix(model, data, sets=["val_frac=0", "attack=fgsm-rs"], data_frac=0.5, epochs=1, batch_size=8,
                       device="cpu", report=False).model
    check = export_onnx(fixed, tmp_path / "m.onnx", torch.rand(5, 3, 16, 16), "random pixels")
    assert check.ok, check


@pytest.mark.parametrize("recipe", ["at", "fixer"])  # the probe is fix's, before any recipe's own code
def test_batchnorm1d_head_in_train_mode_with_a_last_batch_of_one(nets, recipe):
    """harden.fix given a model in train mode (as built) with BatchNorm1d after global pooling, on 33 images in
    batches of 32: neither the input-gradient probe (one image) nor the epoch's last image may reach BatchNorm alone."""
    data = _data(3)
    data = ImageData(data.x_train[:33], data.y_train[:33], data.x_test, data.y_test, data.source, 4)
    model = harden.create_model(f"{nets}:bn1d_head", 4, 3, (16, 16), (0.3,), (0.3,)).train()
    sets = ["val_frac=0"] if recipe == "at" else []
    result = harden.fix(model, data, recipe=recipe, sets=sets, data_frac=1.0, epochs=1, batch_size=32, device="cpu",
                        report=False)
    assert result.model(torch.rand(2, 3, 16, 16)).shape == (2, 4)


@pytest.mark.parametrize("fn", ["STN", "RowLSTM"])
def test_tutorial_mnist_networks_load_from_their_state_dicts_alone(nets, fn, tmp_path):
    """No flag but --arch: the spatial transformer's count is its output's width (its last registered linear layer is
    the localisation head's 6), the row LSTM's channels the one channel it runs on (nothing in its weights says
    them), each size the smallest common one it runs at."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("published_nets", nets)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = getattr(mod, fn)().eval()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "m.pth")
    model = harden.load(tmp_path / "m.pth", arch=f"{nets}:{fn}")
    assert (model.spec.num_classes, model.spec.in_chans, tuple(model.spec.input_size)) == (10, 1, (28, 28))
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x).log_softmax(1), net(x).log_softmax(1), atol=1e-5)
    if fn == "STN":  # affine_grid needs opset 20: the error says the flag
        with pytest.raises(harden.HardenError, match="harden export --opset 20"):
            export_onnx(model, tmp_path / "m.onnx", x, "random pixels")
        assert export_onnx(model, tmp_path / "m.onnx", x, "random pixels", opset=20).ok


def test_inputs_reach_the_model_contiguous():
    """The batches harden builds from NHWC arrays are contiguous NCHW (a permuted view would break `view`)."""
    data = _data(3)
    x, _ = data.images("test", np.arange(4))
    assert x.stride() == (768, 256, 16, 1)
    feeder = data.feeder("flip-crop", 0, torch.device("cpu"))
    xb, _ = next(iter(feeder.epoch([np.arange(4)], 1)))
    assert xb.stride() == (768, 256, 16, 1)
    grey = _data(1)
    assert grey.images("test", np.arange(4))[0].stride() == (256, 256, 16, 1)  # not (256, 1, 16, 1)


def test_scores_are_found_in_what_the_forward_returns(nets, tmp_path, cli):
    x = torch.rand(3, 3, 16, 16)
    tup = harden.create_model(f"{nets}:TupleNet", 4, 3, (16, 16))
    with torch.no_grad():
        assert torch.equal(tup(x), tup.net.fc(tup.net.body(tup.normalize(x)).view(3, -1)))
    assert tup.spec.extra["logits_key"] == "0"
    assert harden.create_model(f"{nets}:DictNet", 4, 3, (16, 16)).spec.extra["logits_key"] == "logits"
    aux = harden.create_model(f"{nets}:AuxNet", 4, 3, (16, 16))
    assert "logits_key" not in aux.spec.extra and aux.train()(x).shape == (3, 4) and aux.eval()(x).shape == (3, 4)
    result = harden.fix(aux, _data(3), sets=["val_frac=0", "attack=fgsm-rs"], data_frac=0.5, epochs=1, batch_size=8,
                        device="cpu", report=False)  # trains in train mode, where the forward returns a tuple
    assert result.model(x).shape == (3, 4)
    conv = harden.create_model(f"{nets}:all_conv", 4, 3, (16, 16))
    assert conv(x).shape == (3, 4) and "logits_key" not in conv.spec.extra
    binary = harden.create_model(f"{nets}:BinaryNet", 2, 3, (16, 16))
    with torch.no_grad():
        z = binary.net.fc(binary.normalize(x).view(3, -1))[:, 0]
        p = binary(x).softmax(1)
    assert torch.allclose(p[:, 1], torch.sigmoid(z), atol=1e-6)  # softmax([0, z]) is the sigmoid's two classes
    assert "binary_sigmoid" not in binary.spec.extra
    assert binary.head() == ("fc", "none")  # idfr's split works on a binary head too
    with torch.no_grad():
        assert torch.allclose(binary.classify(binary.embed(x)), binary(x), atol=1e-6)
    prob = harden.create_model(f"{nets}:BinarySigmoid", 2, 3, (16, 16))
    prob.net.load_state_dict(binary.net.state_dict())
    with torch.no_grad():  # the sigmoid's output read back as its logit: the same scores as the logit model's
        assert torch.allclose(prob(x), binary(x), atol=1e-4) and prob.spec.extra["binary_sigmoid"] is True
    two = _data(3)
    two = ImageData(two.x_train, two.y_train % 2, two.x_test, two.y_test % 2, "two-class quadrants", 2)
    report = harden.evaluate(prob, two, attacks=["fgsm"], n=8, metrics=False)
    note = next(f for f in report.masking if f["check"] == "outputs are not logits")
    assert note["kind"] == "check" and note["tripped"] and "sigmoid" in note["detail"]

    # a key from the flag travels in the checkpoint's metadata; a wrong one or a wrong class count is exit 2
    state = tmp_path / "tup.pt"
    torch.save(tup.net.state_dict(), state)
    flags = ["--arch", f"{nets}:TupleNet", "--num-classes", 4, "--input-size", "16x16"]
    code, _, err = cli("import", state, *flags, "--logits-key", "1", "-o", tmp_path / "bad.safetensors")
    assert code == 2 and "'1'" in err and "(2, 128)" in err and not (tmp_path / "bad.safetensors").exists()
    code, _, err = cli("import", state, *flags, "--logits-key", "0", "-o", tmp_path / "tup.safetensors")
    assert code == 0, err
    code, out, _ = cli("inspect", tmp_path / "tup.safetensors")
    assert code == 0 and "entry '0'" in out
    code, _, err = cli("inspect", state, *flags, "--logits-key", "scores")
    assert code == 2 and "no such entry" in err
    with pytest.raises(harden.HardenError, match="cannot run on a batch of 2 x 1 x 20 x 20.*--input-size"):
        harden.create_model(f"{nets}:LeNetView", 4, 1, (20, 20))  # its fc1 takes 16 x 16 inputs only
    with pytest.raises(harden.HardenError, match=r"\(2, 10\).*--num-classes"):
        harden.create_model(f"{nets}:ten_classes", 4, 3, (16, 16))  # a callable that ignores num_classes


def test_a_forward_that_takes_one_image_at_a_time_is_named(nets, tmp_path, cli):
    """`x.view(1, -1)`: the network runs on one image, never on a batch; said with the line to write, not as a size
    to try (loaded with --arch alone, no size said: the data's size is where it runs, on one image)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("one_at_a_time", nets)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(harden.HardenError, match=r"one image at a time.*x\.view\(x\.size\(0\), -1\)"):
        harden.models.from_module(module.OneAtATime(), input_size=16)
    torch.save(module.OneAtATime().state_dict(), tmp_path / "one.pt")
    data = _data(3)
    np.savez(tmp_path / "quads.npz", x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
             y_test=data.y_test)
    code, _, err = cli("eval", tmp_path / "one.pt", "--arch", f"{nets}:OneAtATime", "--data", tmp_path / "quads.npz",
                       "--n", 8)
    assert code == 2 and "one image at a time" in err and "common square size" not in err, err


def test_a_forward_that_wants_a_batch_dict_or_more_arguments_is_named_with_the_adapter_to_write(nets, tmp_path, cli):
    """forward(batch) reading batch['image'], or forward(x, t): said as what it wants, not as a size to check; the
    adapter the refusal describes loads the same state dict (the prefix it adds to the keys is put on the file's)."""
    with pytest.raises(harden.HardenError, match=r"reads a batch dict's 'image' entry.*self\.net\(\{'image': x\}\)"):
        harden.create_model(f"{nets}:DictInput", 4, 3, (16, 16))
    with pytest.raises(harden.HardenError, match=r"takes more than the images: forward\(x, t\)"):
        harden.create_model(f"{nets}:TwoInputs", 4, 3, (16, 16))
    torch.manual_seed(0)
    saved = harden.create_model(f"{nets}:LeNetView", 4, 3, (16, 16))
    torch.save(saved.net.state_dict(), tmp_path / "dict.pt")  # DictInput's keys: LeNetView's
    code, out, err = cli("inspect", tmp_path / "dict.pt", "--arch", f"{nets}:DictAdapter", "--input-size", "16")
    assert code == 0 and "added the key prefix 'net.'" in out, err
    adapted = harden.load(tmp_path / "dict.pt", arch=f"{nets}:DictAdapter", input_size=16)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(adapted(x), saved(x))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the forward runs where a GPU is")
def test_a_forward_that_moves_tensors_to_the_gpu_itself_is_named(nets, tmp_path):
    with pytest.raises(harden.HardenError, match=r"uses a GPU itself.*get_device_properties.*\(x\.device\)"):
        harden.create_model(f"{nets}:CudaInside", 4, 3, (16, 16))
    # loaded from a plain state dict (no size said): no other input size is tried, nor asked for
    torch.save(harden.create_model(f"{nets}:TupleNet", 4, 3, (16, 16)).net.state_dict(), tmp_path / "cuda.pt")
    with pytest.raises(harden.HardenError) as failed:
        harden.load(tmp_path / "cuda.pt", arch=f"{nets}:CudaInside", num_classes=4)
    assert "uses a GPU itself" in str(failed.value) and "common square size" not in str(failed.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the calls go to the GPU where there is one")
def test_a_network_s_own_cuda_calls_stay_on_the_cpu_without_cuda(nets, tmp_path):
    """`.cuda()` in a constructor, a forward, or at the top of a module the model file imports (Wong et al.'s
    utils.py): on a machine without CUDA each could only raise; the network runs on the CPU, said in the load notes."""
    torch.manual_seed(0)
    plain = harden.create_model(f"{nets}:TupleNet", 4, 3, (16, 16))
    torch.save(plain.net.state_dict(), tmp_path / "cuda.pt")
    model = harden.load(tmp_path / "cuda.pt", arch=f"{nets}:CudaCalls", num_classes=4, input_size=16)
    assert any("own moves to the GPU" in note and "the CPU" in note for note in model.load_notes), model.load_notes
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x) + 0.5)
    (tmp_path / "gpu_utils.py").write_text("import torch\n\nmu = torch.tensor((0.5, 0.5, 0.5)).view(3, 1, 1).cuda()\n")
    (tmp_path / "uses_utils.py").write_text(
        "import torch.nn as nn\nfrom gpu_utils import mu\n\n\nclass Centred(nn.Module):\n"
        "    def __init__(self, num_classes=4):\n        super().__init__()\n"
        "        self.fc = nn.Linear(3 * 16 * 16, num_classes)\n\n"
        "    def forward(self, x):\n        return self.fc((x - mu).view(x.size(0), -1))\n")
    for name, arg in (("CudaDevice", "device='cpu'"), ("UseCuda", "use_cuda=False")):  # defaults to the GPU
        model = harden.load(tmp_path / "cuda.pt", arch=f"{nets}:{name}", num_classes=4, input_size=16)
        assert any(f"built with {arg}" in note for note in model.load_notes), model.load_notes
        assert "device" not in model.spec.model_args and "use_cuda" not in model.spec.model_args
        with torch.no_grad():
            assert torch.allclose(model(x), plain(x))
    centred = harden.create_model(f"{tmp_path}/uses_utils.py:Centred", 4, 3, (16, 16))
    with torch.no_grad():
        assert torch.allclose(centred(x), centred.net.fc((x - 0.5).view(2, -1)))


def test_a_file_that_imports_a_package_harden_lacks_says_where_it_would_come_from(tmp_path):
    """d2l.ai's models subclass its own package's classes (`from d2l import torch as d2l`): a file whose import fails
    for want of a module says to install it beside harden, or to give the repository's module path."""
    (tmp_path / "needs_a_package.py").write_text("import d2l_not_installed_here as d2l\n\n\nclass LeNet(d2l.Classifier):\n"
                                                 "    pass\n")
    with pytest.raises(harden.HardenError) as failed:
        harden.create_model(f"{tmp_path / 'needs_a_package.py'}:LeNet", 10, 1, (28, 28))
    said = str(failed.value)
    assert "No module named 'd2l_not_installed_here'" in said and "-m pip install" in said
    assert "package.module:Class" in said


def test_a_forward_without_input_gradients_is_named_and_allowed_transfer_only(nets, tmp_path, cli):
    """A forward under torch.no_grad() gives attacks no gradient: white-box eval and fix (every recipe) stop with
    one paragraph saying why (fix before any training), and a transfer evaluation still runs, its gradient-based
    metrics left out with a note."""
    flags = ["--arch", f"{nets}:LinearProbe", "--num-classes", 4, "--input-size", "16x16"]
    probe = harden.create_model(f"{nets}:LinearProbe", 4, 3, (16, 16))
    torch.save(probe.net.state_dict(), tmp_path / "probe.pt")
    data = tmp_path / "q.npz"
    d = _data(3)
    np.savez(data, x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)
    code, _, err = cli("eval", tmp_path / "probe.pt", *flags, "--data", data, "--n", 4, "--attack", "pgd")
    assert code == 2 and "do not depend on its input through autograd" in err and "Traceback" not in err
    for recipe in RECIPE_SETS:
        code, _, err = cli("fix", tmp_path / "probe.pt", *flags, "--data", data, "--recipe", recipe, "--epochs", 1,
                           "-o", tmp_path / "fixed.safetensors")
        assert code == 2 and "torch.no_grad()" in err, (recipe, err)
        assert not (tmp_path / "fixed.safetensors").exists()
    source = harden.create_model(f"{nets}:TupleNet", 4, 3, (16, 16))
    source.net.load_state_dict(probe.net.state_dict())
    harden.save(source, tmp_path / "source.safetensors")
    code, out, err = cli("eval", tmp_path / "probe.pt", *flags, "--data", data, "--n", 4, "--attack", "pgd",
                         "--craft-on", tmp_path / "source.safetensors")
    assert code == 0, err
    assert "transfer from source.safetensors" in out and "metrics left out" in " ".join(out.split())


def test_constructor_arguments_come_from_model_arg_and_travel_in_the_metadata(nets, tmp_path, cli):
    state = tmp_path / "wide.pt"
    torch.save(harden.create_model(f"{nets}:Wide", 4, 3, (16, 16), model_args={"width": 5, "bias": False}
                                   ).net.state_dict(), state)
    flags = ["--arch", f"{nets}:Wide", "--num-classes", 4, "--input-size", "16x16"]
    code, _, err = cli("inspect", state, *flags)  # the default width does not fit the weights: they say it
    told = " ".join(err.split())
    assert code == 0 and "--model-arg width=5" in told and "--model-arg bias=false" in told, err
    code, _, err = cli("inspect", state, *flags, "--model-arg", "widht=5")
    assert code == 2 and "'widht'" in err and "width" in err
    code, _, err = cli("inspect", state, *flags, "--model-arg", "width")
    assert code == 2 and "name=value" in err
    out_path = tmp_path / "wide.safetensors"
    code, _, err = cli("import", state, *flags, "--model-arg", "width=5", "--model-arg", "bias=false", "-o", out_path)
    assert code == 0, err
    again = harden.load(out_path)  # no flags: the arguments are in the metadata
    assert again.spec.model_args == {"width": 5, "bias": False} and again.net.conv.bias is None


def test_evaluate_takes_paths_and_plain_modules(tmp_path, digits_ckpt):
    x = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(24) % 4, x_test=x[:8], y_test=np.arange(8) % 4)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))  # no harden spec at all
    report = harden.evaluate(net, tmp_path / "d.npz", attacks=["fgsm"], n=8, metrics=False, masking_checks=False)
    assert report.n == 8 and report.threat_model == "white-box"
    with pytest.raises(harden.HardenError, match="needs data"):
        harden.evaluate(net, attacks=["fgsm"])
    by_path = harden.evaluate(digits_ckpt, "digits", attacks=["fgsm"], n=16, metrics=False, masking_checks=False)
    by_objects = harden.evaluate(harden.load(digits_ckpt), harden.load_data("digits"), attacks=["fgsm"], n=16,
                                 metrics=False, masking_checks=False)
    assert by_path.metric_values() == by_objects.metric_values()


@pytest.mark.parametrize("fn,kept", [("LeNetView", False), ("sequential", False), ("Wide", True), ("all_conv", True)])
def test_channels_last_only_where_the_forward_runs_on_it(nets, fn, kept):
    """CUDA puts convolutional networks in channels_last (prepare_for_device); a view-flatten of a feature map cannot
    read it, so the probe leaves those networks in the plain layout. Tried here on the CPU, where the same view fails
    the same way."""
    from harden.device_defaults import channels_last_if_it_runs
    model = harden.create_model(f"{nets}:{fn}", 4, 3, (16, 16), (0.3,), (0.3,)).eval()
    x = torch.rand(3, 3, 16, 16)
    before = model(x)
    assert channels_last_if_it_runs(model, torch.device("cpu")) is kept
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last if kept else torch.contiguous_format)
    assert torch.allclose(model(x), before, atol=1e-5)  # runs, and answers as before


def test_channels_last_probe_names_the_layout_only_when_it_is_the_cause(nets, monkeypatch):
    import harden.runtime
    from harden.device_defaults import channels_last_if_it_runs
    said = []
    monkeypatch.setattr(harden.runtime, "info", said.append)
    cpu = torch.device("cpu")
    view = harden.create_model(f"{nets}:LeNetView", 4, 3, (16, 16), (0.3,), (0.3,))
    assert not channels_last_if_it_runs(view, cpu) and not channels_last_if_it_runs(view, cpu)
    assert len(said) == 1 and "channels-last activations" in said[0] and "view size" in said[0]  # once per model
    wrong_size = harden.create_model(f"{nets}:LeNetView", 4, 3, (16, 16), (0.3,), (0.3,))
    wrong_size.spec.input_size = (20, 20)  # its flatten no longer fits: fails in either layout
    assert not channels_last_if_it_runs(wrong_size, cpu) and len(said) == 1  # not blamed on the layout
    conv = next(m for m in wrong_size.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()


def test_a_network_that_prints_leaves_a_piped_report_alone(tmp_path, monkeypatch, cli):
    """Published code's debugging prints (on import, and `print(x.shape)` in the forward) go to standard error with
    the rest when `--json -` sends the report to standard output for a pipe; standard output holds the JSON alone,
    and is standard output again for the next command."""
    import json
    (tmp_path / "chatty.py").write_text(
        "import torch.nn as nn\nprint('building models')\n\n\nclass Chatty(nn.Module):\n"
        "    def __init__(self, num_classes=10):\n        super().__init__()\n"
        "        self.fc = nn.Linear(64, num_classes)\n\n"
        "    def forward(self, x):\n        print('input', tuple(x.shape))\n        return self.fc(x.view(x.size(0), -1))\n")
    monkeypatch.chdir(tmp_path)
    torch.save({"fc.weight": torch.zeros(10, 64), "fc.bias": torch.zeros(10)}, tmp_path / "chatty.pt")
    code, out, err = cli("eval", tmp_path / "chatty.pt", "--arch", "chatty.py:Chatty", "--in-chans", "1",
                         "--input-size", "8", "--data", "digits", "--n", "10", "--attack", "fgsm",
                         "--no-masking-checks", "--no-metrics", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["n"] == 10 and "building models" in err and "input (" in err
    code, out, err = cli("recipes")
    assert code == 0 and "recipes in" in " ".join(out.split())
