"""Data: the three ways to find Fashion-MNIST, CIFAR-10 and image folders, batched augmentation."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from mae_lesson import data as data_mod
from mae_lesson.data import (SEED_STRIDE, BatchLoader, ImageData, load_cifar10, load_dataset, load_fashion_mnist,
                             load_image_folder, normalize, random_resized_crop_flip, read_idx)


def write_idx(path, array: np.ndarray, gz: bool = True) -> None:
    """Write MNIST's idx format: magic (0, 0, type 0x08, ndim), big-endian dims, raw bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


@pytest.fixture
def fake_fmnist(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", 12), ("t10k", 5)):
        imgs, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", imgs)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz=False)  # torchvision keeps both forms
        arrays[prefix] = (imgs, labels)
    return tmp_path, arrays


def test_read_idx_roundtrip(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), array)


def test_fashion_mnist_from_data_folder_first(fake_fmnist, monkeypatch):
    root, arrays = fake_fmnist
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", root / "nowhere")
    train = load_fashion_mnist(root, "train")
    assert train.images.shape == (12, 1, 28, 28) and train.images.dtype == torch.uint8
    np.testing.assert_array_equal(train.images[:, 0].numpy(), arrays["train"][0])
    np.testing.assert_array_equal(train.labels.numpy(), arrays["train"][1])
    assert len(load_fashion_mnist(root, "test")) == 5
    assert train.mean == (0.2860,) and len(train.classes) == 10


def test_fashion_mnist_missing_names_three_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist(tmp_path, "train")  # download=False: never touches the network
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "FashionMNIST" in message and "download=True" in message


def test_fashion_mnist_debian_package(tmp_path):
    if not (data_mod.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist is not installed")
    test = load_fashion_mnist(tmp_path / "empty", "test")
    assert test.images.shape == (10_000, 1, 28, 28)
    pixels = test.images.float() / 255
    assert abs(pixels.mean().item() - 0.286) < 0.01 and abs(pixels.std().item() - 0.353) < 0.01


def test_cifar10_code_path(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pickle.dump(batch, open(folder / name, "wb"))
    pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, open(folder / "batches.meta", "wb"))
    from torchvision.datasets import CIFAR10, cifar

    # Our fake files have other md5 sums than the real ones.
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    train = load_cifar10(tmp_path, "train")
    assert train.images.shape == (20, 3, 32, 32)
    expected = batch["data"][0].reshape(3, 32, 32)  # CIFAR rows are channel-major
    np.testing.assert_array_equal(train.images[0].numpy(), expected)
    assert train.classes[3] == "c3"


def test_cifar10_missing_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10(tmp_path, "train")


def test_image_folder(tmp_path):
    from PIL import Image

    for cls, value in (("cats", 30), ("dogs", 200)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 50, 3), value + i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    data = load_dataset(str(tmp_path), img_size=32, in_chans=3)
    assert data.images.shape == (6, 3, 32, 32) and data.classes == ("cats", "dogs")
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert int(data.images[4, 0, 5, 5]) == 201
    grey = load_image_folder(tmp_path, 16, in_chans=1)
    assert grey.images.shape == (6, 1, 16, 16)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "nope", 16)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="fashion_mnist"):
        load_dataset("mnistt")


def test_crop_full_scale_is_identity_or_flip():
    images = torch.randn(16, 2, 12, 12)
    out = random_resized_crop_flip(images, 12, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    flipped = 0
    for a, b in zip(out, images):
        if torch.allclose(a, b, atol=1e-5):
            continue
        torch.testing.assert_close(a, b.flip(-1), atol=1e-5, rtol=0)
        flipped += 1
    assert 0 < flipped < 16  # p = 0.5 each


def test_crop_zooms_in_and_is_seeded():
    # A horizontal ramp: a crop of a fraction of the image spans a smaller range of values.
    ramp = torch.linspace(0, 1, 64).expand(8, 1, 64, 64).contiguous()
    a = random_resized_crop_flip(ramp, 32, torch.Generator().manual_seed(3), scale=(0.2, 0.3), flip=False)
    b = random_resized_crop_flip(ramp, 32, torch.Generator().manual_seed(3), scale=(0.2, 0.3), flip=False)
    assert torch.equal(a, b)
    spans = a.amax(dim=(1, 2, 3)) - a.amin(dim=(1, 2, 3))
    assert (spans < 0.8).all() and (spans > 0.2).all()


def tiny_data(n=40) -> ImageData:
    g = torch.Generator().manual_seed(0)
    return ImageData(torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8),
                     torch.arange(n) % 3, ("a", "b", "c"), (0.5,), (0.25,))


def test_loader_shards_match_single_process():
    data = tiny_data()
    single = BatchLoader(data, 8, 8, seed=5)
    ranks = [BatchLoader(data, 8, 8, seed=5, rank=r, world_size=2) for r in range(2)]
    for loader in [single, *ranks]:
        loader.set_epoch(3)
    for step in range(len(single)):
        x, y, seed = single.batch(step)
        parts = [r.batch(step) for r in ranks]
        torch.testing.assert_close(x[0::2], parts[0][0]), torch.testing.assert_close(x[1::2], parts[1][0])
        assert torch.equal(y[1::2], parts[1][1]) and seed == parts[0][2]


def test_loader_epochs_differ_and_cover_data():
    data = tiny_data()
    loader = BatchLoader(data, 8, 8, train=False)
    xs = torch.cat([x for x, _, _ in loader])
    torch.testing.assert_close(xs, normalize(data.images, data.mean, data.std))
    train = BatchLoader(data, 10, 8, seed=0)
    train.set_epoch(0)
    first = train.batch(0)[1]
    train.set_epoch(1)
    assert not torch.equal(first, train.batch(0)[1]) or not torch.equal(train.batch(1)[1], train.batch(1)[1])
    assert len(train) == 4


def test_global_batch_must_split_over_processes():
    with pytest.raises(ValueError, match="divisible"):
        BatchLoader(tiny_data(), 9, 8, world_size=2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.float32])
def test_float_images_are_refused_naming_the_dtype_and_the_fix(dtype):
    images = torch.rand(4, 1, 8, 8).to(dtype)
    with pytest.raises(ValueError, match=rf"dtype {dtype}.*\.to\(torch\.uint8\)"):
        ImageData(images, torch.zeros(4, dtype=torch.long), ("x",), (0.5,), (0.25,))


def test_batch_seeds_of_steps_epochs_and_seeds_never_collide():
    data = ImageData(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), ("x",), (0.5,), (0.25,))
    seeds = set()
    for seed in range(3):
        loader = BatchLoader(data, 2, 8, seed=seed)
        for epoch in range(3):
            loader.set_epoch(epoch)
            seeds |= {loader.batch_seed(step) for step in range(3)}
    assert len(seeds) == 27 and SEED_STRIDE > 10**6
