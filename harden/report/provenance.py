"""What made a report: harden's and torch's versions, the machine, when, and a digest of the weights evaluated, so a
report kept as a release's baseline says which model it measured and with what, and a comparison says when the
evaluation changed beside the model (another harden, another kind of device)."""
from __future__ import annotations

import hashlib
import platform
import sys
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn


def weights_sha256(model: nn.Module) -> str:
    """sha256 of the module's state dict (names, dtypes, shapes, bytes, in name order): the same for the same weights
    in any file format or on any device, another for any change to a weight or buffer (normalisation included)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        if not isinstance(t, torch.Tensor):  # an extra state kept in the dict
            h.update(repr(t).encode())
            continue
        t = t.detach()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.is_quantized:
            t = t.int_repr()
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def device_name(device: torch.device | str) -> str:
    """The card's name (NVIDIA H200), or the CPU's model as the kernel names it."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or device.type


def of_run(model: nn.Module, device: torch.device | str, craft_on: nn.Module | None = None) -> dict[str, Any]:
    """The report's `provenance`: versions, machine, time (UTC) and the weights' digests."""
    from .. import __version__
    out = {"harden": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "platform": f"{sys.platform}-{platform.machine()}", "device_name": device_name(device),
           "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "weights_sha256": weights_sha256(model)}
    if craft_on is not None:
        out["crafted_on_weights_sha256"] = weights_sha256(craft_on)
    return out


def line(provenance: dict[str, Any]) -> str:
    """One line for a page: 'harden 0.1.0, torch 2.11.0 on NVIDIA H200, 2026-12-05T18:30:00Z; weights sha256
    1a2b3c4d5e6f, file sha256 ...'."""
    if not provenance:
        return ""
    text = f"harden {provenance.get('harden', '?')}, torch {provenance.get('torch', '?')}"
    if provenance.get("device_name"):
        text += f" on {provenance['device_name']}"
    if provenance.get("created"):
        text += f", {provenance['created']}"
    if provenance.get("weights_sha256"):
        text += f"; weights sha256 {provenance['weights_sha256'][:12]}"
    if provenance.get("file_sha256"):
        text += f", file sha256 {provenance['file_sha256'][:12]}"
    return text


def differences(base: dict[str, Any], new: dict[str, Any], base_name: str = "the baseline") -> list[str]:
    """What to say of a comparison whose two reports were made with another harden, torch or kind of device, or of
    the same weights (then every change is the evaluation's). A report written before provenance was kept says
    nothing."""
    a, b = base.get("provenance") or {}, new.get("provenance") or {}
    if not a or not b:
        return []
    out = []
    same = a.get("weights_sha256") and a.get("weights_sha256") == b.get("weights_sha256")
    if same:
        out.append(f"the same weights as {base_name} (sha256 {a['weights_sha256'][:12]}): a change is the "
                   "evaluation's, not the model's")
    changed = [f"{key} {a.get(key)} -> {b.get(key)}" for key in ("harden", "torch") if a.get(key) != b.get(key)]
    kinds = [_device_kind(base, a), _device_kind(new, b)]
    if kinds[0] != kinds[1]:  # CPU to card, or one card to another; not one CPU model to another (CI runners vary)
        changed.append(f"device {kinds[0]} -> {kinds[1]}")
    if changed:
        out.append(f"{base_name} was measured with another " + ", ".join(changed) + ": attacks and arithmetic may "
                   "differ beside the model (an image near its decision boundary can change verdict); measure "
                   f"{base_name} again with this setup for a comparison of the models alone")
    return out


def _device_kind(report: dict[str, Any], provenance: dict[str, Any]) -> str:
    """'cpu', or the card's name."""
    where = str(report.get("device", "cpu"))
    return "cpu" if where.startswith("cpu") else str(provenance.get("device_name") or where)
