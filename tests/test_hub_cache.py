"""`hf:org/name` (harden/hub_cache.py): models and datasets the Hugging Face libraries already downloaded, read from
their cache (laid out here as huggingface_hub lays it out: refs/, snapshots/<commit>/ of links into blobs/)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import harden
from harden.data import DataTarget, load_data
from harden.errors import HardenError

transformers = pytest.importorskip("transformers")
pq = pytest.importorskip("pyarrow.parquet")


def cache_repo(cache: Path, kind: str, repo: str, files: Path, commit: str, tag: str | None = None) -> None:
    """Copy `files` into the cache as huggingface_hub does: blobs by content, snapshot links, refs/main (+ a tag)."""
    root = cache / f"{kind}s--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    if tag:  # any revision a download named is a file of refs/
        (root / "refs" / tag).write_text(commit)
    for f in files.rglob("*"):
        if f.is_file():
            blob = root / "blobs" / f"{abs(hash(f.read_bytes())):x}"
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, blob)
            link = root / "snapshots" / commit / f.relative_to(files)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(blob, link.parent), link)


def test_models_and_datasets_come_from_the_cache_never_the_network(tmp_path, monkeypatch, cli):
    from test_tables import folder_split, hf_table

    from test_files import make_tree
    transformers.logging.set_verbosity_error()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, num_labels=2, id2label={0: "x", 1: "y"}, label2id={"x": 0, "y": 1})
    transformers.ViTForImageClassification(cfg).save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    cache_repo(tmp_path / "hub", "model", "acme/tiny-vit", tmp_path / "vit", "a1b2c3d4e5f6", tag="v1")
    model = harden.load("hf:acme/tiny-vit")
    assert model.spec.arch == "transformers:ViTForImageClassification"
    assert harden.load("hf:acme/tiny-vit@v1").spec.extra["label_names"] == ["x", "y"]
    assert harden.load("hf-hub:acme/tiny-vit@a1b2c3d").spec.num_classes == 2  # a commit's prefix

    make_tree(tmp_path / "tree", ["x", "y"], 3, splits=("train", "val"), sizes=(20, 30))
    (tmp_path / "pets" / "data").mkdir(parents=True)
    for split, name in (("train", "train"), ("val", "validation")):
        files, labels = folder_split(tmp_path / "tree", split, ["x", "y"])
        pq.write_table(hf_table(files, labels, ["x", "y"]), tmp_path / "pets" / "data" / f"{name}-00000-of-00001.parquet")
    cache_repo(tmp_path / "hub", "dataset", "acme/pets", tmp_path / "pets", "fedcba987654")
    data = load_data("hf:acme/pets", DataTarget.for_model(model, workers=0))
    assert data.class_names == ["x", "y"] and len(data.listing("train")) == 6
    built = tmp_path / "datasets" / "acme___built" / "default" / "0.0.0" / "0123abcd"  # what load_dataset builds
    built.mkdir(parents=True)
    shutil.copy(tmp_path / "pets" / "data" / "validation-00000-of-00001.parquet", built / "built-test.parquet")
    assert len(load_data("hf:acme/built", DataTarget.for_model(model, workers=0)).listing("test")) == 6

    monkeypatch.chdir(tmp_path)
    code, _, err = cli("fix", "hf:acme/tiny-vit", "--data", "hf:acme/pets", "--data-frac", "1", "--epochs", "1",
                       "--set", "val_frac=0", "--no-report", "--workers", "0", "-q")
    assert code == 0, err
    assert (tmp_path / "tiny-vit.at.safetensors").is_file()  # in the current folder, not inside the cache
    with pytest.raises(HardenError, match="not in the Hugging Face cache.*never downloads.*huggingface-cli download "
                                          "acme/other"):
        harden.load("hf:acme/other")
    code, _, err = cli("eval", "acme/tiny-vit", "--data", "hf:acme/pets")  # a repository named without hf:
    assert code == 2 and "hf:acme/tiny-vit is in the Hugging Face cache on this machine: write that" in " ".join(
        err.split())
    with pytest.raises(HardenError, match="If 'acme/unknown' is a Hugging Face repository, write hf:acme/unknown"):
        load_data("acme/unknown")
    code, _, err = cli("eval", "hf:acme/tiny-vit", "--data", "hf:acme/nothing")
    assert code == 2 and "--repo-type dataset acme/nothing" in " ".join(err.split())
    with torch.no_grad():
        assert np.isfinite(model(torch.rand(1, 3, 32, 32)).numpy()).all()
