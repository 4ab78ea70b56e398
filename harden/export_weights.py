"""`harden export model -o hardened.pth`: the network's weights as a plain PyTorch state dict, keyed as its own code's
`state_dict()` names them (no `net.` or `module.` prefix, no metadata, no pickled code), so hardened weights go back
into the training script or service they came from: `net.load_state_dict(torch.load("hardened.pth",
weights_only=True))`. Weights pruned with torch.nn.utils.prune stay as it keeps them (`weight_orig`, `weight_mask`).
The input's normalisation is not in it (the code that loads it normalises as it always did). Written to a temporary
file, read back with `weights_only=True` into a fresh build of the architecture, whose outputs must equal the model's
on the check images; only then put in place."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import temp_beside
from .errors import HardenError
from .export import ExportCheck, compare, refuse_beyond_architecture
from .models import Classifier
from .pruned import prune_as_saved

STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin")  # torch.save's usual names (.bin: transformers' pytorch_model.bin)


def export_state_dict(model: Classifier, path: str | os.PathLike, x_check: torch.Tensor, images: str) -> ExportCheck:
    """Write the state dict (atomically) once a fresh build of the architecture, loaded from the written file,
    reproduces the model on x_check; a file that does not reproduce it is not put in place."""
    from .models import onnx_graph, exported_program
    from .models.registry import _build_net
    path = Path(path)
    model = model.cpu().eval()
    spec = model.spec
    refuse_beyond_architecture(model, "its own code cannot load them from a state dict", "its code")
    if spec.arch in (onnx_graph.ARCH, exported_program.ARCH):
        form = "an ONNX graph" if spec.arch == onnx_graph.ARCH else "a torch.export program"
        raise HardenError(f"This model was read from {form}, whose weights no network's code names; export it back "
                          "to that form (-o model.onnx, -o model.pt2).")
    state = {k: v.detach().cpu() for k, v in model.net.state_dict().items()}
    fd, tmp = temp_beside(path)
    os.close(fd)
    try:
        torch.save(state, tmp)
        back = torch.load(tmp, map_location="cpu", weights_only=True)
        fresh = _build_net(spec)
        pruned = prune_as_saved(fresh, back)  # torch's pruning keeps weight_orig and weight_mask, as its code saved them
        missing, unexpected = fresh.load_state_dict(back, strict=False)
        if missing or unexpected:  # the network as loaded is not what its code builds (keys renamed on loading)
            raise HardenError(f"A fresh {spec.arch} does not take the network's own state dict ("
                              + "; ".join(f"{what}: {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
                                          for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys)
                              + "); export to ONNX (-o model.onnx) instead.")
        from .outputs import ScoresOf
        for hook in list(model.net._forward_hooks.values()):  # the scores out of what the network returns, as loading
            if isinstance(hook, ScoresOf):                    # read them (an N x K x 1 x 1 output, a tuple's entry)
                fresh.register_forward_hook(hook)
        rebuilt = Classifier(fresh.eval(), spec)
        rebuilt.scores_of = model.__dict__.get("scores_of")  # the same, where harden put no hook on the network
        with torch.no_grad():
            check = compare(model, lambda b: rebuilt(b).numpy(), x_check, images)
        dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in state.values() if v.is_floating_point()})
        check.written = (f"state dict of {len(state)} tensors ({', '.join(dtypes)}), keys as {spec.arch}'s "
                         f"state_dict(); preprocessing not in it: input {'x'.join(map(str, spec.input_size))}, "
                         f"mean {','.join(f'{v:g}' for v in spec.mean)}, std {','.join(f'{v:g}' for v in spec.std)}"
                         + ("; pruned weights as torch.nn.utils.prune keeps them (weight_orig, weight_mask): prune "
                            "the network as its code did before loading" if pruned else ""))
        if check.ok:
            os.replace(tmp, path)
        return check
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
