"""The CLI end to end: outputs parse, gate exit codes, transfer threat model, and bad input (exit 2,
one clear paragraph, no traceback, inputs untouched, no partial output)."""
import hashlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

import harden

FAST = ["--n", "100", "--no-metrics", "--attack", "fgsm", "--attack", "pgd:steps=10"]


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_eval_writes_json_markdown_junit(cli, digits_ckpt, tmp_path):
    j, m, x = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.xml"
    code, out, err = cli("eval", digits_ckpt, "--n", "100", "--json", j, "--markdown", m, "--junit", x,
                         "--require", "clean>=0.5", "-q")
    assert code == 0, err
    rep = json.loads(j.read_text())
    assert rep["threat_model"] == "white-box"
    assert [a["name"] for a in rep["attacks"]] == ["fgsm", "pgd", "autopgd", "cw", "deepfool", "jsma"]
    assert {"empirical_robustness", "loss_sensitivity"} <= set(rep["metrics"])
    assert "white-box" in m.read_text() and m.read_text().count("\n|") >= 7
    # by class: every class of the sample, its counts and accuracies adding up to the report's own
    rows = rep["per_class"]
    assert [r["index"] for r in rows] == list(range(10)) and sum(r["n"] for r in rows) == rep["n"] == 100
    assert abs(sum(r["n"] * r["clean"] for r in rows) / 100 - rep["clean_accuracy"]) < 1e-6
    assert abs(sum(r["n"] * r["worst"] for r in rows) / 100 - rep["worst_case"]) < 1e-6
    assert all(set(r["attacks"]) == {a["name"] for a in rep["attacks"]} for r in rows)
    suite = ET.parse(x).getroot().find("testsuite")
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) == 1
    assert "white-box" in out


def test_gate_exit_codes(cli, digits_ckpt, tmp_path):
    code, out, _ = cli("eval", digits_ckpt, *FAST, "--require", "clean>=0.5", "--require", "pgd>=0")
    assert code == 0
    x = tmp_path / "r.xml"
    code, out, _ = cli("eval", digits_ckpt, *FAST, "--require", "clean>=0.5", "--require", "pgd>=0.999",
                       "--junit", x)
    assert code == 1 and "FAIL" in out
    suite = ET.parse(x).getroot().find("testsuite")
    assert suite.get("failures") == "1" and len(suite.findall("testcase")) == 2
    code, _, err = cli("eval", digits_ckpt, *FAST, "--require", "pgd=>0.5")
    assert code == 2 and "METRIC>=VALUE" in err
    code, _, err = cli("eval", digits_ckpt, *FAST, "--require", "jsmaa>=0.1")
    said = " ".join(err.split())
    assert code == 2 and "unknown metric 'jsmaa'" in said
    # the names by family, not seventy of them: each accuracy once, its bounds and change as patterns
    assert "reports clean, fgsm, pgd, worst, worst.linf (each also as NAME.lower and NAME.upper" in said
    assert "fgsm.lower" not in said and "pgd.change.upper" not in said
    # an attack the run does not make: said as that, with the option that makes it, before any attack
    code, _, err = cli("eval", digits_ckpt, *FAST, "--require", "jsma.lower>=0.1")
    said = " ".join(err.split())
    assert code == 2 and "gates jsma, an attack this run does not make (it makes fgsm, pgd)" in said
    assert "add --attack jsma to the run's --attack options" in said
    # names that exist, but not in this run: refused before the attacks, with why (not "actual missing" after them)
    code, _, err = cli("eval", digits_ckpt, *FAST, "--require", "pgd.on_source_correct>=0.1")
    assert code == 2 and "only under transfer" in err and "--craft-on" in err
    code, _, err = cli("eval", digits_ckpt, *FAST, "--no-metrics", "--require", "empirical_robustness>=0.01")
    assert code == 2 and "--no-metrics" in err


def test_gate_file(cli, digits_ckpt, tmp_path):
    g = tmp_path / "gate.toml"
    g.write_text('require = ["clean>=0.5"]\n')
    assert cli("eval", digits_ckpt, *FAST, "--gate", g)[0] == 0
    g.write_text('[require]\nclean = ">=0.999"\n"pgd.success" = "<=1"\n')
    assert cli("eval", digits_ckpt, *FAST, "--gate", g)[0] == 1
    # TOML reads a dotted key as nested tables (pgd.lower = ... is pgd = {lower = ...}): read back as the metric
    g.write_text('[require]\nclean = 0.5\npgd.lower = ">=0.01"\nworst.linf = "<=1"\n')
    code, out, err = cli("eval", digits_ckpt, *FAST, "--gate", g)
    assert code == 0 and "PASS pgd.lower>=0.01" in out and "PASS worst.linf<=1" in out, out + err
    # a misspelt `require`, or a setting the file cannot hold, is refused rather than gating on nothing it says
    for text, key in (('requires = ["clean>=0.5"]\n', "'requires'"), ('require = ["clean>=0.5"]\nconfidence = 0.99\n',
                                                                        "'confidence'")):
        g.write_text(text)
        code, _, err = cli("eval", digits_ckpt, *FAST, "--gate", g)
        assert code == 2 and f"unknown key {key}" in err, err


def test_craft_on_is_a_transfer_report(cli, digits_ckpt, other_ckpt, tmp_path):
    wb, tr = tmp_path / "wb.json", tmp_path / "tr.json"
    assert cli("eval", digits_ckpt, *FAST, "--json", wb)[0] == 0
    md = tmp_path / "tr.md"
    code, out, _ = cli("eval", digits_ckpt, *FAST, "--craft-on", other_ckpt, "--json", tr, "--markdown", md)
    assert code == 0
    a, b = json.loads(wb.read_text()), json.loads(tr.read_text())
    # the clean row's accuracy on the images the source gets right, in every rendering, as the attacks' rows have it
    on_src = f"{100 * b['clean_on_source_correct']:.1f}"
    assert [line for line in out.splitlines() if line.startswith("│ clean")][0].rstrip(" │").endswith(on_src)
    assert [line for line in md.read_text().splitlines() if line.startswith("| clean")][0].endswith(f" {on_src} |")
    assert cli("report", tr, "-o", tmp_path / "tr.html")[0] == 0
    assert "<tr class=''><td>clean</td>" in (html := (tmp_path / "tr.html").read_text())
    assert html.split("<td>clean</td>", 1)[1].split("</tr>", 1)[0].endswith(f"<td>{on_src}</td>")
    assert b["threat_model"] == f"transfer from {other_ckpt.name}" != a["threat_model"]
    assert b["attacks"][1]["robust_accuracy"] != a["attacks"][1]["robust_accuracy"]
    assert b["attacks"][1]["accuracy_on_source_correct"] is not None
    assert b["source_clean_accuracy"] is not None
    # gated again: the transfer report has its accuracy on the source's correct images, the white-box one has none
    code, out, err = cli("gate", tr, "--require", "pgd.on_source_correct>=0", "--require", "clean.on_source_correct>=0")
    assert code == 0, err
    code, _, err = cli("gate", wb, "--require", "pgd.on_source_correct>=0")
    assert code == 2 and "only under transfer" in err and "wb.json is a white-box report" in err


def test_train_inspect_recipes(cli, tmp_path):
    out_path = tmp_path / "m.safetensors"
    code, out, err = cli("train", "--data", "digits", "--arch", "cnn-small", "--epochs", "1", "-o", out_path, "-q")
    assert code == 0, err
    assert out_path.exists()
    code, out, _ = cli("inspect", out_path)
    assert code == 0 and "cnn-small" in out and "stages.0" in out
    code, out, _ = cli("recipes")
    assert code == 0


def test_train_on_data_of_one_split_holds_out_the_share_fix_would(cli, tmp_path):
    """One split (an .npz of x, y; a list without a split column): train holds out the stratified share fix holds
    out (--data-frac drawn from the rest) and records it, so eval of the model on that data reports on it alone."""
    import numpy as np
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "one.npz", x=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y=np.arange(60) % 3)
    out_path = tmp_path / "m.safetensors"
    code, train_out, err = cli("train", "--data", tmp_path / "one.npz", "--epochs", "1", "--data-frac", "0.5", "-o",
                               out_path)
    assert code == 0, err
    assert "24 training images" in " ".join(train_out.split()) and "held out as the test split" in " ".join(err.split())
    held = harden.load(out_path).spec.extra["held_out_test"]
    assert held["n"] == 12 and held["fraction"] == 0.2
    code, out, err = cli("eval", out_path, "--data", tmp_path / "one.npz", "--attack", "fgsm", "--json",
                         tmp_path / "r.json", "-q")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 12
    # train's closing figure: the clean accuracy on those images, as eval measures it
    tested = harden.load(out_path).spec.extra["train"]["test"]
    assert tested["n"] == tested["of"] == 12 and tested["accuracy"] == report["clean_accuracy"]
    assert f"clean accuracy {tested['accuracy']:.1%} on its 12 test images" in " ".join(train_out.split())


# ------------------------------------------------------------------------------------------- bad input

def _bad(cli, *args):
    code, out, err = cli(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err + out
    assert "error" in err
    return err


def test_missing_file(cli, tmp_path):
    assert "does not exist" in _bad(cli, "eval", tmp_path / "nope.safetensors")


def test_directory_as_checkpoint(cli, tmp_path):
    assert "directory" in _bad(cli, "eval", tmp_path)


def test_zero_byte_and_truncated(cli, digits_ckpt, tmp_path):
    z = tmp_path / "z.safetensors"
    z.write_bytes(b"")
    assert "empty" in _bad(cli, "eval", z)
    t = tmp_path / "t.safetensors"
    t.write_bytes(digits_ckpt.read_bytes()[: digits_ckpt.stat().st_size // 2])
    assert "truncated" in _bad(cli, "eval", t)


def test_a_pointer_or_a_page_saved_as_the_checkpoint(cli, tmp_path):
    """A model repository cloned without `git lfs pull` holds pointers; a download can save a sign-in page: each is
    said as what it is, whatever the file is called (it was "not a readable safetensors file", or "neither ...")."""
    pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258"
               "daaa5e2ca24d17e2393\nsize 46827520\n")
    for name in ("model.safetensors", "model.pth"):
        (tmp_path / name).write_text(pointer)
        said = " ".join(_bad(cli, "eval", tmp_path / name).split())
        assert "a Git LFS pointer to a file of 46,827,520 bytes" in said and "git lfs pull" in said, said
    (tmp_path / "page.pt").write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n")
    assert "an HTML page" in " ".join(_bad(cli, "eval", tmp_path / "page.pt").split())
    for name in ("cifar10.npz", "train.csv"):  # the same for a data file
        (tmp_path / name).write_text(pointer)
        said = " ".join(_bad(cli, "data", tmp_path / name).split())
        assert "is a Git LFS pointer" in said and "it holds no images" in said, said


def test_code_carrying_pickle(cli, tmp_path):
    from test_checkpoint import Evil
    p = tmp_path / "evil.pt"
    torch.save({"evil": Evil()}, p)
    before = sha(p)
    assert "holds no state dict" in _bad(cli, "eval", p, "--arch", "cnn-small", "--num-classes", "10")
    assert sha(p) == before


def test_num_classes_mismatch(cli, digits_ckpt):
    assert "do not fit" in _bad(cli, "eval", digits_ckpt, "--num-classes", "5")


def test_unknown_arch(cli, digits_ckpt):
    assert "Unknown architecture" in _bad(cli, "eval", digits_ckpt, "--arch", "notanet")


@pytest.mark.parametrize("frac", ["0", "1.5", "10"])
def test_bad_data_frac(cli, tmp_path, digits_ckpt, frac):
    """A share in (0, 1]; 10 (meant as 10%) is answered with the share it means, by train and fix alike."""
    for command in (["train"], ["fix", digits_ckpt]):
        said = _bad(cli, *command, "--data-frac", frac, "-o", tmp_path / "m.safetensors")
        assert "--data-frac is a share of the training split, in (0, 1]" in said
        assert ("10% is --data-frac 0.1" in said) == (frac == "10"), said
        assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("args", [("eval", "CKPT", "--bogus"), ("fix", "CKPT", "--recipe"),
                                  ("train", "--epochs", "0", "-o", "OUT"), ("eval", "CKPT", "--num-images", "0"),
                                  ("fix", "CKPT", "--seed", "-1", "-o", "OUT"),
                                  ("fix", "CKPT", "--lr", "-1", "--epochs", "1", "--no-report", "-o", "OUT"),
                                  ("fix", "CKPT", "--set", "weight_decay=-1", "--epochs", "1", "--no-report", "-o",
                                   "OUT"),
                                  ("fix", "CKPT", "--set", "eps=-0.1", "--epochs", "1", "--no-report", "-o", "OUT"),
                                  ("fix", "CKPT", "--set", "steps=0", "--set", "attack=pgd", "--epochs", "1",
                                   "--no-report", "-o", "OUT"),
                                  ("eval", "CKPT", "--attack", "deepfool", "--eps-l2", "-1"),
                                  ("eval", "CKPT", "--attack", "pgd:steps=0"),
                                  ("eval", "CKPT", "--attack", "pgd:steps=1.5"),
                                  ("eval", "CKPT", "--attack", "fgsm:eps=2")])
def test_usage_errors_exit_2(cli, digits_ckpt, tmp_path, args):
    """An unknown option, a missing value or an out-of-range number is bad input too: exit 2, no traceback."""
    out_path = tmp_path / "m.safetensors"
    code, out, err = cli(*({"CKPT": digits_ckpt, "OUT": out_path}.get(a, a) for a in args))
    assert code == 2, (code, out, err)
    assert "Traceback" not in err + out and "error" in err.lower() and not out_path.exists()


def test_a_budget_in_0_255_steps_is_answered_with_the_fraction(cli, digits_ckpt, tmp_path):
    """Papers write eps as 8 (of 255): the error says the fraction and how to write it, for --eps and attack options."""
    assert "got 8 (in 0-255 steps that is 8/255 = 0.03137: write --eps 8/255)" in _bad(
        cli, "eval", digits_ckpt, "--eps", "8")
    assert "write eps=4/255" in _bad(cli, "eval", digits_ckpt, "--attack", "pgd:eps=4")
    # options run together with another colon: the commas they take are said
    assert "(pgd:eps=4/255,steps=3)" in _bad(cli, "eval", digits_ckpt, "--attack", "pgd:eps=4/255:steps=3")
    # several attacks in one flag: each its own --attack
    assert "repeating the flag (--attack fgsm --attack pgd)" in _bad(cli, "eval", digits_ckpt, "--attack", "fgsm, pgd")
    assert "repeating the flag" not in _bad(cli, "eval", digits_ckpt, "--attack", "fgsm pgdd")
    for budget in (["--set", "eps=8"], ["--eps", "8"]):  # said as the recipe's budget, not as a report attack's
        said = _bad(cli, "fix", digits_ckpt, *budget, "--epochs", "1", "--no-report", "-o", tmp_path / "m.safetensors")
        assert "at: eps, the L-inf budget it trains for" in said and "write --eps 8/255" in said, said
    assert "0-255" not in _bad(cli, "eval", digits_ckpt, "--eps", "300") and "(0, 1]" in _bad(
        cli, "eval", digits_ckpt, "--eps", "0")
    # an L0 count beyond the input's features (the digits' 1 x 8 x 8): refused before the attacks, as a fraction is
    for l0 in (["--max-l0", "100"], ["--attack", "jsma:max_l0=65"]):
        said = " ".join(_bad(cli, "eval", digits_ckpt, "--attack", "jsma", *l0, "--num-images", "4").split())
        assert "more than the 64 features of the model's input (1 x 8 x 8)" in said, said
    said = _bad(cli, "fix", digits_ckpt, "--max-l0", "100", "--epochs", "1", "-o", tmp_path / "l0.safetensors")
    assert "more than the 64 features" in said and "epoch 1" not in said  # before the training


def test_fix_takes_its_budget_as_eval_does(cli, digits_ckpt, tmp_path):
    """`harden fix --eps 0.2`, as `harden eval --eps` is written (it answered "No such option: --eps"): the recipe
    trains for it and the report attacks at it, as --set eps=0.2; both flags at once must agree."""
    out = tmp_path / "m.safetensors"
    code, _, err = cli("fix", digits_ckpt, "--eps", "0.2", "--epochs", "1", "--data-frac", "0.1", "-o", out,
                       "--attack", "fgsm", "--num-images", 20, "--no-metrics", "--no-masking-checks", "--json",
                       tmp_path / "r.json")
    assert code == 0, err
    import json
    reports = json.loads((tmp_path / "r.json").read_text())["reports"]
    assert {r["attacks"][0]["budget"] for r in reports} == {0.2}
    assert harden.load(out).spec.extra["recipe_params"]["eps"] == "0.2"
    # eval of the output measures the default 8/255 unless told, and says what the model was hardened for
    notes = {}
    for flags in ([], ["--eps", "0.2"], ["--eps", "0.1"], ["--attack", "pgd:eps=0.05"],
                  ["--craft-on", digits_ckpt]):
        code, _, err = cli("eval", out, "--num-images", 16, "--no-metrics", "--no-masking-checks", "--json",
                           tmp_path / "e.json", "--force", *(flags or ["--attack", "fgsm"]))
        assert code == 0, err
        notes[" ".join(map(str, flags))] = " ".join(json.loads((tmp_path / "e.json").read_text())["notes"])
    said = "hardened for an L-inf budget of 0.2 (at); this report's L-inf attacks measure 0.03137: --eps 0.2 measures"
    assert said in notes[""]
    assert not [k for k, v in notes.items() if k and "hardened for" in v], notes  # a budget asked for; transfer
    # a recipe that trains against no budget (gda-brelu: Gaussian noise, bounded ReLUs): --eps is the report's alone
    code, _, err = cli("fix", digits_ckpt, "--recipe", "gda-brelu", "--eps", "0.2", "--epochs", "1", "--data-frac",
                       "0.05", "-o", tmp_path / "g.safetensors", "--attack", "fgsm", "--num-images", 16, "--no-metrics",
                       "--no-masking-checks", "--json", tmp_path / "g.json")
    assert code == 0, err
    assert {r["attacks"][0]["budget"] for r in json.loads((tmp_path / "g.json").read_text())["reports"]} == {0.2}
    assert "eps" not in harden.load(tmp_path / "g.safetensors").spec.extra["recipe_params"]
    assert "gda-brelu: eps, the L-inf budget the report measures at, is in pixel units" in _bad(
        cli, "fix", digits_ckpt, "--recipe", "gda-brelu", "--eps", "8", "-o", tmp_path / "g8.safetensors")
    # the report's L2 and L0 budgets, as eval takes them; an L2 recipe's is its own eps; checked before training
    code, _, err = cli("fix", digits_ckpt, "--eps-l2", "1.5", "--max-l0", "0.2", "--epochs", "1", "--data-frac", "0.05",
                       "-o", tmp_path / "l2.safetensors", "--attack", "deepfool", "--attack", "jsma", "--num-images", 8,
                       "--no-metrics", "--no-masking-checks", "--json", tmp_path / "l2.json")
    assert code == 0, err
    budgets = {(a["name"], round(a["budget"], 6)) for r in json.loads((tmp_path / "l2.json").read_text())["reports"]
               for a in r["attacks"]}
    assert budgets == {("deepfool", 1.5), ("jsma", 12.8)}, budgets  # 0.2 of the 64 features of an 8x8 digit
    assert "give it with --eps, not --eps-l2" in _bad(cli, "fix", digits_ckpt, "--set", "attack=pgd-l2", "--eps", "1",
                                                      "--eps-l2", "2", "-o", tmp_path / "x.safetensors")
    assert "--eps-l2 is a budget, > 0" in _bad(cli, "fix", digits_ckpt, "--eps-l2", "0", "-o", tmp_path / "x.safetensors")
    again = _bad(cli, "fix", out, "--eps", "0.3", "-o", tmp_path / "twice.safetensors")  # hardened twice: the ways out
    assert "is already hardened (recipe at, from the base of sha256" in again and f"harden export {out.name} -o" in again
    # the flags it names rebuild the exported weights with nothing else (a state dict holds no metadata)
    import shlex
    flags = " ".join(again.split()).split("the flags its metadata holds: ")[1].rstrip(".")
    assert flags.startswith("--arch cnn-small --num-classes 10 --in-chans 1 --input-size 8x8"), flags
    code, shown, _ = cli("export", out, "-o", tmp_path / "w.pth")  # and export says them beside the file
    assert code == 0 and f"harden reads it with the model flags {flags}" in " ".join(shown.split()), shown
    code, shown, err = cli("inspect", tmp_path / "w.pth", *shlex.split(flags))
    assert code == 0 and "warning" not in err, err
    assert "disagree: give the budget once" in _bad(cli, "fix", digits_ckpt, "--eps", "0.2", "--set", "eps=0.1",
                                                    "-o", tmp_path / "n.safetensors")
    code, _, err = cli("fix", digits_ckpt, "--eps", "0.2", "--set", "eps=0.20", "--epochs", "1", "--data-frac", "0.05",
                       "-o", tmp_path / "same.safetensors", "--no-report")
    assert code == 0, err


def test_a_subset_too_small_for_validation_says_its_size_and_both_ways_out(cli, digits_ckpt, tmp_path):
    # 10 images (one a class); the slice is an exact share of them, so it takes a large one to leave none to train
    msg = _bad(cli, "fix", digits_ckpt, "--data-frac", "0.004", "--set", "val_frac=0.9", "--epochs", "1",
               "--no-report", "-o", tmp_path / "m.safetensors")
    assert "training subset (" in msg and "raise --data-frac" in msg and "--set val_frac=0" in msg


def test_fewer_images_than_asked_is_said(cli, digits_ckpt, tmp_path):
    """A CI gate sized for N images must not believe it measured N."""
    import numpy as np
    p = tmp_path / "tiny.npz"
    x = np.zeros((12, 8, 8, 1), np.uint8)
    np.savez(p, x_train=x, y_train=np.arange(12) % 10, x_test=x, y_test=np.arange(12) % 10)
    code, out, err = cli("eval", digits_ckpt, "--data", p, "--num-images", 100, "--attack", "fgsm", "--no-metrics")
    assert code == 0, err
    assert "holds 12 images, fewer than --num-images (100): all evaluated" in " ".join(out.split())


def test_missing_data_path(cli, digits_ckpt):
    assert "does not exist" in _bad(cli, "eval", digits_ckpt, "--data", "/no/such/data.npz")


def test_channel_mismatch(cli, digits_ckpt, tmp_path):
    """Colour arrays for a grey model are read as grey (as image files are), said in the report; a channel count no
    conversion gives (a 2-channel network) is refused."""
    import json

    import numpy as np
    p = tmp_path / "rgb.npz"
    rgb = np.zeros((10, 8, 8, 3), np.uint8)
    np.savez(p, x_train=rgb, y_train=np.arange(10), x_test=rgb, y_test=np.arange(10))
    code, out, err = cli("eval", digits_ckpt, "--data", p, "--n", "10", "--attack", "fgsm", "--no-metrics",
                         "--no-masking-checks", "--json", tmp_path / "r.json")
    assert code == 0, out + err
    assert json.loads((tmp_path / "r.json").read_text())["data_details"]["channels"].startswith("colour images as grey")
    two = harden.create_model("cnn-small", 10, 2, (8, 8), (0.5,), (0.25,))
    harden.save(two, tmp_path / "two.safetensors")
    assert "channel" in _bad(cli, "eval", tmp_path / "two.safetensors", "--data", p)


def test_output_equal_to_input(cli, digits_ckpt, other_ckpt):
    before = sha(digits_ckpt)
    assert "input" in _bad(cli, "eval", digits_ckpt, *FAST, "--json", digits_ckpt)
    assert "input" in _bad(cli, "eval", digits_ckpt, *FAST, "--markdown", digits_ckpt, "--force")
    assert sha(digits_ckpt) == before
    before = sha(other_ckpt)
    assert "input" in _bad(cli, "eval", digits_ckpt, *FAST, "--craft-on", other_ckpt, "--json", other_ckpt, "--force")
    assert sha(other_ckpt) == before


def test_existing_output_without_force(cli, digits_ckpt, tmp_path):
    j = tmp_path / "r.json"
    j.write_text("keep me")
    assert "--force" in _bad(cli, "eval", digits_ckpt, *FAST, "--json", j)
    assert j.read_text() == "keep me"
    m = tmp_path / "m.safetensors"
    m.write_text("keep me")
    assert "--force" in _bad(cli, "train", "--epochs", "1", "-o", m)
    assert m.read_text() == "keep me"
    assert cli("eval", digits_ckpt, *FAST, "--json", j, "--force")[0] == 0
    assert json.loads(j.read_text())["threat_model"] == "white-box"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_checkpoint_output_of_another_format_is_refused_before_any_work(cli, digits_ckpt, tmp_path, monkeypatch):
    """`fix -o hardened.onnx` trained for minutes to hours, then refused the extension at the save."""
    import importlib
    monkeypatch.setattr(importlib.import_module("harden.fix"), "fix", lambda *a, **k: pytest.fail("fix ran"))
    for suffix, route in ((".onnx", "harden export"), (".pt2", "harden export"), (".pt", "")):
        out = tmp_path / f"hardened{suffix}"
        err = _bad(cli, "fix", digits_ckpt, "--data-frac", "0.1", "-o", out)
        assert ".safetensors" in err and route in err and not out.exists()
    assert ".safetensors" in _bad(cli, "train", "--epochs", "1", "-o", tmp_path / "m.pt")
    assert ".safetensors" in _bad(cli, "import", digits_ckpt, "-o", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_debug_shows_traceback(cli, tmp_path):
    from harden import HardenError
    with pytest.raises(HardenError):
        cli("eval", tmp_path / "nope.safetensors", "--debug")


def test_console_script_exit_code(tmp_path):
    """The installed `harden` script itself (not the in-process entry point) returns 2 on bad input."""
    r = subprocess.run([sys.executable, "-m", "harden", "eval", str(tmp_path / "x.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr


# One edited default per recipe: the copy's value must reach the hardened checkpoint's metadata.
EDITED_DEFAULT = {"fixer": ("delta", "1.0", "0.5", 0.5), "at": ("steps", "5", "3", 3),
                  "gda-brelu": ("copies", "10", "2", 2), "patch-ft": ("patch", "7", "5", 5),
                  "idfr": ("fr_epochs", "5", "1", 1)}


@pytest.mark.parametrize("recipe", sorted(EDITED_DEFAULT))
def test_fix_from_a_copied_recipe_file_end_to_end(recipe, cli, digits_ckpt, tmp_path):
    """The issue's workflow: copy recipes/<name>.toml, edit a default, `harden fix --recipe copy.toml`,
    get the before/after report under both threat models, and `harden eval` the output with no flags."""
    from harden.recipes import load_recipe_config
    key, old, new, parsed = EDITED_DEFAULT[recipe]
    shipped = load_recipe_config(recipe)
    text = Path(shipped["file"]).read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith(f"{key} = {old}"))
    copy = tmp_path / f"my-{recipe}.toml"
    copy.write_text(text.replace(line, f"{key} = {new}", 1))
    out, j = tmp_path / "hardened.safetensors", tmp_path / "r.json"
    budget = ["--set", "eps=0.1"] if "eps" in shipped["params"] else []  # 8x8 digits
    code, text, err = cli("fix", digits_ckpt, "--recipe", copy, "--data-frac", "0.1", "--epochs", "1", *budget,
                          "--n", "30", "--attack", "fgsm", "--no-masking-checks", "-o", out, "--json", j, "-q")
    assert code == 0, err
    assert "before / after" in text
    reports = json.loads(j.read_text())["reports"]
    assert [r["threat_model"] for r in reports] == ["white-box", "white-box", f"transfer from {digits_ckpt.name}"]
    change = json.loads(j.read_text())["change"]  # hardened - base, paired on the same images
    for acc in ("clean", "fgsm", "worst"):
        assert change[acc]["difference"] == pytest.approx(reports[1]["values"][acc] - reports[0]["values"][acc])
    assert "hardened - base on the same 30 images: worst case" in " ".join(text.split())
    # --no-masking-checks reaches fix's report: only the clean-accuracy check (no pass of its own) is left
    assert all([f["check"] for f in r["masking"]] == ["clean accuracy at chance"] for r in reports)
    meta = harden.load(out).spec.extra
    assert meta["recipe"] == recipe and meta["recipe_params"][key] == parsed
    code, text, err = cli("eval", out, "--n", "20", "--attack", "fgsm", "--no-metrics", "--no-masking-checks", "-q")
    assert code == 0, err
    assert "white-box" in text
    if recipe == "at":  # inspect reads the kept report as a line a report, not as the dict of every gate value
        code, text, err = cli("inspect", out)
        shown = " ".join(text.replace("│", " ").split())
        assert code == 0 and "'values'" not in text and ".lower" not in text, text
        base = reports[0]["values"]
        lo, hi = 100 * base["clean.lower"], 100 * base["clean.upper"]
        assert (f"base, white-box, 30 images of digits: clean {100 * base['clean']:.1f}% ({lo:.1f}-{hi:.1f}), "
                f"fgsm {100 * base['fgsm']:.1f}%") in shown
        assert f"hardened, transfer from {digits_ckpt.name}, 30 images of digits: clean" in shown
        assert "recipe_params loss pgd-at, " in shown and f", steps {parsed}, " in shown  # recipe_params as pairs


def test_a_file_architecture_given_relative_is_saved_absolute(tmp_path, cli, monkeypatch):
    """`--arch net.py:net` typed in the folder of the file: every checkpoint written (train here; fix, import and
    apply save the same way) loads from any other folder with no flag."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "net.py").write_text("from harden.models.builtin import cnn_small\n\n\n"
                                 "def net(num_classes=10, in_chans=1, input_size=(8, 8)):\n"
                                 "    return cnn_small(num_classes, in_chans, input_size)\n")
    monkeypatch.chdir(work)
    code, _, err = cli("train", "--arch", "net.py:net", "--epochs", 1, "-o", "m.safetensors")
    assert code == 0, err
    monkeypatch.chdir(elsewhere)
    model = harden.load(work / "m.safetensors")
    assert model.spec.arch == f"{work.resolve() / 'net.py'}:net"
    # a package that only the repository's root provides (`--arch models:net` run there, as its README says)
    (work / "saved_arch_models").mkdir()
    (work / "saved_arch_models" / "__init__.py").write_text("from .nets import *\n")
    (work / "saved_arch_models" / "nets.py").write_text((work / "net.py").read_text())
    monkeypatch.chdir(work)
    code, _, err = cli("train", "--arch", "saved_arch_models:net", "--epochs", 1, "-o", "p.safetensors")
    assert code == 0, err
    monkeypatch.chdir(elsewhere)
    assert harden.load(work / "p.safetensors").spec.arch == f"{work.resolve() / 'saved_arch_models' / '__init__.py'}:net"
    # an installed module keeps its name: it loads wherever it is installed
    code, _, err = cli("train", "--arch", "harden.models.builtin:cnn_small", "--epochs", 1, "-o", "b.safetensors")
    assert code == 0, err
    assert harden.load(elsewhere / "b.safetensors").spec.arch == "harden.models.builtin:cnn_small"


def test_command_help_reads_as_paragraphs(cli):
    """`harden --help` lists each command's docstring, which the source wraps: rich help would keep those breaks
    mid-sentence, so each paragraph is one line there (the terminal wraps it)."""
    from harden.cli import app
    for info in app.registered_commands:
        assert info.help and all("\n" not in p for p in info.help.split("\n\n")), info.name
    code, out, _ = cli("--help")
    assert code == 0 and "a transformers or timm model" in " ".join(out.replace("│", " ").split())
    import torch

    import harden
    code, out, _ = cli("--version")  # what a CI log records beside a gate's verdict
    assert code == 0 and out.startswith(f"harden {harden.__version__} (torch {torch.__version__}, Python ")


def test_metadata_is_printed_as_text_a_person_reads():
    from harden.metadata_text import metadata_text
    assert metadata_text("subset", {"fraction": 0.1, "seed": 0, "n": 320}) == "fraction 0.1, seed 0, n 320"
    assert metadata_text("train", {"epochs": 2, "subset": "", "images": 200}) == "epochs 2, images 200"  # no "subset ,"
    assert metadata_text("taps", ["layer1", "layer2"]) == "layer1, layer2"
    assert metadata_text("best_epoch", 2) == "2"
    summary = {"fixed_white_box": {"threat_model": "white-box", "n": 60, "data": "photos", "values": {
        "clean": 0.2333, "clean.lower": 0.1444, "clean.upper": 0.3544, "pgd": 0.0, "pgd.success": 1.0, "pgd.lower": 0.0,
        "pgd.upper": 0.0602, "autoattack.apgd-ce": 0.0, "empirical_robustness": 0.0262, "checks.tripped": 0.0}}}
    assert metadata_text("report", summary) == ("hardened, white-box, 60 images of photos: clean 23.3% (14.4-35.4), "
                                                "pgd 0.0% (0.0-6.0)")


def test_a_crafting_model_of_another_input_size_crafts_on_the_evaluated_pixels_resized(digits_model, digits):
    """--craft-on a network built for 16x16 against the 8x8 digits model: it sees the evaluated images resized to its
    size inside the attack (a fixed-size network could not run on them at all), the perturbation stays in the
    evaluated model's pixels within its budget, and the report says so."""
    from harden.report.craft_size import ResizedInput
    big = harden.create_model("cnn-small", 10, 1, (16, 16))
    with pytest.raises(RuntimeError):
        big(torch.rand(2, 1, 8, 8))  # its own size only
    rep = harden.evaluate(digits_model, digits, craft_on=big, craft_name="big.safetensors", attacks=["pgd"], n=30,
                          eps=0.1, device="cpu", metrics=False, masking_checks=False, examples=2)
    assert rep.threat_model == "transfer from big.safetensors" and rep.n == 30
    assert any(n.startswith("big.safetensors takes 16x16 pixels") for n in rep.notes)
    x = torch.rand(3, 1, 8, 8, requires_grad=True)
    ResizedInput(big, (16, 16))(x).sum().backward()  # differentiable: the attack's gradient reaches the 8x8 pixels
    assert x.grad is not None and x.grad.abs().sum() > 0
    same = harden.evaluate(digits_model, digits, craft_on=harden.create_model("cnn-small", 10, 1, (8, 8)),
                           attacks=["fgsm"], n=10, eps=0.1, device="cpu", metrics=False, masking_checks=False)
    assert not any("takes" in n for n in same.notes)  # the same size: fed as it is


@pytest.mark.parametrize("command", ["gate", "report", "compare"])
def test_a_report_file_that_is_no_report_is_refused_for_every_reader(cli, tmp_path, command):
    """A folder, a JSON object with 'attacks' but no report around it, and a list of reports that are not: refused
    with what is missing (a KeyError and an IsADirectoryError came out as internal errors, exit 1)."""
    (tmp_path / "partial.json").write_text(json.dumps({"attacks": []}))
    (tmp_path / "odd.json").write_text(json.dumps({"reports": [{"model": "m"}, 3]}))
    more = {"gate": ["--require", "clean>=0.1"], "report": ["-o", tmp_path / "r.html"], "compare": [tmp_path / "odd.json"]}
    assert "is a folder" in _bad(cli, command, tmp_path, *more[command])
    err = " ".join(_bad(cli, command, tmp_path / "partial.json", *more[command]).split())
    assert "lacks model, threat_model, n, data, clean_accuracy" in err
    if command != "compare":
        assert "not a report harden wrote" in _bad(cli, command, tmp_path / "odd.json", *more[command])


def test_outputs_into_folders_that_do_not_exist_yet(cli, digits_ckpt, tmp_path):
    """A CI job's `--json reports/robustness.json` in a fresh checkout: the folder is made when the output is
    written; a path under a file is refused before the run."""
    code, _, err = cli("train", "--data", "digits", "--epochs", 1, "-o", tmp_path / "models" / "v2" / "m.safetensors",
                       "-q")
    assert code == 0, err
    assert (tmp_path / "models" / "v2" / "m.safetensors").is_file()
    code, _, err = cli("eval", digits_ckpt, "--n", 10, "--attack", "fgsm", "--no-metrics", "--no-masking-checks", "-q",
                       "--json", tmp_path / "reports" / "r.json", "--junit", tmp_path / "ci" / "junit.xml")
    assert code == 0, err
    assert json.loads((tmp_path / "reports" / "r.json").read_text())["n"] == 10
    assert (tmp_path / "ci" / "junit.xml").is_file()
    code, _, err = cli("eval", digits_ckpt, "--n", 10, "--attack", "fgsm", "--json", tmp_path / "reports" / "r.json" / "x")
    assert code == 2 and "which is a file, not a folder" in err


def test_devices_harden_does_not_run_on_are_said(cli, digits_ckpt):
    """--device mps (or another backend torch has) is refused as a device harden is not tested on, --device gpu
    with the spelling to use; cuda on a machine without one says so (each: exit 2, before any work)."""
    for device, said in (("mps", "runs on the CPU and on CUDA GPUs only"), ("gpu", "write --device cuda"),
                         ("quantum", "is not understood; use auto, cpu, cuda or cuda:N")):
        code, out, err = cli("eval", digits_ckpt, "--n", 4, "--attack", "fgsm", "--device", device)
        assert code == 2 and said in " ".join(err.split()), err
    if not __import__("torch").cuda.is_available():
        code, _, err = cli("eval", digits_ckpt, "--n", 4, "--attack", "fgsm", "--device", "cuda")
        assert code == 2 and "no CUDA device is available" in err


def test_a_gate_on_an_attack_the_default_set_leaves_out_says_how_to_run_it():
    """Above 64 px the default attacks leave jsma out: a gate on it names the set that has it (`--attack default`),
    and a gate on an attack outside the six names the way to add it beside them; a saved report says its run did
    not make it."""
    from harden import HardenError
    from harden.attacks import DEFAULT_ATTACKS
    from harden.report.gate import check_known, parse_requirement
    from harden.report.runner import attack_set
    big, small = attack_set(None, (128, 128)), attack_set(None, (32, 32))
    assert big.from_defaults and big.left_out == ("jsma",) and small.left_out == ()
    with pytest.raises(HardenError) as e:
        check_known([parse_requirement("jsma>=0.3")], big)
    assert "jsma is left out of the default attacks above 64 px" in str(e.value)
    assert "--attack default runs the six with it" in str(e.value)
    check_known([parse_requirement("jsma>=0.3")], small)  # made there: nothing to say
    with pytest.raises(HardenError, match="--attack default --attack square runs it beside the default attacks"):
        check_known([parse_requirement("square.lower>=0.3")], small)
    with pytest.raises(HardenError, match="an attack r.json's run did not make \\(it made fgsm, pgd, autopgd"):
        check_known([parse_requirement("square>=0.3")], small, "r.json")
    from harden.attacks import expand_suites  # what that error says: `--attack default` runs jsma at any size
    assert [a.name for a in attack_set(expand_suites(["default"]), (128, 128))] == list(DEFAULT_ATTACKS)


def test_the_trained_budget_note_reads_the_norm_of_the_recipe_s_attack():
    """The note's norm is the training attack's (pgd: L-inf; pgd-l2: L2), read from the attack setting alone."""
    from harden.report.runner import attack_set
    from harden.report.trained_budget import trained_budget_note
    attacks = attack_set(["pgd", "deepfool"], (8, 8))
    linf = {"recipe": "at", "recipe_params": {"attack": "pgd", "eps": "0.3"}}
    l2 = {"recipe": "at", "recipe_params": {"attack": "pgd-l2", "eps": "2"}}
    said = trained_budget_note(linf, attacks, None, 0.5, False, "m")
    assert said.startswith("m was hardened for an L-inf budget of 0.3 (at)") and "--eps 0.3" in said
    assert trained_budget_note(linf, attacks, 0.3, 0.5, False, "m") is None  # asked for: nothing to say
    said = trained_budget_note(l2, attacks, None, 0.5, False, "m")
    assert said.startswith("m was hardened for an L2 budget of 2 (at)") and "--eps-l2 2" in said
    assert trained_budget_note(l2, attacks, None, 2.0, True, "m") is None
    # an --eps-l2 of 0.5 asked for (the default's value) is a budget chosen: nothing to say either
    assert trained_budget_note(l2, attacks, None, 0.5, True, "m") is None
    assert trained_budget_note(l2, attack_set(["pgd"], (8, 8)), None, 0.5, False, "m") is None  # no L2 row
    own = {"recipe": "x", "recipe_params": {"attack": "its-own", "eps": "0.3"}}  # no registered attack: no norm
    assert trained_budget_note(own, attacks, None, 0.5, False, "m") is None


WARNING_NET = '''
import warnings
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        warnings.warn("this network warns at every call")
        return self.fc(x.view(x.size(0), -1))
'''


def test_a_network_s_own_python_warning_is_said_once(cli, tmp_path):
    """A published network's forward that warns (bamos' DenseNet's `F.log_softmax(x)` without a dim) printed its
    warning once from its own line and again from each place in harden that ran it (a probe, the attacks, the
    checks), the later ones pointing into harden's code. Said once, where it arose, as harden's warnings are."""
    (tmp_path / "net.py").write_text(WARNING_NET)
    torch.save({f"fc.{k}": v for k, v in torch.nn.Linear(64, 10).state_dict().items()}, tmp_path / "net.pt")
    code, _, err = cli("eval", tmp_path / "net.pt", "--arch", f"{tmp_path / 'net.py'}:Net", "--data", "digits",
                       "--in-chans", "1", "--input-size", "8x8", "--n", "12", "--attack", "fgsm")
    assert code == 0, err
    said = " ".join(err.split())
    assert said.count("this network warns at every call") == 1, err
    assert f"UserWarning from {tmp_path / 'net.py'}:" in said, err


def test_names_with_brackets_are_printed_as_they_are(cli, digits_ckpt, tmp_path, capsys):
    """rich reads `[v2]` as markup: a model file `model[v2].safetensors` was titled `model.safetensors`, `wrote
    r[1].pth` said `wrote r.pth`, and a warning holding `[/x]` (a Python warning's text, a folder's name) stopped
    the run with rich's MarkupError. Names are printed as they are."""
    import shutil

    from harden.runtime import info, warn
    model = tmp_path / "model[v2].safetensors"
    shutil.copy(digits_ckpt, model)
    code, out, err = cli("eval", model, "--data", "digits", "--n", "12", "--attack", "fgsm", "--no-masking-checks")
    assert code == 0, err
    assert "model[v2].safetensors - threat model" in " ".join(out.split()), out
    code, out, err = cli("export", model, "-o", tmp_path / "r[1].pth")
    assert code == 0 and f"wrote {tmp_path / 'r[1].pth'} (" in " ".join(out.split()), out + err
    code, out, err = cli("inspect", model)
    assert code == 0 and str(model) in out.replace("\n", ""), out
    warn("a folder photos[2024]/ and a closing [/x] tag")
    from harden.runtime import set_quiet
    set_quiet(False)
    try:
        info("kept [bold]as written[/bold]")
    finally:
        set_quiet(True)
    err = " ".join(capsys.readouterr().err.split())
    assert "a folder photos[2024]/ and a closing [/x] tag" in err and "kept [bold]as written[/bold]" in err, err


@pytest.mark.parametrize("command", ["eval", "fix"])
def test_option_help_reads_at_the_terminals_width(cli, monkeypatch, command):
    """typer's rich panels give an option's names, `--no-...` form and type a column each: at 80 columns the help
    was left 17 characters wide, one word a line. Narrow terminals get click's plain list; wide ones the panels."""
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli(command, "--help")
    assert code == 0 and max(map(len, out.splitlines())) <= 80
    assert "Options:" in out and "  --data <str>" in out
    assert "L2 budget for DeepFool / C&W-L2 and" in out  # a line of help, not two words
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = cli(command, "--help")
    assert code == 0 and "╭─ Options" in out and "L2 budget for DeepFool / C&W-L2 and autoattack:norm=L2" in out
    assert "--force" in out and "<bool>" not in out  # a flag takes no value (typer's panels said `<bool>`)
