"""What a model's forward returns: logits, log-probabilities (public MNIST code often ends in log_softmax) or
probabilities (a softmax at the end). Found on a probe batch. Attacks and losses need logits or anything
shift-equivalent to them: log-probabilities are logits shifted per image, so CE, DLR, margins and C&W are
unchanged on them; probabilities are not, so attacks see their logarithm instead."""
from __future__ import annotations

import re

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .errors import DoesNotRun, HardenError
from .input_layouts import give_in, layout_it_runs_in

LOGITS = "logits"
LOG_PROBABILITIES = "log-probabilities"
PROBABILITIES = "probabilities"

_TOL = 1e-4


def _tolerance(*dtypes: torch.dtype) -> float:
    """How far a row may miss summing to 1 (per class) in the coarsest type the network computed it in: a bfloat16
    softmax's outputs are each rounded to 8 bits (eps 2^-7), so its rows miss 1 by up to ~2^-8, beyond float32's 1e-4
    per class for any class count below 40 (such a head was read as logits, and its probabilities attacked as
    scores)."""
    return max([_TOL] + [torch.finfo(d).eps for d in dtypes if d.is_floating_point])


def detect_output_kind(model: nn.Module, x: torch.Tensor) -> str:
    """Probabilities: every row non-negative and summing to 1. Log-probabilities: every row non-positive with
    logsumexp 0. Anything else: logits. Both to the precision of the type the network returns."""
    with torch.no_grad():
        out = model(x)
    if out.ndim != 2 or out.shape[1] < 2:
        return LOGITS
    # a Classifier hands a half-precision network's scores on in float32: its weights' type says their precision
    from .models.registry import weights_dtype
    net = getattr(model, "net", None)
    tol = _tolerance(out.dtype, *([weights_dtype(net)] if isinstance(net, nn.Module) else []))
    z = out.float()
    if (z >= -tol).all() and (z.sum(1) - 1).abs().max() < tol * z.shape[1]:
        return PROBABILITIES
    if (z <= tol).all() and z.logsumexp(1).abs().max() < tol * z.shape[1]:
        return LOG_PROBABILITIES
    return LOGITS


class LogOfProbabilities(nn.Module):
    """log(p) of a model that outputs probabilities: logits up to a per-image shift, for the attacks' losses."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        if hasattr(model, "spec"):
            self.spec = model.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).clamp_min(1e-30).log()


def as_logits(model: nn.Module, kind: str) -> nn.Module:
    return LogOfProbabilities(model) if kind == PROBABILITIES else model


LOG_WHERE_PROBABILITIES = "_log_where_probabilities"  # a Classifier's __dict__ flag while it trains (below)


def log_where_probabilities(z: torch.Tensor) -> torch.Tensor:
    """log(p) where the network returned probabilities (every row non-negative and summing to 1), else its scores as
    they are: decided on the device for each forward (no host sync), since published code often returns logits in
    train mode and probabilities in eval mode, where training's attack runs."""
    if z.ndim != 2 or z.shape[1] < 2:
        return z
    zf, tol = z.float(), _tolerance(z.dtype)
    is_p = (zf.min() >= -tol) & ((zf.sum(1) - 1).abs().max() < tol * z.shape[1])
    return torch.where(is_p, z.clamp_min(1e-30).log(), z)


@contextlib.contextmanager
def trained_as_log_probabilities(model: nn.Module, on: bool) -> Iterator[None]:
    """While a model that returns probabilities trains, its forward gives their logarithm: a cross-entropy of the
    probabilities taken as logits has almost no gradient (a softmax head's fix fell from 47% clean to chance), and
    its training attack would be as weak. A copy made while it trains (`at`'s teacher) keeps the flag, so that its
    soft labels are read the same way; the model itself is saved, exported and reported as it was."""
    if not on:
        yield
        return
    model.__dict__[LOG_WHERE_PROBABILITIES] = True
    try:
        yield
    finally:
        model.__dict__.pop(LOG_WHERE_PROBABILITIES, None)


# Research code often returns more than the class scores: `return logits, features`, a dict with "logits", a
# Hugging Face ModelOutput, or a (N, K, 1, 1) map from an all-convolutional net. A forward hook on the network hands
# every caller (attacks, probes, training, export) just the N x K scores, and leaves the state dict as saved.
LOGITS_KEY = "logits_key"  # metadata: where in the forward's return value the scores are (an index or a name)


def _at(out: Any, key: str) -> Any:
    if isinstance(out, (tuple, list)):
        return out[int(key)]
    if isinstance(out, Mapping):
        return out[key]
    return getattr(out, key)


def as_scores(z: torch.Tensor, num_classes: int, sigmoid: bool = False, n: int | None = None) -> torch.Tensor:
    """N x K scores from what a network returned for n images."""
    if z.ndim == 4 and z.shape[2:] == (1, 1):
        z = z.flatten(1)  # a global-pooled convolutional head without the flatten
    if n == 1 and z.ndim == 1 and z.numel() == num_classes:
        z = z[None]  # `.squeeze()` at the end: a batch of one loses its batch axis
    elif num_classes == 2 and z.ndim < 2 and z.numel() == n:
        z = z.reshape(-1, 1)  # one binary logit an image, squeezed (-1: a traced export keeps its batch axis)
    if z.dtype == torch.float64:
        z = z.float()  # a network that computes in double: the attacks' tensors are float32
    if z.ndim == 2 and z.shape[1] == 1 and num_classes == 2:
        if sigmoid:  # a sigmoid's probability p back to its logit (it vanishes where the sigmoid saturates)
            z = torch.logit(z.float().clamp(1e-7, 1 - 1e-7)).to(z.dtype)
        z = torch.cat([z * 0, z], 1)  # one binary logit: softmax([0, z]) = (1 - sigmoid(z), sigmoid(z)); z * 0, not
        # zeros_like, which a traced export may fold to a constant of the probe's batch
    return z


def class_count(width: int) -> int:
    """The classes a network's output width says: one output is a binary classifier's logit, read as the two
    classes' scores (0, z) (as_scores)."""
    return 2 if width == 1 else width


def _fits(z: Any, num_classes: int, n: int) -> bool:
    return isinstance(z, torch.Tensor) and tuple(as_scores(z, num_classes, n=n).shape) == (n, num_classes)


def _find_key(out: Any, num_classes: int, n: int) -> str | None:
    """A 'logits' entry of the scores' shape, else the first entry of that shape."""
    fitting = [k for k, v in _entries(out) if _fits(v, num_classes, n)]
    return "logits" if "logits" in fitting else (fitting[0] if fitting else None)


def scores_width(out: Any, key: str | None = None, hint: int | None = None) -> int | None:
    """The class count a forward's output says where it is not a tensor (a model's own output class, a dict, a tuple):
    the width of its `key` entry, else of its 'logits' entry, else of its one N x K entry, else of its one N x `hint`
    entry (the data's class count: `(logits, features)`); None where none says it."""
    entries = dict(_entries(out))
    if key is None:
        two_d = [k for k, v in entries.items() if isinstance(v, torch.Tensor) and v.ndim == 2]
        hinted = [k for k in two_d if hint is not None and entries[k].shape[1] == hint]
        key = ("logits" if "logits" in two_d else two_d[0] if len(two_d) == 1 else hinted[0] if len(hinted) == 1
               else None)
    value = entries.get(str(key)) if key is not None else None
    return int(value.shape[1]) if isinstance(value, torch.Tensor) and value.ndim == 2 else None


class ScoresOf:
    """The scores from whatever the network returns: its forward hook, and Classifier.forward's fallback for what
    only train mode returns (torchvision's Inception: a tensor in eval mode, (logits, aux_logits) in train mode,
    which the probe, run in eval mode, never sees)."""

    def __init__(self, key: str | None, num_classes: int, sigmoid: bool = False):
        self.key, self.num_classes, self.sigmoid = key, num_classes, sigmoid

    def __call__(self, module: nn.Module, inputs: Any, out: Any) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            key = self.key if self.key is not None else _find_key(out, self.num_classes, len(inputs[0]))
            if key is None:
                raise HardenError(f"{type(module).__name__}'s forward returned {_describe(out)}: nothing of shape "
                                  f"N x {self.num_classes}; pass --logits-key with the entry that holds the scores.")
            out = _at(out, key)
        return as_scores(out, self.num_classes, self.sigmoid, len(inputs[0]) if inputs else None)


def _entries(out: Any) -> list[tuple[str, Any]]:
    if isinstance(out, (tuple, list)):
        return [(str(i), v) for i, v in enumerate(out)]
    if isinstance(out, Mapping):
        return [(str(k), v) for k, v in out.items()]
    return [(k, v) for k, v in vars(out).items() if not k.startswith("_")] if hasattr(out, "__dict__") else []


ONE_AT_A_TIME = ("It runs on one image at a time: its forward folds the batch into another axis (x.view(1, -1), "
                 "x.view(-1), x.flatten(), a reshape with the batch written as 1), which attacks that run on batches "
                 "cannot use; write it x.view(x.size(0), -1) (or torch.flatten(x, 1)) and load it again.")


INPUT_KEYS = ("image", "images", "img", "x", "input", "inputs", "pixel_values", "data")  # a batch dict's usual keys


def forward_wants(net: nn.Module, x: torch.Tensor, error: str) -> str | None:
    """What a forward that failed on a batch of images wants instead, said with the way to give it (None where it is
    not one of these): more arguments than the images (forward(x, t)), or a batch dict (forward(batch) reading
    batch['image'], as Lightning-style code writes it)."""
    import inspect
    name = type(net).__name__
    wrap = ("harden calls forward with a batch of images alone: give --arch a factory (file.py:factory) that returns "
            f"a module holding a {name} as `net` (its keys gain the prefix 'net.', which loading takes off) whose "
            "forward(x) returns ")
    if re.search(r"forward\(\) missing \d+ required (positional|keyword-only) argument", error):
        try:
            signature = str(inspect.signature(net.forward))
        except (TypeError, ValueError):
            signature = "(...)"
        return f"Its forward takes more than the images: forward{signature}; {wrap}self.net(x, ...) with the rest."
    for key in INPUT_KEYS:
        try:
            with torch.no_grad():
                net({key: x})
        except Exception:  # noqa: BLE001 - not this key (or not a dict at all)
            continue
        return f"Its forward reads a batch dict's {key!r} entry (forward(batch) with batch[{key!r}]); {wrap}" \
               f"self.net({{{key!r}: x}})."
    return None


def runs_alone(net: nn.Module, one: torch.Tensor) -> bool:
    """Whether a network that failed on a batch of two runs on one image (a forward that folds the batch away)."""
    try:
        with torch.no_grad():
            net(one)
        return True
    except Exception:  # noqa: BLE001 - any failure: it does not run at this size at all
        return False


def _describe(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    parts = [f"{k}: {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}" for k, v in _entries(out)]
    return f"a {type(out).__name__} ({', '.join(parts) or 'no entries'})"


def attach_scores(net: nn.Module, num_classes: int, in_chans: int, input_size: tuple[int, int],
                  key: str | None = None, register: bool = True):
    """Run one probe forward, check that the network's output holds N x num_classes scores, and register ScoresOf as
    its forward hook where that output is not those scores as they are. `key` picks the entry (--logits-key); without
    it: a 'logits' entry, else the first entry of shape N x num_classes. Returns the key used (None: the output is
    used as it is, or reshaped) and whether the output is one sigmoid probability of a two-class model (the output of
    its last layer with weights, through a sigmoid), which is read as its logit. `register` False (a module of the
    caller's, which harden leaves as it is): no hook; the ScoresOf that would be it is returned third (None where the
    output is the scores as they are)."""
    was = net.training
    net.eval()
    from .cuda_calls import keep_forward_on, keeps_forward_on, names_cuda
    from .models.registry import weights_dtype
    if register and not torch.cuda.is_available() and not keeps_forward_on(net) and names_cuda(net):
        keep_forward_on(net)  # a branch the probe does not take may name the GPU too (a training-time noise)
    p = next(net.parameters(), None)
    x = torch.zeros(2, in_chans, *input_size, device=p.device if p is not None else "cpu", dtype=weights_dtype(net))
    layer_outputs: list[torch.Tensor] = []  # what each layer with weights returned, for a sigmoid after the last
    handles = [m.register_forward_hook(lambda mod, i, o: layer_outputs.append(o))
               for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d))]
    try:
        with torch.no_grad():
            out = net(x)
            probed = len(layer_outputs)  # the batch of two's layer outputs (the sigmoid test below reads the last)
            try:  # `.squeeze()` at the end drops a batch of one's axis: the hook restores it
                one = net(x[:1])
            except (RuntimeError, ValueError, TypeError, IndexError, AssertionError):
                one = None  # a network that cannot take one image says so when it meets one, not at load
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as e:  # torch's layers, timm's asserts
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        layout = layout_it_runs_in(net, x)  # rows, channels-last, no channel axis: as its training loop fed it
        if register and layout is not None:
            give_in(net, layout)  # whoever calls it: the report, training, an export
            net.train(was)
            for h in handles:
                h.remove()
            return attach_scores(net, num_classes, in_chans, input_size, key, register)
        on_gpu = any(w in first.lower() for w in ("cuda", "nvidia"))
        if on_gpu and register and not keeps_forward_on(net):
            keep_forward_on(net)  # its forward's own device='cuda' / .to('cuda'), run where its input is
            net.train(was)
            for h in handles:
                h.remove()
            try:
                return attach_scores(net, num_classes, in_chans, input_size, key, register)
            except DoesNotRun as again:
                if not any(w in again.cause.lower() for w in ("cuda", "nvidia")):
                    raise  # past its GPU habit, the network fails for another reason: that one is said
                first = again.cause  # something else of CUDA's (torch.cuda.current_device())
        alone = not on_gpu and runs_alone(net, x[:1])
        called = None if on_gpu or alone else forward_wants(net, x, first)
        if called is None and not on_gpu and not alone and layout is not None:  # a caller's module, left as it is
            called = layout.hint
        why = ("Its forward uses a GPU itself, which this machine lacks (its device='cuda', .to('cuda'), .cuda() and "
               "torch.cuda.current_device() calls are kept on the input's device, but not this one, e.g. "
               "torch.cuda.get_device_properties): make it use the input's device (x.device)." if on_gpu
               else ONE_AT_A_TIME if alone else called or "Where that is a shape mismatch, check --input-size and "
               "--in-chans: a plain state dict does not say them.")
        raise DoesNotRun(f"{type(net).__name__} cannot run on a batch of 2 x {in_chans} x {input_size[0]} x "
                         f"{input_size[1]} ({first[:200]}). {why}",
                         size_may_help=not (on_gpu or alone or called), cause=first[:200]) from None
    finally:
        net.train(was)
        for h in handles:
            h.remove()

    def fits(z: Any) -> bool:
        return _fits(z, num_classes, 2)

    if key is None and not isinstance(out, torch.Tensor):
        key = _find_key(out, num_classes, 2)
        if key is None:
            raise HardenError(f"{type(net).__name__}'s forward returns {_describe(out)} for a batch of 2: nothing of "
                              f"shape 2 x {num_classes} (the number of classes). Check --num-classes, or pass "
                              "--logits-key with the index or name of the class scores.")
    scores = out
    if key is not None:
        try:
            scores = _at(out, key)
        except (LookupError, AttributeError, ValueError, TypeError):
            raise HardenError(f"--logits-key {key!r}: {type(net).__name__}'s forward returns {_describe(out)}, which "
                              "has no such entry.") from None
        if not fits(scores):
            raise HardenError(f"--logits-key {key!r}: that entry of {type(net).__name__}'s output is "
                              f"{_describe(scores)}, not 2 x {num_classes} class scores for a batch of 2.")
    elif not fits(out):
        raise HardenError(f"{type(net).__name__} returns {_describe(out)} for a batch of 2 images, not 2 x "
                          f"{num_classes} class scores: check --num-classes (and --in-chans, --input-size).")
    last = layer_outputs[probed - 1] if probed and isinstance(layer_outputs[probed - 1], torch.Tensor) else None
    sigmoid = bool(num_classes == 2 and scores.numel() == 2 and last is not None and last.numel() == 2 and
                   torch.allclose(torch.sigmoid(last.reshape(scores.shape)), scores, atol=1e-6) and
                   not torch.allclose(last.reshape(scores.shape), scores))  # nn.Sigmoid or torch.sigmoid at the end
    as_returned = (one is None or isinstance(one, torch.Tensor) and tuple(one.shape) == (1, num_classes)) and \
        tuple(out.shape) == (2, num_classes) and out.dtype != torch.float64
    scores_of = ScoresOf(key, num_classes, sigmoid) if key is not None or not as_returned else None
    if not register:
        return key, sigmoid, scores_of
    if scores_of is not None:
        net.register_forward_hook(scores_of)
    # else no hook (a network with hooks cannot be torch.jit.script-ed): Classifier.forward hands any structure the
    # network returns in train mode only (torchvision's Inception) to ScoresOf itself
    return key, sigmoid


BINARY_SIGMOID = "binary_sigmoid"  # metadata: the model outputs one sigmoid probability, read as its logit


def scores_entry(model: nn.Module) -> str:
    """What a report says of where the scores come from: an entry of the forward's output, a sigmoid read back."""
    extra = getattr(getattr(model, "spec", None), "extra", {})
    words = "" if extra.get(LOGITS_KEY) is None else \
        f", read at entry {extra[LOGITS_KEY]!r} of what the forward returns (--logits-key)"
    if extra.get(BINARY_SIGMOID):
        words += (", one sigmoid probability read back as its logit (its gradient vanishes where the sigmoid "
                  "saturates in float32: return the logit if you can)")
    return words
