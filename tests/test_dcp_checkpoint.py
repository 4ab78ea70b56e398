"""torch.distributed.checkpoint folders (`dcp.save`, as FSDP's and torchtitan's training saves) as checkpoints: the
model's tensors read in one process, nested as saved; the `.metadata` pickle read without running anything it names;
the non-tensor values DCP keeps as pickled bytes never unpickled."""
import pathlib
import pickle
import subprocess
import warnings

import pytest
import torch
from torch import nn

import harden
from harden import HardenError

dcp = pytest.importorskip("torch.distributed.checkpoint")


class Net(nn.Module):  # written as published code writes it
    def __init__(self, num_classes=4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(6 * 4 * 4, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.fc(x.view(x.size(0), -1))


class Touch:
    """A value whose unpickling creates a file: what a pickle can make a reader do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def save_dcp(state, folder):
    with warnings.catch_warnings():  # no process group: DCP says it saves as one process
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=str(folder))


def test_a_dcp_folder_with_its_optimizer_and_other_values_loads_the_model(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = Net().eval()
    opt = torch.optim.AdamW(net.parameters())
    net(torch.rand(2, 3, 8, 8)).sum().backward()
    opt.step()
    marker = tmp_path / "unpickled"
    save_dcp({"model": net.state_dict(), "optim": opt.state_dict(), "step": 7, "extra": Touch(str(marker))},
             tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [".metadata", "__0_0.distcp"]
    (tmp_path / "net.py").write_text(pathlib.Path(__file__).read_text())  # the network's code, as a user gives it
    model = harden.load(tmp_path / "ckpt", arch=f"{tmp_path / 'net.py'}:Net", input_size=(8, 8), in_chans=3)
    x = torch.rand(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x), atol=1e-6)
    assert not marker.exists()  # the pickled value was never unpickled
    before = harden.checkpoint.sha256_file(tmp_path / "ckpt")
    shard = next((tmp_path / "ckpt").glob("*.distcp"))
    raw = shard.read_bytes()
    shard.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    assert harden.checkpoint.sha256_file(tmp_path / "ckpt") != before  # the shards are part of the model's hash


def test_a_metadata_pickle_naming_anything_else_is_refused_before_it_runs(tmp_path):
    save_dcp({"model": Net().state_dict()}, tmp_path / "ckpt")
    marker = tmp_path / "ran"
    (tmp_path / "ckpt" / ".metadata").write_bytes(pickle.dumps(Touch(str(marker))))
    with pytest.raises(HardenError, match=r"\.metadata does not read \(UnpicklingError: pathlib\.Path\.touch is not "
                                          r"among the metadata records harden reads\)"):
        harden.load(tmp_path / "ckpt", arch="resnet18")
    assert not marker.exists()


FSDP_SAVE = """
import os
import warnings
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

warnings.simplefilter("ignore")
dist.init_process_group("gloo")
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
fully_shard(net, mesh=init_device_mesh("cpu", (2,)))
state = get_model_state_dict(net)
assert any(type(v).__name__ == "DTensor" for v in state.values())  # each rank holds a shard of the weights
dcp.save({"model": state}, checkpoint_id="ckpt")
whole = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in state.items()}
if dist.get_rank() == 0:
    torch.save(whole, "whole.pt")
dist.barrier()
os._exit(0)  # past torch's own teardown, which aborted a rank now and then on this CPU ("terminate called ...")
"""


def test_an_fsdp_sharded_save_of_two_processes_loads_as_its_gathered_weights(tmp_path):
    """FSDP2 (`fully_shard`) over two gloo processes: each rank writes its shards (`__0_0.distcp`, `__1_0.distcp`);
    the folder reads back as the weights the ranks gather."""
    from test_distributed import TORCHRUN, env_for, free_port
    if TORCHRUN is None or not torch.distributed.is_available():
        pytest.skip("torch.distributed / torchrun not available")
    (tmp_path / "save.py").write_text(FSDP_SAVE)
    r = subprocess.run([TORCHRUN, "--nproc-per-node", "2", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "save.py"],
                       cwd=tmp_path, env=env_for(), capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "fully_shard" in r.stderr and "CPU" in r.stderr:
        pytest.skip("this torch's FSDP does not run on the CPU")
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    from harden.checkpoint import read_checkpoint
    state, _ = read_checkpoint(tmp_path / "ckpt")
    whole = torch.load(tmp_path / "whole.pt", weights_only=True)
    assert state.keys() == whole.keys() and all(torch.equal(state[k], whole[k]) for k in whole)
