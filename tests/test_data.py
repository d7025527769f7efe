import os
import pickle

import numpy as np
import pytest
import torch

from cifar_lib.data import (CLASSES, FOLDER, CifarSplit, DataError, load_cifar10,
                            load_cifar10_test, resolve_root, split_validation,
                            validation_size, write_batch)


def test_loads_synthetic_folder_with_shapes_and_types(synthetic_root):
    train, test = load_cifar10(synthetic_root)
    assert train.images.shape == (200, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (40, 3, 32, 32)
    assert train.labels.dtype == torch.int64 and train.labels.shape == (200,)
    assert train.classes == CLASSES


def test_round_trip_preserves_pixels_in_channel_plane_order(tmp_path, cifar_folder):
    folder = tmp_path / FOLDER
    cifar_folder(tmp_path)
    images = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3, 32, 32) % 251
    write_batch(folder / "test_batch", images, [3, 7])
    _, test = load_cifar10(tmp_path)
    assert torch.equal(test.images, torch.from_numpy(images.astype(np.uint8)))
    assert test.labels.tolist() == [3, 7]


def test_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_ROOT", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root() == tmp_path / "env"
    monkeypatch.delenv("CIFAR10_ROOT")
    assert resolve_root().name == "data"


def test_missing_folder_error_names_folder_env_var_and_download(tmp_path):
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / FOLDER) in msg
    assert "CIFAR10_ROOT" in msg and "download=True" in msg


def test_a_failed_download_is_one_data_error_naming_where_to_unpack(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno 111] Connection refused")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "nowhere", download=True)
    msg = str(e.value)
    assert "could not download CIFAR-10" in msg and "Connection refused" in msg
    assert str(tmp_path / "nowhere" / FOLDER) in msg and "\n" not in msg


@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_a_subset_of_no_examples_is_refused(n):
    split = CifarSplit(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.arange(4))
    with pytest.raises(ValueError, match=f"whole number ≥ 1, got {n!r}"):
        split.subset(n)
    assert len(split.subset(np.int64(2))) == 2 and split.subset(None) is split


def test_truncated_batch_names_the_file(synthetic_root):
    path = synthetic_root / FOLDER / "data_batch_3"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(synthetic_root)


def test_the_test_split_alone_reads_no_training_file(synthetic_root, tmp_path):
    _, test = load_cifar10(synthetic_root)
    (synthetic_root / FOLDER / "data_batch_2").unlink()
    only = load_cifar10_test(synthetic_root)  # what evaluate and robustness read
    assert torch.equal(only.images, test.images) and torch.equal(only.labels, test.labels)
    with pytest.raises(DataError, match="missing data_batch_2"):
        load_cifar10(synthetic_root)
    with pytest.raises(DataError, match="missing test_batch"):
        load_cifar10_test(tmp_path / "none")


def test_wrong_shape_and_out_of_range_labels_are_refused(synthetic_root):
    folder = synthetic_root / FOLDER
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, f, protocol=2)
    with pytest.raises(DataError, match="data_batch_1.*N×3072"):
        load_cifar10(synthetic_root)
    write_batch(folder / "data_batch_1", np.zeros((4, 3, 32, 32)), [0, 1, 2, 10])
    with pytest.raises(DataError, match="data_batch_1.*out of range"):
        load_cifar10(synthetic_root)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(synthetic_root, tmp_path):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    with open(synthetic_root / FOLDER / "test_batch", "wb") as f:
        pickle.dump({"data": exploit, "labels": []}, f, protocol=2)
    with pytest.raises(DataError, match="test_batch.*refusing to load"):
        load_cifar10(synthetic_root)
    assert not marker.exists()


def test_loading_writes_nothing_into_the_data_folder(synthetic_root):
    before = sorted(p.name for p in (synthetic_root / FOLDER).iterdir())
    load_cifar10(synthetic_root)
    assert sorted(p.name for p in (synthetic_root / FOLDER).iterdir()) == before


@pytest.mark.real_data
def test_real_cifar10_matches_the_published_facts(cifar10):
    train, test = cifar10
    assert len(train) == 50_000 and len(test) == 10_000
    assert train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert test.images[0, 0, 0, :4].tolist() == [158, 159, 165, 166]
    means = train.images.float().mean((0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.4914, 0.4822, 0.4465]), atol=1e-3)



def test_validation_split_is_balanced_disjoint_and_the_same_for_every_run():
    n = 1000
    g = torch.Generator().manual_seed(3)
    train = CifarSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                       torch.arange(n) % 10)
    rest, val = split_validation(train, 100)
    assert len(val) == 100 and len(rest) == 900
    assert torch.bincount(val.labels, minlength=10).tolist() == [10] * 10  # a share per class
    ids = lambda s: {bytes(img.flatten()[:64].tolist()) for img in s.images}  # noqa: E731
    assert not ids(rest) & ids(val) and len(ids(rest) | ids(val)) == n
    again_rest, again_val = split_validation(train, 100)
    assert torch.equal(again_val.images, val.images)  # no randomness from the run's seed
    torch.manual_seed(123)
    assert torch.equal(split_validation(train, 100)[1].images, val.images)
    assert validation_size(50_000, 0.1) == 5_000
    assert split_validation(train, 0)[1].labels.numel() == 0
    with pytest.raises(ValueError, match="validation size"):
        split_validation(train, n)
