"""A report stopped part-way (a signal, a crash) and resumed with --resume equals an uninterrupted one, timings aside:
each attack's verdicts are kept batch by batch, and each batch is seeded by its position."""
import signal

import pytest

import harden
from harden import RunState
from harden.errors import Interrupted
from test_resume import same_run, signal_at


@pytest.fixture(scope="module")
def base(digits_model):
    return digits_model


def without_timings(report) -> dict:
    return timings_out(report.to_dict())


def timings_out(d: dict) -> dict:
    """A report's JSON but for how long its attacks and checks took and when it was made."""
    d["attacks"] = [{k: v for k, v in a.items() if k not in ("seconds", "images_per_s", "stage_seconds")}
                    for a in d["attacks"]]
    d["provenance"] = {k: v for k, v in d["provenance"].items() if k != "created"}
    d.pop("check_seconds", None)
    return d


REPORT = dict(n=48, batch_size=16, device="cpu", attacks=["fgsm", "pgd"], curve=[0.05, 0.1],
              masking_n=16, metrics=False)


def test_a_report_resumed_equals_an_uninterrupted_one(base, digits, tmp_path, monkeypatch):
    """Stopped in a curve's re-run, after the attacks: the examples and the stronger-PGD check need adversarial
    inputs of batches taken from the saved progress, which are attacked again (the same inputs)."""
    k, where = 8, "fgsm@0.05"
    from harden.resume import ReportStates
    monkeypatch.setenv("HARDEN_STATE_DIR", str(tmp_path / "states"))
    whole = harden.evaluate(base, digits, **REPORT)
    with monkeypatch.context() as m:
        m.setattr(ReportStates, "due", signal_at(k, real=ReportStates.due))
        with pytest.raises(Interrupted) as stop:
            harden.evaluate(base, digits, state=ReportStates(), **REPORT)
    assert f"the report's {where} at images" in str(stop.value) and stop.value.exit_code == 143
    resumed = harden.evaluate(base, digits, state=ReportStates(resume=True), **REPORT)
    assert without_timings(resumed) == without_timings(whole)


def test_autoattack_over_several_batches_resumes_at_a_run_of_them(base, digits, tmp_path, monkeypatch):
    """A cascade's run takes several batches (each stage over all their robust images): stopped after its first run,
    the resumed report takes that run's verdicts and attacks the rest, and equals an uninterrupted one."""
    from harden.report.runner import batches_at_once
    from harden.resume import ReportStates
    monkeypatch.setenv("HARDEN_STATE_DIR", str(tmp_path / "states"))
    kw = dict(n=48, batch_size=2, device="cpu", attacks=["autoattack:steps=3,queries=10,fab_steps=2"], eps=0.1,
              metrics=False, masking_checks=False)
    atk = harden.attacks.build_attack(kw["attacks"][0])
    assert batches_at_once(atk, digits.x_test[:48], 2) == 8  # three runs of 16 images
    whole = harden.evaluate(base, digits, **kw)
    with monkeypatch.context() as m:
        m.setattr(ReportStates, "due", signal_at(1, real=ReportStates.due))
        with pytest.raises(Interrupted) as stop:
            harden.evaluate(base, digits, state=ReportStates(), **kw)
    assert "the report's autoattack at images 16-32 of 48" in str(stop.value)  # the third run is left to do
    resumed = harden.evaluate(base, digits, state=ReportStates(resume=True), **kw)
    assert without_timings(resumed) == without_timings(whole)


def test_a_report_stopped_in_its_checks_resumes_there(base, digits, tmp_path, monkeypatch):
    """Stopped in the masking checks: the report's attacks, seed 004's metrics and the check attacks that ran are
    taken from the saved progress; only the rest of the checks attack again."""
    from harden.report import checks, runner
    from harden.resume import ReportStates
    monkeypatch.setenv("HARDEN_STATE_DIR", str(tmp_path / "states"))
    kw = dict(n=48, batch_size=16, device="cpu", attacks=["fgsm", "pgd"], masking_n=16, metrics=True)
    ran = []
    build = checks.build_attack

    def counted(spec):
        atk = build(spec)
        real = atk.run
        atk.run = lambda *a, **k: (ran.append(atk.name), real(*a, **k))[1]
        return atk
    monkeypatch.setattr(checks, "build_attack", counted)
    whole = harden.evaluate(base, digits, **kw)
    assert ran == ["pgd", "pgd", "square"]  # the large budget, the stronger PGD, Square: one batch each
    with monkeypatch.context() as m:  # the eighth chance to save: in the stronger PGD (the second check)
        m.setattr(ReportStates, "due", signal_at(8, real=ReportStates.due))
        with pytest.raises(Interrupted) as stop:
            harden.evaluate(base, digits, state=ReportStates(), **kw)
    assert "the masking check pgd at images" in str(stop.value)
    ran.clear()
    monkeypatch.setattr(runner, "seed004_metrics", lambda *a: pytest.fail("the metrics were computed again"))
    resumed = harden.evaluate(base, digits, state=ReportStates(resume=True), **kw)
    assert ran == ["square"]
    assert without_timings(resumed) == without_timings(whole)


def test_eval_resume_from_the_command_line(digits_ckpt, tmp_path, cli, monkeypatch):
    from harden.resume import ReportStates, reports_folder
    monkeypatch.setenv("HARDEN_STATE_DIR", str(tmp_path / "states"))
    args = ["eval", digits_ckpt, "--attack", "fgsm", "--attack", "pgd", "--n", 48, "--batch-size", 16, "--no-metrics",
            "--no-masking-checks"]
    with monkeypatch.context() as m:
        m.setattr(ReportStates, "due", signal_at(4, signal.SIGINT, real=ReportStates.due))
        code, _, err = cli(*args, "--json", tmp_path / "a.json")
    assert code == 130 and "--resume" in err and not (tmp_path / "a.json").exists()
    assert len(list(reports_folder().glob("report-*.resume"))) >= 1
    other = [a if a != 16 else 24 for a in args]  # another batch size is another report: named, not silent
    code, _, err = cli(*other, "--json", tmp_path / "c.json", "--resume")
    assert code == 0 and "batch_size: saved 16, now 24" in " ".join(err.split()), err
    code, _, err = cli(*args, "--json", tmp_path / "a.json", "--resume")
    assert code == 0, err
    code, _, err = cli(*args, "--json", tmp_path / "b.json")
    assert code == 0, err
    import json

    def read(name):
        return timings_out(json.loads((tmp_path / name).read_text()))
    assert read("a.json") == read("b.json")
    assert not list(reports_folder().glob("report-*.resume"))  # removed once the outputs are written


def test_fix_stopped_in_its_report_resumes_there(base, digits, tmp_path, monkeypatch):
    from harden.resume import ReportStates
    monkeypatch.setenv("HARDEN_STATE_DIR", str(tmp_path / "states"))
    kw = dict(recipe="at", sets=["eps=0.1"], epochs=1, data_frac=0.2, report_n=32, attacks=["fgsm", "pgd"],
              metrics=False, masking_checks=False, device="cpu")
    whole = harden.fix(base, digits, **kw)
    with monkeypatch.context() as m:
        m.setattr(ReportStates, "due", signal_at(5, real=ReportStates.due))  # one batch an attack: the third report
        with pytest.raises(Interrupted) as stop:
            harden.fix(base, digits, state=RunState(tmp_path / "run.resume"), **kw)
    assert "the report's" in str(stop.value)
    from harden import training
    monkeypatch.setattr(training, "make_optimizer", lambda *a: pytest.fail("trained again"))
    state = RunState(tmp_path / "run.resume", resume=True)
    resumed = harden.fix(base, digits, state=state, **kw)
    same_run(whole, resumed)
    assert {k: without_timings(r) for k, r in resumed.reports.items()} == \
        {k: without_timings(r) for k, r in whole.reports.items()}
    state.finish()
    assert not (tmp_path / "run.resume").exists() and not list((tmp_path / "states").iterdir())


def test_progress_left_unfinished_for_weeks_is_removed(tmp_path, monkeypatch):
    import os
    import time

    from harden.resume import STALE_DAYS, ReportStates
    monkeypatch.setenv("HARDEN_STATE_DIR", str(tmp_path))
    old, recent = tmp_path / "report-0123.resume", tmp_path / "report-4567.resume.rank1"
    for p in (old, recent):
        p.write_bytes(b"")
    long_ago = time.time() - (STALE_DAYS + 1) * 86400
    os.utime(old, (long_ago, long_ago))
    ReportStates().open({"any": "report"})
    assert not old.exists() and recent.exists()


def test_a_state_folder_that_cannot_be_written_leaves_the_report_alone(base, digits, tmp_path, monkeypatch):
    """A read-only home in a CI container: one warning, and the report is the one it would have been."""
    from harden.resume import ReportStates
    from harden.runtime import console
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("HARDEN_STATE_DIR", str(blocked / "states"))
    kw = dict(n=32, attacks=["fgsm"], metrics=False, masking_checks=False, device="cpu")
    with console.capture() as said:
        report = harden.evaluate(base, digits, state=ReportStates(every_minutes=1e-9), **kw)  # a save every batch
    assert "could not save the report's progress" in " ".join(said.get().split())
    assert without_timings(report) == without_timings(harden.evaluate(base, digits, **kw))


def test_weights_digest_takes_every_dtype_and_sees_one_changed_value():
    """The report's progress is named by the model's digest: a bfloat16 model (numpy has no bfloat16) is hashed too."""
    import torch

    from harden.resume import state_digest
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).to(torch.bfloat16)
    before = state_digest(net)
    with torch.no_grad():
        net[0].weight[0, 0] += 1
    assert state_digest(net) != before and len(before) == 64


def calibration(states, cost_per_image: float, attacked: list):
    """A stand-in for the report on k images: batches of 8 kept in `states`, each taking cost x 8 seconds unless
    taken from saved progress (a resumed batch costs nothing)."""
    import time

    def calibrate(k):
        kept = states.open({"images": k})
        for s in range(0, k, 8):
            if kept.piece(f"batch {s}") is None:
                attacked.append(s)
                time.sleep(cost_per_image * 8)
                kept.keep(f"batch {s}", {"seconds": cost_per_image * 8}, f"images {s}")
    return calibrate


def test_a_time_budget_resumed_takes_the_plan_it_was_stopped_with(tmp_path, monkeypatch):
    """--time-budget --resume: a calibration from saved progress is nearly free, so timing it again would plan far
    more images than the interrupted run chose (other images: none of its saved verdicts would be taken). The plan is
    kept in the first calibration's progress and taken again; stopped inside the calibration, the saved batches count
    the seconds they took."""
    import time

    from harden.report.budget import keep_plan, plan
    from harden.resume import ReportStates
    attacked = []

    def planned(folder, resume, keep=True):
        monkeypatch.setenv("HARDEN_STATE_DIR", str(tmp_path / folder))
        states = ReportStates(resume=resume, every_minutes=1e-9)  # every batch saved: a run stopped late
        memory = states.memory()
        p = plan(2.0, 10_000, calibration(states, 0.02, attacked), time.perf_counter(), memory)
        if keep:
            keep_plan(memory, p)
        return p, states
    first, _ = planned("a", False)
    assert 20 <= first.n <= 90 and not first.resumed  # (2 s - 0.48 s) x 0.9 / 0.02 s = 68 on an idle machine
    attacked.clear()
    resumed, _ = planned("a", True)
    assert resumed.resumed and resumed.n == first.n and not attacked
    # stopped before the plan was kept: the calibration is resumed, timed with the seconds its batches took
    unsaved, _ = planned("b", False, keep=False)
    attacked.clear()
    replanned, states = planned("b", True)
    assert not replanned.resumed and states.taken_seconds >= 0.4 and not attacked  # the same calibration, resumed
    assert replanned.seconds_per_image == pytest.approx(unsaved.seconds_per_image, rel=0.3)


def test_eval_time_budget_resume_from_the_command_line(digits_ckpt, tmp_path, cli, monkeypatch):
    import json

    from harden.report import release
    from harden.resume import ReportStates
    monkeypatch.setenv("HARDEN_STATE_DIR", str(tmp_path / "states"))
    args = ["eval", digits_ckpt, "--attack", "fgsm", "--attack", "pgd:steps=10", "--eps", "0.1", "--batch-size", 16,
            "--no-metrics", "--no-masking-checks", "--time-budget", "8s", "--json", tmp_path / "r.json"]
    plans, keep_plan, due = [], release.keep_plan, ReportStates.due
    stop = signal_at(2, signal.SIGINT, real=due)
    with monkeypatch.context() as m:  # SIGINT at the second chance to save after the plan is kept
        m.setattr(release, "keep_plan", lambda memory, p: (plans.append(p.n), keep_plan(memory, p)))
        m.setattr(ReportStates, "due", lambda self: stop(self) if plans else due(self))
        code, _, err = cli(*args)
    assert code == 130 and len(plans) == 1, err
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["n"] == plans[0] and any("the interrupted run's plan" in note for note in rep["notes"])
