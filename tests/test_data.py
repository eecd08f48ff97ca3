"""alto.data: loaders read real on-disk formats written here in miniature."""
from __future__ import annotations

import gzip
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import alto.data.mnist as mnist_mod
from alto.data import (DataFormatError, DatasetUnavailable, ImageData, TextData, batch_indices,
                       dataset_names, load_dataset, text_batch)
from alto.data.idx import parse_idx
from alto.data.text import stdlib_text

torch.set_num_threads(1)

N_TRAIN, N_TEST = 200, 50


# ---------------------------------------------------------------- file writers (real formats)

def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def tagged_images(n: int, hw: int, channels: int = 0, offset: int = 0) -> np.ndarray:
    """Random uint8 images whose first two pixels encode their index, so rows are traceable."""
    rng = np.random.default_rng(offset)
    shape = (n, channels, hw, hw) if channels else (n, hw, hw)
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    flat = x.reshape(n, -1)
    ids = np.arange(offset, offset + n)
    flat[:, 0], flat[:, 1] = ids % 256, ids // 256
    return x


def image_ids(x: torch.Tensor) -> set[int]:
    flat = x.reshape(len(x), -1).long()
    return set((flat[:, 0] + 256 * flat[:, 1]).tolist())


def make_idx_root(root: Path, folder: str, gz: bool = True) -> dict[str, np.ndarray]:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": tagged_images(N_TRAIN, 28),
        "train-labels-idx1-ubyte": np.arange(N_TRAIN) % 10,
        "t10k-images-idx3-ubyte": tagged_images(N_TEST, 28, offset=1000),
        "t10k-labels-idx1-ubyte": (np.arange(N_TEST) * 3) % 10,
    }
    for name, arr in arrays.items():
        write_idx(raw / name, arr, gz)
    return arrays


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    make_idx_root(tmp_path, "MNIST")
    return tmp_path


def make_cifar_root(root: Path, name: str) -> None:
    """Pickles laid out as torchvision unpacks them (bytes keys, as written by Python 2)."""
    if name == "cifar10":
        folder, key = root / "cifar-10-batches-py", b"labels"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta = ("batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    else:
        folder, files, key = root / "cifar-100-python", ["train", "test"], b"fine_labels"
        meta = ("meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})
    folder.mkdir(parents=True)
    classes = 10 if name == "cifar10" else 100
    for i, fname in enumerate(files):
        n = 20 if fname in ("test_batch", "test") else 40
        x = tagged_images(n, 32, channels=3, offset=100 * i)
        batch = {b"batch_label": fname.encode(), key: [int(j % classes) for j in range(n)],
                 b"data": x.reshape(n, -1), b"filenames": [b"f.png"] * n}
        (folder / fname).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=2))


# ---------------------------------------------------------------- IDX datasets

@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = make_idx_root(tmp_path, "MNIST", gz=gz)
    data = load_dataset("mnist", root=tmp_path, val_fraction=0.1, seed=0)
    assert isinstance(data, ImageData)
    assert data.x_train.shape == (180, 1, 28, 28) and data.x_train.dtype == torch.uint8
    assert data.x_val.shape == (20, 1, 28, 28) and data.y_val.dtype == torch.int64
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    # the official test split comes through untouched
    assert torch.equal(data.x_test[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert torch.equal(data.y_test, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    # val is held out of train: disjoint, together exactly the official training set
    train_ids, val_ids = image_ids(data.x_train), image_ids(data.x_val)
    assert not train_ids & val_ids and train_ids | val_ids == set(range(N_TRAIN))
    labels = torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long()
    idx = torch.tensor(sorted(val_ids))
    assert torch.equal(data.y_val.sort().values, labels[idx].sort().values)
    assert torch.bincount(data.y_val, minlength=10).tolist() == [2] * 10  # stratified


def test_fashion_mnist_from_torchvision_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(mnist_mod.SYSTEM_DIRS, "fashion-mnist", ())
    make_idx_root(tmp_path, "FashionMNIST")
    data = load_dataset("fashion-mnist", root=tmp_path, val_fraction=0.2)
    assert len(data.x_train) == 160 and len(data.x_val) == 40 and len(data.x_test) == N_TEST


def test_alto_data_env_sets_default_root(mnist_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("ALTO_DATA", str(mnist_root))
    assert len(load_dataset("mnist").x_test) == N_TEST


def test_split_is_deterministic_per_seed(mnist_root: Path) -> None:
    a = load_dataset("mnist", root=mnist_root, seed=1)
    b = load_dataset("mnist", root=mnist_root, seed=1)
    c = load_dataset("mnist", root=mnist_root, seed=2)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.x_train, b.x_train)
    assert image_ids(a.x_val) != image_ids(c.x_val)
    assert torch.equal(a.x_test, c.x_test)


def test_limit_caps_training_samples(mnist_root: Path) -> None:
    a = load_dataset("mnist", root=mnist_root, limit=50)
    b = load_dataset("mnist", root=mnist_root, limit=50)
    full = load_dataset("mnist", root=mnist_root)
    assert len(a.x_train) == 50 and torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.x_val, full.x_val)  # limit is applied after the split
    assert image_ids(a.x_train) <= image_ids(full.x_train)


def test_zero_val_fraction_gives_empty_val(mnist_root: Path) -> None:
    data = load_dataset("mnist", root=mnist_root, val_fraction=0.0)
    assert len(data.x_train) == N_TRAIN and data.x_val.shape == (0, 1, 28, 28)


def test_normalize_uses_training_stats(mnist_root: Path) -> None:
    data = load_dataset("mnist", root=mnist_root)
    x = data.x_train.double() / 255
    assert data.mean[0] == pytest.approx(x.mean().item(), rel=1e-6)
    assert data.std[0] == pytest.approx(x.std(unbiased=False).item(), rel=1e-6)
    z = data.normalize(data.x_train)
    assert z.dtype == torch.float32
    assert z.mean().item() == pytest.approx(0, abs=1e-4)
    assert z.std().item() == pytest.approx(1, abs=1e-3)
    moved = data.to("meta")
    assert moved.x_train.device.type == "meta" and data.x_train.device.type == "cpu"


def test_missing_idx_data_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DatasetUnavailable, match="--download") as err:
        load_dataset("mnist", root=tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(err.value)
    monkeypatch.setitem(mnist_mod.SYSTEM_DIRS, "fashion-mnist", (tmp_path / "nowhere",))
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_download_goes_through_torchvision(tmp_path: Path, monkeypatch) -> None:
    calls = []

    class FakeMNIST:  # stands in for the network: unpacks files where torchvision would
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            if not (Path(root) / "MNIST").exists():
                make_idx_root(Path(root), "MNIST")

    # fake modules: importing the real torchvision costs seconds
    datasets = types.ModuleType("torchvision.datasets")
    datasets.MNIST = FakeMNIST
    package = types.ModuleType("torchvision")
    package.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    data = load_dataset("mnist", root=tmp_path, download=True)
    assert len(data.x_test) == N_TEST and calls[0] == (str(tmp_path), True, True)


def test_malformed_idx_is_reported(mnist_root: Path) -> None:
    path = mnist_root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x08\x03\x00\x01" + bytes(8)))
    with pytest.raises(DataFormatError, match="magic"):
        load_dataset("mnist", root=mnist_root)
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", N_TRAIN) + bytes(10)))
    with pytest.raises(DataFormatError, match="data bytes"):
        load_dataset("mnist", root=mnist_root)
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataFormatError, match="gzip"):
        load_dataset("mnist", root=mnist_root)


def test_parse_idx_types_and_errors() -> None:
    arr = parse_idx(bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 1) + struct.pack(">ii", -5, 7))
    assert arr.tolist() == [[-5], [7]] and arr.dtype == np.int32
    with pytest.raises(DataFormatError, match="element type"):
        parse_idx(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 0))
    with pytest.raises(DataFormatError, match="header"):
        parse_idx(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 5))


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_system_fashion_mnist(tmp_path: Path) -> None:
    data = load_dataset("fashion-mnist", root=tmp_path)
    assert len(data.x_train) + len(data.x_val) == 60000 and len(data.x_test) == 10000
    assert data.x_train.shape[1:] == (1, 28, 28) and int(data.y_test.max()) == 9


# ---------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("name,classes,n_train", [("cifar10", 10, 200), ("cifar100", 100, 40)])
def test_cifar_reads_pickles(tmp_path: Path, name: str, classes: int, n_train: int) -> None:
    make_cifar_root(tmp_path, name)
    data = load_dataset(name, root=tmp_path, val_fraction=0.0)
    assert data.num_classes == classes and data.input_shape == (3, 32, 32)
    assert data.x_train.shape == (n_train, 3, 32, 32) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (20, 3, 32, 32) and data.y_test.dtype == torch.int64
    test_offset = 500 if name == "cifar10" else 100
    expected = torch.from_numpy(tagged_images(20, 32, channels=3, offset=test_offset))
    assert torch.equal(data.x_test, expected)  # channel-major layout preserved
    assert data.y_test.tolist() == [j % classes for j in range(20)]
    assert len(data.mean) == 3 and len(data.std) == 3


def test_cifar_missing_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="--download") as err:
        load_dataset("cifar10", root=tmp_path)
    assert "cifar-10-batches-py" in str(err.value)


# ---------------------------------------------------------------- digits

def test_digits_offline_with_fixed_test_split() -> None:
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=3)
    assert a.x_train.dtype == torch.float32 and a.x_train.shape[1:] == (1, 8, 8)
    assert 0 <= a.x_train.min() and a.x_train.max() <= 1
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797
    assert torch.equal(a.x_test, b.x_test)  # same test set whatever the run seed
    assert not torch.equal(a.x_val, b.x_val)
    z = a.normalize(a.x_train)
    assert z.mean().item() == pytest.approx(0, abs=1e-4)


# ---------------------------------------------------------------- text

def test_stdlib_chars_is_contiguous_and_deterministic() -> None:
    data = load_dataset("stdlib-chars", limit=100_000)
    assert isinstance(data, TextData)
    assert (len(data.train), len(data.val), len(data.test)) == (90_000, 5_000, 5_000)
    assert data.train.dtype == torch.int64
    assert data.vocab == sorted(set(data.vocab)) and data.vocab_size == len(data.vocab)
    whole = torch.cat([data.train, data.val, data.test])
    assert data.decode(whole) == stdlib_text(100_000)
    assert torch.equal(load_dataset("stdlib-chars", limit=100_000).test, data.test)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "poem.txt"
    path.write_text("héllo wörld\n" * 50, encoding="utf-8")
    data = load_dataset(f"text-file:{path}")
    assert data.vocab == sorted(set("héllo wörld\n"))
    assert data.decode(torch.cat([data.train, data.val, data.test])) == "héllo wörld\n" * 50
    with pytest.raises(DatasetUnavailable, match="not found"):
        load_dataset(f"text-file:{tmp_path / 'missing.txt'}")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_dataset(f"text-file:{tmp_path / 'empty.txt'}")


def test_text_batch_windows() -> None:
    data = torch.arange(1000)
    x, y = text_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y, x + 1)  # shifted by one, contiguous windows of arange
    x2, _ = text_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="block_size"):
        text_batch(torch.arange(16), 2, 16, torch.Generator())


# ---------------------------------------------------------------- batches and arguments

def test_batch_indices() -> None:
    state = torch.random.get_rng_state()
    batches = batch_indices(103, 10, epoch=0, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    assert len(set(torch.cat(batches).tolist())) == 100
    keep = batch_indices(103, 10, epoch=0, seed=0, drop_last=False)
    assert sorted(torch.cat(keep).tolist()) == list(range(103))
    assert all(torch.equal(p, q) for p, q in zip(batches, batch_indices(103, 10, 0, 0)))
    assert not torch.equal(batches[0], batch_indices(103, 10, epoch=1, seed=0)[0])
    assert not torch.equal(batches[0], batch_indices(103, 10, epoch=0, seed=1)[0])
    full = batch_indices(50, 64, epoch=3, seed=0)
    assert len(full) == 1 and sorted(full[0].tolist()) == list(range(50))


def test_argument_errors() -> None:
    assert {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100",
            "stdlib-chars"} <= set(dataset_names())
    with pytest.raises(ValueError, match="digits"):
        load_dataset("imagenet")
    for bad in (0.5, -0.1):
        with pytest.raises(ValueError, match="val_fraction"):
            load_dataset("digits", val_fraction=bad)
