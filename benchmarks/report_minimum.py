"""What `fix --time-budget` reserves for its reports, against what they take: fix times the base's white-box report on
REPORT_PROBE images before training and plans its three reports (base white-box, hardened white-box, transfer from the
base) on the report's minimum of MIN_USEFUL_IMAGES images at REPORTS_PER_FIX times that probe's cost per image
(harden/fix_budget.py). This runs the same four reports on a base and a hardened model and prints the ratio that
constant stands for. Each pair runs in a fresh process, so the probe is cold as fix's is (it is the run's first
report). One JSON row a pair appended to --out.

    python benchmarks/report_minimum.py --out bench-out/report_minimum.jsonl \\
        --pair BASE FIXED DATA EPS [--base-flag key=value ...]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path


def _load_flags(items: list[str]) -> dict:
    flags = {}
    for item in items or []:
        key, value = item.split("=", 1)
        flags[key] = [float(v) for v in value.split(",")] if key in ("mean", "std") else value
    return flags


def measure(base: str, fixed: str, data: str, eps: str, base_flags: dict, n: int, attacks: str) -> dict:
    import torch

    import harden
    from harden.fix_budget import REPORT_PROBE, REPORTS_PER_FIX
    from harden.report.budget import MIN_USEFUL_IMAGES
    from harden.runtime import set_quiet
    set_quiet(True)
    n = n or MIN_USEFUL_IMAGES
    base_model = harden.load(base, **base_flags)
    fixed_model = harden.load(fixed)
    ds = harden.data_for(base_model, data)
    num, _, den = eps.partition("/")
    kw = dict(device="cpu", seed=0, eps=float(num) / float(den or 1), attacks=attacks.split(",") if attacks else None)
    seconds = {}
    for name, model, extra, k in (("probe", base_model, {}, REPORT_PROBE), ("base", base_model, {}, n),
                                  ("hardened", fixed_model, {}, n),
                                  ("transfer", fixed_model, dict(craft_on=base_model, metrics=False), n)):
        t = time.perf_counter()
        report = harden.evaluate(model, ds, n=k, **kw, **extra)
        seconds[name] = round(time.perf_counter() - t, 2)
        if name == "hardened":
            robust = {a.name: round(a.robust_accuracy, 3) for a in report.attacks}
    planned = seconds["probe"] * n / REPORT_PROBE
    three = seconds["base"] + seconds["hardened"] + seconds["transfer"]
    return {"date": str(date.today()), "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, {torch.get_num_threads()} threads", "base": base, "fixed": fixed, "data": data,
            "eps": eps, "attacks": attacks or "default", "n": n, "probe_images": REPORT_PROBE, "seconds": seconds,
            "three_reports_s": round(three, 2),
            "ratio": round(three / planned, 2), "reports_per_fix": REPORTS_PER_FIX, "hardened_robust": robust}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", nargs=4, action="append", metavar=("BASE", "FIXED", "DATA", "EPS"), required=True)
    ap.add_argument("--base-flag", action="append", default=[], help="key=value for the base's harden.load (one "
                    "list for every pair; give pairs that need other flags in another call)")
    ap.add_argument("--n", type=int, default=0, help="report images (default: the report's minimum)")
    ap.add_argument("--attacks", default="", help="comma-separated (default: the default set for the input size)")
    ap.add_argument("--out", default="bench-out/report_minimum.jsonl")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a pair in this process
    args = ap.parse_args()
    if args.one:
        base, fixed, data, eps = args.pair[0]
        print(json.dumps(measure(base, fixed, data, eps, _load_flags(args.base_flag), args.n, args.attacks)))
        return
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for pair in args.pair:
        cmd = [sys.executable, __file__, "--one", "--pair", *pair, "--n", str(args.n), "--attacks", args.attacks,
               "--out", args.out, *[f"--base-flag={f}" for f in args.base_flag]]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        with open(args.out, "a") as f:
            f.write(out + "\n")
        print(out, flush=True)


if __name__ == "__main__":
    main()
