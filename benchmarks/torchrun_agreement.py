"""What training's per-step agreement under torchrun costs (RunState.due: one all-reduce of two integers a step, on
the host; under NCCL through a gloo group of its own). Rows for BENCHMARKS.md "Resumable runs".

    torchrun --nproc-per-node 2 benchmarks/torchrun_agreement.py [--calls 2000]"""
import argparse
import time

from harden import distributed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    distributed.setup("auto")
    for _ in range(50):  # the group's first calls connect
        distributed.all_max([0, 0])
    t = time.perf_counter()
    for _ in range(args.calls):
        distributed.all_max([0, 0])
    per_call = (time.perf_counter() - t) / args.calls
    if distributed.is_main():
        print(f"all_max over {distributed.world()} processes: {per_call * 1e6:.0f} us a call ({args.calls} calls)")
    distributed.teardown()


if __name__ == "__main__":
    main()
