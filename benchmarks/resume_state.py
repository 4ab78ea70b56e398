"""What keeping a resumable training state costs: real `fix` runs (recipe at, its defaults: Adam, a validation slice
whose best epoch's weights are kept) on a few random images at each network's size, with every save of the run's
state timed (two epoch ends and the end of training), the file's size, the time to read it back, and the time of one
training step for scale. Rows for BENCHMARKS.md "Resumable runs".

    python benchmarks/resume_state.py [--models resnet20,resnet50,vit_small_patch16_224]"""
import argparse
import pathlib
import tempfile
import time

import numpy as np
import harden
from harden.data import ImageData
from harden.resume import RunState, read
from harden.runtime import set_quiet

ARCHS = pathlib.Path(__file__).with_name("archs.py")


class TimedState(RunState):
    """Times each save (two epoch ends, then the end of training), its file's size and the time to read it."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.seconds: list[float] = []
        self.sizes: list[int] = []
        self.reads: list[float] = []

    def save(self, call, state):
        t = time.perf_counter()
        super().save(call, state)
        self.seconds.append(time.perf_counter() - t)
        self.sizes.append(self.path.stat().st_size)
        t = time.perf_counter()
        read(self.path)
        self.reads.append(time.perf_counter() - t)


def model_for(name: str):
    if name == "resnet20":  # the CIFAR-10 ResNet-20 as written from its description
        return harden.create_model(f"{ARCHS}:resnet20", 10, 3, (32, 32), [0.5] * 3, [0.25] * 3)
    return harden.create_model(name, 10, 3, (224, 224), [0.5] * 3, [0.25] * 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet20,resnet50,vit_small_patch16_224")
    ap.add_argument("--images", type=int, default=20)
    args = ap.parse_args()
    set_quiet(True)
    tmp = pathlib.Path(tempfile.mkdtemp())
    print("| network | parameters | state file | save at an epoch's end | read back | training step (batch 8, PGD-5) |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model = model_for(name)
        h, w = model.spec.input_size
        rng = np.random.default_rng(0)
        x = rng.integers(0, 255, (args.images, h, w, 3), dtype=np.uint8)
        y = np.arange(args.images) % 10
        data = ImageData(x, y, x[:4], y[:4], "random", 10)
        state = TimedState(tmp / f"{name}.resume", every_minutes=0)
        result = harden.fix(model, data, recipe="at", epochs=2, batch_size=8, data_frac=1.0, report=False,
                            device="cpu", state=state)
        saves = state.seconds
        steps = 2 * -(-(args.images - round(args.images * 0.1)) // 8)
        step_s = (result.train_seconds - sum(saves) - sum(state.reads)) / steps  # validation's PGD included
        params = sum(p.numel() for p in model.parameters()) / 1e6
        size = max(state.sizes[:-1]) / 2**20  # an epoch end's (the last save holds the final weights only)
        print(f"| {name} | {params:.1f} M ({params * 4:.0f} MB fp32) | {size:.0f} MB | "
              f"{np.mean(saves[:-1]):.2f} s | {np.mean(state.reads[:-1]):.2f} s | {step_s:.2f} s |", flush=True)
        state.finish()


if __name__ == "__main__":
    main()
