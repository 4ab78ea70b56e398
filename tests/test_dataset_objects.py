"""A torch Dataset or DataLoader given to the library (data/dataset_objects.py): read item by item through its own
transform, its Normalize undone (the model given it inside), its labels kept beside it or read, random transforms
refused for the images a report is measured on."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import harden
from harden.data import load_data
from harden.errors import HardenError

KW = dict(attacks=["fgsm"], eps=0.1, metrics=False, masking_checks=False, device="cpu")


class Digits(torch.utils.data.Dataset):
    """As torchvision's MNIST is written: PIL images built from uint8 arrays, `targets` and `classes` kept beside
    them, `transform` and `target_transform`."""

    def __init__(self, x, y, transform=None, target_transform=None, keep_targets=True):
        self.x, self.transform, self.target_transform = x, transform, target_transform
        if keep_targets:
            self.targets = torch.as_tensor(y)
        self._y = y
        self.classes = [f"{d} - digit" for d in range(10)]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = Image.fromarray(self.x[i][..., 0], mode="L")
        target = int(self._y[i])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


@pytest.fixture(scope="module")
def pair(digits):
    return digits.x_test[:60], digits.y_test[:60]


def _same(a, b):
    assert (a.n, a.clean_accuracy) == (b.n, b.clean_accuracy)
    assert [r.robust_accuracy for r in a.attacks] == [r.robust_accuracy for r in b.attacks]


def test_dataset_reads_as_its_arrays(digits, digits_model, pair):
    x, y = pair
    want = harden.evaluate(digits_model, (x, y), **KW)
    for ds in (Digits(x, y, T.ToTensor()), Digits(x, y, T.PILToTensor()), Digits(x, y),
               torch.utils.data.DataLoader(Digits(x, y, T.ToTensor()), batch_size=7, shuffle=True)):
        got = harden.evaluate(digits_model, ds, **KW)
        _same(got, want)
        assert got.data.startswith("torch Dataset Digits")
    data = load_data(Digits(x, y, T.ToTensor()))
    assert np.array_equal(data.x_test[:], x) and np.array_equal(data.y_test, y)
    assert data.class_names[3] == "3 - digit"
    both = load_data((Digits(digits.x_train[:50], digits.y_train[:50], T.ToTensor()), Digits(x, y, T.ToTensor())))
    assert (both.n_train, both.n_test) == (50, 60) and np.array_equal(both.x_train[5], digits.x_train[5])


def test_a_loader_reads_the_part_its_sampler_draws(digits, digits_model, pair):
    """Published code splits one dataset by two samplers (`SubsetRandomSampler(train_idx)`, `(val_idx)`): the
    validation loader was read as its whole dataset, so its report counted the training images. A loader reads the
    items its sampler (or its own batch sampler) draws, in the dataset's order; one that shuffles or weights the whole
    dataset reads all of it."""
    x, y = pair
    ds = Digits(x, y, T.ToTensor())
    held = list(range(45, 60))
    want = harden.evaluate(digits_model, (x[45:], y[45:]), **KW)
    sampled = torch.utils.data.DataLoader(ds, batch_size=8, sampler=torch.utils.data.SubsetRandomSampler(held[::-1]))
    batched = torch.utils.data.DataLoader(ds, batch_sampler=[held[:7], held[7:]])
    for loader in (sampled, batched):
        got = harden.evaluate(digits_model, loader, n=500, **KW)
        _same(got, want)
        assert got.n == 15
    for whole in (torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True),
                  torch.utils.data.DataLoader(ds, sampler=torch.utils.data.WeightedRandomSampler([1.0] * 60, 60))):
        assert harden.evaluate(digits_model, whole, n=500, **KW).n == 60


def test_normalize_is_undone_and_given_to_a_plain_module(digits_model, pair):
    """A published pipeline: ToTensor + Normalize in the dataset, a network that takes normalised images. Read as
    pixels (exactly the uint8 arrays) and the network given that mean and std: the report equals the checkpoint's."""
    x, y = pair
    mean, std = digits_model.mean.flatten().tolist(), digits_model.std.flatten().tolist()
    ds = Digits(x, y, T.Compose([T.ToTensor(), T.Normalize(mean, std)]))
    data = load_data(ds)
    assert np.array_equal(data.x_test[:], x)
    assert data.identity()["from_dataset"]["normalize_undone"]["mean"] == pytest.approx(mean, abs=1e-5)
    from harden.data.describe import describe
    assert "Normalize (mean" in dict(describe(data))["layout"]
    assert data.identity()["from_dataset"]["transform"].startswith("ToTensor(), Normalize(mean=")  # what it measured
    want = harden.evaluate(digits_model, (x, y), **KW)
    _same(harden.evaluate(digits_model.net, ds, **KW), want)
    # the module as the report measures it: given pixels, it sees what the dataset's transform fed it
    from harden.data.dataset_objects import model_for
    wrapped = model_for(digits_model.net, data).eval()
    with torch.no_grad():
        fed = torch.stack([ds[i][0] for i in range(len(ds))])
        assert torch.allclose(wrapped(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255), digits_model.net(fed),
                              atol=1e-4)
    # a checkpoint that normalises otherwise than the dataset: its own normalisation applies, said
    other = Digits(x, y, T.Compose([T.ToTensor(), T.Normalize([0.5], [0.5])]))
    from harden.runtime import held_warnings
    with held_warnings() as said:
        _same(harden.evaluate(digits_model, other, **KW), want)
    assert any("normalises with its own" in m for m in said)


def test_labels_kept_read_or_through_subsets(digits, pair):
    from harden.data.dataset_objects import labels_of
    x, y = pair
    assert np.array_equal(labels_of(Digits(x, y, keep_targets=False), "d"), y)  # no targets: read item by item
    shifted = Digits(x, y, target_transform=lambda t: (t + 1) % 10)  # targets kept, but items give others
    assert np.array_equal(labels_of(shifted, "d"), (y + 1) % 10)
    sub = torch.utils.data.Subset(Digits(x, y), [5, 1, 40])
    assert np.array_equal(labels_of(sub, "d"), y[[5, 1, 40]])
    cat = torch.utils.data.ConcatDataset([Digits(x[:10], y[:10]), Digits(x[10:], y[10:], keep_targets=False)])
    assert np.array_equal(labels_of(cat, "d"), y)
    class Unreadable(Digits):
        def __getitem__(self, i):
            if i == 5:
                raise OSError("image file is truncated")
            return super().__getitem__(i)
    with pytest.raises(HardenError, match=r"d\[5\] raised OSError: image file is truncated"):
        labels_of(Unreadable(x, y, keep_targets=False), "d")  # read for its labels: said with the item's index
    from harden.data.dataset_objects import _kept_labels
    tensors = torch.utils.data.TensorDataset(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(y))
    assert np.array_equal(_kept_labels(tensors), y) and np.array_equal(load_data(tensors).x_test[:], x)
    one_hot = Digits(x, y, target_transform=lambda t: torch.nn.functional.one_hot(torch.tensor(t), 10).float())
    assert np.array_equal(load_data(one_hot).y_test, y)


class Dicts(torch.utils.data.Dataset):
    """Items as dicts, as Hugging Face datasets in torch format give them."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixel_values": torch.from_numpy(self.x[i]).permute(2, 0, 1).float() / 255, "labels": self.y[i]}


def test_dict_items_and_refusals(pair):
    x, y = pair
    assert np.array_equal(load_data(Dicts(x, y)).x_test[:], x)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([])
    with pytest.raises(HardenError, match="IterableDataset"):
        load_data(Stream())
    with pytest.raises(HardenError, match="another image each time.*RandomCrop"):
        load_data(Digits(x, y, T.Compose([T.RandomCrop(8, padding=2), T.ToTensor()])))
    with pytest.raises(HardenError, match="normalised images.*no Normalize"):
        load_data(Digits(x, y, T.Compose([T.ToTensor(), T.Lambda(lambda t: (t - 0.5) / 0.2)])))
    with pytest.raises(HardenError, match="not an \\(image, label\\) pair"):
        load_data(_Images())

    with pytest.raises(HardenError, match="alone"):
        load_data((Digits(x, y), y))


class _Images(torch.utils.data.Dataset):
    """Images without labels."""

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return torch.zeros(1, 8, 8)


def test_fix_a_plain_module_on_datasets(digits, digits_model):
    """harden.fix(net, (train_ds, test_ds)) on a normalising pipeline: hardened as a copy, wrapped with the dataset's
    mean and std, and the checkpoint written from it evaluates as the module does."""
    import copy
    net = copy.deepcopy(digits_model.net)
    mean, std = digits_model.mean.flatten().tolist(), digits_model.std.flatten().tolist()
    tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    train = Digits(digits.x_train[:200], digits.y_train[:200], tf)
    test = Digits(digits.x_test[:40], digits.y_test[:40], tf)
    net.train()  # the caller's module is trained as a copy and handed back as it came
    res = harden.fix(net, (train, test), sets=["eps=0.1", "val_frac=0"], epochs=1, data_frac=1.0, report=False,
                     device="cpu")
    assert all(m.training for m in net.modules())
    net.eval()
    assert res.model.mean.flatten().tolist() == pytest.approx(mean, abs=1e-5)
    assert res.model.std.flatten().tolist() == pytest.approx(std, abs=1e-5)
    assert not all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), res.model.net.state_dict().values(),
                                                     strict=True))
    _same(harden.evaluate(res.model.net, test, **KW), harden.evaluate(res.model, (digits.x_test[:40],
                                                                                    digits.y_test[:40]), **KW))
    assert res.model.spec.extra["recipe_train"]["augment"] == "crop"  # digits: harden's own pad + crop
    # a training transform that augments itself: nothing of harden's on top (every image cropped twice otherwise)
    train.transform = T.Compose([T.RandomCrop(8, padding=1), T.ToTensor(), T.Normalize(mean, std)])
    pool = digits.take_train(np.arange(200, 264))  # images no transform of the dataset's reads: harden's crop for them
    res = harden.fix(net, (train, test), sets=["eps=0.1", "val_frac=0"], epochs=1, data_frac=1.0, report=False,
                     device="cpu", unlabeled=pool)
    assert res.model.spec.extra["recipe_train"]["augment"] == "none"
    assert res.model.spec.extra["recipe_train"]["unlabeled_augment"] == "crop"


def test_one_dataset_fix_holds_out_and_eval_finds_it_by_content(digits, digits_model):
    from harden.data import held_out
    one = Digits(digits.x_train[:200], digits.y_train[:200], T.ToTensor())
    res = harden.fix(digits_model, torch.utils.data.DataLoader(one, batch_size=16), sets=["eps=0.1", "val_frac=0"],
                     epochs=1, data_frac=1.0, report=False, device="cpu")
    kept = res.model.spec.extra[held_out.KEY]
    assert 30 < kept["n"] < 50 and kept["source"] == "torch Dataset Digits"
    assert harden.evaluate(res.model, one, n=None, **KW).n == kept["n"]  # never on the images it trained on
    other = Digits(digits.x_train[200:260], digits.y_train[200:260], T.ToTensor())  # same class, other images: all
    assert harden.evaluate(res.model, other, n=None, **KW).n == 60


def test_hugging_face_datasets_by_their_columns(digits_model, pair):
    """load_dataset's objects: a Dataset of dicts (its Image and ClassLabel columns found by their features, labels
    read from the column without decoding an image), in torch format too, and a DatasetDict's train and test."""
    datasets = pytest.importorskip("datasets")
    x, y = pair
    features = datasets.Features({"picture": datasets.Image(), "digit": datasets.ClassLabel(names=list("0123456789"))})
    ds = datasets.Dataset.from_dict({"picture": [Image.fromarray(a[..., 0]) for a in x], "digit": y.tolist()},
                                    features=features)
    for given in (ds, ds.with_format("torch")):
        data = load_data(given)
        assert np.array_equal(data.x_test[:], x) and np.array_equal(data.y_test, y)
        assert data.class_names[:2] == ["0", "1"]
    _same(harden.evaluate(digits_model, ds, **KW), harden.evaluate(digits_model, (x, y), **KW))
    both = load_data(datasets.DatasetDict({"train": ds.select(range(20)), "validation": ds}))
    assert (both.n_train, both.n_test) == (20, 60)
    # Hugging Face's image classification tutorial: a global Compose applied in a with_transform function, its
    # Normalize found through the names the function uses (nothing of it is called)
    data = load_data(ds.with_transform(_tutorial_transforms))
    assert np.array_equal(data.x_test[:], x) and data.from_dataset["normalize_undone"]["std"] == [0.4]


_tutorial_pipeline = T.Compose([T.CenterCrop(8), T.ToTensor(), T.Normalize([0.3], [0.4])])


def _tutorial_transforms(examples):
    examples["pixel_values"] = [_tutorial_pipeline(img) for img in examples["picture"]]
    del examples["picture"]
    return examples


_processor = None  # transformers' image processor, as Hugging Face's ViT fine-tuning blog applies one


def _processor_transform(batch):
    inputs = _processor([x for x in batch["image"]], return_tensors="pt")
    inputs["labels"] = batch["label"]
    return inputs


def test_a_hugging_face_image_processor_is_undone_as_a_normalize():
    """The ViT fine-tuning blog's pipeline: `with_transform` of a function that calls a global image processor (resize,
    rescale, normalise) and renames the label: pixels read back exactly, its mean and std undone and given to the
    model, its resize recorded, labels read from the stored column without decoding an image."""
    global _processor
    datasets = pytest.importorskip("datasets")
    transformers = pytest.importorskip("transformers")
    _processor = transformers.ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.4, 0.5, 0.6],
                                                image_std=[0.2, 0.25, 0.3])
    rng = np.random.default_rng(0)
    photos = [Image.fromarray((rng.random((20 + 3 * k, 31 - k, 3)) * 255).astype(np.uint8)) for k in range(12)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    ds = datasets.Dataset.from_dict({"image": photos, "label": [k % 3 for k in range(12)]}, features=features)
    data = load_data(ds.with_transform(_processor_transform))
    made = _processor(photos, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)  # what the model was fed
    want = np.rint((made * [0.2, 0.25, 0.3] + [0.4, 0.5, 0.6]) * 255)
    assert np.array_equal(data.x_test[:], want) and data.y_test.tolist() == [k % 3 for k in range(12)]
    resized = np.stack([np.asarray(p.resize((16, 16), Image.BILINEAR)) for p in photos])  # as its files read later
    assert np.abs(data.x_test[:].astype(int) - resized).max() <= 1  # (transformers resizes through torchvision)
    assert data.from_dataset["normalize_undone"] == {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    assert data.from_dataset["resize"] == {"interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "squash"}
    said = data.from_dataset["transform"]  # what the report names: the function and what it applies, no address
    assert "_processor_transform() applying ViTImageProcessor(size={'height': 16, 'width': 16}" in said


DATA_PY = '''
import numpy as np, torch
from PIL import Image
from torchvision import transforms as T

X = np.load({x!r})
Y = np.load({y!r})


class DigitImages(torch.utils.data.Dataset):
    def __init__(self, rows, transform):
        self.rows, self.transform, self.targets = rows, transform, torch.as_tensor(Y[rows])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(X[self.rows[i]][..., 0], "L")), int(self.targets[i])


TF = T.Compose([T.ToTensor(), T.Normalize([0.3], [0.4])])
test_set = DigitImages(np.arange(60), TF)  # an instance


def splits():  # a function making (train, test)
    return DigitImages(np.arange(60, 260), TF), test_set


def broken():
    raise FileNotFoundError("no such folder /data/imagenet")


def nothing():
    return 42
'''


def test_data_made_by_code_from_the_cli(cli, digits, digits_ckpt, tmp_path, monkeypatch):
    """`--data file.py:name`: a dataset (or a function that makes one) of the user's own code, for every command that
    takes --data; the hardened checkpoint remembers it by absolute path, so a later eval needs no --data."""
    x = np.concatenate([digits.x_test, digits.x_train])[:260]
    y = np.concatenate([digits.y_test, digits.y_train])[:260]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "mydata.py").write_text(DATA_PY.format(x=str(tmp_path / "x.npy"), y=str(tmp_path / "y.npy")))
    monkeypatch.chdir(code_dir)
    j = tmp_path / "r.json"
    code, out, err = cli("eval", digits_ckpt, "--data", "mydata.py:test_set", "--n", "60", "--no-metrics", "--attack",
                         "fgsm", "--json", j)
    assert code == 0, err
    import json
    rep = json.loads(j.read_text())
    assert rep["n"] == 60 and rep["data"] == "mydata.py:test_set"
    assert "normalises with its own" in out + err  # the checkpoint's mean and std, not the dataset's 0.3 and 0.4
    want = harden.evaluate(digits_ckpt, (x[:60], y[:60]), n=60, attacks=["fgsm"], metrics=False, device="cpu")
    assert rep["clean_accuracy"] == pytest.approx(want.clean_accuracy)
    code, out, err = cli("data", "mydata.py:splits")
    assert code == 0 and "DigitImages" in out and "Normalize" in out, err
    for name, says in (("broken", "raised FileNotFoundError: no such folder"), ("nothing", "gave int"),
                       ("absent", "has no 'absent'")):
        code, out, err = cli("eval", digits_ckpt, "--data", f"mydata.py:{name}", "--n", "10")
        assert code == 2 and says in err and "Traceback" not in err, err
    code, out, err = cli("eval", digits_ckpt, "--data", "mydata.py", "--n", "10")  # the file without a name in it
    assert code == 2 and "defines mydata.py:DigitImages, mydata.py:test_set, mydata.py:splits" in " ".join(err.split()), err
    res = harden.fix(digits_ckpt, "mydata.py:splits", sets=["eps=0.1", "val_frac=0"], epochs=1, data_frac=1.0,
                     report=False, device="cpu")
    assert res.model.spec.data == f"{code_dir / 'mydata.py'}:splits"
    harden.save(res.model, tmp_path / "fixed.safetensors")
    monkeypatch.chdir(tmp_path)  # from another folder: the remembered path
    code, out, err = cli("eval", tmp_path / "fixed.safetensors", "--n", "60", "--no-metrics", "--attack", "fgsm")
    assert code == 0 and "60 images of" in out, err
    code, out, err = cli("export", tmp_path / "fixed.safetensors", "-o", tmp_path / "fixed.onnx", "--n", "8")
    assert code == 0 and f"8 test images of {code_dir / 'mydata.py'}:splits" in " ".join(out.split()), out + err


def test_a_checkpoint_without_its_normalisation_takes_the_datasets(digits_model, pair, tmp_path):
    """A state dict loaded with --arch alone (mean 0, std 1 assumed) and the dataset that normalised its training
    images: the dataset's mean and std become the model's, and the report equals the trained checkpoint's."""
    x, y = pair
    torch.save(digits_model.net.state_dict(), tmp_path / "net.pt")
    loaded = harden.load(tmp_path / "net.pt", arch="cnn-small", num_classes=10, in_chans=1, input_size=8)
    assert loaded.spec.mean == (0.0,)
    mean, std = digits_model.mean.flatten().tolist(), digits_model.std.flatten().tolist()
    ds = Digits(x, y, T.Compose([T.ToTensor(), T.Normalize(mean, std)]))
    _same(harden.evaluate(loaded, ds, **KW), harden.evaluate(digits_model, (x, y), **KW))
    assert loaded.spec.mean == pytest.approx(mean, abs=1e-5) and loaded.config_sources["mean"] == "the dataset's Normalize"


def test_training_reads_items_in_workers_as_it_would_read_arrays(digits, digits_model):
    """fix on datasets (a fraction of them kept as a view, never read whole; items read by worker processes while
    it trains) ends with the very weights fix on the same images as arrays gives; an item that fails to read in a
    worker is said as one error, not as a worker's traceback."""
    from harden.data.base import read_per_item
    from harden.data.dataset_objects import item_batches
    xtr, ytr, xte, yte = digits.x_train[:300], digits.y_train[:300], digits.x_test[:40], digits.y_test[:40]
    kw = dict(sets=["eps=0.1", "val_frac=0"], epochs=1, data_frac=0.5, report=False, device="cpu", seed=3)
    data = load_data((Digits(xtr, ytr, T.ToTensor()), Digits(xte, yte, T.ToTensor())))
    part = harden.subsample(data, 0.5, 3)
    as_arrays = harden.subsample(load_data((xtr, ytr, xte, yte)), 0.5, 3)
    assert read_per_item(part.x_train) and not isinstance(part.x_train, np.ndarray)  # a view: nothing read yet
    assert np.array_equal(part.x_train[np.arange(150)], as_arrays.x_train)
    got = harden.fix(digits_model, data, **kw).model.state_dict()
    want = harden.fix(digits_model, (xtr, ytr, xte, yte), **kw).model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    rows = load_data(Digits(xtr, ytr, T.ToTensor())).x_test
    batches = [np.arange(i, i + 50) for i in range(0, 300, 50)]
    read = list(item_batches(rows, batches, 0, workers=2))
    assert all(np.array_equal(r, xtr[b]) for r, b in zip(read, batches, strict=True))

    class Failing(Digits):
        def __getitem__(self, i):
            if i == 120:
                raise OSError("image file is truncated")
            return super().__getitem__(i)
    assert np.array_equal(rows[np.arange(300)], xtr)  # many rows at once (the report's): read by workers too
    rows = load_data(Failing(xtr, ytr, T.ToTensor())).x_test
    with pytest.raises(HardenError, match="raised OSError: image file is truncated") as e:
        list(item_batches(rows, batches, 0, workers=2))
    assert "Traceback" not in str(e.value)
    with pytest.raises(HardenError, match="raised OSError: image file is truncated"):
        rows[np.arange(300)]
    with pytest.raises(HardenError, match=r"the dataset\[120\] raised OSError: image file is truncated"):
        rows[np.arange(100, 130)]  # a few rows: read here, said the same way


class ImagesOnly(torch.utils.data.Dataset):
    """Unlabeled images, as a folder-of-photos dataset without classes gives them: the item is the image."""

    def __init__(self, x, transform):
        self.x, self.transform = x, transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.x[i][..., 0], "L"))


def test_an_unlabeled_pool_from_a_dataset_trains_as_the_same_images_in_an_npz(digits, digits_model, tmp_path):
    """fix --unlabeled with a dataset (items: images alone; or pairs whose kept labels only feed the agreement
    figure; or made by code, `pool.py:name`): the same pseudo-labels and the same weights as the same images in an
    .npz pool."""
    from harden.data import stratified_subset
    from harden.fix import state_digest
    rest = np.setdiff1d(np.arange(digits.n_train), stratified_subset(digits.y_train, 0.1, 0))[:300]
    x, y = digits.x_train[rest], digits.y_train[rest]
    np.savez(tmp_path / "pool.npz", x_train=x)
    (tmp_path / "pool.py").write_text(f"import numpy as np\nimages = np.load({str(tmp_path / 'pool.npz')!r})['x_train']\n")
    kw = dict(sets=["eps=0.2", "epochs=1", "val_frac=0", "steps=2"], data_frac=0.1, seed=0, report=False)
    want = harden.fix(digits_model, digits, unlabeled=str(tmp_path / "pool.npz"), **kw)
    for pool in (ImagesOnly(x, T.ToTensor()), Digits(x, y, T.Compose([T.ToTensor(), T.Normalize([0.5], [0.2])])),
                 f"{tmp_path / 'pool.py'}:images"):
        got = harden.fix(digits_model, digits, unlabeled=pool, **kw)
        meta = got.model.spec.extra["unlabeled"]
        assert meta["class_histogram"] == want.model.spec.extra["unlabeled"]["class_histogram"]
        assert state_digest(got.model) == state_digest(want.model)
        if isinstance(pool, Digits):  # its kept labels: measured against, never trained on
            assert meta["agreement_with_source_labels"]["rate"] > 0.8


class MisconfigurationException(Exception):
    """Lightning's (lightning.fabric.utilities.exceptions), by name."""


class DigitsDataModule:
    """A Lightning DataModule as its docs write one (checked against lightning 2.x's LightningDataModule by hand;
    lightning is not a dependency): datasets made in setup(stage), loaders from methods; the dataset keeps its
    pipeline under a name of its own (`tf`)."""

    def __init__(self, x, y, test=True):
        self.x, self.y, self.has_test = x, y, test

    def setup(self, stage):
        tf = T.Compose([T.ToTensor(), T.Normalize((0.3,), (0.4,))])
        if stage == "fit":
            self.train, self.val = Own(self.x[:40], self.y[:40], tf), Own(self.x[40:50], self.y[40:50], tf)
        if stage == "test":
            self.test = Own(self.x[50:], self.y[50:], tf)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train, batch_size=8, shuffle=True)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.val, batch_size=8)

    def test_dataloader(self):
        if not self.has_test:  # what Lightning's default raises when a module defines none
            raise MisconfigurationException("`test_dataloader` must be implemented to be used with the Lightning "
                                            "Trainer")
        return torch.utils.data.DataLoader(self.test, batch_size=8)


class Own(torch.utils.data.Dataset):
    def __init__(self, x, y, tf):
        self.x, self.targets, self.tf = x, y, tf

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.tf(Image.fromarray(self.x[i][..., 0], "L")), int(self.targets[i])


def test_a_datamodule_gives_its_train_and_test_loaders(pair):
    x, y = pair
    data = load_data(DigitsDataModule(x, y))
    assert (data.n_train, data.n_test) == (40, 10) and np.array_equal(data.x_test[:], x[50:])
    assert data.identity()["from_dataset"]["normalize_undone"] == {"mean": [0.3], "std": [0.4]}  # found under `tf`
    assert load_data(DigitsDataModule(x, y, test=False)).n_test == 10 and np.array_equal(
        load_data(DigitsDataModule(x, y, test=False)).x_test[:], x[40:50])  # no test loader: the validation one

    class Broken(DigitsDataModule):
        def test_dataloader(self):
            raise KeyError("split")  # a bug in the user's loader is said, never passed over for the validation one
    with pytest.raises(HardenError, match=r"test_dataloader\(\) raised KeyError"):
        load_data(Broken(x, y))


class Photos(torch.utils.data.Dataset):
    """RGB images through a torchvision pipeline, its transform held as published code holds it."""

    def __init__(self, n, transform, side=48):
        rng = np.random.default_rng(0)
        self.x = (rng.random((n, side + 8, side + 8, 3)) * 255).astype(np.uint8)
        self.targets, self.transform = rng.integers(0, 3, n), transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.x[i])), int(self.targets[i])


def test_a_timm_state_dict_takes_the_datasets_size_and_normalisation(tmp_path):
    """A timm model's state dict loaded with --arch alone (timm's size and statistics for its own weights assumed) and the
    dataset it was trained with (48 px, its own Normalize): evaluated as the plain module on that dataset is."""
    import timm
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "r10t.pth")
    loaded = harden.load(tmp_path / "r10t.pth", arch="resnet10t")
    assert tuple(loaded.spec.input_size) != (48, 48)  # timm config: its own weights' size
    ds = Photos(24, T.Compose([T.CenterCrop(48), T.ToTensor(), T.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))]))
    got = harden.evaluate(loaded, ds, **KW)
    assert tuple(loaded.spec.input_size) == (48, 48) and loaded.spec.std == pytest.approx((0.2, 0.25, 0.3))
    _same(got, harden.evaluate(net, ds, **KW))


def test_train_on_a_dataset_takes_its_normalisation(pair):
    """harden train on a dataset that normalises: the model's mean and std are the dataset's Normalize (its
    pipeline's word), not statistics read from every item."""
    x, y = pair
    data = load_data(Digits(x, y, T.Compose([T.ToTensor(), T.Normalize((0.25,), (0.5,))])))
    assert data.mean_std() == ([0.25], [0.5])
    plain = load_data((Digits(x, y, T.ToTensor()), Digits(x[:10], y[:10], T.ToTensor())))
    measured = load_data((x, y, x[:10], y[:10])).mean_std()
    assert plain.mean_std() == measured and measured[0][0] > 0.1  # no Normalize: measured as for the arrays
    model = harden.train("cnn-small", data, harden.TrainConfig(epochs=1, batch_size=16), "cpu")
    assert model.spec.mean == (0.25,) and model.spec.std == (0.5,)


def test_images_alone_evaluated_against_the_models_own_predictions(digits_model, pair, tmp_path):
    """eval --labels predicted on a dataset of images alone (the library's object or `pool.py:name`): the images read
    as a pool is, each attacked against the model's own answer; the same report as the same images in an .npz."""
    x, _ = pair
    np.savez(tmp_path / "images.npz", x=x)
    (tmp_path / "pool.py").write_text(
        "import numpy as np, torch\nfrom PIL import Image\nfrom torchvision import transforms as T\n"
        f"X = np.load({str(tmp_path / 'images.npz')!r})['x']\n"
        "class Images(torch.utils.data.Dataset):\n"
        "    def __len__(self):\n        return len(X)\n"
        "    def __getitem__(self, i):\n        return T.ToTensor()(Image.fromarray(X[i][..., 0], 'L'))\n"
        "images = Images()\n")
    want = harden.evaluate(digits_model, str(tmp_path / "images.npz"), labels="predicted", **KW)
    assert want.n == 60 and want.clean_accuracy == 1.0
    for given in (ImagesOnly(x, T.ToTensor()), f"{tmp_path / 'pool.py'}:images"):
        _same(harden.evaluate(digits_model, given, labels="predicted", **KW), want)
    res = harden.fix(digits_model, ImagesOnly(x, T.ToTensor()), labels="predicted", sets=["eps=0.1", "val_frac=0"],
                     epochs=1, data_frac=1.0, report=False, device="cpu")  # hardened on the base's answers
    assert res.model.spec.extra["held_out_test"]["n"] == 12  # 20% of the 60 images held out, as for an .npz
    plain = torch.nn.Sequential(digits_model)  # a plain module of the caller's, taking [0, 1] pixels: the same
    _same(harden.evaluate(plain, ImagesOnly(x, T.ToTensor()), labels="predicted", **KW), want)
    res = harden.fix(plain, ImagesOnly(x, T.ToTensor()), labels="predicted", sets=["eps=0.1", "val_frac=0"],
                     epochs=1, data_frac=1.0, report=False, device="cpu")
    assert res.model.spec.extra["held_out_test"]["n"] == 12


def test_a_module_written_from_a_dataset_reads_image_files_as_the_dataset_did(tmp_path):
    """Resize(r) + CenterCrop(c) in the dataset's transform become the written checkpoint's crop fraction and
    interpolation: a later eval of the image files themselves reads them pixel for pixel as the dataset did."""
    import timm
    from torchvision import datasets
    from harden.data.dataset_objects import wrapped_for
    rng = np.random.default_rng(0)
    for k in range(6):
        (tmp_path / "photos" / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((50 + 7 * k, 61, 3)) * 255).astype(np.uint8)).save(
            tmp_path / "photos" / f"c{k % 2}" / f"{k}.png")
    tf = T.Compose([T.Resize(25, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(9), T.ToTensor(),
                    T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])
    data = load_data(datasets.ImageFolder(tmp_path / "photos", tf))
    model = wrapped_for(timm.create_model("resnet10t", num_classes=2), data)
    harden.save(model, tmp_path / "m.safetensors")
    loaded = harden.load(tmp_path / "m.safetensors")
    assert (loaded.spec.interpolation, loaded.spec.crop_mode) == ("bicubic", "center")
    files = harden.data_for(loaded, str(tmp_path / "photos"))
    got, _ = files.pixels("test", np.arange(6))
    assert torch.equal(got.permute(0, 2, 3, 1), torch.from_numpy(data.x_test[:]))  # uint8, the same files in order


def test_images_of_many_sizes_are_read_as_their_files_are(tmp_path, pair):
    """A dataset handing over images of many sizes and modes (an ImageFolder without a transform, a Hugging Face image
    dataset) is read as the folder of those files is: through the model's own transform, pixel for pixel, else at
    their typical size (recorded, so a module written from it reads the files alike); one item of another size in a
    dataset of one size is brought to theirs."""
    from torchvision import datasets
    from harden.data import DataTarget, Preprocess
    from harden.data.dataset_objects import _sampled_items
    rng = np.random.default_rng(0)
    for k in range(8):
        (tmp_path / "photos" / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        img = Image.fromarray((rng.random((30 + 7 * k, 41 + 3 * k, 3)) * 255).astype(np.uint8))
        (img.convert("L") if k == 3 else img).save(tmp_path / "photos" / f"c{k % 2}" / f"{k}.png")
    target = DataTarget(preprocess=Preprocess(3, (20, 20), "bicubic", 0.875))
    data = load_data(datasets.ImageFolder(tmp_path / "photos"), target)
    files, _ = load_data(str(tmp_path / "photos"), target).pixels("test", np.arange(8))
    assert torch.equal(files.permute(0, 2, 3, 1), torch.from_numpy(data.x_test[:]))  # uint8, the same files in order
    assert "the model's size" in data.from_dataset["resized"]
    guessed = load_data(datasets.ImageFolder(tmp_path / "photos"))  # no model: a square of the median shorter side
    assert (guessed.input_size, guessed.in_chans) == ((53, 53), 3)
    assert guessed.from_dataset["resize"] == {"interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}
    from harden.data.dataset_objects import layout
    assert "8 sizes among 8 sampled images" in layout(guessed)  # `harden data` says how they were read

    huge = _sampled_items(10 ** 12)  # the sample is drawn without listing the items: memory never grows with them
    assert len(set(huge)) == 32 and huge[:8] == list(range(8)) and max(huge) < 10 ** 12
    x, y = pair
    odd = next(i for i in range(len(x)) if i not in _sampled_items(len(x)))

    class OneOdd(Digits):
        def __getitem__(self, i):
            img, t = super().__getitem__(i)
            return (img.resize((16, 12)) if i == odd else img), t
    rows = load_data(OneOdd(x, y)).x_test
    want = np.asarray(Image.fromarray(x[odd][..., 0]).resize((16, 12)).resize((10, 8), Image.BILINEAR))[:, 1:9]
    assert rows.shape[1:] == (8, 8, 1) and np.array_equal(rows[odd][..., 0], want)


def test_timms_image_dataset_gives_its_labels_and_classes_without_reading_images(tmp_path):
    """timm's `create_dataset` (an ImageDataset over a reader): labels from its reader's (file, class) list, class
    names from its class_to_idx, no image decoded for them; its eval transform's Normalize undone."""
    import timm.data
    from harden.data.dataset_objects import _kept_labels
    rng = np.random.default_rng(0)
    for k in range(6):
        (tmp_path / f"c{k % 3}").mkdir(exist_ok=True)
        Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / f"c{k % 3}" / f"{k}.png")
    ds = timm.data.create_dataset("", root=str(tmp_path), split="validation", transform=timm.data.create_transform(16))
    assert _kept_labels(ds).tolist() == [0, 0, 1, 1, 2, 2]
    data = load_data(ds)
    assert data.class_names == ["c0", "c1", "c2"] and data.y_test.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.from_dataset["normalize_undone"]["std"] == [0.229, 0.224, 0.225] and data.input_size == (16, 16)


def test_an_item_with_nan_pixels_is_refused_by_its_index(digits, digits_model):
    """A transform that makes a NaN (a division by a zero std, a corrupt file's floats): refused naming the item, not
    read as black pixels (cast to uint8, NaN became 0)."""
    class Holed(Digits):
        def __getitem__(self, i):
            img, target = super().__getitem__(i)
            if i == 3:
                img[0, 0, 0] = float("nan")
            return img, target
    test = Holed(digits.x_test[:40], digits.y_test[:40], T.ToTensor())
    with pytest.raises(HardenError, match=r"\[3\] holds 1 NaN or infinite value"):
        harden.evaluate(digits_model, test, **KW)
