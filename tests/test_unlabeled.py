"""`fix --unlabeled`: pseudo-labels from the base only, the batch ratio, threshold and class balance, adapting or
refusing other images, recipes that cannot take them, determinism; data-kind defaults of the recipe files."""
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

import harden
from harden.data import stratified_subset
from harden.data.unlabeled import MixedData, load_unlabeled, pseudo_label
from harden.errors import HardenError
from harden.fix import epochs_with_pool, fix, state_digest
from harden.recipes.base import apply_kind_defaults, load_recipe_config, resolve_auto

FAST = ["eps=0.2", "epochs=1", "val_frac=0", "steps=2"]


@pytest.fixture(scope="module")
def pools(digits, tmp_path_factory):
    """The digits training images outside the 10% fraction, as .npz pools: without labels, with the true labels,
    and with every label wrong."""
    d = tmp_path_factory.mktemp("pools")
    rest = np.setdiff1d(np.arange(digits.n_train), stratified_subset(digits.y_train, 0.1, 0))
    x, y = digits.x_train[rest], digits.y_train[rest]
    paths = {"none": d / "none.npz", "true": d / "true.npz", "wrong": d / "wrong.npz"}
    np.savez(paths["none"], x_train=x)
    np.savez(paths["true"], x_train=x, y_train=y)
    np.savez(paths["wrong"], x_train=x, y_train=(y + 1) % 10)
    return paths


def _fix(base, data, pool, sets=(), seed=0):
    return fix(base, data, sets=[*FAST, *sets], data_frac=0.1, seed=seed, report=False, unlabeled=pool)


def test_pseudo_labels_come_from_the_base_never_the_source(digits, digits_model, pools):
    runs = {k: _fix(digits_model, digits, str(p)) for k, p in pools.items()}
    metas = {k: r.model.spec.extra["unlabeled"] for k, r in runs.items()}
    for k in ("true", "wrong"):
        assert metas[k]["class_histogram"] == metas["none"]["class_histogram"]
        assert metas[k]["index_sha256"] == metas["none"]["index_sha256"]
        assert state_digest(runs[k].model) == state_digest(runs["none"].model)
    # the source's labels are only measured against: the base agrees with the true ones, not with the shifted ones
    assert "agreement_with_source_labels" not in metas["none"]
    assert metas["true"]["agreement_with_source_labels"]["rate"] > 0.9
    assert metas["wrong"]["agreement_with_source_labels"]["rate"] < 0.1
    # and the pseudo-labels are the base's predictions
    pool = load_unlabeled(str(pools["wrong"]), None)
    pl = pseudo_label(digits_model, pool, balance=0)
    x, _ = pl.data.images("train", np.arange(pl.data.n_train))
    with torch.no_grad():
        assert np.array_equal(digits_model(x).argmax(1).numpy(), pl.data.y_train)


def test_same_seed_same_weights_and_the_pool_changes_training(digits, digits_model, pools):
    a, b = _fix(digits_model, digits, str(pools["none"])), _fix(digits_model, digits, str(pools["none"]))
    assert state_digest(a.model) == state_digest(b.model)
    without = fix(digits_model, digits, sets=FAST, data_frac=0.1, seed=0, report=False)
    assert state_digest(without.model) != state_digest(a.model)
    assert "unlabeled" not in without.model.spec.extra
    assert a.training()["data"].startswith("10% labelled + ")


@pytest.mark.parametrize("ratio", [0.5, 0.7, 0.2])
def test_ratio_per_batch_holds(digits, ratio):
    labelled = digits.take_train(np.arange(100))
    pool = harden.data.unlabeled.relabel(digits.take_train(np.arange(100, 400)), np.zeros(300, np.int64))
    mixed = MixedData(labelled, pool, ratio, seed=0)
    bs = 16
    plan = mixed.epoch_batches(bs, np.random.default_rng(0))
    assert len(plan) == mixed.steps_per_epoch(bs) == math.ceil(100 / bs)
    extra = round(bs * ratio / (1 - ratio))
    seen_pool = []
    for batch in plan:
        lab, unl = batch[batch < 100], batch[batch >= 100]
        assert len(unl) == extra and abs(len(unl) / len(batch) - ratio) <= 0.5 / len(batch) + (len(lab) < bs)
        seen_pool += list(unl - 100)
    assert len(set(seen_pool)) == min(len(seen_pool), 300)  # drawn without replacement until the pool runs out
    xs = list(mixed.feeder("none", 0, torch.device("cpu")).epoch(plan[:2], 1))
    assert [len(x) for x, _ in xs] == [len(b) for b in plan[:2]]
    assert all(int((y == 0).sum()) >= extra for _, y in xs)  # the pool's pseudo-labels (all 0 here) reach the loss


def test_the_pool_can_have_its_own_augmentation(digits):
    """A training dataset that augments itself gets none from harden, its pool of files still gets harden's: the
    labelled images come through as they are, the pool's shifted."""
    labelled = digits.take_train(np.arange(64))
    pool = harden.data.unlabeled.relabel(digits.take_train(np.arange(64, 128)), np.zeros(64, np.int64))
    raw_lab, _ = labelled.images("train", np.arange(64))
    raw_pool, _ = pool.images("train", np.arange(64))
    for own, pool_moved in (("same", False), ("crop", True)):
        mixed = MixedData(labelled, pool, 0.5, seed=0, pool_augment=own)
        batch = np.concatenate([np.arange(16), 64 + np.arange(16)])
        x, _ = next(iter(mixed.feeder("none", 0, torch.device("cpu")).epoch([batch], 1)))
        assert torch.equal(x[:16], raw_lab[:16])
        assert torch.equal(x[16:], raw_pool[:16]) is not pool_moved


def test_threshold_and_class_balance_hold(digits, digits_model, pools):
    pool = load_unlabeled(str(pools["none"]), None)
    x, _ = pool.images("train", np.arange(pool.n_train))
    with torch.no_grad():
        conf = torch.softmax(digits_model(x), 1).max(1).values.numpy()
    pl = pseudo_label(digits_model, pool, threshold=0.99, balance=0)
    assert pl.meta["used"] == int((conf >= 0.99).sum()) < pool.n_train
    assert pl.meta["dropped_below_threshold"] == pool.n_train - pl.meta["used"]
    balanced = pseudo_label(digits_model, pool, balance=1.0)
    counts = np.bincount(balanced.data.y_train, minlength=10)
    before = balanced.meta["used"] + balanced.meta["dropped_for_balance"]  # an even share of those is the cap
    assert counts.max() == math.ceil(before / 10) and balanced.meta["dropped_for_balance"] > 0
    assert balanced.meta["dropped_for_balance"] > 0
    limit = pseudo_label(digits_model, pool, limit=100)
    assert limit.meta["listed"] == pool.n_train and limit.meta["used"] <= 100
    with pytest.raises(HardenError, match="pseudo_threshold"):
        pseudo_label(digits_model, pool, threshold=1.5)
    with pytest.raises(HardenError, match="pseudo_balance"):
        pseudo_label(digits_model, pool, balance=0.5)


def test_other_channels_and_sizes_are_adapted_or_refused(digits, digits_model, tmp_path):
    rng = np.random.default_rng(0)
    colour = tmp_path / "colour16.npz"
    np.savez(colour, x_train=rng.integers(0, 255, (64, 16, 16, 3), dtype=np.uint8))
    r = _fix(digits_model, digits, str(colour))
    assert "3 -> 1" in r.model.spec.extra["unlabeled"]["adapted"] and "16x16 -> 8x8" in \
        r.model.spec.extra["unlabeled"]["adapted"]
    tiny = tmp_path / "tiny.npz"
    np.savez(tiny, x_train=rng.integers(0, 255, (64, 1, 1), dtype=np.uint8))
    with pytest.raises(HardenError, match="blowing them up"):
        _fix(digits_model, digits, str(tiny))
    one = tmp_path / "one_split.npz"  # saved as one split (images, labels): its images are the pool
    np.savez(one, images=digits.x_train[:40, :, :, 0], labels=digits.y_train[:40])
    assert _fix(digits_model, digits, str(one)).model.spec.extra["unlabeled"]["listed"] == 40
    bad = tmp_path / "nox.npz"
    np.savez(bad, pixels=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(HardenError, match="no x_train"):
        _fix(digits_model, digits, str(bad))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(HardenError, match="not a readable .npz"):
        _fix(digits_model, digits, str(broken))


def test_folder_pools_with_and_without_classes(digits, digits_model, tmp_path):
    """Loose images in nested folders, and a folder of class folders whose labels only measure agreement."""
    loose, classes = tmp_path / "loose", tmp_path / "classes"
    for i in range(40):
        img = Image.fromarray(digits.x_train[i, :, :, 0])
        (loose / f"cam{i % 3}").mkdir(parents=True, exist_ok=True)
        img.save(loose / f"cam{i % 3}" / f"{i}.png")
        (classes / str(digits.y_train[i])).mkdir(parents=True, exist_ok=True)
        img.save(classes / str(digits.y_train[i]) / f"{i}.png")
    a = _fix(digits_model, digits, str(loose)).model.spec.extra["unlabeled"]
    b = _fix(digits_model, digits, str(classes)).model.spec.extra["unlabeled"]
    listed = tmp_path / "paths.txt"  # a list of paths alone
    listed.write_text("\n".join(f"loose/cam{i % 3}/{i}.png" for i in range(40)))
    c = _fix(digits_model, digits, str(listed)).model.spec.extra["unlabeled"]
    assert a["listed"] == b["listed"] == c["listed"] == 40 and c["class_histogram"] == a["class_histogram"]
    assert "agreement_with_source_labels" not in a and b["agreement_with_source_labels"]["n"] == 40
    assert sorted(a["class_histogram"]) == sorted(b["class_histogram"])
    listed.write_text(listed.read_text() + "\nloose/cam0/gone.png")  # a file deleted since the list was made
    from harden.data import DataTarget
    with pytest.raises(HardenError, match=r"gone\.png.*--skip-unreadable leaves them out"):
        load_unlabeled(listed, DataTarget.for_model(digits_model, workers=0))
    kept = load_unlabeled(listed, DataTarget.for_model(digits_model, workers=0, skip_unreadable=True))
    assert kept.n_train == 41  # listed; skipped and counted where read, as an unreadable file is
    assert pseudo_label(digits_model, kept).meta["listed"] == 41 and len(kept.skipped) == 1


def test_cli_unlabeled(cli, digits_ckpt, pools, tmp_path):
    out = tmp_path / "h.safetensors"
    code, o, e = cli("fix", digits_ckpt, "--data", "digits", "--unlabeled", pools["wrong"], *sum(
        (["--set", s] for s in FAST), []), "--no-report", "-o", out)
    assert code == 0, o + e
    assert "labelled + " in o and "unlabeled" in o
    meta = harden.load(out).spec.extra["unlabeled"]
    assert meta["used"] > 0 and meta["ratio"] == 0.5
    code, o, e = cli("fix", digits_ckpt, "--data", "digits", "--recipe", "idfr", "--unlabeled", pools["none"],
                     "--no-report", "-o", tmp_path / "i.safetensors")
    assert code == 2 and "cannot use unlabeled images" in o + e and "Traceback" not in o + e
    code, o, e = cli("fix", digits_ckpt, "--data", "digits", "--unlabeled", tmp_path / "missing", "--no-report",
                     "-o", tmp_path / "m.safetensors")
    assert code == 2 and "does not exist" in o + e
    code, o, e = cli("fix", digits_ckpt, "--data", "digits", "--unlabeled", pools["none"], "--set",
                     "unlabeled_ratio=1", "--no-report", "-o", tmp_path / "r.safetensors")
    assert code == 2 and "unlabeled_ratio" in o + e


def test_fixer_takes_unlabeled(digits, digits_model, pools):
    r = fix(digits_model, digits, recipe="fixer", sets=["eps=0.2", "epochs=1", "steps=2"], data_frac=0.1,
            report=False, unlabeled=str(pools["none"]))
    assert r.model.spec.extra["unlabeled"]["used"] > 0


def test_teacher_soft_labels(digits, digits_model, pools):
    hard = _fix(digits_model, digits, str(pools["none"]))
    soft = _fix(digits_model, digits, str(pools["none"]), sets=["teacher_temperature=2"])
    assert state_digest(hard.model) != state_digest(soft.model)
    assert soft.model.spec.extra["unlabeled"]["teacher_temperature"] == 2.0
    with pytest.raises(HardenError, match="teacher_temperature"):
        _fix(digits_model, digits, str(pools["none"]), sets=["teacher_temperature=2", "loss=mart"])


def test_kind_defaults_apply_unless_set():
    cfg = load_recipe_config("at")
    applied = apply_kind_defaults(cfg, "cifar-like")
    assert cfg["params"]["attack"] == "fgsm-rs" and applied["applied"]["epochs"] == "2*auto" and applied["why"]
    assert resolve_auto("epochs", cfg["train"]["epochs"], lambda: 10) == 20
    mine = harden.recipes.apply_overrides(load_recipe_config("at"), ["attack=pgd-l2"])
    applied = apply_kind_defaults(mine, "cifar-like")  # another attack: the table's doubled epochs were for FGSM-RS
    assert mine["params"]["attack"] == "pgd-l2" and applied == {} and mine["train"]["epochs"] == "auto"
    mine = harden.recipes.apply_overrides(load_recipe_config("at"), ["epochs=12"])
    applied = apply_kind_defaults(mine, "cifar-like")  # the epochs set, the attack still the measured one
    assert mine["params"]["attack"] == "fgsm-rs" and applied["applied"] == {"attack": "fgsm-rs"}
    plain = load_recipe_config("at")
    assert apply_kind_defaults(plain, "mnist-like") == {} and plain["params"]["attack"] == "pgd"
    with pytest.raises(HardenError, match="whole number"):
        resolve_auto("epochs", "lots", lambda: 10)


def test_kind_defaults_reach_the_checkpoint_and_report():
    from conftest import tiny_data
    data = tiny_data((32, 32), 3, n=40, classes=4)  # small colour images: 'cifar-like'
    base = harden.models.create_model("cnn-small", num_classes=4, in_chans=3, input_size=(32, 32))
    r = fix(base, data, sets=["eps=0.1", "epochs=1", "val_frac=0"], data_frac=1.0, report=True, report_n=8,
            attacks=["fgsm"], metrics=False, masking_checks=False)
    kd = r.model.spec.extra["kind_defaults"]
    assert kd["kind"] == "cifar-like" and kd["applied"] == {"attack": "fgsm-rs"}  # epochs were given
    assert r.model.spec.extra["recipe_params"]["attack"] == "fgsm-rs"
    assert any("cifar-like" in n for n in r.reports["fixed_white_box"].notes)


def test_automatic_epochs_see_the_pool_about_once():
    # MNIST at 1% (599 labelled images, batch 32: 19 steps an epoch, 30 epochs alone) with the other 59,401 as a pool
    assert epochs_with_pool(30, 599, 59401, 32, 0.5) == 60  # seeing it once takes 98 epochs: capped at twice the 30
    assert epochs_with_pool(30, 599, 59401, 32, 0.75) == 33  # 96 pool images a step: once in 33 epochs
    assert epochs_with_pool(20, 4991, 44922, 32, 0.5) == 20  # CIFAR-10 at 10%: never fewer than without the pool
    assert epochs_with_pool(10, 100, 50, 32, 0.5) == 10
    # at's 10% validation slice is not trained on: 539 images, 17 steps an epoch, so once is 37 epochs, not 33
    assert epochs_with_pool(30, 599, 59401, 32, 0.75, val_frac=0.1) == 37


def test_the_reports_test_images_never_enter_the_pool(tmp_path):
    """A pool that lists every file, the report's test images among them (a list of all of the folder, or the one
    split fix holds a share out of): those are left out of it, and said; the rest are all used."""
    from harden.data import DataTarget, load_data
    from harden.data.test_copies import leave_out_test_images
    from test_files import make_tree, small_cnn
    files = make_tree(tmp_path / "img", ["a", "b"], 4, splits=("train", "val"), sizes=(20, 24))
    (tmp_path / "every.txt").write_text("\n".join(files))
    model = small_cnn(num_classes=2)
    data = load_data(tmp_path / "img", DataTarget.for_model(model, workers=0))
    pool = load_unlabeled(tmp_path / "every.txt", DataTarget.for_model(model, workers=0))
    kept, left_out = leave_out_test_images(pool, data)
    assert pool.n_train == 16 and left_out == 8 and kept.n_train == 8
    assert all("/train/" in kept.listing("train").location(i) for i in range(8))
    r = fix(model, data, sets=["epochs=1", "val_frac=0", "steps=1"], data_frac=1.0, report=False,
            unlabeled=str(tmp_path / "every.txt"))
    assert r.model.spec.extra["unlabeled"]["listed"] == 8
    one = load_data(tmp_path / "img" / "val", DataTarget.for_model(model, workers=0))  # one split: 20% held out
    from harden.data.held_out import hold_out_for_training
    held = hold_out_for_training(one)
    kept, left_out = leave_out_test_images(load_unlabeled(tmp_path / "img" / "val", DataTarget.for_model(
        model, workers=0)), held)
    assert left_out == held.n_test == 2 and kept.n_train == 6
    # the test split itself as the pool: nothing is left, and that (not the pseudo-label threshold) is said
    with pytest.raises(HardenError, match=r"all 8 of its images are .* test images.*none is left to train on"):
        fix(model, data, sets=["epochs=1", "val_frac=0", "steps=1"], data_frac=1.0, report=False,
            unlabeled=str(tmp_path / "img" / "val"))
    with pytest.raises(HardenError, match=r"no image to pseudo-label \(0 listed\)"):
        pseudo_label(model, kept.take_train(np.arange(0), kept.subset))


def test_copies_of_the_reports_test_images_are_found_by_their_bytes_or_pixels(tmp_path, digits):
    """A pool that holds copies of test images elsewhere (every photograph a team has, test ones among them): files
    with a test file's bytes, and array rows with a test row's pixels, are left out; a re-encoded copy is another
    image and stays."""
    import shutil
    from PIL import Image
    from harden.data import DataTarget, ImageData, load_data
    from harden.data.test_copies import leave_out_test_images
    from test_files import make_tree, small_cnn
    files = make_tree(tmp_path / "img", ["a", "b"], 4, splits=("train", "val"), sizes=(20, 24))
    val = sorted(f for f in files if "/val/" in f)
    (tmp_path / "dump").mkdir()
    for i, f in enumerate(val[:3]):  # three exact copies under other names
        shutil.copy(f, tmp_path / "dump" / f"copy{i}{os.path.splitext(f)[1]}")
    Image.open(val[3]).convert("RGB").resize((22, 22)).save(tmp_path / "dump" / "resized.png")  # another image
    for f in sorted(f for f in files if "/train/" in f)[:2]:
        shutil.copy(f, tmp_path / "dump" / ("train_" + os.path.basename(f)))  # training images may stay
    model = small_cnn(num_classes=2)
    data = load_data(tmp_path / "img", DataTarget.for_model(model, workers=0))
    pool = load_unlabeled(tmp_path / "dump", DataTarget.for_model(model, workers=0))
    kept, left_out = leave_out_test_images(pool, data)
    assert pool.n_train == 6 and left_out == 3 and kept.n_train == 3
    assert not any("copy" in kept.listing("train").location(i) for i in range(3))
    arrays = ImageData(digits.x_train[:20], digits.y_train[:20], digits.x_test[:50], digits.y_test[:50], "d", 10)
    rows = np.concatenate([digits.x_train[20:30], digits.x_test[5:9], 255 - digits.x_test[9:11]])
    kept, left_out = leave_out_test_images(ImageData(rows, np.zeros(16, np.int64), rows[:0], np.zeros(0, np.int64),
                                                     "pool", 10), arrays)
    assert left_out == 4 and kept.n_train == 12  # the inverted ones are other pixels


def test_array_files_as_pools(digits, tmp_path):
    """An .npy of images (np.save), an .h5 of them, and a pickle of arrays (Carmon et al.'s
    ti_500K_pseudo_labeled.pickle: a dict with `data`) are pools, read with nothing in the pickle run; a pickle that
    would run code is refused."""
    import pickle
    x = digits.x_train[:30, :, :, 0]
    np.save(tmp_path / "pool.npy", x)
    with open(tmp_path / "ti.pickle", "wb") as f:
        pickle.dump({"data": x, "extrapolated_targets": np.zeros(30, np.int64)}, f)
    import h5py
    from harden.data.hdf5 import H5Rows
    with h5py.File(tmp_path / "pool.h5", "w") as f:
        f["images"] = x
    target = harden.data.DataTarget(num_classes=10)
    assert isinstance(load_unlabeled(tmp_path / "pool.h5", target).x_train, H5Rows)  # read as batches are drawn
    for name in ("pool.npy", "ti.pickle", "pool.h5"):
        pool = load_unlabeled(tmp_path / name, target)
        assert np.array_equal(np.asarray(pool.x_train[:])[..., 0], x), name

    class Runs:
        def __reduce__(self):
            return (print, ("ran",))
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"data": Runs()}, f)
    with pytest.raises(HardenError, match="Refused to unpickle builtins.print"):
        load_unlabeled(tmp_path / "evil.pkl", target)
