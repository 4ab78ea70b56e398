"""harden: make a saved image classifier harder to fool with adversarial examples, and prove it.

Library API: `harden.load(path)`, `harden.save(model, path, meta)`, `harden.evaluate(model, data, ...)`,
`harden.train(arch, data, cfg)`, `harden.fix(base, data, recipe=...)` (`state=harden.RunState(path, resume=...)` to
resume an interrupted run), `harden.gate(report_json, ["pgd.lower>=0.45"])` (a saved report gated again),
`harden.load_data(spec)`, `harden.create_model(...)`.
"""
__version__ = "0.1.0"

from .api import data_for, load, load_data, save, subsample, train  # noqa: E402
from .errors import HardenError  # noqa: E402
from .report.model import Report  # noqa: E402
from .report.runner import evaluate
from .report.release import gate  # noqa: E402
from .fix import FixResult, fix  # noqa: E402
from .models import Classifier, create_model  # noqa: E402
from .training import TrainConfig  # noqa: E402
from .resume import RunState  # noqa: E402

__all__ = ["Classifier", "FixResult", "HardenError", "Report", "RunState", "TrainConfig", "create_model", "data_for",
           "evaluate", "fix", "gate", "load", "load_data", "save", "subsample", "train", "__version__"]
