"""torch.export programs as input: `harden eval model.pt2`, `harden fix model.pt2`.

`torch.export.save(torch.export.export(model, (x,)), "model.pt2")` writes the network as a graph of ATen operators
with its weights: the PyTorch 2 form of a deployment artifact, readable without the code that defined the model.
torch's own reader is not safe on a file from elsewhere: it unpickles weights with weights_only=False (and falls back
to it for the example inputs), evaluates the graph's shape expressions with sympy's parser (Python's eval), and
`module()` execs the program's guards as Python source. So the archive is checked first (_check_inert): every shape
expression is arithmetic on symbol names, every operator is one of torch.ops' (or Python's operator and math
functions), the input and output structures name plain containers, no TorchBind or opaque object is in it; torch
then reads it with every pickle loaded as data (weights_only=True forced), and the guards are dropped before the
module is built (harden feeds the shapes). An AOTInductor package (compiled machine code, no graph) is refused by
name. A float16 or bfloat16 program is run in float32 (`widen`), checked against the file in its own precision.

The graph is run as torch gives it back (`ExportedProgram.module()`), inside ExportedNet: a program exported for a
fixed batch (no `dynamic_shapes`) is run on chunks of that batch, the last one padded; BatchNorm and dropout
follow train/eval as in the module it was exported from (the graph's `training` flags read the mode).

The architecture is `exported_program`; its model_args hold the archive with every weight replaced by one value
(a few kilobytes), so the checkpoints harden writes from it rebuild with no .pt2 beside them."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import re
import zipfile
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils import _pytree as pytree

from ..errors import HardenError

ARCH = "exported_program"
TOLERANCE = 1e-4  # largest |rebuilt - file| output difference accepted, relative to the output scale
# the same for a program widened to float32, against the file run in its own precision (3 and 2 significant digits)
WIDENED_TOLERANCE = {"float16": 2e-2, "bfloat16": 5e-2}
# what sympy may meet in a shape expression: symbol names (s0, u3), numbers, arithmetic, comparisons and the
# functions torch writes (torch.utils._sympy.functions, sympy's Max/Min/...)
_SYMBOL = re.compile(r"[a-z]+\d+")
_EXPR_CHARS = re.compile(r"[\w\s.+\-*/%()<>=!&|,~^]*")
_NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?")
_SYMBOL_CALL = re.compile(r"Symbol\('([a-z]+\d+)'(?:, (?:positive|integer|real|nonnegative|finite)=(?:True|False))*\)")
_SYMPY_NAMES = {"Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "Piecewise", "floor",
                "ceiling", "sqrt", "oo", "zoo", "nan", "True", "False", "int_oo",
                # sympy's srepr, which torch writes (Add(FloorDiv(Add(s0, Integer(-1)), Integer(2)), Integer(1)))
                "Add", "Mul", "Pow", "Integer", "Rational", "Zero", "One", "NegativeOne", "Half", "Infinity",
                "NegativeInfinity", "IntInfinity", "NegativeIntInfinity", "BooleanTrue", "BooleanFalse", "Equality",
                "Unequality", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "ExprCondPair"}
_TARGET = re.compile(r"(torch\.ops(\.[A-Za-z_]\w*){2,3}|_operator\.[A-Za-z_]\w*|math\.[A-Za-z_]\w*|"
                     r"torch\.(sym_\w+|_sym_sqrt))")
TREE_TYPES = {None, "builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict",
              "torch.fx.immutable_collections.immutable_list", "torch.fx.immutable_collections.immutable_dict"}
EXTRA_FILE = "harden.json"  # what `harden export` writes beside the program (export_program.py)
MODE_ATTR = "harden_training"
# graph operators whose train flag follows the module's mode: (target, position of the flag)
_MODE_FLAGS = {"aten.batch_norm.default": 5, "aten.dropout.default": 2, "aten.feature_dropout.default": 2,
               "aten.alpha_dropout.default": 2}


def looks_like_exported_program(path: Path) -> bool:
    """A zip archive in torch.export's layout (`<name>/archive_format` saying pt2, or `<name>/models/*.json`)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if any(n.endswith("/archive_format") and z.read(n).strip() == b"pt2" for n in names):
                return True
    except (zipfile.BadZipFile, OSError, KeyError):
        return False
    return any(_is_program(n) for n in names)


def _is_program(name: str) -> bool:
    return re.search(r"(^|/)models/[^/]+\.json$", name) is not None


def _torch_functions() -> set[str]:
    """The sympy functions torch defines for shapes (FloorDiv, Mod, CeilToInt, ...): sympy classes only."""
    import sympy
    import torch.utils._sympy.functions as functions
    return {n for n, v in vars(functions).items()
            if n[:1].isupper() and isinstance(v, type) and issubclass(v, sympy.Basic)}


def _check_expression(text: Any, where: str) -> None:
    allowed = _SYMPY_NAMES | _torch_functions()
    if isinstance(text, str):  # a symbol as torch writes it: Symbol('s77', positive=True, integer=True)
        text = _SYMBOL_CALL.sub(lambda m: m.group(1), text)
    words = re.findall(r"[A-Za-z_]\w*|\d[\w.]*", text) if isinstance(text, str) else None
    if (words is None or not _EXPR_CHARS.fullmatch(text) or "__" in text
            or any(not (w in allowed or _SYMBOL.fullmatch(w) or _NUMBER.fullmatch(w)) for w in words)):
        raise HardenError(f"{where} holds a shape expression that is not arithmetic on sizes ({str(text)[:80]!r}); "
                          "torch's reader would evaluate it as Python, so harden does not read the file.")


def _dicts(doc: Any) -> Iterator[dict]:
    """Every dict in a JSON document, at any depth."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            yield item
            stack.extend(item.values())


def _walk(doc: Any, where: str) -> None:
    """Every shape expression and operator of a program's JSON, checked (see the module's doc)."""
    for item in _dicts(doc):
        if "expr_str" in item:
            _check_expression(item["expr_str"], where)
        if "target" in item and "inputs" in item and "outputs" in item:  # a node
            target = item["target"]
            if not isinstance(target, str) or not _TARGET.fullmatch(target):
                raise HardenError(f"{where} calls {str(target)[:80]!r}, which is not one of torch's operators; "
                                  "harden runs programs of torch.ops (ATen) operators only.")
        for key in ("in_spec", "out_spec"):  # pytree specs: torch's reader imports the types they name
            if isinstance(item.get(key), str):
                _check_tree_spec(item[key], where)
        if isinstance(item.get("range_constraints"), dict):
            for name in item["range_constraints"]:
                _check_expression(name, where)


def _check_tree_spec(text: str, where: str) -> None:
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise HardenError(f"{where}: an input or output structure of its program is not readable ({e}).") from None
    for item in _dicts(spec):
        if "type" in item and item["type"] not in TREE_TYPES:
            raise HardenError(f"{where} passes its inputs or outputs as {str(item['type'])[:80]!r}; torch's "
                              "reader would import it, so harden reads programs whose inputs and outputs are "
                              "tensors in tuples, lists and dicts.")


def _check_inert(z: zipfile.ZipFile, where: str) -> None:
    names = z.namelist()
    programs = [n for n in names if _is_program(n)]
    if not programs:
        if any("/aotinductor/" in n or n.endswith((".so", ".cubin")) for n in names):
            raise HardenError(f"{where} is an AOTInductor package: machine code compiled for inference, with no "
                              "graph to take gradients through. Give the ExportedProgram it was compiled from "
                              "(torch.export.save(program, 'model.pt2')), or the weights and --arch.")
        raise HardenError(f"{where} is a .pt2 archive without an exported program (no models/*.json in it).")
    for name in programs:
        try:
            text = z.read(name).decode("utf-8")
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise HardenError(f"{where}: its program {name} is not readable JSON ({e}).") from None
        if "__enum__" in text:  # torch's JSON reader imports the module an enum names
            raise HardenError(f"{where} holds an enum value in its program, which torch's reader would import; "
                              "harden reads programs of tensors and plain values.")
        _walk(doc, where)
    for name in names:
        if re.search(r"(^|/)constants/[^/]+_config\.json$", name):
            try:
                config = json.loads(z.read(name)).get("config", {})
            except (ValueError, AttributeError, UnicodeDecodeError) as e:
                raise HardenError(f"{where}: {name} is not readable ({e}).") from None
            for fqn, entry in (config or {}).items():
                path_name = str((entry or {}).get("path_name", ""))
                if not path_name.startswith("tensor_"):
                    raise HardenError(f"{where} holds a non-tensor constant ({fqn}: {path_name}), a TorchBind or "
                                      "opaque Python object that only unpickling code could rebuild; harden reads "
                                      "programs whose constants are tensors.")


@contextlib.contextmanager
def _pickles_as_data() -> Iterator[None]:
    """torch.export's reader with every torch.load made weights_only=True (it asks for False in places)."""
    original = torch.load

    def load(*args, **kwargs):
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """torch's reader logs a failure's whole traceback before raising it; the raise is what harden reports."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_program(source: Path | bytes, where: str):
    """(ExportedProgram, facts) of a .pt2 file (or its bytes), checked before torch reads it; facts: what
    `harden export` wrote in its extra file (harden.json), else {}."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as z:
            _check_inert(z, where)
    except (zipfile.BadZipFile, OSError) as e:
        raise HardenError(f"{where} is not a readable .pt2 archive ({e}).") from None
    extra = {EXTRA_FILE: ""}
    try:
        with _pickles_as_data(), warnings.catch_warnings(), _quiet_logger("torch.export"):
            warnings.simplefilter("ignore")
            program = torch.export.load(io.BytesIO(source) if isinstance(source, bytes) else str(source),
                                        extra_files=extra)
    except Exception as e:  # noqa: BLE001 - torch's reader raises many kinds on a damaged or foreign archive
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise HardenError(f"{where} is not a program torch {torch.__version__} can read ({type(e).__name__}: "
                          f"{first}). It may need the library that defines its custom operators imported, or "
                          "a newer torch; or re-export it with this one.") from None
    try:
        facts = json.loads(extra[EXTRA_FILE]) if extra[EXTRA_FILE] else {}
    except ValueError:
        facts = {}
    return program, facts if isinstance(facts, dict) else {}


class ExportedNet(nn.Module):
    """The program's module, fed NCHW pixels (transposed for one that takes NHWC); a fixed batch run in chunks."""

    def __init__(self, program: nn.Module, batch: int = 0, layout: str = "NCHW"):
        super().__init__()
        for name in ("train", "eval"):  # torch's module() refuses them; the graph reads the mode instead (below)
            program.__dict__.pop(name, None)
        # BatchNorm's and dropout's train flags, constants in the graph, read from an attribute set to the module's
        # mode at every call: modes set by assignment (m.training = ...) count too, and no graph is rebuilt
        setattr(program, MODE_ATTR, False)
        graph = program.graph
        for node in list(graph.nodes):
            position = _MODE_FLAGS.get(str(node.target)) if node.op == "call_function" else None
            if position is not None and len(node.args) > position and isinstance(node.args[position], bool):
                with graph.inserting_before(node), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # fx's note that a plain attribute is no parameter or buffer
                    mode = graph.get_attr(MODE_ATTR)
                node.args = node.args[:position] + (mode,) + node.args[position + 1:]
        program.recompile()
        self.program = program
        self.batch = batch
        self.layout = layout
        buffers = dict(program.named_buffers())
        # the buffers the graph's BatchNorm operators update in train mode, by name (.to() and .float() replace the
        # tensors, so they are looked up at each call)
        self._statistics = list(dict.fromkeys(
            arg.target for node in graph.nodes
            if node.op == "call_function" and str(node.target) == "aten.batch_norm.default"
            for arg in node.args[3:5] if getattr(arg, "op", None) == "get_attr" and arg.target in buffers))
        self.train(False)  # as loaded models are (the program's own mode is what it was exported in)

    def running_statistics(self) -> list[torch.Tensor]:
        """The running means and variances the graph's BatchNorm operators update in train mode."""
        buffers = dict(self.program.named_buffers())
        return [buffers[name] for name in self._statistics]

    def forward(self, x):
        setattr(self.program, MODE_ATTR, self.training)
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        if not self.batch or len(x) == self.batch:
            return self.program(x)
        n, outs = len(x), []
        for i in range(0, n, self.batch):
            chunk = x[i:i + self.batch]
            short = self.batch - len(chunk)
            if short:  # the last chunk padded with copies of its last image
                chunk = torch.cat([chunk, chunk[-1:].expand(short, *chunk.shape[1:])])
            outs.append(pytree.tree_flatten(self.program(chunk)))
        leaves = [torch.cat(parts)[:n] if isinstance(parts[0], torch.Tensor) and parts[0].dim() else parts[0]
                  for parts in zip(*(flat for flat, _ in outs), strict=True)]
        return pytree.tree_unflatten(leaves, outs[0][1])  # the outputs' structure (a tuple, a dict) kept


def _tensors(out) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def _input(program, where: str) -> tuple[list[int | None], torch.dtype]:
    """(dims, dtype) of the program's one user input; a symbolic size is None."""
    from torch.export.graph_signature import InputKind
    users = [s for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    if len(users) != 1:
        raise HardenError(f"{where} is a program of {len(users)} inputs "
                          f"({', '.join(str(getattr(s.arg, 'name', s.arg)) for s in users)}); harden evaluates "
                          "classifiers of one image input.")
    name = users[0].arg.name
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        raise HardenError(f"{where} takes a {type(val).__name__} input; harden evaluates classifiers of one image "
                          "tensor.")
    return [d if isinstance(d, int) else None for d in val.shape], val.dtype


def _lean(program) -> bytes:
    """The archive of `program` with every weight one value broadcast (its shape kept), no example inputs."""
    full = dict(program.state_dict)
    try:
        for k, v in full.items():
            lean = torch.zeros((), dtype=v.dtype).expand(v.shape)
            program.state_dict[k] = nn.Parameter(lean, requires_grad=v.requires_grad) \
                if isinstance(v, nn.Parameter) else lean
        buffer = io.BytesIO()
        program.example_inputs = None
        with warnings.catch_warnings():  # torch's note that a broadcast weight has no complete storage
            warnings.simplefilter("ignore")
            torch.export.save(program, buffer)
        return buffer.getvalue()
    finally:
        program.state_dict.update(full)


def encode(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


def as_module(program, batch: int = 0, layout: str = "NCHW", zeros: bool = False, widen: str = "",
              bytes_in: bool = False) -> ExportedNet:
    """The program's module in ExportedNet; `widen` ("float16", "bfloat16"): a program of that precision run in
    float32 (its weights widened, the graph's casts to it made casts to float32); `bytes_in`: a program that takes
    8-bit pixels and casts them to float inside, fed the float values 0-255 (its assertions of the input's dtype
    dropped), so that gradients reach them."""
    # the program's guards are Python source that module() would exec: not run (harden feeds the shapes itself)
    program._guards_code = []
    module = program.module(check_guards=False)
    if zeros:  # the lean archive's broadcast weights made real tensors, for load_state_dict to copy into
        module.load_state_dict({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in module.state_dict().items()},
                               assign=True)
    if widen:
        narrow = getattr(torch, widen)
        for node in module.graph.nodes:
            node.args = tuple(torch.float32 if a is narrow else a for a in node.args)
            node.kwargs = {k: torch.float32 if v is narrow else v for k, v in node.kwargs.items()}
        module.recompile()
        module.float()
    if bytes_in:
        for node in list(module.graph.nodes):
            if (node.op == "call_function" and str(node.target) == "aten._assert_tensor_metadata.default"
                    and node.kwargs.get("dtype") is torch.uint8 and not node.users):  # what the cast asserted
                module.graph.erase_node(node)
        module.recompile()
    return ExportedNet(module, batch, layout)


def build(model_args: dict[str, Any], where: str = ARCH) -> nn.Module:
    """The architecture `exported_program` from its model_args (the weights-free archive, batch, layout, the
    precision it is widened from)."""
    text = (model_args or {}).get("program")
    if not isinstance(text, str):
        raise HardenError("The architecture 'exported_program' needs its program (kept in the model_args of "
                          "checkpoints harden writes from a .pt2 file); give the .pt2 file itself.")
    try:
        data = zlib.decompress(base64.b64decode(text))
    except (ValueError, zlib.error) as e:
        raise HardenError(f"The program kept in this checkpoint's metadata is damaged ({e}).") from None
    return as_module(read_program(data, where)[0], int(model_args.get("batch") or 0),
                     str(model_args.get("layout", "NCHW")), zeros=True, widen=str(model_args.get("widen", "")),
                     bytes_in=bool(model_args.get("bytes_in")))


def read_exported_program(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata) of a .pt2 file: the program checked, read, and its rebuild from the weights-free
    archive checked against the file's own module."""
    where = repr(str(path))
    program, facts = read_program(path, where)
    dims, dtype = _input(program, where)
    widen = {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(dtype, "")
    bytes_in = dtype == torch.uint8
    if dtype != torch.float32 and not widen and not bytes_in:
        raise HardenError(f"{where} takes {str(dtype).replace('torch.', '')} input; harden attacks and trains "
                          "programs that take float32, float16 or bfloat16 pixels, or 8-bit pixels cast to float "
                          "inside (export it so).")
    from .onnx_graph import layout_of
    dims, layout = layout_of(dims, {}, where)
    batch = dims[0] or 0
    lean = encode(_lean(program))
    net = as_module(program, batch, layout)  # as the file runs: in its own precision
    state = {k: v.detach().float() if v.is_floating_point() else v.detach().clone()
             for k, v in net.state_dict().items()}
    args = {"program": lean, "batch": batch, "layout": layout, **({"widen": widen} if widen else {}),
            **({"bytes_in": True} if bytes_in else {})}
    rebuilt = build(args, where)
    rebuilt.load_state_dict(state, strict=True)
    size = [dims[2], dims[3]] if dims[2] and dims[3] else [224, 224]
    n = 2 * batch + 1 if batch else 3
    shape = (n, *size, dims[1]) if layout == "NHWC" else (n, dims[1], *size)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    if bytes_in:  # whole 0-255 values, fed to the file as bytes and to harden's module as floats
        x = (x * 255).round()
    chunked = f" on {n} images in chunks of its fixed batch of {batch}" if batch else ""
    try:
        with torch.no_grad():
            own, again = ([t.float() for t in _tensors(m((x.permute(0, 3, 1, 2) if layout == "NHWC" else x).to(d)))]
                          for m, d in ((net, dtype), (rebuilt, torch.float32)))
    except Exception as e:  # noqa: BLE001 - a program that fails at the size or batch given it
        raise HardenError(f"{where}: the program fails{chunked} of {tuple(shape[1:])} ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}).") from None
    if not own or own[0].dim() < 2:
        raise HardenError(f"{where} outputs {[tuple(t.shape) for t in own]} for {n} images; harden evaluates "
                          "classifiers (one row of class scores per image).")
    scale = max(float(t.abs().max()) for t in own)
    worst = max(float((a - b).abs().max()) if a.shape == b.shape else float("inf")
                for a, b in zip(own, again, strict=True)) if len(own) == len(again) else float("inf")
    if not worst <= WIDENED_TOLERANCE.get(widen, TOLERANCE) * max(1.0, scale):
        raise HardenError(f"{where}: the program rebuilt from its graph gives other outputs than the file's "
                          f"(largest difference {worst:.3g} where outputs reach {scale:.3g}).")
    meta: dict[str, Any] = {"arch": ARCH, "model_args": args, "in_chans": int(dims[1]),
                            "num_classes": int(own[0].shape[1])}
    if bytes_in:  # [0, 1] pixels -> the 0-255 values the program's cast took: harden's normalisation does it
        meta.update(mean=[0.0] * int(dims[1]), std=[1 / 255] * int(dims[1]))
        meta["program_input"] = "8-bit pixels, fed as float 0-255"
    if widen:
        from ..runtime import warn
        warn(f"{where} is a {widen} program: harden attacks and trains it in float32 (its outputs within {worst:.2g} "
             f"of the file's, run in {widen}, where they reach {scale:.2g}); what harden writes from it is float32.")
    if dims[2] and dims[3]:
        meta["input_size"] = [dims[2], dims[3]]
    meta.update(facts)  # [0, 1] pixels, input size, crop, label names of a file `harden export` wrote
    if batch:
        from ..runtime import warn
        norms = (f"; in training (fix) its BatchNorm takes the statistics of each chunk of {batch}, not of the "
                 "batch (fix's automatic batch is a whole number of chunks)" if net.running_statistics() else "")
        warn(f"{where} is exported for a fixed batch of {batch}: harden runs it on chunks of {batch} images (the "
             f"last padded), slower than one call{norms}; re-export with a dynamic batch, torch.export.export(model, "
             "(x,), dynamic_shapes={'x': {0: torch.export.Dim('batch')}}).")
    return state, meta


def summary(model_args: dict[str, Any]) -> str:
    """A line for `inspect`: the program's size and operators, not its bytes."""
    try:
        net = build(model_args)
    except HardenError:
        return "damaged"
    ops = sorted({str(n.target).split(".")[1] for n in net.program.graph.nodes
                  if n.op == "call_function" and str(n.target).startswith("aten.")})
    batch = f", fixed batch {model_args.get('batch')}" if model_args.get("batch") else ""
    kind = (f", {model_args['widen']} run in float32" if model_args.get("widen") else "") + (
        ", 8-bit pixels fed as float 0-255" if model_args.get("bytes_in") else "")
    return (f"{sum(1 for n in net.program.graph.nodes if n.op == 'call_function')} operators ({', '.join(ops[:12])}"
            f"{', ...' if len(ops) > 12 else ''}), input {model_args.get('layout')}{batch}{kind}")
