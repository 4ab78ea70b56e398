"""A state dict saved in shards (`huggingface_hub.save_torch_state_dict`, accelerate's `save_model`): the folder, its
index or any one shard loads the whole set, the same model with the same sha256 from each; a shard missing is named."""
from pathlib import Path

import pytest
import torch
from torch import nn

import harden
from harden import HardenError
from harden.checkpoint import sha256_file

hub = pytest.importorskip("huggingface_hub")


class Net(nn.Module):  # written as published code writes it
    def __init__(self, num_classes=4):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "bin"])
def test_a_sharded_state_dict_loads_whole_from_its_folder_index_or_any_shard(tmp_path, safetensors):
    torch.manual_seed(0)
    net = Net().eval()
    (tmp_path / "net.py").write_text(Path(__file__).read_text())  # the network's code, as a user gives it
    (tmp_path / "w").mkdir()
    hub.save_torch_state_dict(net.state_dict(), tmp_path / "w", max_shard_size="10KB", safe_serialization=safetensors)
    files = sorted(p.name for p in (tmp_path / "w").iterdir())
    ext = "safetensors" if safetensors else "bin"
    shards = [f for f in files if f.endswith(ext)]
    assert len(shards) >= 3 and any(f.endswith(".index.json") for f in files)
    index = next(tmp_path / "w" / f for f in files if f.endswith(".index.json"))
    x = torch.rand(3, 3, 8, 8)
    digests = set()
    for given in (tmp_path / "w", index, tmp_path / "w" / shards[1]):
        model = harden.load(given, arch=f"{tmp_path / 'net.py'}:Net", input_size=(8, 8), in_chans=3)
        with torch.no_grad():
            assert torch.equal(model.net(x), net(x)), given
        digests.add(sha256_file(given))
    assert len(digests) == 1
    index.unlink()  # no index: a shard's siblings by their -0000k-of-0000n names
    model = harden.load(tmp_path / "w" / shards[0], arch=f"{tmp_path / 'net.py'}:Net", input_size=(8, 8), in_chans=3)
    with torch.no_grad():
        assert torch.equal(model.net(x), net(x))
    (tmp_path / "w" / shards[-1]).unlink()
    with pytest.raises(HardenError, match=rf"is shard 1 of {len(shards)}, and {shards[-1]} is not beside it"):
        harden.load(tmp_path / "w" / shards[0], arch=f"{tmp_path / 'net.py'}:Net", input_size=(8, 8), in_chans=3)
