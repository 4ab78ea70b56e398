"""Published code's own `.cuda()` calls, kept on the CPU on a machine without CUDA.

Research code moves tensors to the GPU by hand: in a constructor (`self.mu = torch.tensor(mean).view(1, 3, 1, 1)
.cuda()`), in a forward (`x + torch.randn(x.size()).cuda() * sigma`), in a module the model file imports (`mu =
torch.tensor(cifar10_mean).view(3, 1, 1).cuda()` at the top of a utils.py). On a machine without CUDA (a CI runner,
a laptop) every such call can only raise, so before harden imports a user's architecture code on such a machine,
`Tensor.cuda()` and `Module.cuda()` are made to leave what they are called on where it is, and the calls are counted
so that the load notes say so. `torch.cuda.is_available()` still says False (code that picks its device by it is
unchanged), and tensors made with `device='cuda'` or `.to('cuda')` still raise, with the error that says to use the
input's device (outputs.py). On a machine with CUDA nothing is changed."""
from __future__ import annotations

import torch

_calls = [0]  # .cuda() calls left on the CPU so far, in this process
_installed = [False]


def _tensor_cuda(self, device=None, non_blocking=False, memory_format=torch.preserve_format):
    _calls[0] += 1
    return self if memory_format == torch.preserve_format else self.contiguous(memory_format=memory_format)


def _module_cuda(self, device=None):
    _calls[0] += 1
    return self


def keep_cuda_calls_on_cpu() -> None:
    """On a machine without CUDA, from now on in this process: `.cuda()` leaves a tensor or module on the CPU."""
    if _installed[0] or torch.cuda.is_available():
        return
    torch.Tensor.cuda = _tensor_cuda
    torch.nn.Module.cuda = _module_cuda
    _installed[0] = True


def cuda_calls() -> int:
    """How many `.cuda()` calls have been left on the CPU so far."""
    return _calls[0]
