"""Networks built only to read their weights' names and shapes: on the meta device (no memory, nothing downloaded)
and without their initialisation, which changes no shape but was most of the time (torchvision's 80 classification
factories: 7 s with it, 2.6 s without, on the 2-core CPU; every kaiming_normal_ on the meta device still goes through
torch's device mode in Python)."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")


def _unchanged(*args, **kwargs):
    return args[0] if args else next(iter(kwargs.values()), None)


# the tensor methods published code initialises with by hand (`m.weight.data.normal_(0, math.sqrt(2. / n))`, as
# bearpaw's and many CIFAR ResNets do): 1 ms each on the meta device, half of a 164-layer ResNet's build
TENSOR_INITIALISERS = ("normal_", "uniform_", "fill_", "zero_", "bernoulli_", "exponential_", "log_normal_",
                       "cauchy_", "geometric_", "random_")
# in-place arithmetic that changes values only, never a shape or a stride: libraries' own initialisers are made of
# it (timm's trunc_normal_ is uniform_, erfinv_, mul_, add_, clamp_), and on the meta device each call runs torch's
# reference decomposition in Python (a 2-block ViT's build 71 ms, 52 of them these; 98 builds to read its arguments)
VALUE_METHODS = ("add_", "sub_", "mul_", "div_", "erfinv_", "erf_", "clamp_", "clamp_min_", "clamp_max_", "clip_",
                 "copy_", "sqrt_", "exp_", "abs_", "neg_", "fmod_", "remainder_", "masked_fill_", "fill_diagonal_")


def _left_on_meta(method):
    def initialise(self, *args, **kwargs):
        return self if self.is_meta else method(self, *args, **kwargs)
    return initialise


@contextlib.contextmanager
def built_for_shapes(registered_only: bool = False) -> Iterator[None]:
    """Modules made inside are on the meta device, torch.nn.init's in-place initialisers and the tensor methods of
    the same kind leave meta tensors as they are, and constructors' warnings are silenced (a future default's notice,
    for one). `registered_only`: only parameters and buffers go to the meta device, as they are registered; the
    constructor's other tensors stay on the CPU, where it can read back what it computed with them (shapes_build)."""
    initialisers = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in initialisers}
    methods = {n: getattr(torch.Tensor, n) for n in TENSOR_INITIALISERS + VALUE_METHODS}
    try:
        for name in initialisers:
            setattr(torch.nn.init, name, _unchanged)
        for name, method in methods.items():
            setattr(torch.Tensor, name, _left_on_meta(method))
        with (_registered_on_meta() if registered_only else torch.device("meta")), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)
        for name, method in methods.items():
            setattr(torch.Tensor, name, method)


@contextlib.contextmanager
def _registered_on_meta() -> Iterator[None]:
    """Parameters and buffers moved to the meta device as a module registers them (as accelerate's
    init_empty_weights does): made on the CPU uninitialised (torch.empty), each is held only until it is registered."""
    module = torch.nn.Module
    register_parameter, register_buffer = module.register_parameter, module.register_buffer

    def parameter_on_meta(self, name, param):
        register_parameter(self, name, param)
        p = self._parameters.get(name)
        if type(p) is torch.nn.Parameter and not p.is_meta:  # lazy and other kinds of parameter kept as made
            self._parameters[name] = torch.nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    def buffer_on_meta(self, name, tensor, persistent=True):
        register_buffer(self, name, tensor.to("meta") if isinstance(tensor, torch.Tensor) else tensor, persistent)
    module.register_parameter, module.register_buffer = parameter_on_meta, buffer_on_meta
    try:
        yield
    finally:
        module.register_parameter, module.register_buffer = register_parameter, register_buffer


def shapes_build(build: Callable[..., T], *args, **kwargs) -> T:
    """build(*args, **kwargs) inside built_for_shapes(). A constructor that reads back values it computed with
    tensors raises on the meta device, which has no values (torchvision's RegNets compute their widths so; published
    ConvNeXt, Swin and DeiT code its drop-path rates, `[x.item() for x in torch.linspace(0, rate, depth)]`): it is
    built again with only its parameters and buffers on the meta device. Any other error is the constructor's own,
    raised as it is."""
    try:
        with built_for_shapes():
            return build(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - told apart by what it says
        if "meta" not in str(e):
            raise
    with built_for_shapes(registered_only=True):
        return build(*args, **kwargs)
