"""Does the regression gate behave? On MNIST (500 test images, white-box PGD at eps 0.1 with a random start, so the
seed matters): a base cnn-small, hardened with `at` for 3 epochs (the shipped model) and for 1 or 2 epochs (weaker
releases). Each model is evaluated with two seeds; the rows give each gate's verdict and the paired comparison.

    python benchmarks/gate_regression.py --data ../shared/data/mnist.npz --out bench-out/gate_regression.jsonl
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagenet_scale import write  # noqa: E402


def harden_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harden", *map(str, args)], capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/mnist.npz")
    ap.add_argument("--out", default="bench-out/gate_regression.jsonl")
    ap.add_argument("--dir", default="bench-out/gate")
    ap.add_argument("--only", default="", help="comma-separated models whose gate rows to (re)run; default all")
    args = ap.parse_args()
    d, out = Path(args.dir), Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    base = d / "base.safetensors"
    if not base.exists():
        r = harden_cli("train", "--data", args.data, "--arch", "cnn-small", "--epochs", 2, "--data-frac", 0.2,
                       "-o", base, "-q")
        assert r.returncode == 0, r.stderr
    models = {}
    for name, epochs in (("shipped", 3), ("weaker", 1), ("slightly-weaker", 2)):
        path = d / f"{name}.safetensors"
        if not path.exists():
            r = harden_cli("fix", base, "--data", args.data, "--data-frac", 0.05, "--epochs", epochs, "--set", "eps=0.1",
                           "--no-report", "-q", "-o", path)
            assert r.returncode == 0, r.stderr
        models[name] = path
    common = ["--data", args.data, "--num-images", 500, "--attack", "pgd:restarts=1", "--eps", 0.1, "--no-metrics",
              "--no-masking-checks", "-q"]
    reports = {}
    for name, path in models.items():
        for seed in (0, 1):
            js = d / f"{name}-seed{seed}.json"
            if not js.exists():
                r = harden_cli("eval", path, *common, "--seed", seed, "--json", js)
                assert r.returncode in (0, 1), r.stderr
            reports[(name, seed)] = js
    shipped = reports[("shipped", 0)]
    base_pgd = json.loads(shipped.read_text())["values"]["pgd"]
    gates = ["pgd>=baseline-0.02", "pgd>=baseline", "pgd.upper>=baseline"]
    for name, seed in reports:
        if (name, seed) == ("shipped", 0) or (args.only and name not in args.only.split(",")):
            continue
        model = models[name]
        row = {"row": "gate", "model": name, "seed": seed, "baseline": "shipped seed 0", "baseline_pgd": base_pgd}
        for g in gates:
            r = harden_cli("eval", model, *common, "--seed", seed, "--baseline", shipped, "--require", g,
                           "--json", d / "tmp.json", "--force")
            rep = json.loads((d / "tmp.json").read_text())
            row[g] = "pass" if r.returncode == 0 else ("FAIL" if r.returncode == 1 else f"error {r.returncode}")
            row["pgd"] = rep["values"]["pgd"]
            row["pgd_ci"] = [round(rep["values"]["pgd.lower"], 4), round(rep["values"]["pgd.upper"], 4)]
            c = rep["baseline"]["comparison"]["pgd"]
            row["difference"], row["p"] = round(c["difference"], 4), round(c["p"], 5)
        write(out, row)


if __name__ == "__main__":
    main()
