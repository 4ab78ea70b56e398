"""The HTML report: parses, embeds the expected figures (each PNG decodes), its table numbers equal the JSON's,
`harden report` re-renders the same file from the JSON, curves do not rise with the budget for a deterministic
attack, nothing is fetched; a headless Chromium renders it (skipped when chromium is absent)."""
import base64
import io
import html
import json
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.image as mpimg
import pytest

from harden import evaluate
from harden.report.curves import parse_curve
from harden.errors import HardenError


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.cells, self.links, self.scripts = [], [], [], 0
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag in ("script", "iframe", "object"):
            self.scripts += 1
        for k in ("href", "src"):
            if k in a:
                self.links.append(a[k])
        if tag == "td" and "data-metric" in a:
            self._cell = a

    def handle_data(self, data):
        if self._cell is not None:
            self.cells.append((self._cell["data-metric"], float(self._cell["data-value"]), data.strip()))
            self._cell = None


def _parse(text):
    p = _Collect()
    p.feed(text)
    p.close()
    return p


@pytest.fixture(scope="module")
def eval_outputs(tmp_path_factory, digits_ckpt):
    import sys

    from harden.cli import main
    from harden.runtime import set_quiet
    d = tmp_path_factory.mktemp("html")
    argv = sys.argv
    sys.argv = ["harden", "eval", str(digits_ckpt), "--n", "60", "--attack", "fgsm", "--attack", "pgd:steps=10",
                "--attack", "deepfool", "--eps", "0.1", "--no-metrics", "-q", "--json", str(d / "r.json"),
                "--html", str(d / "r.html"), "--plots", str(d / "plots"), "--require", "pgd>=0.99"]
    try:
        with pytest.raises(SystemExit) as e:
            main()
    finally:
        sys.argv = argv
        set_quiet(True)
    assert e.value.code == 1  # the gate fails: its row is marked in the HTML
    return d


def test_html_parses_embeds_figures_that_decode(eval_outputs):
    text = (eval_outputs / "r.html").read_text()
    assert "made with harden " in text and "; weights sha256 " in text  # what made it
    p = _parse(text)
    figs = [i["data-figure"] for i in p.imgs]
    assert figs == ["robustness_curves", "examples_report"]
    for img in p.imgs:
        head, data = img["src"].split(",", 1)
        assert head == "data:image/png;base64"
        arr = mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert arr.ndim == 3 and arr.shape[0] > 50
    assert sorted(f.name for f in (eval_outputs / "plots").iterdir()) == ["examples_report.png",
                                                                          "robustness_curves.png"]
    # nothing to fetch: every src/href is inline, no scripts
    assert p.scripts == 0 and all(link.startswith("data:") for link in p.links)
    assert "http://" not in text and "https://" not in text
    assert "white-box" in text and "FAIL" in text and "class='fail'" in text


def test_html_numbers_equal_the_json(eval_outputs):
    doc = json.loads((eval_outputs / "r.json").read_text())
    cells = _parse((eval_outputs / "r.html").read_text()).cells
    values = doc["values"]
    assert {m for m, _, _ in cells} == {"clean", "fgsm", "pgd", "deepfool", "worst", "worst.linf", "worst.l2"}
    for metric, value, shown in cells:
        assert value == pytest.approx(values[metric])
        assert shown == f"{100 * values[metric]:.1f}"


def test_report_command_rerenders_the_same_html(eval_outputs, cli, tmp_path):
    code, out, err = cli("report", eval_outputs / "r.json", "-o", tmp_path / "again.html")
    assert code == 0, err
    assert (tmp_path / "again.html").read_text() == (eval_outputs / "r.html").read_text()
    code, _, err = cli("report", eval_outputs / "r.json", "-o", tmp_path / "again.html")
    assert code == 2 and "--force" in err
    code, _, err = cli("report", eval_outputs / "r.json", "--html", tmp_path / "named.html")  # as eval names it
    assert code == 0 and (tmp_path / "named.html").read_text() == (eval_outputs / "r.html").read_text(), err
    (tmp_path / "bad.json").write_text("{\"x\": 1}")
    code, _, err = cli("report", tmp_path / "bad.json", "-o", tmp_path / "b.html")
    assert code == 2 and "not a harden report" in err


def test_class_and_model_names_the_figure_font_lacks_draw_without_warnings(eval_outputs):
    """Class folders named in CJK or emoji: the figures fall back to class indices (and '?' in titles) instead of
    empty boxes and a warning per glyph; the HTML's text keeps the names whole."""
    import json
    import warnings

    from harden.report import html_page
    doc = json.loads((eval_outputs / "r.json").read_text())
    rep = html_page.reports_of(doc)[0]
    rep["class_names"] = ["猫", "chien é", "🐶", *[f"c{i}" for i in range(3, 10)]]
    rep["model"] = "模型.safetensors"
    assert [html_page._name(i, rep["class_names"]) for i in range(3)] == ["0", "chien é", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns once per glyph it cannot draw
        page = html_page.render(doc)
    assert "模型.safetensors" in page


def test_the_page_ranks_classes_with_enough_images_weakest_first(eval_outputs):
    import json

    from harden.report import html_page
    from harden.report.by_class import MIN_RANKED
    doc = json.loads((eval_outputs / "r.json").read_text())
    rep = html_page.reports_of(doc)[0]
    assert len(rep["per_class"]) == 10 and "none with 20+ of them" in html_page.render(doc)  # 60 images: 6 a class
    rows = [{"index": i, "name": f"c{i}", "n": MIN_RANKED + i, "clean": 1.0, "worst": w, "attacks": {}}
            for i, w in enumerate([0.5, 0.2, 0.9])]
    rep["per_class"] = rows + [{"index": 3, "name": "few", "n": 2, "clean": 1.0, "worst": 0.0, "attacks": {}}]
    page = html_page.render(doc)
    table = page[page.index("<h3>By class"):]
    table = table[:table.index("</table>")]
    assert "3 of 4 classes" in table and "few" not in table
    assert [table.index(f"<td>c{i}</td>") for i in (1, 0, 2)] == sorted(table.index(f"<td>c{i}</td>") for i in range(3))


def test_curve_is_non_increasing_for_a_deterministic_attack(digits_model, digits):
    rep = evaluate(digits_model, digits, n=100, attacks=["pgd:steps=10"], eps=0.1, device="cpu", metrics=False,
                   curve=parse_curve("0:0.2:5"))
    pts = rep.curves["pgd"]
    assert [b for b, _ in pts] == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])
    accs = [a for _, a in pts]
    assert accs[0] == pytest.approx(rep.clean_accuracy)
    assert accs[2] == pytest.approx(rep.attacks[0].robust_accuracy)  # the report's own budget is its row
    assert all(b <= a + 1e-9 for a, b in zip(accs, accs[1:], strict=False)), accs
    f = next(f for f in rep.masking if f["check"] == "robust accuracy rises with the budget")
    assert not f["tripped"]


def test_curve_rising_is_flagged():
    from harden.report.curves import monotonic_flag
    f = monotonic_flag({"pgd": [[0, 0.9], [0.1, 0.3], [0.2, 0.6]]}, 200)
    assert f["tripped"] and "pgd" in f["detail"]


def test_curve_spec_errors(cli, digits_ckpt, digits_model, digits):
    for bad in ("0:0.3", "0.3:0:4", "0:0.3:1", "a:b:c"):
        with pytest.raises(HardenError):
            parse_curve(bad)
    # a curve of a run without an L-inf attack would be left out without a word: refused before the run, with why
    for command in ("eval", "fix"):
        code, _, err = cli(command, digits_ckpt, "--attack", "deepfool", "--curve", "0:0.5:3", "-q")
        assert code == 2 and "this run's (deepfool) have none: add one, e.g. --attack pgd" in " ".join(err.split())
    with pytest.raises(HardenError, match=r"curve=\[0.0, 0.1\] draws the L-inf attacks"):  # the library, as the CLI
        evaluate(digits_model, digits, n=8, attacks=["deepfool"], curve=[0.0, 0.1], metrics=False)


def test_fix_html_has_curves_examples_and_training(cli, digits_ckpt, tmp_path):
    out = tmp_path / "f.safetensors"
    code, text, err = cli("fix", digits_ckpt, "--recipe", "at", "--data-frac", "0.1", "--epochs", 2, "--set",
                          "eps=0.1", "--n", 40, "--attack", "fgsm", "--attack", "pgd:steps=5", "--no-metrics",
                          "--no-masking-checks", "-q", "-o", out, "--html", tmp_path / "fix.html", "--json",
                          tmp_path / "fix.json")
    assert code == 0, err
    html_text = (tmp_path / "fix.html").read_text()
    figs = [i["data-figure"] for i in _parse(html_text).imgs]
    assert figs == ["robustness_curves", "examples_base", "examples_hardened", "training_curves"]
    assert "transfer from" in html_text
    assert "settings <code>loss pgd-at, beta 6, " in html_text and "{&#x27;loss&#x27;" not in html_text  # not a repr
    doc = json.loads((tmp_path / "fix.json").read_text())
    assert doc["kind"] == "fix" and len(doc["training"]["history"]) == 2
    assert set(doc["reports"][1]["curves"]) == {"fgsm", "pgd"}
    code, _, err = cli("report", tmp_path / "fix.json", "-o", tmp_path / "again.html")
    assert code == 0 and (tmp_path / "again.html").read_text() == html_text
    # `harden gate` of the fix's file: the hardened model's white-box report, its base's the baseline
    change = doc["change"]["pgd"]
    code, text, err = cli("gate", tmp_path / "fix.json", "--require", f"pgd.change>={change['difference'] - 0.01}",
                          "--require", f"pgd>=baseline{change['difference'] + 0.01:+}", "--json", "-")
    assert code == 1, err
    gated = json.loads(text)["gate"]
    assert [g["passed"] for g in gated] == [True, False] and gated[0]["actual"] == change["difference"]
    assert gated[1]["value"] == pytest.approx(doc["reports"][0]["values"]["pgd"] + change["difference"] + 0.01)
    assert html.escape("white-box, hardened - base on the same 40 images: worst case") in html_text
    del doc["change"]  # a document written before it kept the change: the same words, from the per-image verdicts
    (tmp_path / "old.json").write_text(json.dumps(doc))
    code, _, err = cli("report", tmp_path / "old.json", "-o", tmp_path / "old.html")
    assert code == 0 and (tmp_path / "old.html").read_text() == html_text


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_chromium_renders_the_report(eval_outputs, tmp_path):
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1200,1600", (eval_outputs / "r.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    arr = mpimg.imread(str(shot))
    assert arr.shape[0] >= 1000 and arr.std() > 0.05  # a page with content, not a blank one


def test_training_figure_puts_validation_accuracies_beside_the_other_accuracies():
    from harden.report.html_page import training_series
    history = [{"epoch": 1, "loss": 1.2, "acc": 0.8, "adv_acc": 0.4, "val_clean": 0.9, "val_robust": 0.3, "val_n": 135}]
    assert training_series(history) == (["loss"], ["acc", "adv_acc", "val_clean", "val_robust"])


@pytest.mark.parametrize("order", ["in order", "shuffled"])
def test_an_attack_keeps_only_the_inputs_its_examples_and_checks_can_need(order):
    """While an attack runs it holds at most prefix + 2k judged inputs (not the whole set), and they include the
    examples it ends up choosing, whatever the order its batches come in (torchrun ranks, resumed batches)."""
    import torch

    from harden.report.examples import KeptInputs, example_indices
    g = torch.Generator().manual_seed(3)
    n, k, prefix, b = 300, 4, 20, 16
    x_adv = torch.rand(n, 3, 5, 5, generator=g)
    correct = torch.rand(n, generator=g) < 0.7
    ok = torch.rand(n, generator=g) < 0.99  # few fooled: the fill from images not fooled is needed too
    starts = list(range(0, n, b))
    if order == "shuffled":
        starts = [starts[i] for i in torch.randperm(len(starts), generator=g).tolist()]
    kept = KeptInputs(k, range(prefix))
    for s in starts:
        kept.add(s, x_adv[s:s + b], correct[s:s + b], ok[s:s + b])
        assert len(kept.rows) <= prefix + 2 * k
    chosen = example_indices(correct, correct & ~ok, k)
    assert len(chosen) == k and (correct & ok)[chosen].any()
    for i in [*chosen, *range(prefix)]:
        assert torch.equal(kept.rows[i], x_adv[i])
        assert kept.rows[i].untyped_storage().nbytes() == x_adv[i].numel() * 4  # a copy, not a view of the batch


def test_examples_spread_over_a_sample_in_class_order():
    """A folder's sample is held in class order: the first four images fooled were all of its first class."""
    import torch

    from harden.report.examples import example_indices
    every = torch.ones(1000, dtype=torch.bool)
    chosen = example_indices(every, every, 4)
    assert len(set(chosen)) == 4 and len({i // 100 for i in chosen}) >= 3, chosen  # ten classes of 100
    assert example_indices(every, every, 4) == chosen


def test_a_note_reads_as_a_note_not_as_a_tripped_check():
    """A check of kind note that has something to say (where the scores were read) read 'TRIPPED' in Markdown and HTML
    while the same report said 'none tripped' and did not count it."""
    from harden.report.checks import flag, output_kind_note
    from harden.report.html_page import to_html
    from harden.report.model import Report
    from harden.report.render import to_markdown
    r = Report(model="m", threat_model="white-box", crafted_on="m", n=10, data="d", device="cpu", seed=0,
               clean_accuracy=0.5, attacks=[], masking=[output_kind_note("logits", " at entry '0'"),
                                                        flag("zero input gradients", True, "half of them")])
    md = to_markdown([r])
    assert "`outputs are not logits`: note (" in md and "`zero input gradients`: TRIPPED (" in md
    page = to_html(r.to_dict(), {})
    assert "<b>outputs are not logits</b>: note" in page and "<b>zero input gradients</b>: TRIPPED" in page
    assert r.metric_values()["checks.tripped"] == 1 and "The checks took" not in page
    r.check_seconds = {"pgd (20 steps) at eps 0.5": 1.3, "square (500 queries) at eps 8/255": 9.5}
    assert "<p>The checks took 10.8 s: square (500 queries) at eps 8/255 9.5 s, pgd (20 steps) at eps 0.5 1.3 s.</p>" \
        in to_html(r.to_dict(), {})  # where a report's check time went, largest first


def test_an_example_whose_perturbation_rounds_away_says_so(monkeypatch):
    """The examples are kept as 8-bit pixels: a perturbation under half a step leaves the panel flat grey, and its
    title says why; a visible one is titled as usual."""
    import base64

    import numpy as np

    import harden.report.html_page as page
    clean = np.full((3, 4, 4), 120, np.uint8)
    moved = clean.copy()
    moved[0, 0, 0] = 122

    def example(adv):
        return {"shape": [3, 4, 4], "clean": base64.b64encode(clean.tobytes()).decode(),
                "adv": base64.b64encode(adv.tobytes()).decode(), "label": 1, "pred": 2, "fooled": True}
    titles = []
    monkeypatch.setattr(page, "_png", lambda fig: titles.extend(ax.get_title() for ax in fig.axes) or b"")
    page.figure_examples({"model": "m", "threat_model": "white-box",
                          "attacks": [{"name": "deepfool", "examples": [example(clean), example(moved)]}]})
    assert [t for t in titles if t.startswith("perturbation")] == ["perturbation < 1/255", "perturbation"]
