"""The `harden` command line: parsing, printing and exit codes over the library API.

Exit codes: 0 success (and every --require holds), 1 a requirement failed, 2 bad input."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_help import TerminalHelpTyper
from .errors import HardenError, Interrupted
from .model_flags import MODEL_ARG_OPTION, DataFlags, ModelFlags, with_data_flags, with_model_flags
from .size_from_data import at_data_size
from .recipes.base import DEFAULT_RECIPE as DEFAULT_RECIPE_NAME

app = TerminalHelpTyper(name="harden", add_completion=False, rich_markup_mode="rich", no_args_is_help=True,
                  help="Make a saved image classifier harder to fool with adversarial examples, and prove it "
                       "with an honest robustness report.")
# Reports are read in CI logs too: keep the table on one line per row there.
out = Console(width=None if sys.stdout.isatty() else 130)


def said(text: str) -> None:
    """A line that names the user's files (`wrote out[v2].safetensors`), printed as it is: rich would read `[v2]` as
    markup and drop it."""
    out.print(text, markup=False, highlight=False)


def _print_version(value: bool) -> None:
    if value:
        import platform

        import torch

        from . import __version__
        print(f"harden {__version__} (torch {torch.__version__}, Python {platform.python_version()})")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print harden's, torch's and Python's versions and exit.")) -> None:
    """Make a saved image classifier harder to fool with adversarial examples, and prove it with an honest robustness
    report."""

# Shared options (typer has no option groups; the same Annotated pieces keep them identical).
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
LabelsOpt = typer.Option("given", "--labels", help="given: the data's labels. predicted: every image labelled by a "
                         "model's clean prediction, for images without labels (a folder of files, a list of paths, "
                         "shards, a table): in eval the evaluated model's own (robust accuracy: the share of its "
                         "answers an attack cannot change), in fix the base's (trained to keep, measured against).")
SeedOpt = typer.Option(0, "--seed", min=0, help="Seed for data subsets, augmentation and attacks.")
QuietOpt = typer.Option(False, "-q", "--quiet", help="No progress bars (for CI logs).")
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks.")
ForceOpt = typer.Option(False, "--force", help="Overwrite existing output files.")
HtmlOpt = typer.Option(None, "--html", help="Write the report as one self-contained HTML file (tables, checks, "
                       "robustness curves, adversarial examples; figures embedded). Without --curve it adds a small "
                       "curve (budgets 0, eps/2, eps, 3eps/2: two extra runs of each L-inf attack but autoattack, about "
                       "twice the report's time).")
SavedHtmlOpt = typer.Option(None, "--html", help="Write the report as one self-contained HTML file from what it saved "
                            "(tables, checks, the curves and examples its run kept; no attack is run).")
PlotsOpt = typer.Option(None, "--plots", help="Write the report's figures as PNG files into this folder.")
CurveOpt = typer.Option(None, "--curve", help="START:STOP:K: run the L-inf attacks at K budgets and plot robust "
                        "accuracy against the budget (e.g. 0:0.3:7, 0:16/255:5); costs K-2 extra runs per attack.")
MetricsOpt = typer.Option(True, "--metrics/--no-metrics", help="Seed 004's empirical robustness and loss sensitivity.")
AmpOpt = typer.Option("off", "--amp", help="Training precision: off (fp32), bf16, or fp16 (CUDA, with loss "
                      "scaling). Autocast covers the whole training step, training attack included.")
AttackAmpOpt = typer.Option("off", "--attack-amp", help="Precision of the report's attacks: off (fp32, the "
                            "default: a weaker fp16 gradient can overstate robustness), bf16 or fp16; the report "
                            "says which.")
BpdaOpt = typer.Option(True, "--bpda/--no-bpda", help="Attack through rounding in the model's forward (torch.round, "
                       "floor, ceil, trunc, sign) with straight-through gradients (BPDA), the standard white-box "
                       "attack on it; the report notes where it applied. --no-bpda attacks its zero gradient. ONNX "
                       "graphs' rounding is read with BPDA when they are loaded, either way.")
EpsL2Opt = typer.Option(None, "--eps-l2", help="L2 budget for DeepFool / C&W-L2 and autoattack:norm=L2 (default 0.5; "
                        "in fix, an L2 recipe's own eps).")
MaxL0Opt = typer.Option(None, "--max-l0", help="L0 budget for JSMA: a fraction of input features (< 1) or a count "
                        "(>= 1) (default 0.145).")
RequireOpt = typer.Option(None, "--require", help="METRIC>=VALUE (repeatable): exit 1 when one fails.")
GateOpt = typer.Option(None, "--gate", help="TOML file of requirements.")
BaselineOpt = typer.Option(None, "--baseline", help="A report JSON of the shipped model: requirements may say baseline "
                           "(pgd>=baseline-0.02), and the report compares the two image by image (difference, "
                           "interval, McNemar p).")
AllowMismatchOpt = typer.Option(False, "--allow-mismatch", help="Compare with a baseline measured on other images, "
                                "budgets, presets or data (unpaired test; the report says so).")
JsonOpt = typer.Option(None, "--json", help="Write the report as JSON.")
MarkdownOpt = typer.Option(None, "--markdown", help="Write the report as Markdown.")
JunitOpt = typer.Option(None, "--junit", help="Write JUnit XML (a test case per requirement).")
ConfidenceOpt = typer.Option(0.95, "--confidence", min=0.5, max=0.999, help="Level of every accuracy's confidence "
                             "interval (Wilson score), gateable as METRIC.lower / METRIC.upper.")
CompileOpt = typer.Option(False, "--compile", help="torch.compile the network for this run (compiles first: "
                          "pays on long runs only; off by default, see BENCHMARKS.md).")
TimeBudgetOpt = typer.Option(None, "--time-budget", help="Fit the whole run in this time (90s, 10m, 1h): the "
                             "report's attacks are timed on calibration samples and the number of images (at most "
                             "--num-images) chosen to fit; fix first times one epoch of its recipe on a few batches and "
                             "trains for the recipe's epochs or as many as fit in 60% of the time left. Exit 2 before "
                             "the work when too little would fit.")
ResumeOpt = typer.Option(False, "--resume", help="Continue the interrupted run of this command (Ctrl-C, SIGTERM, "
                         "a crash) from the training state it saved beside its output (<output>.resume) and its "
                         "reports' progress: the same weights and reports as an uninterrupted run. Give the command "
                         "it was started with.")
StateEveryOpt = typer.Option(10.0, "--state-every", min=0.0, help="Minutes between saves of the training state "
                             "inside an epoch (it is also saved at every epoch's end, on Ctrl-C or SIGTERM, and once "
                             "training ends; 0: not inside epochs). Under torchrun every process saves at the same step.")
MaskingChecksOpt = typer.Option(True, "--masking-checks/--no-masking-checks", help="Gradient-masking signals "
                                "(Carlini et al. 2019): large budget, stronger PGD, iterative vs single-step "
                                "(white-box only).")


def _setup(quiet: bool) -> None:
    from .runtime import set_quiet
    set_quiet(quiet)


def _load_model(path: Path, flags, device):
    from .checkpoint import load
    return load(path, device=device, **flags.load_kwargs())


@app.command()
@with_data_flags
def train(
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the trained .safetensors."),
    data: str = typer.Option("digits", "--data", help="digits, an .npz, CIFAR-10 batches, a torchvision download, an "
                             "image folder or .zip, a CSV/TSV list, tar shards, TFRecords, Hugging Face parquet/Arrow "
                             "files, hf:org/name, or file.py:name for a dataset your own code makes (`harden data` "
                             "shows how it is read)."),
    arch: str = typer.Option("cnn-small", "--arch", help="Built-in (resnet9, cnn-small, cifar-conv, fmnist-conv), "
                             "any timm name, or package.module:callable."),
    model_arg: Optional[List[str]] = MODEL_ARG_OPTION,
    epochs: int = typer.Option(10, "--epochs", min=1),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    lr: float = typer.Option(0.05, "--lr", help="Peak learning rate of the OneCycle schedule."),
    augment: str = typer.Option("auto", "--augment", help="seed000 (seed 000 table 3), crop, none; auto picks "
                                "crop for grey digit-like data (flips change digits) and seed000 otherwise."),
    focal_gamma: float = typer.Option(0.0, "--focal-gamma", help="Focal loss gamma (seed 000 trains with focal "
                                      "loss; 0 = cross-entropy)."),
    data_frac: float = typer.Option(1.0, "--data-frac", help="Stratified fraction of the training split, (0, 1]."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="HxW (or one side) that image files are read "
                                             "at (default: their size where most share one, else a square of their "
                                             "median shorter side; a shorter side of 224 at most). Arrays train at "
                                             "their own size."),
    amp: str = AmpOpt, resume: bool = ResumeOpt, state_every: float = StateEveryOpt,
    seed: int = SeedOpt, device: str = DeviceOpt, force: bool = ForceOpt, quiet: bool = QuietOpt,
    debug: bool = DebugOpt, data_flags: DataFlags = None,
):
    """Train a plain base model (SGD + OneCycle) for demos, benchmarks and tests."""
    _setup(quiet)
    from .api import train as train_model
    from .checkpoint import check_checkpoint_path, check_output_path, save
    from .data import DataTarget, load_data, subsample
    from .training import TrainConfig
    from .resume import RunState
    from .data.base import check_fraction
    check_fraction(data_frac)  # before the data is read
    check_output_path(output, [], force)
    check_checkpoint_path(output)
    state = RunState.for_output(output, resume, force, state_every)
    if data_flags.test_size:
        raise HardenError("--test-size chooses a model's evaluation size; train has no model yet.")
    from .model_flags import parse_size
    size = parse_size(input_size)
    ds = load_data(data, DataTarget(**{k: v for k, v in data_flags.target_kwargs().items() if k != "test_size"},
                                    train_size=size))
    if size is not None and tuple(ds.input_size) != size:
        raise HardenError(f"--input-size {input_size}: {ds.source} holds arrays of {ds.input_size[0]}x"
                          f"{ds.input_size[1]} images, which train at their own size (--input-size reads image "
                          "files at a size).")
    from .data import held_out
    ds = held_out.hold_out_for_training(ds)  # one split: the share fix holds out (before --data-frac draws from it)
    ds = subsample(ds, data_frac, seed) if data_frac != 1.0 else ds
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, augment=augment, focal_gamma=focal_gamma,
                      seed=seed, amp=amp)
    from .model_flags import parse_model_args
    model = train_model(arch, ds, cfg, device, state=state, model_args=parse_model_args(model_arg))
    from .data import remember_columns, remember_orientation
    remember_orientation(model, data_flags.exif_orientation, ds)
    remember_columns(model, data_flags.target_kwargs(), ds)
    if not _all_ranks_done():
        return
    save(model, output, force=force)
    state.finish()
    done = model.spec.extra["train"]
    tested = done.get("test")
    said(f"wrote {output} ({arch}, {ds.source}, {done['images']} training images, {done['seconds']:.1f} s)"
              + (f"; clean accuracy {tested['accuracy']:.1%} on "
                 + (f"its {tested['of']:,}" if tested["n"] == tested["of"] else f"{tested['n']:,} of its {tested['of']:,}")
                 + " test images "
                 f"(95% interval {tested['interval_95'][0]:.1%}-{tested['interval_95'][1]:.1%})" if tested else
                 "; no test split to measure it on"))


@app.command()
@with_model_flags
def inspect(
    checkpoint: Path = typer.Argument(..., help="A checkpoint: safetensors or any torch file (format found by "
                                      "content), or a timm hub folder (config.json + model.safetensors)."),
    debug: bool = DebugOpt, model_flags: ModelFlags = None,
):
    """Show a checkpoint's metadata, parameter count, taps, head, output kind and hash; check that it loads."""
    import torch

    from .checkpoint import sha256_file
    from .outputs import detect_output_kind, scores_entry
    from .report.provenance import weights_sha256
    model = _load_model(checkpoint, model_flags, "cpu")
    shown = {"label_names", "test_input_size", "test_crop_pct", "channel_order"}  # rows of their own below
    meta = {k: v for k, v in model.spec.extra.items() if k not in shown}  # the file's other metadata, as loaded
    t = Table(title=escape(str(checkpoint)), show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    s = model.spec
    src = getattr(model, "config_sources", {})

    def said(key: str, value) -> str:  # each value with where it came from (text, not markup: a path's `[v2]`)
        return f"{escape(str(value))}  [dim]({escape(src[key])})[/]" if key in src else escape(str(value))
    from .data import Preprocess
    rows = [("arch", said("arch", s.arch)), ("num_classes", said("num_classes", s.num_classes)),
            ("in_chans", said("in_chans", s.in_chans)),
            ("input_size", said("input_size", f"{s.input_size[0]}x{s.input_size[1]}")),
            ("interpolation", said("interpolation", s.interpolation)), ("crop_pct", said("crop_pct", s.crop_pct)),
            ("crop_mode", said("crop_mode", s.crop_mode)), ("mean", said("mean", s.mean)), ("std", said("std", s.std)),
            ("channel order", said("channel_order", s.extra.get("channel_order", "rgb"))),
            ("evaluation transform", Preprocess.of(s).describe() + " (image files)"),
            ("data", escape(s.data or "-")), ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
            ("taps", _taps(model)),
            ("head", _head(model)),
            ("loaded", escape("; ".join(getattr(model, "load_notes", [])) or "keys as saved")),
            ("output kind", detect_output_kind(model, torch.rand(2, s.in_chans, *s.input_size))
             + scores_entry(model)),
            ("sha256", sha256_file(checkpoint)),
            # as a report's provenance names the weights it measured, in whatever file they came
            ("weights sha256", weights_sha256(model))]
    from .models.exported_program import ARCH as PROGRAM_ARCH
    from .models.onnx_graph import ARCH as ONNX_ARCH
    if s.model_args and isinstance(s.model_args.get("config"), dict) and s.arch.startswith("transformers:"):
        cfg = s.model_args["config"]  # a transformers configuration, kept whole: too long to print
        rows.append(("model_args", said("model_args", f"the folder's config.json ({cfg.get('model_type')}, {len(cfg)} "
                                                      "settings, kept whole)" + (
                                                          "; channels reversed for the network (BGR)"
                                                          if s.model_args.get("flip_channels") else ""))))
    elif s.arch == ONNX_ARCH:  # the graph without its weights: too long to print
        from .models.onnx_graph import summary
        rows.append(("model_args", said("model_args", "the ONNX graph without its weights (they are the tensors): "
                                        + summary(s.model_args))))
    elif s.arch == PROGRAM_ARCH:
        from .models.exported_program import summary as program_summary
        rows.append(("model_args", said("model_args", "the torch.export program without its weights (they are the "
                                        "tensors): " + program_summary(s.model_args))))
    elif s.model_args:
        rows.append(("model_args", said("model_args", s.model_args)))
    from .bn_unfold import inspect_note
    if inspect_note(model):
        rows.append(("batchnorm", inspect_note(model)))
    if s.extra.get("label_names"):
        names = [str(n) for n in s.extra["label_names"]]
        rows.append(("label names", said("label_names", ", ".join(names[:8]) + (
            f" ... ({len(names)} in all)" if len(names) > 8 else ""))))
    if s.extra.get("test_input_size"):  # timm's larger evaluation size: --test-size
        rows.append(("test size", said("test_input_size", "x".join(map(str, s.extra["test_input_size"])))
                     + f", crop {s.extra.get('test_crop_pct', s.crop_pct)} (--test-size)"))
    from .metadata_text import metadata_text
    rows += [(k, escape(metadata_text(k, v))) for k, v in sorted(meta.items()) if k not in {r[0] for r in rows}]
    for k, v in rows:
        t.add_row(k, v if isinstance(v, str) else str(v))
    out.print(t)


def _taps(model) -> str:
    try:
        taps = model.taps()
    except Exception as e:  # a model the probe forward cannot run: inspect says why and still shows the rest
        return f"- (the probe forward failed: {type(e).__name__}: {e})"
    return ", ".join(f"{t['module']} ({t['num_chs']} ch, /{t['reduction']})" for t in taps) or "-"


def _head(model) -> str:
    try:
        name, post = model.head()
    except HardenError as e:
        return f"- ({e})"
    if name is None:
        return "timm forward_features / forward_head"
    return name + ("" if post == "none" else f" + {post}")


@app.command("eval")
@with_model_flags
@with_data_flags
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="The model to evaluate."),
    data: Optional[str] = typer.Option(None, "--data", help="Test data (default: what the checkpoint names)."),
    n: Optional[int] = typer.Option(None, "--num-images", "--n", min=1, help="Number of test images (default 500; with "
                                    "--baseline, the baseline's; with --time-budget, the most it may choose, default "
                                    "all): the first n of in-memory "
                                    "data (a seeded stratified sample where it comes in class order), a seeded "
                                    "stratified sample of image files; --num-images is the spelling "
                                    "torchrun's parser cannot mistake for its own --nnodes / --nproc-per-node."),
    attack: Optional[List[str]] = typer.Option(None, "--attack", help="Attack or preset with options, e.g. "
                                               "pgd:steps=50,step=0.005 (repeatable; default: the six; "
                                               "'seed004' = fgsm, random-fgsm, jsma, deepfool, cw-l2; "
                                               "autoattack[:norm=L2|version=rand] = standard AutoAttack)."),
    eps: Optional[str] = typer.Option(None, "--eps", help="L-inf budget for all L-inf attacks, e.g. 8/255."),
    eps_l2: Optional[str] = EpsL2Opt, max_l0: Optional[str] = MaxL0Opt,
    craft_on: Optional[Path] = typer.Option(None, "--craft-on", help="Craft on this model and apply to the "
                                            "evaluated one (transfer threat model)."),
    require: Optional[List[str]] = RequireOpt, gate: Optional[Path] = GateOpt, baseline: Optional[Path] = BaselineOpt,
    allow_mismatch: bool = AllowMismatchOpt, labels: str = LabelsOpt,
    time_budget: Optional[str] = TimeBudgetOpt,
    json_path: Optional[Path] = JsonOpt, markdown_path: Optional[Path] = MarkdownOpt,
    junit_path: Optional[Path] = JunitOpt, html_path: Optional[Path] = HtmlOpt, plots: Optional[Path] = PlotsOpt,
    curve: Optional[str] = CurveOpt,
    metrics: bool = MetricsOpt, masking_checks: bool = MaskingChecksOpt, confidence: float = ConfidenceOpt,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Attack batch (default: on the CPU up "
                                             "to 128, fewer where an image's activations are large (8 for a "
                                             "ResNet-50 at 224 px, which runs faster so); on CUDA the largest that "
                                             "fits in half the free memory)."),
    attack_amp: str = AttackAmpOpt, compile_net: bool = CompileOpt, bpda: bool = BpdaOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run of this same evaluation (Ctrl-C, "
                                "SIGTERM, a crash): the attacks' verdicts it kept batch by batch (in "
                                "$HARDEN_STATE_DIR, else ~/.cache/harden/reports) are taken and only the rest is "
                                "attacked; the report equals an uninterrupted one."),
    seed: int = SeedOpt, device: str = DeviceOpt, force: bool = ForceOpt, quiet: bool = QuietOpt,
    debug: bool = DebugOpt, model_flags: ModelFlags = None, data_flags: DataFlags = None,
):
    """Robust accuracy under FGSM, PGD, AutoPGD, C&W, DeepFool and JSMA, with a release gate.
    Under torchrun the images are shared out across the processes and rank 0 writes the outputs."""
    import time
    started = time.perf_counter()
    _setup(quiet)
    from .api import data_for
    from .attacks import expand_suites, parse_number
    from .attacks.base import in_255_hint
    from .checkpoint import check_output_path
    from .report import evaluate, release_report
    from .report.runner import attack_set
    from .report.gate import check_known, needs_baseline, no_baseline
    from .runtime import resolve_device, seed_everything

    requirements = _requirements(require, gate)
    if labels == "predicted":
        from .data.predicted import refuse_clean_requirements
        refuse_clean_requirements(requirements)
    baseline_doc = _baseline_doc(baseline)
    if baseline_doc is None and needs_baseline(requirements):
        raise no_baseline("no --baseline REPORT.json was given")
    eps_v = parse_number(eps) if eps is not None else None
    if eps_v is not None and not (0 < eps_v <= 1):
        raise HardenError(f"--eps is a budget in pixel units, in (0, 1]; got {eps_v:g}{in_255_hint(eps_v, '--eps ')}.")
    from .stdout_outputs import claim
    claim(out, {"html": html_path, "plots": plots}, json=json_path, markdown=markdown_path, junit=junit_path)
    for p in (json_path, markdown_path, junit_path, html_path):
        if p:
            check_output_path(p, [checkpoint, craft_on], force)
    dev = resolve_device(device)
    seed_everything(seed)
    model, model_flags = at_data_size(lambda flags: _load_model(checkpoint, flags, dev), model_flags, data, data_flags,
                                      checkpoint.name)
    # --attack's specs, or the default set for this model's input size (the report notes what it leaves out)
    attacks = attack_set(expand_suites(attack) if attack else None, model.spec.input_size, eps_v)
    check_known(requirements, attacks, transfer=craft_on is not None, metrics=metrics)
    budgets = _curve_budgets(curve, html_path or plots, attacks)
    source = None
    if craft_on is not None:  # the model flags fill what its metadata lacks (a base that harden did not write)
        from .checkpoint import read_checkpoint
        _, src_meta = read_checkpoint(craft_on, model_flags.key)
        src_flags = ModelFlags(**{k: v for k, v in model_flags.given().items()
                                  if k == "key" or k not in src_meta})
        source = _load_model(craft_on, src_flags, dev)
    ds = data_for(model, data, checkpoint.name, labels=labels, **data_flags.target_kwargs())
    from .resume import ReportStates
    states = ReportStates(resume)  # the attacks' verdicts, batch by batch: an interrupted run resumes

    def run(k: int):
        return evaluate(model, ds, attacks=attacks, eps=eps_v, n=k, **_minimal_budgets(eps_l2, max_l0),
                        craft_on=source, batch_size=batch_size, device=dev, seed=seed, metrics=metrics,
                        model_name=checkpoint.name, craft_name=craft_on.name if craft_on else None,
                        masking_checks=masking_checks, curve=budgets, curve_cascades=curve is not None,
                        attack_amp=attack_amp, compile=compile_net, bpda=bpda, state=states, labels=labels)
    with states.stoppable():
        report = release_report(run, n=n, available=ds.n_test, time_budget=time_budget, started=started,
                                baseline=baseline, baseline_doc=baseline_doc, allow_mismatch=allow_mismatch,
                                confidence=confidence, requirements=requirements, memory=states.memory())
    from .checkpoint import sha256_file
    report.provenance["file_sha256"] = sha256_file(checkpoint)  # the file as its artifact store names it
    if _all_ranks_done():
        _show_gated(report, json_path, markdown_path, junit_path, html_path, plots)
    states.finish()
    _exit_on_failed_gate(report)  # on every rank: torchrun then exits non-zero too


def _requirements(require: Optional[List[str]], gate: Optional[Path]) -> list:
    from .report.gate import load_gate_file, parse_requirement
    return [parse_requirement(r) for r in (require or [])] + (load_gate_file(gate) if gate else [])


def _baseline_doc(baseline: Optional[Path]) -> Optional[dict]:
    from .report.compare import read_report
    return read_report(baseline) if baseline is not None else None


def _show_gated(report, json_path, markdown_path, junit_path, html_path=None, plots=None) -> None:
    """The report and its gate: the terminal, the files asked for, and the CI service's annotations."""
    from .report.ci_output import publish
    from .report.render import render_terminal, to_markdown, write_outputs
    render_terminal(report, out)
    write_outputs([report], json_path, markdown_path, junit_path, html_path, plots)
    _say_written(html_path, plots)
    publish([report], to_markdown, echo=lambda line: (out.file.write(line + "\n"), out.file.flush()))


def _exit_on_failed_gate(report) -> None:
    if any(not g["passed"] for g in report.gate):
        from . import distributed
        if distributed.is_main():
            out.print("[red]gate failed[/]")
        raise typer.Exit(1)


def _minimal_budgets(eps_l2: str | None, max_l0: str | None) -> dict:
    """--eps-l2 and --max-l0 as evaluate's budgets, where given (evaluate's defaults otherwise: a budget not asked
    for is one the report may note, and fix's L2 recipe's eps is its report's L2 budget)."""
    from .attacks import parse_number
    return {k: parse_number(v) for k, v in (("eps_l2", eps_l2), ("max_l0", max_l0)) if v is not None}


def _curve_budgets(curve: Optional[str], pictures, attacks) -> Optional[list[float]]:
    """--curve's budgets; for --html/--plots alone, a small default around the L-inf attacks' budget."""
    from .report.curves import check_curve_attacks, default_budgets, parse_curve
    if curve:
        check_curve_attacks(attacks, f"--curve {curve}")  # before the model loads
        return parse_curve(curve)
    linf = [a for a in attacks if a.norm == "inf" and not a.minimal]
    return default_budgets(linf[0].params["eps"]) if pictures and linf else None


def _epoch_note(result) -> str:
    """', kept epoch k of n (validation PGD accuracy v)' when a validation monitor chose the weights."""
    best = result.model.spec.extra.get("best_epoch")
    if not best or not result.history:
        return ""
    val = result.history[best - 1].get("val_robust")
    added = result.model.spec.extra.get("epochs_added")
    return (f", kept epoch {best} of {len(result.history)}" + (f" (validation PGD accuracy {val:.3f})" if val is not None
                                                              else "")
            + (f"; {' + '.join(map(str, added))} epochs added while validation was still rising" if added else ""))


def _all_ranks_done() -> bool:
    """Under torchrun: True on rank 0 once every rank has finished its work (the one place that writes and
    prints); a rank that failed makes this raise everywhere, so nothing is written. True in one process."""
    from . import distributed
    return distributed.all_ok() and distributed.is_main()


def _say_written(html_path, plots) -> None:
    if html_path:
        said(f"wrote {html_path}")
    if plots:
        said(f"wrote the figures into {plots}/")


@app.command()
@with_model_flags
@with_data_flags
def fix(
    checkpoint: Path = typer.Argument(..., help="The base model to harden (never written to)."),
    recipe: str = typer.Option(DEFAULT_RECIPE_NAME, "--recipe", help="Recipe name (see `harden recipes`) or a "
                               "recipe .toml; the default, at (adversarial fine-tuning), is the one that hardens "
                               "against white-box attacks."),
    data: Optional[str] = typer.Option(None, "--data", help="Training/test data (default: what the checkpoint names)."),
    data_frac: float = typer.Option(0.1, "--data-frac", help="Stratified fraction of the training split, (0, 1]."),
    unlabeled: Optional[str] = typer.Option(None, "--unlabeled", help="Images without labels (a folder with or "
                                            "without class folders, a list, tar shards, an .npz with x_train, "
                                            "file.py:name for a dataset your code makes): the "
                                            "base labels them and the recipe mixes them into its batches (at, "
                                            "fixer; --set unlabeled_ratio / pseudo_threshold / pseudo_balance). "
                                            "Labels they hold are never used."),
    labels: str = LabelsOpt,
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a recipe setting: key=value (repeatable)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Hardened checkpoint (default: "
                                          "<name>.<recipe>.safetensors beside the input; for hf:org/name, in the current "
                                          "folder)."),
    patch_out: Optional[Path] = typer.Option(None, "--patch-out", help="Also write the recipe's modules alone, "
                                             "bound to the base's sha256 (see `harden apply`)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Overrides the recipe file."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Overrides the recipe file."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Overrides the recipe file."),
    eps: Optional[str] = typer.Option(None, "--eps", help="The budget the recipe trains for and the report attacks "
                                      "at, as --set eps=...: L-inf in pixel units (8/255, MNIST's 0.3; an L2 radius "
                                      "with --set attack=pgd-l2); the report's alone for a recipe that trains "
                                      "against none (gda-brelu, patch-ft)."),
    n: int = typer.Option(500, "--num-images", "--n", min=1, help="Test images for the before/after report."),
    attack: Optional[List[str]] = typer.Option(None, "--attack", help="Attacks for the report (default: the six)."),
    eps_l2: Optional[str] = EpsL2Opt, max_l0: Optional[str] = MaxL0Opt,
    report: bool = typer.Option(True, "--report/--no-report", help="Run the before/after report."),
    time_budget: Optional[str] = TimeBudgetOpt,
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the three reports as JSON."),
    markdown_path: Optional[Path] = typer.Option(None, "--markdown", help="Write the three reports as Markdown."),
    html_path: Optional[Path] = HtmlOpt, plots: Optional[Path] = PlotsOpt, curve: Optional[str] = CurveOpt,
    metrics: bool = MetricsOpt, masking_checks: bool = MaskingChecksOpt, confidence: float = ConfidenceOpt,
    amp: str = AmpOpt, attack_amp: str = AttackAmpOpt, compile_net: bool = CompileOpt, bpda: bool = BpdaOpt,
    sync_bn: bool = typer.Option(False, "--sync-bn", help="Under torchrun on CUDA: BatchNorm batch statistics over "
                                 "every process's share (SyncBatchNorm) instead of each process's own."),
    unfold_bn: str = typer.Option("auto", "--unfold-bn", help="auto, on or off: train with a BatchNorm after each "
                                  "convolution an exporter folded one into, folded back into it after (auto: ONNX "
                                  "graphs of convolutional networks; on: also torch checkpoints without "
                                  "normalisation layers)."),
    resume: bool = ResumeOpt, state_every: float = StateEveryOpt,
    seed: int = SeedOpt, device: str = DeviceOpt, force: bool = ForceOpt, quiet: bool = QuietOpt,
    debug: bool = DebugOpt, model_flags: ModelFlags = None, data_flags: DataFlags = None,
):
    """Harden a checkpoint with a recipe on a fraction of its data; print the before/after report.
    Under torchrun each process trains on its share of every batch and rank 0 writes the outputs."""
    import time
    started = time.perf_counter()
    _setup(quiet)
    from .attacks import DEFAULT_ATTACKS, expand_suites
    from .checkpoint import check_output_path, patch_meta, save, save_patch
    from .fix import fix as run_fix
    from .fix import check_budget, recipe_config, trained_norm, training_data_label
    from .report.render import render_before_after, write_outputs

    from .data.base import check_fraction
    check_fraction(data_frac)
    from .fix_budget import budget_seconds
    budget_seconds(time_budget)  # a budget that is no duration fails before any work
    recipe_cfg = recipe_config(recipe, set_ or [], epochs, batch_size, lr, eps)  # bad settings fail before any work
    from .bn_unfold import check_mode
    check_mode(unfold_bn)
    name = recipe_cfg["name"]
    from .recipes import get_recipe
    if patch_out and not get_recipe(name).frozen_base():
        raise HardenError(f"--patch-out needs a recipe that leaves the base unchanged (fixer, idfr); {name} "
                          "fine-tunes every weight, so its output checkpoint is the whole model.")
    from .hub_cache import is_hub_spec
    stem = str(checkpoint).rsplit("/", 1)[-1].split("@")[0] if is_hub_spec(checkpoint) else checkpoint.name
    # beside the input; a model in the Hugging Face cache (hf:org/name): in the current folder
    output = output or (Path(f"{stem.split('.')[0]}.{name}.safetensors") if is_hub_spec(checkpoint)
                        else checkpoint.with_name(f"{stem.split('.')[0]}.{name}.safetensors"))
    from .stdout_outputs import claim, is_stdout
    claim(out, {"html": html_path, "plots": plots}, json=json_path, markdown=markdown_path)
    outs = [output] + [p for p in (patch_out, json_path, markdown_path, html_path) if p and not is_stdout(p)]
    if len({str(p.resolve()) for p in outs}) != len(outs):
        raise HardenError("Two outputs name the same file; give each output its own path.")
    for p in outs:
        check_output_path(p, [checkpoint], force)
    from .checkpoint import check_checkpoint_path, check_readable
    check_checkpoint_path(output)
    check_readable(checkpoint)  # missing, empty, a folder of no hub layout: said before anything runs
    from .resume import RunState
    state = RunState.for_output(output, resume, force, state_every)
    from .attacks import build_attack, parse_number
    train_eps = check_budget(recipe_cfg)  # the report's L-inf budget is the recipe's training budget
    train_eps = parse_number(train_eps) if train_eps is not None and trained_norm(recipe_cfg) != "2" else None
    budgets = _curve_budgets(curve, html_path or plots, [build_attack(a, eps=train_eps)
                                                          for a in expand_suites(attack or DEFAULT_ATTACKS)])
    def hardened(flags: ModelFlags):  # the base's load fails first where it runs at no size it was given or guessed
        return run_fix(checkpoint, data, recipe=recipe_cfg, data_frac=data_frac, seed=seed, device=device, report_n=n,
                       attacks=expand_suites(attack) if attack else None, report=report, metrics=metrics,
                       masking_checks=masking_checks, model_flags=flags.load_kwargs(), curve=budgets,
                       curve_cascades=curve is not None, amp=amp, sync_bn=sync_bn, attack_amp=attack_amp,
                       data_target=data_flags.target_kwargs(), unlabeled=unlabeled, compile=compile_net,
                       unfold_bn=unfold_bn, bpda=bpda, state=state, labels=labels, time_budget=time_budget,
                       started=started, **_minimal_budgets(eps_l2, max_l0))
    result, _ = at_data_size(hardened, model_flags, data, data_flags, checkpoint.name, hold=False)
    if not _all_ranks_done():
        state.finish()
        return
    save(result.model, output, force=force, inputs=[checkpoint])
    state.finish()
    said(f"wrote {output} (recipe {name} on {training_data_label(result.model.spec.extra)}, "
              f"{result.train_seconds:.1f} s of training{_epoch_note(result)})")
    if result.model.spec.extra.get("stopped"):
        out.print(f"[yellow]training stopped early:[/] {result.model.spec.extra['stopped']}")
    if patch_out:
        save_patch(result.model, patch_out, patch_meta(result.model), force=force, inputs=[checkpoint, output])
        said(f"wrote {patch_out} (recipe modules alone, bound to base sha256 {result.base_sha256[:16]}...)")
    for r in result.reports.values():
        r.confidence = confidence
    if result.reports:
        render_before_after(result.reports, out)
        write_outputs(list(result.reports.values()), json_path, markdown_path, None, html_path, plots,
                      training=result.training())
        _say_written(html_path, plots)


@app.command()
@with_model_flags
def apply(
    base: Path = typer.Argument(..., help="The base checkpoint the patch was trained on."),
    patch: Path = typer.Argument(..., help="A patch written by `harden fix --patch-out`."),
    output: Path = typer.Option(..., "-o", "--output", help="The rebuilt hardened checkpoint."),
    force: bool = ForceOpt, debug: bool = DebugOpt, model_flags: ModelFlags = None,
):
    """Rebuild a hardened checkpoint from a base and a patch; refuses a base whose sha256 differs."""
    from .checkpoint import apply_patch, check_checkpoint_path, check_output_path, save
    check_output_path(output, [base, patch], force)
    check_checkpoint_path(output)
    model = apply_patch(base, patch, model_flags=model_flags.load_kwargs())
    save(model, output, force=force, inputs=[base, patch])
    said(f"wrote {output} ({model.spec.extra.get('recipe')} patch applied to {base.name})")


@app.command("import")
@with_model_flags
def import_cmd(
    checkpoint: Path = typer.Argument(..., help="A checkpoint harden did not write (any torch file or safetensors)."),
    output: Path = typer.Option(..., "-o", "--output", help="The harden .safetensors to write."),
    data: Optional[str] = typer.Option(None, "--data", help="The model's data, stored so that later commands need no "
                                       "--data."),
    force: bool = ForceOpt, debug: bool = DebugOpt, model_flags: ModelFlags = None,
):
    """Load a foreign checkpoint strictly once and write it as a harden .safetensors: later commands need no flags."""
    from .checkpoint import check_checkpoint_path, check_output_path
    from .importer import import_checkpoint
    check_output_path(output, [checkpoint], force)
    check_checkpoint_path(output)
    model, _ = at_data_size(lambda flags: import_checkpoint(checkpoint, output, model_flags=flags.load_kwargs(),
                                                           data=data, force=force),
                            model_flags, data, DataFlags(), checkpoint.name)
    s = model.spec
    said(f"wrote {output} ({s.arch}, {s.num_classes} classes, {s.in_chans}x{s.input_size[0]}x{s.input_size[1]}, "
              f"{sum(p.numel() for p in model.parameters()):,} parameters, data {s.data or '-'})")


@app.command()
@with_model_flags
@with_data_flags
def export(
    checkpoint: Path = typer.Argument(..., help="The model to export (hardened or not)."),
    output: Path = typer.Option(..., "-o", "--output", help="The .onnx file to write; a .pt2 file (a torch.export "
                                "program); a .pth/.pt/.bin file (the network's state dict, keyed as its own code "
                                "names it: load_state_dict(torch.load(path, weights_only=True)) in that code); or a "
                                "folder: a transformers or timm model in its own library's layout (save_pretrained's, "
                                "timm's hub folder)."),
    data: Optional[str] = typer.Option(None, "--data", help="Test images for the check (default: what the checkpoint "
                                       "names; random pixels when it names none)."),
    n: int = typer.Option(64, "--num-images", "--n", min=1, help="Images for the onnxruntime check."),
    opset: int = typer.Option(17, "--opset", min=9, help="ONNX opset (18 at least for a torch.export program: "
                              "torch's dynamo exporter writes it)."),
    force: bool = ForceOpt, quiet: bool = QuietOpt, debug: bool = DebugOpt, model_flags: ModelFlags = None,
    data_flags: DataFlags = None,
):
    """Export the whole model (normalisation, recipe modules) to ONNX with a dynamic batch axis and check it with
    onnxruntime (or to a .pt2 torch.export program, checked by reading it back); the network's weights as a state
    dict (.pth) for its own code; or, to a folder, a transformers or timm model as its library saves it, checked by
    loading it back with that library. Exit 1 when the predictions disagree."""
    _setup(quiet)
    import torch

    from .checkpoint import check_output_path
    from .export import LOGIT_TOL, export_onnx
    from .export_weights import STATE_DICT_SUFFIXES
    suffix = output.suffix.lower()
    folder = suffix not in (".onnx", ".pt2", *STATE_DICT_SUFFIXES)
    if folder and suffix and not output.is_dir() and suffix in (".safetensors", ".ckpt", ".tflite", ".h5", ".keras",
                                                                 ".pb", ".engine", ".mlmodel", ".tar", ".pkl"):
        raise HardenError(f"harden export writes an .onnx file, a .pt2 program, a state dict (.pth, .pt, .bin) or a "
                          f"library folder (a name without a suffix); not {suffix}."
                          + (" A .safetensors file of the network's weights is what `harden fix` and `harden import` "
                             "write (safetensors.torch.load_file reads it as a state dict keyed as the network's code "
                             "names it)." if suffix == ".safetensors" else ""))
    if folder and Path(output).resolve() == Path(checkpoint).resolve():
        raise HardenError(f"Output {str(output)!r} is the input; harden never writes to its input. Choose another -o.")
    if not folder:
        check_output_path(output, [checkpoint], force)
    model = _load_model(checkpoint, model_flags, "cpu")
    s = model.spec
    x, images = torch.rand(n, s.in_chans, *s.input_size, generator=torch.Generator().manual_seed(0)), "random pixels"
    from .data import recorded_data_here
    if data or (s.data and recorded_data_here(s.data)):
        from .api import data_for
        from .data import fit_size
        ds = data_for(model, data, **data_flags.target_kwargs())
        x = fit_size(ds.images("test", ds.eval_indices(n, 0))[0], tuple(s.input_size))
        images = f"test images of {ds.source}"
    if folder:
        from .export_folder import export_folder
        check, runtime = export_folder(model, output, x, images, force)
        said(f"wrote {output}/ (the {runtime} layout)" if check.ok else f"{output}/ not written:")
    elif suffix in STATE_DICT_SUFFIXES:
        from .export_weights import export_state_dict
        check, runtime = export_state_dict(model, output, x, images), f"a fresh {s.arch} loading it"
        said(f"wrote {output} ({check.written})" if check.ok else f"{output} not written:")
    elif suffix == ".pt2":
        from .export_program import export_program
        check, runtime = export_program(model, output, x, images), "torch.export.load"
        said(f"wrote {output} ({check.written})")
    else:
        check, runtime = export_onnx(model, output, x, images, opset=opset), "onnxruntime"
        said(f"wrote {output} ({check.written})")
    mark = "[green]OK[/]" if check.ok else "[red]MISMATCH[/]"
    out.print(f"  {mark} {runtime} vs harden on {check.n} {check.images}: predictions agree on "
              f"{100 * check.agreement:.1f}%, largest output difference {check.max_abs_diff:.3g} "
              f"(tolerance {LOGIT_TOL:g} x max(1, |output| {check.scale:.3g}))")
    if check.ok and not folder and suffix in STATE_DICT_SUFFIXES:  # a state dict holds no metadata: the flags that do
        from rich.markup import escape

        from .model_flags import flags_for
        out.print(f"  harden reads it with the model flags {escape(flags_for(s))}")
    if not check.ok:
        raise typer.Exit(1)


@app.command()
def report(
    json_file: Path = typer.Argument(..., help="A report JSON written by `harden eval --json` or `harden fix --json`."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", "--html", help="The HTML file to write (--html, "
                                          "as eval and fix name it)."),
    plots: Optional[Path] = PlotsOpt, force: bool = ForceOpt, debug: bool = DebugOpt,
):
    """Re-render the HTML report (and the PNG figures) from a saved JSON report, with no model and no attack."""

    from .checkpoint import check_output_path
    from .report.compare import read_report
    from .report.html_page import render
    if output is None and plots is None:
        raise HardenError("Nothing to write: give -o report.html and/or --plots DIR.")
    if output:
        check_output_path(output, [json_file], force)
    render(read_report(json_file), output, plots)
    _say_written(output, plots)


@app.command("gate")
def gate_cmd(
    report_file: Path = typer.Argument(..., metavar="REPORT", help="A report JSON written by `harden eval --json` (or "
                                       "a fix's before/after file: its hardened model's white-box report, gated with "
                                       "its base's as the baseline)."),
    require: Optional[List[str]] = RequireOpt, gate: Optional[Path] = GateOpt, baseline: Optional[Path] = BaselineOpt,
    allow_mismatch: bool = AllowMismatchOpt, confidence: float = ConfidenceOpt,
    json_path: Optional[Path] = JsonOpt, markdown_path: Optional[Path] = MarkdownOpt,
    junit_path: Optional[Path] = JunitOpt, html_path: Optional[Path] = SavedHtmlOpt, force: bool = ForceOpt,
    debug: bool = DebugOpt,
):
    """Gate a saved report again, with no model and no attack: other bars, another --confidence, another baseline.
    Exit 0 when every requirement holds, 1 when one fails, 2 on bad input, as `harden eval` does."""
    from .checkpoint import check_output_path
    from .report.release import gate as gate_saved
    from .stdout_outputs import claim
    if not require and not gate:
        raise HardenError("Nothing to gate: give --require METRIC>=VALUE (repeatable) or --gate gate.toml.")
    claim(out, {"html": html_path}, json=json_path, markdown=markdown_path, junit=junit_path)
    for p in (json_path, markdown_path, junit_path, html_path):
        if p:
            check_output_path(p, [report_file, baseline], force)
    report = gate_saved(report_file, require or [], gate_file=gate, baseline=baseline, allow_mismatch=allow_mismatch,
                        confidence=confidence)
    _show_gated(report, json_path, markdown_path, junit_path, html_path)
    _exit_on_failed_gate(report)


@app.command("data")
@with_model_flags
@with_data_flags
def data_cmd(
    data: str = typer.Argument(..., help="What --data takes: digits, an .npz, a folder, a list, shards, a .zip, "
                               "TFRecords, parquet/Arrow files, hf:org/name, file.py:name."),
    model: Optional[Path] = typer.Option(None, "--model", help="A checkpoint: its classes and transform decide how "
                                         "the names map and what the images become (as eval and fix read them)."),
    debug: bool = DebugOpt, model_flags: ModelFlags = None, data_flags: DataFlags = None,
):
    """Show how harden reads a dataset: layout, splits and sizes, classes and their indices, images per class, what
    a sample of its files holds, the transform; with --model, the model's clean accuracy on 64 of its test images and
    the chance-level and assumed-normalisation checks. Reads listings and a few files only."""
    from .data import DataTarget, load_data
    from .data.describe import describe
    loaded = None
    if model is not None:
        loaded, _ = at_data_size(lambda flags: _load_model(model, flags, "cpu"), model_flags, data, data_flags,
                                 model.name)
        target = DataTarget.for_model(loaded, **data_flags.target_kwargs())
    else:
        kw = data_flags.target_kwargs()
        kw.pop("test_size", None)
        target = DataTarget(**kw)
    t = Table(title=escape(f"{data}" + (f" for {model}" if model else "")), show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    dataset = load_data(data, target)
    if loaded is not None:  # the model's test split, as eval reads it (a split fix held out of this data)
        from .data.dataset_objects import model_for
        from .data.held_out import test_split_for
        model_for(loaded, dataset)  # a dataset's Normalize, as eval takes it
        dataset = test_split_for(dataset, loaded.spec.extra, model.name)
    rows = describe(dataset)
    if loaded is not None and dataset.n_test:
        import torch

        from .report.preflight import sample_rows
        rows += sample_rows(loaded, dataset, torch.device("cpu"))
    for k, v in rows:
        t.add_row(k, escape(v))
    out.print(t)


@app.command("compare")
def compare_cmd(
    reports: List[Path] = typer.Argument(..., help="Two or more report JSONs (eval --json, or a fix's before/after "
                                         "file, whose reports are all compared); the first is the reference."),
    markdown_path: Optional[Path] = typer.Option(None, "--markdown", help="Write the table as Markdown."),
    html_path: Optional[Path] = typer.Option(None, "--html", help="Write the table as an HTML page."),
    allow_mismatch: bool = typer.Option(False, "--allow-mismatch", help="Compare reports of other images, budgets, "
                                        "presets or data (unpaired tests)."),
    confidence: float = ConfidenceOpt, force: bool = ForceOpt, debug: bool = DebugOpt,
):
    """Side by side: each accuracy of each report with its interval, and each report's difference from the first
    with its interval and p-value (paired on the same images: McNemar exact)."""
    from .checkpoint import check_output_path
    from .report.compare import read_report, single_reports, table_rows
    from .report.compare_render import to_html, to_markdown
    from .stdout_outputs import claim, is_stdout, write
    claim(out, {"html": html_path}, markdown=markdown_path)
    for p in (markdown_path, html_path):
        if p:
            check_output_path(p, reports, force)
    docs = [r for path in reports for r in single_reports(read_report(path))]
    if len(docs) < 2:
        raise HardenError("compare needs at least two reports (two files, or a fix's before/after file).")
    header, rows, notes = table_rows(docs, allow_mismatch, confidence)
    t = Table(title="harden compare", title_justify="left")
    for h in header:
        t.add_column(escape(h), justify="left" if h == "metric" else "right")
    for row in rows:
        t.add_row(*[escape(c) for c in row])
    out.print(t)
    for n in notes:
        out.print(f"  [dim]{escape(n)}[/]")
    from .checkpoint import atomic_write_bytes
    if markdown_path:
        write(markdown_path, to_markdown(header, rows, notes))
        if not is_stdout(markdown_path):
            said(f"wrote {markdown_path}")
    if html_path:
        atomic_write_bytes(html_path, to_html(header, rows, notes).encode())
        said(f"wrote {html_path}")


@app.command()
def recipes():
    """List the recipe files in recipes/ (defaults of each hardening recipe, with their sources)."""
    from .recipes import recipes_dir
    try:
        import tomllib
    except ModuleNotFoundError:
        import tomli as tomllib
    files = sorted(recipes_dir().glob("*.toml")) if recipes_dir().is_dir() else []
    t = Table(title=f"recipes in {recipes_dir()}", title_justify="left")
    for c in ("name", "file", "source", "description"):
        t.add_column(c)
    for f in files:
        try:
            doc = tomllib.loads(f.read_text())
        except tomllib.TOMLDecodeError as e:
            t.add_row(f.stem, f.name, "-", f"[red]invalid TOML: {e}[/]")
            continue
        r = doc.get("recipe", {})
        t.add_row(str(r.get("name", f.stem)), f.name, str(r.get("source", "-")), str(r.get("description", "")))
    out.print(t)
    if not files:
        out.print("no recipe files yet")


@app.command()
def demo(
    epochs: int = typer.Option(10, "--epochs", min=1),
    n: int = typer.Option(450, "--num-images", "--n", help="Test images to attack (digits has 450)."),
    data_frac: float = typer.Option(0.3, "--data-frac", help="Fraction of digits' training split for the fix."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Keep the demo checkpoint and reports here."),
    device: str = DeviceOpt, seed: int = SeedOpt, quiet: bool = QuietOpt, debug: bool = DebugOpt,
):
    """Train a small model on the built-in digits data, harden it with the default recipe (at), and print the
    before/after report (white-box on each model, and transfer from the base); writes report.html."""
    _setup(quiet)
    from .api import train as train_model
    from .checkpoint import save
    from .data import load_data
    from .fix import fix as run_fix
    from .recipes import DEFAULT_RECIPE
    from .report.render import render_before_after, write_outputs
    from .training import TrainConfig
    target = out_dir or Path(tempfile.mkdtemp(prefix="harden-demo-"))
    target.mkdir(parents=True, exist_ok=True)
    ds = load_data("digits")
    out.rule("1. harden train --data digits --arch cnn-small")
    model = train_model("cnn-small", ds, TrainConfig(epochs=epochs, batch_size=64, lr=0.05, augment="crop",
                                                     seed=seed), device)
    ckpt = save(model, target / "base.safetensors", force=True)
    said(f"wrote {ckpt}")
    # 8x8 digits barely move at the seed's 8/255, so the demo trains and measures at eps 0.1.
    sets = ["eps=0.1"]
    out.rule(f"2. harden fix base.safetensors --data-frac {data_frac} " + " ".join(f"--set {s}" for s in sets)
             + f"   (recipe {DEFAULT_RECIPE}, the default)")
    result = run_fix(ckpt, ds, recipe=DEFAULT_RECIPE, sets=sets, data_frac=data_frac, seed=seed, device=device,
                     report_n=n, base_name="base.safetensors", curve=[0.0, 0.05, 0.1, 0.15])
    fixed = save(result.model, target / f"base.{DEFAULT_RECIPE}.safetensors", force=True)
    said(f"wrote {fixed} ({result.train_seconds:.1f} s of training)")
    out.rule("3. before / after")
    render_before_after(result.reports, out)
    write_outputs(list(result.reports.values()), target / "report.json", target / "report.md", None,
                  target / "report.html", training=result.training())
    said(f"checkpoints and reports in {target}")
    said(f"open {target / 'report.html'} in a browser for the curves and adversarial examples")


def _is_usage_error(e: Exception) -> bool:
    """Click's ClickException, whether from click itself or from the copy of click that recent typer releases ship
    inside (typer._click), which the `click` package's class does not match."""
    import click
    kinds = [click.exceptions.ClickException]
    vendored = sys.modules.get("typer._click.exceptions")
    if vendored is not None:
        kinds.append(vendored.ClickException)
    return isinstance(e, tuple(kinds))


def _unwrapped_help() -> None:
    """The commands' docstrings are wrapped for the source; rich help keeps a docstring's line breaks, which then fall
    mid-sentence in `harden --help`: each paragraph is joined onto one line (the terminal wraps it)."""
    import inspect
    for info in app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        info.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))


_unwrapped_help()


def main() -> None:
    from . import distributed
    from .allocator import keep_freed_memory
    from .cores import threads_within_quota
    from .runtime import python_warnings_once
    keep_freed_memory()  # the CLI owns its process: training steps reuse freed host memory (allocator.py)
    threads_within_quota()  # and its torch threads: no more than a CPU quota or affinity leaves it (cores.py)
    python_warnings_once()  # a network's own Python warnings, once each (runtime.py)
    # standard output as it is at each print: an earlier call in this process with `--json -` pointed the console at
    # that call's standard error, which a test's capture (or a notebook's redirect) has closed since
    out.file = None
    try:
        _main()
    finally:  # after an error no rank waits for the others (a peer may be stuck or gone)
        from .stdout_outputs import release
        release()
        distributed.teardown(clean=not _failed)


_failed = False  # set by the error paths below: main() then ends a torchrun process group without waiting


def _say_error(text: str) -> None:
    global _failed
    _failed = True
    Console(stderr=True).print("[bold red]error:[/] " + escape(text), highlight=False, soft_wrap=True)


def _main() -> None:
    global _failed
    from . import distributed
    debug = "--debug" in sys.argv
    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit's code in this mode
        sys.exit(rc if isinstance(rc, int) else 0)
    except HardenError as e:
        if debug:
            raise
        _say_error(f"{distributed.where()}{e}")
        sys.exit(2)
    except Interrupted as e:  # its state saved: says how to go on, exits as the signal would have
        _failed = _failed or not e.together  # a report's processes stop at their own batches: none waits for another
        if distributed.is_main():
            Console(stderr=True).print("[bold yellow]stopped:[/] " + escape(str(e)), highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:
        if _is_usage_error(e):  # a bad option or argument: click's own message and exit code (2)
            e.show()
            sys.exit(e.exit_code)
        if debug:
            raise
        if distributed.active() and distributed.is_collective_failure(e):
            _say_error(f"{distributed.where()}stopped because another process of this run failed (its message is "
                       f"above; nothing was written): {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            sys.exit(1)
        _say_error(f"{distributed.where()}{type(e).__name__}: {e}\n(run again with --debug for the traceback)")
        sys.exit(1)
