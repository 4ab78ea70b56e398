"""The report side: measuring a model's robustness, judging it, and saying so. Each module is one concept and the
imports inside the package point one way, from the layer above to the layers below (tests/test_layout.py checks it):

    4  render (terminal, Markdown, JSON, JUnit)   release (time budget + baseline + gate: `harden eval`'s work)
    3  runner (`harden.evaluate`: runs the attacks)   html_page (the HTML page and figures)
       preflight (the chance, normalisation and input-size checks on a sample, before a long run)
    2  model (Report, AttackResult)   curves (robustness curves)   metrics (seed 004's ART metrics)
       normalisation (an assumed mean/std that a common one beats)   input_size (an assumed input size that one beats)
       budget (--time-budget; it plans the Square check's step)
    1  compare (paired tests, verdicts)   checks (gradient-masking checks)
       by_class (robust accuracy by class)   ci_output (GitHub's summary page and annotations)
    0  stats (intervals)   examples (adversarial examples)   gate (requirements)   compare_render
       craft_size (a crafting model of another input size)   provenance (versions, machine, weights' sha256)
       trained_budget (a hardened model measured at a budget it was not trained for)
"""
from .model import AttackResult, Report
from .release import release_report
from .runner import evaluate

__all__ = ["AttackResult", "Report", "evaluate", "release_report"]
