"""--time-budget and the masking checks' Square: its step (nothing below the images that could trip the check, 500
queries on each of at most 32 above) is planned on its own, from the survivors the calibration saw, and its seconds
are kept out of the per-image rate the calibration measures."""
import pytest
import torch

from harden.report import budget
from harden.report.checks import BLACK_BOX_CHECK, BLACK_BOX_QUERIES
from harden.report.model import AttackResult, Report

FORWARD_S = 0.01  # the fake reports' attacks: 10 gradient steps an image at 2 forwards each, 0.01 s a forward


def fake_report(n: int, survivors: int, square_s: float = 0.0, checks: bool = True, autoattack: bool = False,
                survivors_where: str = "first") -> Report:
    robust = torch.zeros(n, dtype=torch.bool)
    if survivors_where == "first":
        robust[:survivors] = True
    else:
        robust[n - survivors:] = True
    steps = 10 * n
    attack = AttackResult(name="autoattack" if autoattack else "pgd", preset="p", norm="inf", minimal=False,
                          budget=8 / 255, robust_accuracy=survivors / n, success_rate=0.0, median_norm=None,
                          seconds=FORWARD_S * budget.FORWARDS_PER_GRADIENT * steps, images_per_s=1.0,
                          backward_passes=steps, forward_passes=0,
                          stages={"apgd-ce": 0.5, "square": 0.5} if autoattack else {})
    deepfool = AttackResult(name="deepfool", preset="p", norm="2", minimal=True, budget=0.5, robust_accuracy=1.0,
                            success_rate=0.0, median_norm=None, seconds=0.0, images_per_s=1.0, backward_passes=0,
                            forward_passes=0)
    masking = [{"check": BLACK_BOX_CHECK, "tripped": False, "detail": "", "kind": "masking"}] if checks else []
    return Report(model="m", threat_model="white-box", crafted_on="m", n=n, data="d", device="cpu", seed=0,
                  clean_accuracy=1.0, attacks=[attack, deepfool], masking=masking,
                  check_seconds={f"square ({BLACK_BOX_QUERIES} queries) at eps 8/255": square_s} if square_s else {},
                  robust_images={attack.name: robust, "deepfool": torch.ones(n, dtype=torch.bool)},
                  correct_images=torch.ones(n, dtype=torch.bool))


PER_SURVIVOR = BLACK_BOX_QUERIES * FORWARD_S  # 5 s: Square's 500 queries on one image


def test_square_step_counts_what_the_calibration_saw_and_what_it_did_not():
    # 16 images, all of them seen: Square runs only above the check's threshold (4 * 16 / 20 = 3.2 images)
    assert budget.square_step([fake_report(16, 3)], 16) == 0.0
    assert budget.square_step([fake_report(16, 4)], 16) == pytest.approx(4 * PER_SURVIVOR)
    # which of the images survived does not matter, nor the L2 attack that left every image robust
    assert budget.square_step([fake_report(16, 4, survivors_where="last")], 16) == pytest.approx(4 * PER_SURVIVOR)
    # the images not seen: none of 16 survived, yet 100 more may hold a few (a small charge, not none)
    unseen = budget.square_step([fake_report(16, 0)], 116)
    assert 0.0 < unseen < 4 * PER_SURVIVOR
    # a quarter survived: at 200 checked images about 50 would, and Square attacks a sample of 32 of them
    many = budget.square_step([fake_report(16, 4)], 1000)
    assert 28 * PER_SURVIVOR < many <= 32 * PER_SURVIVOR
    assert budget.square_step([fake_report(16, 4)], 1000) == budget.square_step([fake_report(16, 4)], 200)
    # more images, more (or as many) survivors to pay for
    steps = [budget.square_step([fake_report(16, 1)], k) for k in (16, 20, 40, 80, 160)]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    # nothing where the checks are off, or an AutoAttack row ran Square among the attacks (timed as attacks)
    assert budget.square_step([fake_report(16, 4, checks=False)], 200) == 0.0
    assert budget.square_step([fake_report(16, 4, autoattack=True)], 200) == 0.0
    # fix's three reports: each white-box one pays its own
    assert budget.square_step([fake_report(16, 4), fake_report(16, 4)], 16) == pytest.approx(8 * PER_SURVIVOR)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def square_run_costing(clock: Clock, robust_share: float, per_image: float, calls: list):
    """A report whose attacks cost per_image an image and leave robust_share of the images robust, its Square check
    paid as checks.black_box pays it (nothing below the threshold, 5 s an image of at most 32 above)."""
    from harden.report.checks import black_box_vs_gradient

    def run(k: int) -> Report:
        calls.append(k)
        s = round(robust_share * k)
        m = min(k, 200)
        square = min(s, 32) * PER_SURVIVOR if s and black_box_vs_gradient(s / m, 0.0, m, "")["tripped"] else 0.0
        clock.now += per_image * k + square
        return fake_report(k, s, square_s=square)
    return run


def test_a_budget_plans_square_s_step_and_keeps_it_out_of_the_rate(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(budget.time, "perf_counter", clock)
    calls: list = []
    # a quarter robust: 2 of 8 (below the threshold: no Square), 4 of 16 (above: 20 s of Square)
    p = budget.plan(600.0, 10_000, square_run_costing(clock, 0.25, 0.5, calls), clock.now)
    assert calls == [8, 16]
    assert p.seconds_per_image == pytest.approx(0.5)  # Square's 20 s are not charged to the 8 images between
    assert p.fixed_s == pytest.approx(0.0, abs=1e-6)
    assert p.square_s > 28 * PER_SURVIVOR and p.summary()["square_check_s"] == round(p.square_s, 1)
    # the planned report, run as costed, fits the budget (Square's step near its expectation, 32 images of 178)
    square_run_costing(clock, 0.25, 0.5, [])(p.n)
    assert clock.now - p.started <= 600.0
    assert clock.now - p.started == pytest.approx(p.estimate_s, rel=0.02)
    # the same calibration times on a model that leaves nothing robust plan more images, and those images, on the
    # quarter-robust model, would run past the budget: the plan's step is what keeps it in
    no_square = budget.plan(600.0, 10_000, square_run_costing(clock, 0.0, 0.5, []), clock.now)
    assert no_square.square_s < PER_SURVIVOR and p.n < no_square.n  # none of 32 robust: a small charge
    start = clock.now
    square_run_costing(clock, 0.25, 0.5, [])(no_square.n)
    assert (clock.now - start) + p.calibration_s > 600.0
    # a budget that fits 20 images' attacks but not Square's step on them is refused, with the step in its figure
    with pytest.raises(budget.HardenError, match="About (\\d+) s would fit") as e:
        budget.plan(60.0, 10_000, square_run_costing(clock, 0.25, 0.5, []), clock.now)
    need = int(str(e.value).split("About ")[1].split(" s")[0])
    assert need > 20 * 0.5 + 5 * PER_SURVIVOR


def test_fix_s_reports_hand_their_square_step_to_the_plan(monkeypatch):
    """fix --time-budget sizes its three reports with the same plan: its calibration's reports reach it (they did not:
    the timing threw them away, and a hardened 224-px model's Square ran 24 s past a planned 0)."""
    from harden import fix_budget
    clock = Clock()
    monkeypatch.setattr(budget.time, "perf_counter", clock)
    white_box = square_run_costing(clock, 0.25, 0.5, [])

    def run_reports(k: int) -> dict:
        return {"base_white_box": white_box(k), "fixed_white_box": white_box(k),
                "fixed_transfer": fake_report(k, 0, checks=False)}
    n, summary = fix_budget._report_images(1200.0, clock.now, 10_000, run_reports, None)
    assert summary["square_check_s"] > 2 * 28 * PER_SURVIVOR  # both white-box reports' steps
    assert summary["seconds_per_image"] == pytest.approx(1.0)  # their Square seconds kept out of the rate


def test_the_attacks_rate_is_their_average_not_two_samples_difference(monkeypatch):
    """Two calibration samples a few images apart: where the smaller one's images happened to cost the attacks more
    (more of them robust), the difference of their totals undercut the attacks' cost per image (0.89 s planned where
    77 ResNet-18 images took 1.7): the attacks' seconds, which have no fixed part, are now averaged over the larger
    sample, and only the rest of the report is fitted with a fixed part."""
    clock = Clock()
    monkeypatch.setattr(budget.time, "perf_counter", clock)

    def run(k: int) -> Report:
        attacks = (1.5 if k == 8 else 1.0) * k  # the 8 images were harder
        clock.now += attacks + 2.0 + 0.1 * k  # 2 s fixed, 0.1 s an image besides the attacks
        r = fake_report(k, 0, checks=False)
        r.attacks[0].seconds, r.attacks[1].seconds = attacks, 0.0
        return r
    calls: list = []
    p = budget.plan(400.0, 10_000, lambda k: calls.append(k) or run(k), clock.now)
    assert calls == [8, 16]  # 19.6 s, over 4% of the budget
    assert p.seconds_per_image == pytest.approx(1.1) and p.fixed_s == pytest.approx(2.0)
    # a calibration that returns no report is fitted on its totals, as before: (19.6 - 14.8) / 8 s an image
    p = budget.plan(400.0, 10_000, lambda k: run(k) and None, clock.now)
    assert p.seconds_per_image == pytest.approx(0.6)
