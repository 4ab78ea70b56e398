"""The batched pad + crop (+ flip) against albumentations' per-image pipeline (the reference), and the feeders that use
it: the same seed gives the same batches, and a saved random state continues the stream."""
import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from harden.data import ImageData
from harden.data.batch_augment import BatchCrop, build_batch_augment, pad_crop_flip
from harden.data.transforms import build_augment


def reference(img: np.ndarray, pad: tuple[int, int], top: int, left: int, flip: bool) -> np.ndarray:
    """albumentations with the crop and flip given: transforms.build_augment's padding, then this crop and flip."""
    h, w = img.shape[:2]
    steps = [A.PadIfNeeded(min_height=h + 2 * pad[0], min_width=w + 2 * pad[1], border_mode=cv2.BORDER_REFLECT_101,
                           position="center"),
             A.Crop(x_min=left, y_min=top, x_max=left + w, y_max=top + h)]
    if flip:
        steps.append(A.HorizontalFlip(p=1.0))
    return A.Compose(steps)(image=img)["image"].reshape(img.shape)


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1), (8, 8, 1), (24, 40, 3)])
def test_batched_crop_equals_albumentations(shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, *shape), dtype=np.uint8)
    crop = BatchCrop("flip-crop", shape[:2], seed=0)
    top, left, flip = crop.draw(len(x))
    ours = pad_crop_flip(torch.from_numpy(x), crop.pad, top, left, flip).numpy()
    for i in range(len(x)):
        want = reference(x[i], crop.pad, int(top[i]), int(left[i]), bool(flip[i]))
        assert np.array_equal(ours[i], want), (i, int(top[i]), int(left[i]), bool(flip[i]))


def test_draws_cover_every_crop_and_flip_half():
    crop = BatchCrop("flip-crop", (32, 32), seed=1)
    top, left, flip = crop.draw(4000)
    assert set(top.tolist()) == set(range(9)) and set(left.tolist()) == set(range(9))  # pad 4: offsets 0..8
    assert 0.45 < flip.float().mean() < 0.55
    assert not BatchCrop("crop", (28, 28), seed=1).draw(100)[2].any()  # digits: no flips


def test_pipelines_without_a_batched_form_stay_with_albumentations():
    assert build_batch_augment("seed000", (32, 32), 0) is None and build_augment("seed000", (32, 32), 0) is not None
    assert build_batch_augment("none", (32, 32), 0) is None
    assert build_batch_augment("crop", (1, 8), 0) is None  # no side to reflect into


def test_array_feeder_is_seeded_and_resumable():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 40)
    data = ImageData(x, y, x[:4], y[:4], "test", 10)
    plan = [np.arange(0, 16), np.arange(16, 32), np.arange(32, 40)]

    def batches(feeder):
        return [b[0] for b in feeder.epoch(plan, 1)]

    a, b = data.feeder("flip-crop", 3, torch.device("cpu")), data.feeder("flip-crop", 3, torch.device("cpu"))
    assert a.batched is not None and a.aug is None
    first = batches(a)
    assert all(torch.equal(p, q) for p, q in zip(first, batches(b), strict=True))
    assert not torch.equal(first[0], torch.from_numpy(x[:16]).permute(0, 3, 1, 2).float() / 255)  # it augments
    state = a.random_state()
    second = batches(a)
    b.set_random_state(state)
    assert all(torch.equal(p, q) for p, q in zip(second, batches(b), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(first, second, strict=True))  # a new draw each epoch


def test_small_image_files_are_cropped_in_batches_and_resume(tmp_path):
    """Folders of small images (<= 64 px) take the same batched pipeline after the workers decode them."""
    from harden import load_data
    from harden.data import DataTarget
    from test_files import make_tree
    make_tree(tmp_path, ["a", "b"], 6, sizes=(32, 33), splits=("train", "val"))
    data = load_data(str(tmp_path), DataTarget(train_size=(32, 32), workers=0))
    feeder, again = (data.feeder("flip-crop", 5, torch.device("cpu")) for _ in range(2))
    assert feeder.batched is not None and feeder.aug is None
    plan = [np.arange(0, 8), np.arange(8, 12)]
    first = [b[0] for b in feeder.epoch(plan, 1)]
    assert [tuple(b.shape) for b in first] == [(8, 3, 32, 32), (4, 3, 32, 32)] and first[0].dtype == torch.float32
    assert all(torch.equal(p, q[0]) for p, q in zip(first, again.epoch(plan, 1), strict=True))  # the same seed
    state = feeder.random_state()
    second = [b[0] for b in feeder.epoch(plan, 2)]
    again.set_random_state(state)
    assert all(torch.equal(p, q[0]) for p, q in zip(second, again.epoch(plan, 2), strict=True))
