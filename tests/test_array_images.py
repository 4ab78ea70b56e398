"""Images saved one NumPy array a file (`np.save` per image) in class folders, a list or a zip archive: read as the
same images saved as PNG files are, whatever the layout (H x W, H x W x C, C x H x W) and type (uint8, floats in
[0, 1] as ToTensor leaves them, floats in 0-255); the float range judged over a listing's files, not file by file;
normalised, 16-bit and object arrays named as unreadable, never read as pixels."""
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import harden
from harden.data import load_data
from harden.data.array_images import SAMPLE_FILES


def pictures(n: int, seed: int, size=(12, 10), grey=False) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = size if grey else (*size, 3)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def save_tree(root, imgs_by_class: dict[str, list[np.ndarray]], form: str) -> None:
    """One file an image: `png`, or an .npy as published code leaves it."""
    for c, imgs in imgs_by_class.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(imgs):
            if form == "png":
                Image.fromarray(img).save(root / c / f"{i}.png")
                continue
            if form.startswith(("torch", "npz")):
                save_other(root / c / str(i), img, form)
                continue
            a = {"uint8 HWC": img,
                 "float CHW [0, 1]": (np.moveaxis(img, -1, 0) if img.ndim == 3 else img[None]).astype(np.float32) / 255,
                 "float HWC 0-255": img.astype(np.float64),
                 "int64 HWC": img.astype(np.int64)}[form]
            np.save(root / c / f"{i}.npy", a)


def save_other(stem, img: np.ndarray, form: str) -> None:
    """An image as published code leaves it in an .npz or a torch file."""
    chw = torch.from_numpy(np.moveaxis(img, -1, 0).copy() if img.ndim == 3 else img[None].copy())
    if form == "torch float CHW [0, 1]":  # ToTensor's output, saved
        torch.save(chw.float() / 255, f"{stem}.pt")
    elif form == "torch dict uint8 HWC":  # a sample saved with its label
        torch.save({"image": torch.from_numpy(img.copy()), "label": torch.tensor(1)}, f"{stem}.pt")
    elif form == "npz compressed with its label":
        np.savez_compressed(f"{stem}.npz", image=img, label=np.int64(1))
    else:  # "npz of one array"
        np.savez(f"{stem}.npz", img)


def read_all(path):
    data = load_data(str(path))
    n = data.n_test
    x, y = data.pixels("test", np.arange(n))
    return data, x, y


@pytest.mark.parametrize("form", ["uint8 HWC", "float CHW [0, 1]", "float HWC 0-255", "int64 HWC",
                                  "torch float CHW [0, 1]", "torch dict uint8 HWC", "npz compressed with its label",
                                  "npz of one array"])
def test_class_folders_of_arrays_read_as_the_same_images_saved_as_png(tmp_path, form):
    imgs = {"cat": pictures(5, 0), "dog": pictures(4, 1)}
    save_tree(tmp_path / "png", imgs, "png")
    save_tree(tmp_path / "npy", imgs, form)
    _, x_png, y_png = read_all(tmp_path / "png")
    data, x, y = read_all(tmp_path / "npy")
    assert data.class_names == ["cat", "dog"] and data.n_test == 9
    assert torch.equal(y, y_png) and torch.equal(x, x_png)


def test_grey_arrays_and_a_zip_of_them(tmp_path):
    imgs = {"0": pictures(3, 2, grey=True), "1": pictures(3, 3, grey=True)}
    save_tree(tmp_path / "png", imgs, "png")
    save_tree(tmp_path / "npy", imgs, "float CHW [0, 1]")  # 1 x H x W, as a grey ToTensor image
    _, x_png, _ = read_all(tmp_path / "png")
    data, x, _ = read_all(tmp_path / "npy")
    assert x.shape[1] == 1 and torch.equal(x, x_png)
    with zipfile.ZipFile(tmp_path / "arrays.zip", "w") as z:
        for p in sorted((tmp_path / "npy").rglob("*.npy")):
            z.write(p, p.relative_to(tmp_path / "npy").as_posix())
    _, xz, _ = read_all(tmp_path / "arrays.zip")
    assert torch.equal(xz, x_png)


def test_float_range_is_judged_over_the_files_not_each_file(tmp_path):
    """A dark image saved as 0-255 floats can stay at or below 1 in every pixel: alone it reads like [0, 1]. Among its
    folder's files, whose values reach 255, it is read as the 0-255 it is (black, not scaled up to grey)."""
    imgs = {"a": pictures(6, 4), "b": pictures(6, 5)}
    dark = np.zeros((12, 10, 3), np.uint8)
    dark[0, 0] = 1
    imgs["a"][0] = dark
    save_tree(tmp_path / "npy", imgs, "float HWC 0-255")
    _, x, _ = read_all(tmp_path / "npy")
    assert int(x.max()) == 255 and int(x[0].max()) == 1  # not 255: the dark image scaled by 255
    # the judgement reads a spread sample of the files, the same in every process: more files than the sample
    assert SAMPLE_FILES < 40
    many = {"a": pictures(25, 6), "b": pictures(25, 7)}
    many["b"][24] = dark
    save_tree(tmp_path / "many", many, "float HWC 0-255")
    _, x, _ = read_all(tmp_path / "many")
    assert int(x.flatten(1).max(1).values.min()) == 1  # the dark one, among 50


@pytest.mark.parametrize("bad, said", [
    (np.full((12, 10, 3), -1.5, np.float32), "normalised images are refused"),
    (np.full((12, 10), 4095, np.uint16), "not 8-bit pixels"),
    (np.zeros((12, 10, 7), np.uint8), "not an image"),
    (np.array([{"x": 1}], dtype=object), "Python objects"),
    (np.full((12, 10, 3), np.nan, np.float32), "NaN"),
])
def test_an_array_that_is_no_image_is_named_as_unreadable(tmp_path, cli, bad, said):
    imgs = {"a": pictures(4, 8), "b": pictures(4, 9)}
    save_tree(tmp_path / "npy", imgs, "float CHW [0, 1]")
    np.save(tmp_path / "npy" / "b" / "3.npy", bad, allow_pickle=True)
    net = harden.create_model("cnn-small", 2, 3, (12, 10))
    harden.save(net, tmp_path / "m.safetensors")
    code, out, err = cli("eval", tmp_path / "m.safetensors", "--data", tmp_path / "npy", "--attack", "fgsm",
                         "--no-metrics", "--no-masking-checks")
    said_all = " ".join((out + err).split())
    assert code == 2 and "3.npy" in said_all and said in said_all, said_all
    assert "Traceback" not in said_all
    if said != "normalised images are refused":
        return  # skipped as any unreadable file is: once
    code, out, err = cli("eval", tmp_path / "m.safetensors", "--data", tmp_path / "npy", "--attack", "fgsm",
                         "--no-metrics", "--no-masking-checks", "--skip-unreadable", "--json", tmp_path / "r.json")
    assert code == 0, err


def test_train_and_eval_on_folders_of_arrays_from_the_command_line(tmp_path, cli):
    imgs = {s: {"cat": pictures(6, 10 + i), "dog": pictures(6, 20 + i)} for i, s in enumerate(("train", "val"))}
    for s, by_class in imgs.items():
        save_tree(tmp_path / "npy" / s, by_class, "float CHW [0, 1]")
    code, out, err = cli("data", tmp_path / "npy")
    said = " ".join(out.split())
    assert code == 0 and "NPY" in said and "12 images in 2 classes" in said, out + err
    assert "arrays float32 C x H x W, read as [0, 1] 12" in said, said  # how they were saved and read
    code, _, err = cli("train", "--data", tmp_path / "npy", "--arch", "cnn-small", "--epochs", 1,
                       "-o", tmp_path / "m.safetensors", "-q")
    assert code == 0, err
    code, _, err = cli("eval", tmp_path / "m.safetensors", "--attack", "fgsm", "--no-metrics", "--json",
                       tmp_path / "r.json")
    assert code == 0, err


def test_arrays_beside_photographs_are_not_read_as_images(tmp_path):
    """Features or masks saved beside each photograph (`0.png` and `0.npy`) in a class folder, a zip archive or a
    WebDataset sample: the photographs are the images; the arrays are left alone (before, they are never listed)."""
    import io
    import tarfile
    imgs = {"a": pictures(3, 11), "b": pictures(3, 12)}
    save_tree(tmp_path / "png", imgs, "png")
    _, x_png, y_png = read_all(tmp_path / "png")
    for c in imgs:
        for i in range(3):
            np.save(tmp_path / "png" / c / f"{i}.npy", np.ones(2048, np.float32))  # a feature vector, no image
    _, x, y = read_all(tmp_path / "png")
    assert torch.equal(x, x_png) and torch.equal(y, y_png)
    with zipfile.ZipFile(tmp_path / "both.zip", "w") as z:
        for p in sorted((tmp_path / "png").rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(tmp_path / "png").as_posix())
    _, xz, _ = read_all(tmp_path / "both.zip")
    assert torch.equal(xz, x_png)
    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards" / "data-000000.tar", "w") as tf:
        for ci, c in enumerate(imgs):
            for i in range(3):
                key = f"{c}{i}"
                for ext in ("npy", "png", "cls"):  # the array first: the image still wins
                    if ext == "png":
                        buf = io.BytesIO()
                        Image.fromarray(imgs[c][i]).save(buf, format="PNG")
                        raw = buf.getvalue()
                    elif ext == "npy":
                        buf = io.BytesIO()
                        np.save(buf, np.ones(2048, np.float32))
                        raw = buf.getvalue()
                    else:
                        raw = str(ci).encode()
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(raw)
                    tf.addfile(info, io.BytesIO(raw))
    data = load_data(str(tmp_path / "shards"))
    xt, _ = data.pixels("test", np.arange(data.n_test))
    assert xt.shape == x_png.shape
    assert sorted(map(bytes, xt.flatten(1).numpy())) == sorted(map(bytes, x_png.flatten(1).numpy()))


def test_a_flat_folder_of_arrays_is_images_without_labels(tmp_path, cli):
    """Per-image arrays with no class folders: the error of a folder of images without labels (with the flags that read
    it), and `--labels predicted` reads them; a folder of a dataset's arrays (CIFAR-10-C's N x H x W x C `fog.npy`)
    is not taken for one."""
    (tmp_path / "flat").mkdir()
    for i, img in enumerate(pictures(6, 13)):
        np.save(tmp_path / "flat" / f"{i}.npy", img)
    net = harden.create_model("cnn-small", 2, 3, (12, 10))
    harden.save(net, tmp_path / "m.safetensors")
    code, _, err = cli("eval", tmp_path / "m.safetensors", "--data", tmp_path / "flat", "--attack", "fgsm")
    assert code == 2 and "is a folder of images without class folders" in " ".join(err.split()), err
    code, _, err = cli("eval", tmp_path / "m.safetensors", "--data", tmp_path / "flat", "--labels", "predicted",
                       "--attack", "fgsm", "--no-metrics", "--no-masking-checks")
    assert code == 0, err
    (tmp_path / "corrupted").mkdir()
    np.save(tmp_path / "corrupted" / "fog.npy", np.stack(pictures(4, 14)))
    code, _, err = cli("eval", tmp_path / "m.safetensors", "--data", tmp_path / "corrupted", "--attack", "fgsm")
    assert code == 2 and "images without class folders" not in " ".join(err.split()), err


class Pickled:
    def __reduce__(self):
        return (print, ("ran",))


@pytest.mark.parametrize("write, said", [
    (lambda p: np.savez(f"{p}.npz", a=np.zeros((12, 10, 3), np.uint8), b=np.zeros((12, 10, 3), np.uint8)),
     "holding 2 arrays (a, b), none named as an image"),
    (lambda p: torch.save([1, 2, 3], f"{p}.pt"), "a torch file holding list"),
    (lambda p: torch.save(Pickled(), f"{p}.pt"), "weights_only=True"),  # a class of the saver's: never run
])
def test_an_npz_or_torch_file_that_holds_no_one_image_is_named_as_unreadable(tmp_path, cli, write, said):
    imgs = {"a": pictures(4, 8), "b": pictures(4, 9)}
    save_tree(tmp_path / "d", imgs, "torch float CHW [0, 1]")
    (tmp_path / "d" / "b" / "3.pt").unlink()
    write(tmp_path / "d" / "b" / "3")
    net = harden.create_model("cnn-small", 2, 3, (12, 10))
    harden.save(net, tmp_path / "m.safetensors")
    code, out, err = cli("eval", tmp_path / "m.safetensors", "--data", tmp_path / "d", "--attack", "fgsm",
                         "--no-metrics", "--no-masking-checks")
    said_all = " ".join((out + err).split())
    assert code == 2 and "b/3." in said_all and said in said_all and "Traceback" not in said_all, said_all
