"""Network calls of the report's early-stopping attacks (PGD, C&W, PGD-L2) with their working batch kept full from
the run's later batches (attacks/refill.py) against a batch at a time: on a card where a step of a few hundred small
images costs its kernel launches, the calls are the time; on this CPU, arithmetic is. The same small CNN as
benchmarks/autoattack_calls.py (trained here on 6,000 CIFAR-10 training images, seeded), so that a share of the test
images stays robust at a small budget. Both runs follow CUDA's schedule (host_sync.policy("deferred"): syncs every
few steps, and the grouping that the CPU's own schedule leaves off, its full batches being slower per image here).

    python benchmarks/refill_calls.py --data ../shared/data/cifar10.npz --n 1000 --batch 200 \
        --out bench-out/refill-calls.jsonl

Rows are appended to --out (JSON lines) as each finishes."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import harden
from harden.attacks import ATTACKS
from harden.host_sync import policy
from harden.report.compare import verdicts_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from autoattack_calls import common_arguments, counting, prepared  # noqa: E402 - the same model and counter


def main() -> None:
    ap = argparse.ArgumentParser()
    common_arguments(ap, n=1000)
    ap.add_argument("--eps", default="2/255")
    ap.add_argument("--attacks", nargs="+", default=["pgd", "cw", "pgd-l2", "autopgd"])
    args = ap.parse_args()
    net, model, x, y = prepared(args)
    import harden.attacks.autoattack as cascade
    for spec in args.attacks:
        cls = ATTACKS[spec.split(":")[0]]
        verdicts = {}
        for at_once in (cls.batches_at_once, 1):
            # AutoAttack groups its batches on any device (thirty-fourth session); what is compared for it is its APGD
            # stages refilled across them or run a chunk at a time
            aa = cls is cascade.AutoAttack
            saved, cls.batches_at_once = cls.batches_at_once, (cls.batches_at_once if aa else at_once)
            real_deferred = cascade.deferred
            if aa and at_once == 1:
                cascade.deferred = lambda device: False
            try:
                with counting(net) as calls, policy("deferred"):
                    t = time.perf_counter()
                    rep = harden.evaluate(model, (x, y), attacks=[spec], eps=harden.attacks.parse_number(args.eps),
                                          batch_size=args.batch, metrics=False, masking_checks=False, device="cpu")
                    seconds = time.perf_counter() - t
            finally:
                cls.batches_at_once, cascade.deferred = saved, real_deferred
            verdicts[at_once] = verdicts_of(rep)["bits"]
            a = rep.attacks[0]
            row = {"row": "refill", "attack": spec, "refilled": at_once > 1, "batches_at_once": cls.batches_at_once
                   if aa else at_once, "schedule": "deferred (CUDA's)",
                   "n": args.n, "batch": args.batch,
                   "eps": args.eps, "robust_accuracy": a.robust_accuracy, "clean": rep.clean_accuracy,
                   "model_calls": calls[0], "model_images": calls[1], "grad_passes": a.backward_passes,
                   "attack_seconds": round(a.seconds, 2), "report_seconds": round(seconds, 2),
                   "threads": args.threads, "machine": platform.processor() or platform.machine(),
                   "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
            if len(verdicts) == 2:
                row["same_verdicts_as_refilled"] = verdicts[1] == verdicts[cls.batches_at_once]
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
