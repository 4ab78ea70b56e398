"""Gradient-masking signals (Carlini et al. 2019, "On Evaluating Adversarial Robustness", section 5):
a defence that only hides gradients shows them. Each check returns a flag dict; a tripped flag means
the white-box numbers may overstate robustness and stronger or different attacks are needed."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from ..attacks import build_attack
from ..attacks.row_streams import RowStreams
from ..batching import predict_labels, run_batched
from ..outputs import BINARY_SIGMOID, scores_entry
from ..runtime import frozen, progress
from .stats import share
from .examples import spread_order

# Tolerances: differences smaller than these are noise. The two comparisons of accuracies measured by
# different attacks also allow two standard errors of the difference when the image count n is known
# (at n = 200 and accuracies near 0.1 that is ~6 points, not 2).
ITERATIVE_TOL = 0.02
STRONGER_PGD_TOL = 0.03
TRANSFER_TOL = 0.02
LARGE_BUDGET_EPS = 0.5   # at L-inf 0.5 every image can be pushed to mid-grey: nothing should survive
LARGE_BUDGET_MAX = 0.10


# AutoAttack's checks (its checks.py and flags_doc): an evaluation that needs another attack set
ZERO_GRAD_MAX = 0.05     # share of images with an all-zero input gradient of the loss
BLACK_BOX_TOL = 0.01     # robust accuracy that Square (no gradients) may take from the gradient attacks' result
BLACK_BOX_QUERIES = 500
# Square attacks a seeded sample of this many of the images the gradient attacks left robust first, and the rest only
# when it fools one of them: a model that masks its gradients loses many images to Square, so a clean sample of 32
# bounds the share it could fool below 9% (95% confidence) at a fraction of the forward passes; any hit runs the
# full check on every image.
BLACK_BOX_FIRST = 32
BLACK_BOX_CHECK = "black-box attack beats the gradient attacks"
CHECKED_MOST = 200  # the masking checks run on at most this many of the report's images (checked_images)


def flag(check: str, tripped: bool, detail: str, kind: str = "masking") -> dict[str, Any]:
    """kind: 'masking' (the white-box numbers may overstate robustness), 'check' (the evaluation needs other
    settings) or 'note' (worth knowing, handled)."""
    return {"check": check, "tripped": bool(tripped), "detail": detail, "kind": kind}


def state_word(f: dict[str, Any]) -> str:
    """How a check reads in a document: TRIPPED, quiet, or note (a tripped note is something said, not a warning:
    it is not counted among the tripped checks)."""
    if not f["tripped"]:
        return "quiet"
    return "note" if f.get("kind", "masking") == "note" else "TRIPPED"


CHANCE_CHECK = "clean accuracy at chance"
CHANCE_MIN_N = 20        # fewer images than this say nothing of chance
COLLAPSED_SHARE = 0.8    # share of the images given the same class that counts as a collapse (where labels vary)


def above_chance(pred: torch.Tensor, y: torch.Tensor, num_classes: int,
                 sources: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Clean accuracy no better than chance (its 95% interval reaching the larger of 1/classes and the commonest
    label's share), or nearly every image predicted as one class where the labels vary: the model is not reading
    these images as it was trained to (a wrong mean/std or input size, another class order, another checkpoint),
    and its robust accuracies say nothing. Needs no pass of its own. `sources`: where the model's configuration came
    from (checkpoint.load), to name what was assumed."""
    from .stats import wilson
    n = len(y)
    if n < CHANCE_MIN_N or num_classes < 2:
        return None
    label_share = float(torch.bincount(y.cpu(), minlength=num_classes).max()) / n
    chance = max(1.0 / num_classes, label_share)
    k = int((pred == y).sum())
    low = wilson(k, n)[0]
    counts = torch.bincount(pred.cpu(), minlength=num_classes)
    top = int(counts.argmax())
    collapsed = float(counts[top]) / n
    at_chance = low <= chance
    one_class = collapsed >= COLLAPSED_SHARE and collapsed > label_share + 0.3
    why = f"1 of {num_classes} classes" if chance == 1.0 / num_classes else "the commonest label's share"
    detail = (f"clean accuracy {k / n:.1%} on {n} images (95% interval from {low:.1%}) against chance {chance:.1%} "
              f"({why}); {collapsed:.0%} of the images predicted as class {top}")
    if at_chance or one_class:
        sources = sources or {}
        from ..models.config import INSIDE_SOURCE
        from ..models.unsaid_args import UNSAID
        assumed = [key for key in ("input_size", "mean", "std") if sources.get(key) == "default"]
        inside = sources.get("mean", "").startswith(INSIDE_SOURCE)  # --mean/--std would normalise twice
        detail += (": the model does not read these images as it was trained to: check the preprocessing ("
                   + (f"{', '.join(assumed)} assumed, not given; " if assumed else "")
                   + ("the network normalises its input itself: its own mean and std, --input-size" if inside else
                      "--mean, --std, --input-size")
                   + "), the class order (--class-map)"
                   + (f", the constructor arguments the weights cannot say ({sources[UNSAID]}: warned when loading)"
                      if sources.get(UNSAID) else "")
                   + " and the checkpoint; its robust accuracies say nothing")
    return flag(CHANCE_CHECK, at_chance or one_class, detail, kind="check")


def chance_after_hardening(base_flags: list[dict[str, Any]], base_clean: float, hardened_flags: list[dict[str, Any]]
                           ) -> None:
    """A hardened model at chance on images its base read well (same images, same preprocessing): the hardening
    collapsed it, and the preprocessing and class-order advice of `above_chance` would send the user the wrong way.
    Rewrites that advice in `hardened_flags` (in place)."""
    if any(f["check"] == CHANCE_CHECK and f["tripped"] for f in base_flags):
        return
    for f in hardened_flags:
        if f["check"] == CHANCE_CHECK and f["tripped"]:
            measured = f["detail"].split(": the model does not read", 1)[0]
            f["detail"] = (f"{measured}: the base read the same images through the same preprocessing at "
                           f"{base_clean:.1%} clean, so the hardening collapsed the model (not its preprocessing or class "
                           "order); harden again with a smaller budget or learning rate, more epochs or more data "
                           "(--data-frac), or keep the base; its robust accuracies say nothing")


def margin(tol: float, a: float, b: float, n: int | None) -> float:
    """The larger of `tol` and two standard errors of a - b for accuracies measured on n images each."""
    if not n:
        return tol
    a, b = min(max(a, 0.0), 1.0), min(max(b, 0.0), 1.0)
    return max(tol, 2 * math.sqrt((a * (1 - a) + b * (1 - b)) / n))


def iterative_vs_single_step(robust: dict[str, float], n: int | None = None) -> dict[str, Any] | None:
    if "fgsm" not in robust or not ({"pgd", "autopgd"} & set(robust)):
        return None
    it = min(robust[k] for k in ("pgd", "autopgd") if k in robust)
    tol = margin(ITERATIVE_TOL, it, robust["fgsm"], n)
    return flag("iterative weaker than single-step", it > robust["fgsm"] + tol,
                f"best iterative robust accuracy {it:.3f} vs FGSM {robust['fgsm']:.3f} (noise margin {tol:.3f})")


def run_white_box_checks(model, x: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, eps: float,
                         pgd_robust: torch.Tensor | None, attack_fn: Callable[..., torch.Tensor],
                         pgd_spec: dict[str, Any] | None = None,
                         pgd_end: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """The checks that need extra attack runs, on the images given (`attack_fn(spec, ids, start)`: the predictions on
    the adversarial inputs of the images `ids` of x, from start's points when given): a large budget must reach ~0,
    and PGD with twice the steps must not change the default PGD's result. With `pgd_end` (where the report's PGD
    left each image) and `pgd_spec` (its settings) the second is the report's PGD continued for as many steps again
    from there (the same trajectory as one run of twice the steps, for half the passes); without, a fresh run of 100
    steps from a random start."""
    out = []
    # each runs only on the images whose verdict it can change: the clean-correct ones, the PGD-robust ones; and only
    # where those are enough to trip it (an attack whose every image stayed robust could not)
    large = "robust accuracy does not reach ~0 at a large budget"
    if share(correct) <= LARGE_BUDGET_MAX:
        out.append(flag(large, False, f"PGD at L-inf {LARGE_BUDGET_EPS}: not run, the clean accuracy on these images, "
                        f"{share(correct):.3f}, is already at most the {LARGE_BUDGET_MAX} expected"))
    else:
        big = _still_correct(model, attack_fn, f"pgd:eps={LARGE_BUDGET_EPS},step={LARGE_BUDGET_EPS / 10},steps=20,"
                             "restarts=1", x, y, correct)
        out.append(flag(large, big > LARGE_BUDGET_MAX,
                        f"PGD at L-inf {LARGE_BUDGET_EPS}: robust accuracy {big:.3f} (expected <= {LARGE_BUDGET_MAX})"))
    if pgd_robust is not None and share(pgd_robust) <= STRONGER_PGD_TOL:
        out.append(flag("more PGD steps or restarts change the result", False,
                        f"PGD robust accuracy {share(pgd_robust):.3f}: more steps not run, since fooling every image "
                        f"it left robust would change it by at most that, within the {STRONGER_PGD_TOL} allowed"))
    elif pgd_robust is not None:
        if pgd_end is not None and pgd_spec is not None:
            p = pgd_spec
            strong = _still_correct(model, attack_fn, f"pgd:eps={p['eps']},step={p['step']},steps={p['steps']},"
                                    f"restarts=0", x, y, pgd_robust, start=pgd_end)
            how = f"continued to {2 * int(p['steps'])} steps"
        else:
            strong = _still_correct(model, attack_fn, f"pgd:eps={eps},step={eps / 8},steps=100,restarts=1", x, y,
                                    pgd_robust)
            how = "with 100 steps and a random start"
        base = share(pgd_robust)
        out.append(flag("more PGD steps or restarts change the result", base - strong > STRONGER_PGD_TOL,
                        f"PGD robust accuracy {base:.3f}; {how} {strong:.3f}"))
    return out


def transfer_vs_white_box(white_box: dict[str, float], transfer: dict[str, float],
                          n: int | None = None) -> dict[str, Any] | None:
    common = [k for k in white_box if k in transfer and k != "clean"]
    if not common:
        return None

    def excess(k: str) -> float:  # how far the transfer attack beats the white-box one, beyond noise
        return white_box[k] - transfer[k] - margin(TRANSFER_TOL, white_box[k], transfer[k], n)

    worst = max(common, key=excess)
    tol = margin(TRANSFER_TOL, white_box[worst], transfer[worst], n)
    return flag("transfer attacks stronger than white-box", excess(worst) > 0,
                f"{worst}: transfer robust accuracy {transfer[worst]:.3f} vs white-box {white_box[worst]:.3f} "
                f"(noise margin {tol:.3f})")


def randomized_outputs(model, x: torch.Tensor) -> dict[str, Any]:
    """Two forward passes on the same batch in eval mode differ: a randomized defence, which needs gradients
    averaged over its randomness (EOT)."""
    with torch.no_grad():
        a, b = model(x), model(x)
    diff = float((a - b).abs().max())
    tripped = diff > 1e-5 * max(1.0, float(a.abs().max()))
    if not tripped:  # the advice for a randomized defence is not for this model
        return flag("randomized outputs", False, f"two forward passes on the same {len(x)} images give the same scores"
                    + (f" (up to {diff:.3g} apart: rounding)" if diff else ""), kind="check")
    return flag("randomized outputs", True,
                f"two forward passes on the same {len(x)} images differ by up to {diff:.3g}; evaluate with "
                "--attack autoattack:version=rand (APGD with 20 EOT samples)", kind="check")


# Scores of the same image in two batch compositions that differ by more than this share of the largest score (or
# by 1, if larger) come from the batch, not from rounding: kernels chosen per batch size, TF32 included, move scores by
# far less, and BatchNorm on batch statistics moves them by their own size.
BATCH_DEPENDENCE_TOL = 1e-2


def batch_dependent_outputs(model, x: torch.Tensor, randomized: bool) -> dict[str, Any]:
    """An image's scores change with the images beside it (BatchNorm built with track_running_stats=False, or other
    arithmetic across the batch in forward): the model's answer on an image, clean or attacked, is then not its own,
    and the attacks, which drop fooled images from their batches as they go, change the rest's scores while they do.
    The batch of `x` against its two halves run apart."""
    name = "outputs depend on the batch"
    n = len(x) // 2 * 2
    if randomized or n < 4:  # halves of two images at least: BatchNorm on batch statistics refuses one
        return flag(name, False, "not tested: " + ("the outputs are randomized" if randomized
                                                   else f"{len(x)} images are too few to split"), kind="check")
    with torch.no_grad():
        whole = model(x[:n]).float()
        apart = torch.cat([model(x[:n // 2]), model(x[n // 2:n])]).float()
    diff = float((whole - apart).abs().max())
    flips = int((whole.argmax(1) != apart.argmax(1)).sum())
    tripped = diff > BATCH_DEPENDENCE_TOL * max(1.0, float(whole.abs().max()))
    if diff == 0:
        return flag(name, False, f"the same {n} images in one batch and in two batches of {n // 2} get the same scores",
                    kind="check")
    said = (f"the same {n} images in one batch and in two batches of {n // 2} get scores up to {diff:.3g} apart "
            f"({flips} predicted classes change)")
    if not tripped:
        return flag(name, False, said + ": rounding, not the batch", kind="check")
    return flag(name, True, said + ": an image's answer depends on the images beside it (BatchNorm without running "
                "statistics, or arithmetic across the batch in forward), so accuracy and robust accuracy change with the "
                "batch size and the attacks' shrinking batches; give BatchNorm running statistics "
                "(track_running_stats=True, then a pass over training images in train mode) before trusting these "
                "numbers", kind="check")


def output_kind_note(kind: str, entry: str = "", saturates: bool = False) -> dict[str, Any]:
    """`entry`: outputs.scores_entry's words on where the scores come from; `saturates`: they are a sigmoid read
    back as its logit."""
    from ..outputs import LOG_PROBABILITIES, PROBABILITIES
    if kind == PROBABILITIES:
        detail = (f"the model returns probabilities{entry}, not logits: harden attacks log(p), but a saturated "
                  "softmax zeroes gradients in float32; export the logits if you can")
        return flag("outputs are not logits", True, detail, kind="check")
    if kind == LOG_PROBABILITIES:
        return flag("outputs are not logits", True, f"the model returns log-probabilities (log_softmax){entry}: CE, "
                    "DLR and the margins are unchanged on them, so the attacks are computed right", kind="note")
    # a sigmoid read back as its logit has the saturated-softmax problem above: a check, not a note
    return flag("outputs are not logits", bool(entry), f"the model returns logits{entry}",
                kind="check" if saturates else "note")


def zero_gradients(model, x: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, batch_size: int | None = None,
                   device: torch.device | None = None) -> dict[str, Any]:
    """Share of correctly classified images whose input gradient of the cross-entropy is exactly zero:
    gradient attacks cannot move them (AutoAttack's check_zero_gradients). In batches of batch_size (None: one),
    halved on CUDA out-of-memory: at 224 px the checks' 200 images at once would not fit a card's activations."""
    def zero_in(s: int, e: int) -> torch.Tensor:
        xr = x[s:e].clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xr), y[s:e], reduction="sum")
        (g,) = torch.autograd.grad(loss, xr)
        return g.flatten(1).abs().amax(1) == 0

    zero = torch.cat(run_batched(zero_in, len(x), batch_size or len(x), device or x.device)) & correct
    share = float(zero.sum()) / max(1, int(correct.sum()))
    tripped = share > ZERO_GRAD_MAX
    return flag("zero input gradients", tripped,
                f"{share:.3f} of the correctly classified images have an all-zero loss gradient "
                f"(expected <= {ZERO_GRAD_MAX})" + ("; gradient attacks cannot move them" if tripped else ""),
                kind="masking")


def black_box_vs_gradient(robust_before: float, robust_after: float, n: int, source: str) -> dict[str, Any]:
    """Square uses no gradients: if it fools images every gradient attack left robust, beyond noise, the
    gradients mislead the attacks."""
    drop = robust_before - robust_after
    tol = margin(BLACK_BOX_TOL, drop, 0.0, n)
    return flag(BLACK_BOX_CHECK, drop > tol,
                f"{source}: robust accuracy {robust_before:.3f} after the gradient attacks, {robust_after:.3f} "
                f"after Square on top (noise margin {tol:.3f})")


def _still_correct(model, attack_fn, spec: str, x: torch.Tensor, y: torch.Tensor, among: torch.Tensor,
                   start: torch.Tensor | None = None) -> float:
    """Share of all len(x) images that are in `among` and still correctly classified after the attack `spec`, which
    runs on the `among` images only (from `start`'s points, when given)."""
    idx = among.nonzero().squeeze(1)
    if idx.numel() == 0:
        return 0.0
    pred = attack_fn(spec, idx, start)
    return float((pred == y[idx]).sum()) / len(x)


def _pred(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


# ---------------------------------------------------------------- run by the report

def checked_images(y: torch.Tensor, most: int) -> list[int]:
    """The report's images the masking checks run on (positions, ascending): the first `most`, or, where the images
    come in class order (a folder's sample is held so), `most` spread over them (examples.spread_order): the first
    ones were a class or a few."""
    from ..data.base import in_class_order
    n = len(y)
    if most >= n or not in_class_order(y.cpu().numpy()):
        return list(range(min(n, most)))
    return sorted(sorted(range(n), key=spread_order)[:most])


def run_checks(model, x, y, correct, atk_objs, results, robust_by_attack, eps, checked, batch_size, device, seed,
             output_kind, pgd_end: torch.Tensor | None = None, state=None
             ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The report's white-box gradient-masking signals and AutoAttack's checks on the images `checked` (positions:
    checked_images'; pgd_end holds theirs, in that order), and the seconds each part took (each extra attack by name
    and budget, "outputs and gradients"): a team choosing what its CI runs sees where the checks' time goes (on a
    weak CIFAR-10 ResNet-18, Square took 199 of 248 s of checks, on the images no gradient attack moved). `state`
    (the report's ReportState): each check attack's verdicts are kept batch by batch, as the report's own attacks'
    are, so a resumed report takes them (and the seconds they took when they ran)."""
    robust = {r.name: r.robust_accuracy for r in results}
    flags = [f for f in [iterative_vs_single_step(robust, len(x))] if f is not None]
    m = len(checked)
    if list(checked) != list(range(m)):  # from here on the checked images are the images, at positions 0 to m - 1
        sub = torch.as_tensor(list(checked), dtype=torch.long)
        x, y, correct = x.take(sub), y[sub.to(y.device)], correct[sub.to(correct.device)]
        robust_by_attack = {k: v[sub.to(v.device)] for k, v in robust_by_attack.items()}
    first = x.head(m)  # the report's held images (data/held.py): a view, no fp32 copy of the m images
    pgd = next((a for a in atk_objs if a.name == "pgd"), None)
    linf = [a for a in atk_objs if a.norm == "inf" and not a.minimal]
    check_eps = pgd.params["eps"] if pgd is not None else (
        linf[0].params["eps"] if linf else (eps if eps is not None else 8 / 255))

    tell = [lambda text: None]  # which check runs, beside the bar (set below): they take minutes on large images
    seconds: dict[str, float] = {}

    def attack_fn(spec: str, ids: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """The predictions on `spec`'s adversarial inputs of the report's images `ids` (from start's points for
        them: start is indexed as x). Each batch gathers its own images: no copy of all of them is made."""
        import hashlib

        from .. import distributed as dd
        atk = build_attack(spec)
        from ..attacks.base import _fmt
        p = atk.params
        part = (f"{atk.name}{' continued' if start is not None else ''}"
                + (f" ({p['queries']} queries)" if "queries" in p else f" ({p['steps']} steps)" if "steps" in p else "")
                + (f" at eps {_fmt(p['eps'])}" if "eps" in p else ""))
        tell[0](f"{part} on {len(ids):,} images")
        more = (lambda b: {}) if start is None else (lambda b: {"start": start[b]})  # pgd continued
        which = hashlib.sha256(ids.cpu().numpy().tobytes()).hexdigest()[:16]

        def batch(s: int, e: int) -> tuple[int, torch.Tensor]:
            where = f"check|{spec}|{which}|{seed}|{s}:{e}"
            kept = state.piece(where) if state is not None else None
            if kept is not None:
                seconds[part] = seconds.get(part, 0.0) + float(kept.get("seconds", 0.0))
                return s, kept["pred"]
            t = time.perf_counter()
            b = ids[s:e]
            xa = atk.run(model, x[b], y[b], generator=RowStreams(seed, b.cpu(), batch_seed=seed + s), **more(b)).x_adv
            pred = _pred(model, xa.detach().clamp(0, 1)).cpu()
            took = time.perf_counter() - t
            seconds[part] = seconds.get(part, 0.0) + took
            if state is not None:
                state.keep(where, {"pred": pred, "seconds": took},
                           f"the masking check {atk.name} at images {s}-{e} of {len(ids)}")
            return s, pred
        with frozen(model):  # sharded under torchrun, as the report's attacks
            mine = dd.run_my_batches(batch, len(ids), batch_size, device)
        if state is not None and dd.active():
            state.save()  # before this process waits for the others' batches (ReportStates)
        parts = sorted((p for r in dd.gather(mine) for p in r), key=lambda p: p[0])
        return torch.cat([p[1] for p in parts]).to(device)

    with progress("masking checks", 1) as advance:
        tell[0] = lambda text: advance(0, info=text)
        flags += run_white_box_checks(model, first, y[:m], correct[:m], check_eps,
                                      robust_by_attack["pgd"][:m] if "pgd" in robust_by_attack else None,
                                      attack_fn, pgd.params if pgd is not None else None,
                                      pgd_end[:m] if pgd_end is not None else None)
        with frozen(model):
            tell[0]("outputs and gradients")
            t = time.perf_counter()
            flags.append(randomized_outputs(model, x[:min(m, batch_size)]))
            flags.append(batch_dependent_outputs(model, x[:min(m, batch_size, 64)], flags[-1]["tripped"]))
            flags.append(output_kind_note(output_kind, scores_entry(model),
                                          bool(getattr(model, "spec", None) and model.spec.extra.get(BINARY_SIGMOID))))
            flags.append(zero_gradients(model, first, y[:m], correct[:m], batch_size, device))
            seconds["outputs and gradients"] = time.perf_counter() - t
            flags.append(black_box(model, first, y[:m], atk_objs, results, robust_by_attack, check_eps, attack_fn,
                                    seed, batch_size))
        advance(1, info="")
    return flags, {k: round(v, 2) for k, v in seconds.items()}


def black_box(model, x, y, atk_objs, results, robust_by_attack, eps, attack_fn, seed: int = 0,
              batch_size: int | None = None):
    """Square on the images the gradient attacks left robust (a sample first, see BLACK_BOX_FIRST); an autoattack
    row has done it already."""
    for r in results:
        if "square" in r.stages:
            names = list(r.stages)
            before = r.stages[names[names.index("square") - 1]]
            return black_box_vs_gradient(before, r.stages["square"], None, f"{r.name} stages")
    gradient = [(a, k) for a, k in zip(atk_objs, robust_by_attack, strict=True) if a.norm == "inf" and not a.minimal]
    linf = [k for _, k in gradient]
    # FGSM alone (no iterative attack to compare with): Square beating it is the rule on a model without masking too
    one_step = [a.name for a, _ in gradient] if gradient and all(a.single_step for a, _ in gradient) else None
    m = len(x)
    left = torch.stack([robust_by_attack[k][:m] for k in linf]).all(0) if linf else \
        (predict_labels(model, x, batch_size or len(x), x.device) == y)
    before = share(left)
    src = "the report's L-inf attacks" if linf else "clean"
    src = f"{src} at eps {eps:.4g} on {m} images"
    idx = left.nonzero().squeeze(1)
    if idx.numel() and not black_box_vs_gradient(before, 0.0, m, src)["tripped"]:
        # Square fooling every image left would be noise: not run (at 224 px its 500 queries on each of three survivors
        # cost 1.2 times the attacks)
        return flag(BLACK_BOX_CHECK, False,
                    f"{src}: Square not run: the gradient attacks left {idx.numel()} of the {m} images robust "
                    f"({before:.3f}), and Square fooling every one of them would be within the noise margin "
                    f"({margin(BLACK_BOX_TOL, before, 0.0, m):.3f}), so it could not trip this check")
    idx = idx[torch.randperm(idx.numel(), generator=torch.Generator().manual_seed(seed)).to(idx.device)]

    def fooled(ids: torch.Tensor) -> int:
        if ids.numel() == 0:
            return 0
        pred = attack_fn(f"square:eps={eps},queries={BLACK_BOX_QUERIES}", ids)
        return int((pred != y[ids]).sum())

    first, rest = idx[:BLACK_BOX_FIRST], idx[BLACK_BOX_FIRST:]
    n_fooled = fooled(first)
    if n_fooled == 0 and rest.numel():
        bound = 1 - 0.05 ** (1 / len(first))
        return flag(BLACK_BOX_CHECK, False,
                    f"{src}: Square ({BLACK_BOX_QUERIES} queries) fooled none of a seeded sample of {len(first)} of the "
                    f"{len(idx)} images the gradient attacks left robust, so the share of them it could fool is below "
                    f"{bound:.1%} (95% confidence); one hit would have sent it to all {len(idx)}")
    n_fooled += fooled(rest)
    found = black_box_vs_gradient(before, before - n_fooled / m, m, src)
    if one_step and found["tripped"]:  # the numbers overstate robustness all the same: a warning, with its cure
        found.update(kind="check", detail=found["detail"] + f"; the report's L-inf gradient attacks are single-step "
                     f"({', '.join(one_step)}), which an iterative attack beats on most models, masked or not: add "
                     "--attack pgd or autoattack to tell a weak attack from masked gradients")
    return found
