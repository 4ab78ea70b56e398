"""`eval --labels predicted` (harden/data/predicted.py): images without labels evaluated against the model's own clean
predictions, so a team with production captures and no labels can still gate on how often an attack changes the
model's answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import harden
from harden.data import ImageData
from harden.errors import HardenError


def predictions(model, x_u8: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = torch.as_tensor(x_u8).float().div(255).permute(0, 3, 1, 2)
        return model.eval()(x).argmax(1).numpy()


def test_predicted_labels_give_exactly_the_report_of_the_data_relabelled_by_the_model(digits, digits_model):
    """The same images with the model's predictions written in as their labels: every robust accuracy equal, clean
    accuracy 100%, and the data's own labels' agreement is the given-label clean accuracy."""
    n = 60
    x, y = digits.x_test[:n], digits.y_test[:n]
    relabelled = ImageData(digits.x_train[:0], digits.y_train[:0], x, predictions(digits_model, x), "relabelled", 10)
    original = ImageData(digits.x_train[:0], digits.y_train[:0], x, y, "original", 10)
    kw = dict(attacks=["fgsm", "pgd:steps=5"], n=n, eps=0.1, metrics=False, masking_checks=False, device="cpu")
    by_hand = harden.evaluate(digits_model, relabelled, **kw)
    given = harden.evaluate(digits_model, original, **kw)
    ours = harden.evaluate(digits_model, original, labels="predicted", **kw)
    assert ours.clean_accuracy == by_hand.clean_accuracy == 1.0
    assert [a.robust_accuracy for a in ours.attacks] == [a.robust_accuracy for a in by_hand.attacks]
    assert given.clean_accuracy < 1.0  # the model errs on some: the two readings differ
    assert all(p >= g for p, g in zip((a.robust_accuracy for a in ours.attacks),
                                      (a.robust_accuracy for a in given.attacks), strict=True))
    note = ours.data_details["labels"]
    assert "model's own clean predictions" in note
    assert f"agree with {100 * given.clean_accuracy:.1f}% of them ({n} images)" in note
    assert "labels" not in given.data_details
    with pytest.raises(HardenError, match="--labels takes given"):
        harden.evaluate(digits_model, original, labels="guessed", **kw)


@pytest.fixture(scope="module")
def captures(tmp_path_factory, digits):
    """Production captures: a flat folder of PNGs (no class folders, no labels), and an .npz of images alone."""
    root = tmp_path_factory.mktemp("captures")
    flat = root / "flat"
    flat.mkdir()
    for i in range(12):
        Image.fromarray(digits.x_test[i, ..., 0]).save(flat / f"cam{i:03d}.png")
    np.savez(root / "images.npz", images=digits.x_test[:20])
    return root


def test_images_without_labels_are_evaluated_against_the_models_predictions(cli, digits_ckpt, captures, tmp_path):
    code, _, err = cli("eval", digits_ckpt, "--data", captures / "flat", "--attack", "fgsm", "--n", "8")
    assert code == 2 and "without class folders, so it has no labels" in " ".join(err.split())
    assert "--labels predicted" in " ".join(err.split())  # given labels: refused, with the way to read them
    report = tmp_path / "r.json"
    code, out, _ = cli("eval", digits_ckpt, "--data", captures / "flat", "--labels", "predicted", "--attack", "fgsm",
                       "--n", "8", "--eps", "0.1", "--no-metrics", "--no-masking-checks", "--json", report)
    text = " ".join(out.split())
    assert code == 0 and "8 images of" in text and "labels: the model's own clean predictions" in text
    import json
    doc = json.loads(report.read_text())
    assert doc["clean_accuracy"] == 1.0 and "agree" not in doc["data_details"]["labels"]  # no labels to agree with
    code, out, _ = cli("eval", digits_ckpt, "--data", captures / "images.npz", "--labels", "predicted", "--attack",
                       "fgsm", "--n", "20", "--eps", "0.1", "--no-metrics", "--no-masking-checks")
    assert code == 0 and "20 images of" in " ".join(out.split())
    code, _, err = cli("eval", digits_ckpt, "--data", captures / "flat", "--labels", "predicted", "--require",
                       "clean>=0.9", "--require", "fgsm>=0.1")
    assert code == 2 and "clean>=0.9 with --labels predicted" in " ".join(err.split())  # a bar that cannot fail
    code, _, err = cli("eval", digits_ckpt, "--data", captures / "flat", "--labels", "sometimes")
    assert code == 2 and "--labels takes given" in " ".join(err.split())
    code, _, err = cli("eval", digits_ckpt, "--data", tmp_path / "nothing-here", "--labels", "predicted")
    assert code == 2 and "--unlabeled" not in err  # the evaluation's own error, not the pool's


def test_a_tree_of_splits_whose_classes_the_model_cannot_name_gives_its_test_split(digits_model, tmp_path):
    """Class folders named otherwise than the model's classes (the images alone are used): the val split only."""
    from harden.data import DataTarget
    from harden.data.predicted import images_to_predict
    for split, count in (("train", 6), ("val", 3)):
        for cls in ("sunny", "rainy", "foggy", "windy", "hail", "snow", "sleet", "mist", "dew", "frost", "storm"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    target = DataTarget.for_model(digits_model, workers=0)
    data = images_to_predict(str(tmp_path), target, {}, "m")
    assert data.n_test == 33 and not data.has_split("train")
    assert all("/val/" in str(data.listing("test").location(i)) for i in range(data.n_test))


def test_a_baseline_measured_on_the_datas_labels_is_not_compared_image_by_image(digits, digits_model):
    from harden.report.compare import compare
    from harden.report.render import report_document as report_dict
    data = ImageData(digits.x_train[:0], digits.y_train[:0], digits.x_test[:30], digits.y_test[:30], "d", 10)
    kw = dict(attacks=["fgsm"], n=30, eps=0.1, metrics=False, masking_checks=False, device="cpu")
    given = report_dict([harden.evaluate(digits_model, data, **kw)])
    predicted = report_dict([harden.evaluate(digits_model, data, labels="predicted", **kw)])
    with pytest.raises(HardenError, match="labels: \"the data's\" vs \"the model's predictions\""):
        compare(given, predicted)
    assert compare(predicted, predicted)["fgsm"]["difference"] == 0


def test_fix_hardens_on_images_without_labels_against_the_bases_predictions(digits_ckpt, digits, digits_model,
                                                                              captures, tmp_path):
    """`fix --labels predicted` on an .npz of images alone: a fifth held out, both parts labelled by the base, the
    reports measure agreement with the base (the base's clean 100%), and a later `eval --labels predicted` of the
    hardened model tests on the held-out images again."""
    res = harden.fix(digits_ckpt, str(captures / "images.npz"), labels="predicted", sets=["eps=0.1", "val_frac=0"],
                     data_frac=1.0, epochs=1, device="cpu", attacks=["fgsm"], metrics=False, masking_checks=False)
    base, fixed = res.reports["base_white_box"], res.reports["fixed_white_box"]
    assert base.clean_accuracy == 1.0 and base.n == 4  # 20% of the 20 images held out
    x_held = digits.x_test[:20]
    base_net = harden.load(digits_ckpt)
    assert "the base model's clean predictions" in base.data_details["labels"]
    assert "labels agree" not in base.data_details["labels"]  # the images had no labels to agree with
    # the fixed model's clean accuracy is its agreement with the base on the held-out images
    hardened = res.model.eval()
    ds = harden.data_for(hardened, str(captures / "images.npz"), labels="predicted")
    assert ds.n_test == 4 and ds.held_out  # found again: never trained on
    idx_rows = [int(np.flatnonzero((x_held == r).all(axis=(1, 2, 3)))[0]) for r in ds.x_test[:]]
    agreement = float(np.mean(predictions(hardened, x_held[idx_rows]) == predictions(base_net, x_held[idx_rows])))
    assert fixed.clean_accuracy == pytest.approx(agreement)
    assert res.model.spec.extra["labels"].startswith("the base's clean predictions")
    with pytest.raises(HardenError, match="--labels takes given"):
        harden.fix(digits_ckpt, digits, labels="maybe", report=False, device="cpu")


def test_a_model_that_gives_one_answer_is_called_out(digits):
    """Stable by answering one class: the report says so rather than let 100% stand as robustness."""
    class OneAnswer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)
            torch.nn.init.zeros_(self.fc.weight)
            with torch.no_grad():
                self.fc.bias.copy_(torch.arange(10.0) == 3)

        def forward(self, x):
            return self.fc(x.view(x.size(0), -1))

    data = ImageData(digits.x_train[:0], digits.y_train[:0], digits.x_test[:40], digits.y_test[:40], "d", 10)
    rep = harden.evaluate(OneAnswer(), data, labels="predicted", attacks=["fgsm"], n=40, eps=0.1, metrics=False,
                          masking_checks=False, device="cpu")
    assert rep.attacks[0].robust_accuracy == 1.0
    assert any("predicts class 3 for 100% of these images" in note for note in rep.notes)
    assert "classes predicted: 1, the most frequent (3) for 100.0%" in rep.data_details["labels"]
    ok = harden.evaluate(OneAnswer(), data, attacks=["fgsm"], n=40, eps=0.1, metrics=False, masking_checks=False,
                         device="cpu")
    assert not any("predicts class 3" in note for note in ok.notes)  # given labels: the accuracy says it already


def test_the_html_page_says_what_the_labels_are(digits, digits_model):
    from harden.report.html_page import render
    from harden.report.render import report_document
    data = ImageData(digits.x_train[:0], digits.y_train[:0], digits.x_test[:30], digits.y_test[:30], "d", 10)
    rep = harden.evaluate(digits_model, data, labels="predicted", attacks=["fgsm"], n=40, eps=0.1, metrics=False,
                          masking_checks=False, device="cpu")
    page = render(report_document([rep]))
    assert "labels: the model&#x27;s own clean predictions" in page
    assert "fewer than --num-images (40)" in page  # the report's notes reach the page too


def test_fix_on_the_command_line(cli, digits_ckpt, captures, tmp_path):
    out = tmp_path / "h.safetensors"
    code, text, _ = cli("fix", digits_ckpt, "--data", captures / "flat", "--labels", "predicted", "--data-frac", "1",
                        "--epochs", "1", "--set", "val_frac=0", "--no-report", "-o", out)
    assert code == 0 and "labelled by the base's predictions" in " ".join(text.split())
    from harden.data import stratified_subset
    held = harden.load(out).spec.extra["held_out_test"]
    assert held["n"] == len(stratified_subset(np.full(12, -1), 0.2, 0)) > 0  # a fifth of the 12 loose images
