"""The library API behind the CLI: load, save, train, evaluate (re-exported from harden)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from .checkpoint import load, save, sha256_file
from .data import Data, DataTarget, FileData, load_data, remember_label_names, subsample
from .errors import DoesNotRun, HardenError
from .models import Classifier, create_model
from .models.registry import built_in_chans, timm_size_args
from .runtime import flushing_denormals, resolve_device, seed_everything
from .training import TrainConfig, fit

if TYPE_CHECKING:
    from .resume import RunState


@flushing_denormals
def train(arch: str, data: Data, cfg: TrainConfig, device: str | torch.device = "auto",
          state: "RunState | None" = None, model_args: dict | None = None) -> Classifier:
    """Train a plain base model (for demos, benchmarks and tests): SGD + OneCycle, optional focal loss; augment
    "auto" is crop for grey digit-like data (flips change digits), seed000 otherwise. `state`: where
    the run keeps its training state, to resume from it (resume.py); the caller removes it once the model is
    written. `model_args`: keyword arguments of the architecture's constructor (`--model-arg`: `VGG(vgg_name)`'s
    vgg_name), kept in the checkpoint's metadata."""
    from .data import held_out
    data = held_out.hold_out_for_training(data)  # one split: the share `fix` holds out, held out here too
    if data.has_split("test"):  # a folder's test split listed now, its errors (an empty class folder) before training
        data.n_test  # noqa: B018
    device = resolve_device(device)
    seed_everything(cfg.seed)
    chans = built_in_chans(arch, data.num_classes, data.in_chans, data.input_size, model_args)
    if chans is not None:  # a network that reads grey images whatever it is offered: the images read as it reads them
        data = data.with_channels(chans)
        if data.in_chans != chans:
            raise HardenError(f"{arch} builds a network that reads {chans}-channel images; {data.source} has "
                              f"{data.in_chans}-channel images and harden cannot convert them for it.")
        from .runtime import info
        info(f"{arch} builds a network that reads {chans}-channel images: {data.source}'s images are read for it "
             "(as eval reads them for it)")
    if cfg.augment == "auto":  # chosen from the images as the network reads them (colour photos read as grey)
        from dataclasses import replace
        cfg = replace(cfg, augment="crop" if data.kind == "mnist-like" else "seed000")
    mean, std = data.mean_std()
    pre = {}
    if isinstance(data, FileData):  # the transform the model is trained with is the one it is evaluated with
        pre = dict(interpolation=data.preprocess.interpolation, crop_pct=data.preprocess.crop_pct,
                   crop_mode=data.preprocess.crop_mode)
    # a timm ViT (Swin, ...) built at the data's size, which it takes as its constructor's img_size
    size_args = timm_size_args(arch, data.num_classes, data.in_chans, data.input_size)
    try:
        model = create_model(arch, data.num_classes, data.in_chans, data.input_size, mean, std, data=data.source,
                             model_args={**size_args, **(model_args or {})}, **pre)
    except DoesNotRun as e:
        if not e.size_may_help:
            raise
        h, w = data.input_size
        how = ("read them at a size it runs at (--input-size)" if isinstance(data, FileData) else
               "give it image files, read at --input-size (arrays train at their own size)")
        raise HardenError(f"{arch}, built for the {data.in_chans} x {h} x {w} images of {data.source}, cannot run on "
                          f"them ({e.cause}): choose an architecture that runs at that size, or {how}.") from None
    from .formats import normalises_itself
    inside = normalises_itself(model.net)
    if inside:  # the data's statistics applied before it would normalise twice (DeepMind's WideResNet's own buffers)
        from .runtime import info
        info(f"{arch} normalises its input itself ({inside}): trained on pixels in [0, 1], without the data's mean "
             "and std")
        model = create_model(arch, data.num_classes, data.in_chans, data.input_size, (0.0,) * data.in_chans,
                             (1.0,) * data.in_chans, data=data.source,
                             model_args={**size_args, **(model_args or {})}, **pre)
    model.spec.extra["train"] = {"epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size,
                                 "augment": cfg.augment, "focal_gamma": cfg.focal_gamma, "seed": cfg.seed,
                                 "subset": data.subset, "images": data.n_train}
    remember_label_names(model, data)
    model.to(device)
    if state is None:
        result = fit(model, data, cfg, device)
    else:
        from dataclasses import asdict
        state.begin({"arch": arch, "data": data.source, "subset": data.subset, "train": asdict(cfg),
                     "device": device.type, **({"model_args": model_args} if model_args else {})})
        with state.active():
            result = fit(model, data, cfg, device)
    model.spec.extra["train"]["seconds"] = round(result.seconds, 2)
    model.spec.extra["train"]["final"] = result.history[-1] if result.history else {}
    from .report.preflight import clean_test_accuracy
    tested = clean_test_accuracy(model, data, device, cfg.seed)  # the training figures are on augmented images
    if tested is not None:
        model.spec.extra["train"]["test"] = tested
    held = held_out.record(data)
    if held:  # eval on the same data tests on these images, never on those it trained on
        model.spec.extra[held_out.KEY] = held
    return model


def data_for(model: Classifier, data: str | None, model_name: str = "the model", labels: str = "given",
             **target) -> Data:
    """The evaluation data: --data, else what the checkpoint's metadata names. `target`: DataTarget's workers,
    class_map, skip_unreadable (files are decoded through the model's own transform, their classes mapped to its
    outputs); where the model was hardened on part of this same data, the part held out then (data/held_out.py),
    said under `model_name`. `labels` "predicted": images without labels are taken too (data/predicted.py)."""
    from .data.arrays import is_arrays
    from .data.dataset_objects import is_dataset, model_for
    from .data.held_out import test_split_for
    from .data.predicted import check_labels, images_to_predict
    predicted = check_labels(labels) == "predicted"
    if not is_arrays(data):
        spec = data or model.spec.data
        if not spec:
            raise HardenError("The checkpoint does not name its data; pass --data (digits, an .npz, a CIFAR-10 "
                              "batches folder or an image folder).")
        if not data:
            from .data import check_recorded_data
            check_recorded_data(spec)
        elif isinstance(data, (str, os.PathLike)):
            from .data.held_out import warn_if_its_training_split
            warn_if_its_training_split(str(data), model, model_name)
        data = spec
    target = DataTarget.for_model(model, **target)
    if predicted and (is_dataset(data) or not is_arrays(data)):  # images alone taken too (its held-out share found)
        tested = images_to_predict(data, target, model.spec.extra, model_name)
    else:  # (a share held out where the model was hardened on part of this data)
        tested = test_split_for(load_data(data, target), model.spec.extra, model_name)
    model_for(model, tested)  # a dataset's Normalize and size: the model's where its own were assumed
    return tested


__all__ = ["load", "save", "sha256_file", "train", "data_for", "load_data", "subsample", "create_model"]
