"""nas.data: dataset readers, seeded splits, and the on-device batch iterator with augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fake_archives import pattern_image, write_cifar, write_imagenet16

from nas import data
from nas.data.augment import crop_flip
from nas.errors import UserError

pytestmark = pytest.mark.usefixtures("fresh_data_cache")


@pytest.fixture(scope="module")
def sklearn_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.rint(digits.images * (255 / 16)).astype(np.uint8), digits.target


def _as_set(t: torch.Tensor) -> set[int]:
    return set(t.tolist())


def _to_uint8(batch_x: torch.Tensor, ds: data.DeviceDataset) -> torch.Tensor:
    """Undo the normalisation of a batch (exact up to float rounding, hence the round)."""
    pixels = (batch_x * ds.std.view(1, -1, 1, 1) + ds.mean.view(1, -1, 1, 1)) * 255
    return pixels.round().to(torch.uint8)


def _random_dataset(n: int = 200, size: int = 8, augment: data.Augment | None = None) -> data.DeviceDataset:
    images = torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(123))
    return data.DeviceDataset(
        images.to(torch.uint8),
        torch.arange(n) % 10,
        torch.arange(n) + 1000,  # source indices differ from positions on purpose
        mean=[0.5, 0.4, 0.3],
        std=[0.2, 0.25, 0.3],
        augment=augment,
    )


# ---------------------------------------------------------------- digits and the split


def test_digits_shapes_classes_and_split_sizes():
    bundle = data.load("digits")
    assert (bundle.name, bundle.num_classes, bundle.in_channels, bundle.image_size) == ("digits", 10, 1, 8)
    assert (len(bundle.train), len(bundle.valid), len(bundle.test)) == (1200, 300, 297)
    for ds in (bundle.train, bundle.valid, bundle.test):
        assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (1, 8, 8)
        assert ds.labels.dtype == torch.int64 and ds.indices.dtype == torch.int64
        assert 0 <= int(ds.labels.min()) and int(ds.labels.max()) <= 9
    assert set(bundle.train.labels.tolist()) == set(range(10))
    assert bundle.train.augment == data.Augment(pad=1, flip=False)
    assert bundle.valid.augment is None and bundle.test.augment is None
    info = json.loads(json.dumps(bundle.info))
    assert info["sizes"] == {"pool": 1500, "train": 1200, "valid": 300, "test": 297}
    assert info["split_seed"] == 0 and info["valid_fraction"] == 0.2
    assert info["augment"] == {"pad": 1, "flip": False}


def test_digits_indices_are_disjoint_and_cover_every_sample():
    bundle = data.load("digits")
    train, valid, test = (_as_set(d.indices) for d in (bundle.train, bundle.valid, bundle.test))
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert train | valid | test == set(range(1797))


def test_digits_test_set_is_a_random_hold_out_of_every_class():
    test = data.load("digits").test
    indices = test.indices.numpy()
    # Spread over the whole array (not a block at either end) and covering every class.
    assert indices.min() < 50 and indices.max() > 1747
    assert np.histogram(indices, bins=6, range=(0, 1797))[0].min() > 25
    assert np.bincount(test.labels.numpy(), minlength=10).min() >= 15


def test_digits_pixels_and_labels_match_the_source(sklearn_digits):
    images, target = sklearn_digits
    bundle = data.load("digits")
    for ds in (bundle.train, bundle.valid, bundle.test):
        idx = ds.indices.numpy()
        assert np.array_equal(ds.images[:, 0].numpy(), images[idx])
        assert np.array_equal(ds.labels.numpy(), target[idx])


def test_digits_split_is_deterministic_and_seeded():
    a, b = data.load("digits"), data.load("digits")
    data.clear_cache()
    c = data.load("digits", split_seed=1)
    assert torch.equal(a.valid.indices, b.valid.indices) and torch.equal(a.train.images, b.train.images)
    assert torch.equal(a.test.indices, c.test.indices)  # the test hold-out never depends on split_seed
    assert not torch.equal(a.valid.indices, c.valid.indices)
    assert _as_set(a.train.indices) | _as_set(a.valid.indices) == _as_set(c.train.indices) | _as_set(
        c.valid.indices
    )


def test_valid_fraction_zero_gives_no_valid_split():
    bundle = data.load("digits", valid_fraction=0)
    assert bundle.valid is None and len(bundle.train) == 1500 and bundle.info["sizes"]["valid"] == 0
    bundle = data.load("digits", valid_fraction=0.5)
    assert (len(bundle.train), len(bundle.valid)) == (750, 750)


def test_loaded_tensors_do_not_alias_the_cache():
    first = data.load("digits", valid_fraction=0)
    first.train.images.zero_()
    first.test.images.zero_()
    second = data.load("digits", valid_fraction=0)
    assert int(second.train.images.max()) == 255 and int(second.test.images.max()) == 255


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": "mnist"}, ["mnist", "digits", "cifar10", "imagenet16-120"]),
        ({"name": "digits", "valid_fraction": 1.0}, ["valid_fraction", "[0, 1)"]),
        ({"name": "digits", "valid_fraction": -0.1}, ["valid_fraction"]),
        ({"name": "digits", "valid_fraction": float("nan")}, ["valid_fraction"]),
        ({"name": "digits", "split_seed": -1}, ["split_seed"]),
        ({"name": "digits", "device": "no-such-device"}, ["no-such-device"]),
        ({"name": "synthetic", "synthetic_size": 1}, ["synthetic_size"]),
        ({"name": "synthetic", "synthetic_size": 5, "synthetic_classes": 10}, ["synthetic_classes"]),
        ({"name": "synthetic", "synthetic_image_size": 0}, ["synthetic_image_size"]),
    ],
)
def test_bad_arguments_raise_one_sentence_user_errors(kwargs, words):
    name = kwargs.pop("name")
    with pytest.raises(UserError) as err:
        data.load(name, **kwargs)
    message = str(err.value)
    assert all(w in message for w in words), message
    assert "\n" not in message


def test_names_are_case_insensitive():
    assert data.load("DIGITS").name == "digits"


# ---------------------------------------------------------------- batches


def test_every_sample_once_per_epoch_without_drop_last():
    train = data.load("digits").train
    batches = list(train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == train.num_batches(64) == 19
    assert [len(b.y) for b in batches] == [64] * 18 + [1200 - 18 * 64]
    seen = torch.cat([b.index for b in batches])
    assert sorted(seen.tolist()) == sorted(train.indices.tolist())
    assert not torch.equal(seen, train.indices)  # actually shuffled


def test_drop_last_and_stored_order():
    train = data.load("digits").train
    batches = list(train.batches(64, drop_last=True, augment=False))
    assert len(batches) == train.num_batches(64, drop_last=True) == 18
    assert all(len(b.y) == 64 for b in batches)
    assert torch.equal(torch.cat([b.index for b in batches]), train.indices[: 18 * 64])


def test_order_is_honoured_including_repeats():
    train = data.load("digits").train
    order = torch.tensor([5, 5, 0, 1199, 3, 5, 7])
    batches = list(train.batches(3, order=order, shuffle=True, augment=False))
    assert [len(b.y) for b in batches] == [3, 3, 1]
    assert train.num_batches(3, num_samples=len(order)) == 3
    assert torch.equal(torch.cat([b.index for b in batches]), train.indices[order])
    assert torch.equal(torch.cat([b.y for b in batches]), train.labels[order])
    assert torch.equal(torch.cat([b.x for b in batches]), train.normalize(train.images[order]))
    with pytest.raises(ValueError, match="outside"):
        next(train.batches(3, order=torch.tensor([0, 1200])))


def test_batch_index_identifies_the_source_sample(sklearn_digits):
    images, target = sklearn_digits
    train = data.load("digits").train
    for batch in train.batches(100, shuffle=True, generator=torch.Generator().manual_seed(1), augment=False):
        assert batch.x.dtype == torch.float32 and batch.y.dtype == torch.int64
        idx = batch.index.numpy()
        assert np.array_equal(_to_uint8(batch.x, train)[:, 0].numpy(), images[idx])
        assert np.array_equal(batch.y.numpy(), target[idx])


def test_normalisation_formula():
    ds = _random_dataset(n=4)
    x = next(ds.batches(4, augment=False)).x
    mean, std = ds.mean.double().view(1, 3, 1, 1), ds.std.double().view(1, 3, 1, 1)
    expected = (ds.images.double() / 255 - mean) / std
    assert torch.allclose(x.double(), expected, atol=1e-5)


def test_shuffle_is_deterministic_given_the_generator():
    train = data.load("digits").train

    def epoch(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([b.index for b in train.batches(128, shuffle=True, generator=gen, augment=False)])

    assert torch.equal(epoch(3), epoch(3))
    assert not torch.equal(epoch(3), epoch(4))


def test_subset_keeps_source_indices():
    ds = _random_dataset(n=10, augment=data.Augment(2, True))
    sub = ds.subset(torch.tensor([7, 2, 2]))
    assert torch.equal(sub.indices, torch.tensor([1007, 1002, 1002]))
    assert torch.equal(sub.images, ds.images[[7, 2, 2]]) and torch.equal(sub.labels, ds.labels[[7, 2, 2]])
    assert sub.augment == ds.augment and len(sub) == 3
    assert ds.with_augment(None).augment is None and ds.with_augment(None).images is ds.images


def test_batch_size_must_be_positive():
    with pytest.raises(UserError, match="batch size"):
        data.load("digits").train.batches(0)


# ---------------------------------------------------------------- augmentation


def _reference_crop_flip(image: np.ndarray, dy: int, dx: int, flip: bool, pad: int) -> np.ndarray:
    """Slow per-sample reference: zero-pad, cut the window at (dy, dx), mirror if asked."""
    _, h, w = image.shape
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    out = padded[:, dy : dy + h, dx : dx + w]
    return out[:, :, ::-1] if flip else out


def test_crop_flip_matches_a_per_sample_loop():
    ds = _random_dataset(n=30, size=6)
    gen = torch.Generator().manual_seed(5)
    offsets = torch.randint(0, 5, (30, 2), generator=gen)
    flips = torch.randint(0, 2, (30,), generator=gen) == 1
    out = crop_flip(ds.images, offsets, flips, pad=2).numpy()
    for i in range(30):
        ref = _reference_crop_flip(ds.images[i].numpy(), *offsets[i].tolist(), bool(flips[i]), pad=2)
        assert np.array_equal(out[i], ref), i
    assert torch.equal(crop_flip(ds.images, torch.full((30, 2), 2), None, pad=2), ds.images)


def test_augmented_batches_are_shifted_and_flipped_copies_of_the_padded_images():
    pad = 2
    ds = _random_dataset(n=200, augment=data.Augment(pad=pad, flip=True))
    gen = torch.Generator().manual_seed(0)
    seen_offsets, seen_flips = [], []
    for batch in ds.batches(64, shuffle=True, generator=gen):
        pixels = _to_uint8(batch.x, ds).numpy()
        for out, index in zip(pixels, batch.index.tolist()):
            source = ds.images[index - 1000].numpy()
            matches = [
                (dy, dx, flip)
                for dy in range(2 * pad + 1)
                for dx in range(2 * pad + 1)
                for flip in (False, True)
                if np.array_equal(out, _reference_crop_flip(source, dy, dx, flip, pad))
            ]
            assert len(matches) == 1, (index, matches)
            seen_offsets.append(matches[0][:2])
            seen_flips.append(matches[0][2])
    assert len(seen_offsets) == 200
    assert sum(o != (pad, pad) for o in seen_offsets) > 150  # not the identity crop
    assert len(set(seen_offsets)) >= 20  # offsets vary per sample, over most of the 25 windows
    assert 0.35 < np.mean(seen_flips) < 0.65


def test_augmentation_is_deterministic_given_the_generator():
    ds = _random_dataset(n=100, augment=data.Augment(pad=2, flip=True))

    def epoch(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([b.x for b in ds.batches(32, generator=gen)])  # no shuffle: only the augmentation

    assert torch.equal(epoch(7), epoch(7))
    assert not torch.equal(epoch(7), epoch(8))
    plain = torch.cat([b.x for b in ds.batches(32, augment=False)])
    assert torch.equal(plain, ds.normalize(ds.images))
    assert not torch.equal(epoch(7), plain)


def test_digits_augmentation_never_flips():
    train = data.load("digits").train
    gen = torch.Generator().manual_seed(0)
    batch = next(train.batches(300, generator=gen))
    pixels = _to_uint8(batch.x, train).numpy()
    for out, source in zip(pixels, train.images[:300].numpy()):
        windows = [_reference_crop_flip(source, dy, dx, False, 1) for dy in range(3) for dx in range(3)]
        assert any(np.array_equal(out, w) for w in windows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches():
    ds = _random_dataset(n=100, augment=data.Augment(pad=2, flip=True))
    gpu = data.DeviceDataset(
        ds.images.cuda(), ds.labels.cuda(), ds.indices.cuda(), ds.mean, ds.std, ds.augment
    )
    for a, b in zip(
        ds.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1)),
        gpu.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1)),
    ):
        assert b.x.is_cuda and torch.allclose(a.x, b.x.cpu()) and torch.equal(a.index, b.index.cpu())


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_learnable():
    bundle = data.load("synthetic", synthetic_size=200, synthetic_classes=4, synthetic_image_size=6)
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (4, 3, 6)
    assert (len(bundle.train), len(bundle.valid), len(bundle.test)) == (160, 40, 50)
    data.clear_cache()
    again = data.load("synthetic", synthetic_size=200, synthetic_classes=4, synthetic_image_size=6)
    assert torch.equal(bundle.test.images, again.test.images)
    assert torch.equal(bundle.train.labels, again.train.labels)
    # A nearest-class-mean classifier separates the classes, so a working training loop can too.
    x = bundle.train.images.flatten(1).float()
    means = torch.stack([x[bundle.train.labels == c].mean(0) for c in range(4)])
    pred = torch.cdist(bundle.test.images.flatten(1).float(), means).argmin(1)
    assert (pred == bundle.test.labels).float().mean() > 0.9


# ---------------------------------------------------------------- CIFAR and ImageNet16 readers


@pytest.mark.parametrize(("name", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_cifar_reader_on_real_format_files(tmp_path, name, classes):
    expected = write_cifar(tmp_path, name)
    n_train = len(expected["train_labels"])
    bundle = data.load(name, data_dir=tmp_path, valid_fraction=0)
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (classes, 3, 32)
    assert torch.equal(bundle.train.indices, torch.arange(n_train))
    assert np.array_equal(bundle.train.images.numpy(), expected["train_images"])
    assert np.array_equal(bundle.train.labels.numpy(), expected["train_labels"])
    assert np.array_equal(bundle.test.images.numpy(), expected["test_images"])
    assert np.array_equal(bundle.test.labels.numpy(), expected["test_labels"])
    # Channel order and orientation: image 0 has red = column ramp, green = 0, blue = 255.
    assert np.array_equal(bundle.train.images[0].numpy(), pattern_image(32))
    assert bundle.train.augment == data.Augment(pad=4, flip=True)
    assert bundle.info["source"].startswith(str(tmp_path.resolve()))

    split = data.load(name, data_dir=tmp_path, valid_fraction=0.25, split_seed=3)
    assert (len(split.train), len(split.valid)) == (n_train * 3 // 4, n_train // 4)
    assert _as_set(split.train.indices) | _as_set(split.valid.indices) == set(range(n_train))
    idx = split.valid.indices.numpy()
    assert np.array_equal(split.valid.images.numpy(), expected["train_images"][idx])


def test_cifar_accepts_data_dir_pointing_into_the_folder(tmp_path):
    expected = write_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py").rename(tmp_path / "my-cifar")
    bundle = data.load("cifar10", data_dir=tmp_path / "my-cifar", valid_fraction=0)
    assert np.array_equal(bundle.test.labels.numpy(), expected["test_labels"])


def test_cifar_standard_normalisation():
    # NAS-Bench-201's per-dataset statistics (pixel units / 255).
    from nas.data.cifar import FORMATS

    assert np.allclose(np.array(FORMATS["cifar10"].mean) * 255, [125.3, 123.0, 113.9])
    assert np.allclose(np.array(FORMATS["cifar10"].std) * 255, [63.0, 62.1, 66.7])
    assert np.allclose(np.array(FORMATS["cifar100"].mean) * 255, [129.3, 124.1, 112.4])
    assert np.allclose(np.array(FORMATS["cifar100"].std) * 255, [68.2, 65.4, 70.4])


def test_cifar_incomplete_or_corrupt_folder_is_a_user_error(tmp_path):
    write_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3"):
        data.load("cifar10", data_dir=tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="data_batch_3"):
        data.load("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("subfolder", ["ImageNet16", ""])
def test_imagenet16_reader_keeps_the_first_120_classes(tmp_path, subfolder):
    raw = write_imagenet16(tmp_path / subfolder if subfolder else tmp_path)
    bundle = data.load("imagenet16-120", data_dir=tmp_path, valid_fraction=0)
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (120, 3, 16)
    for split, ds in (("train", bundle.train), ("test", bundle.test)):
        keep = raw[f"{split}_labels"] <= 120
        assert 0 < keep.sum() < len(keep)  # the fake files hold classes on both sides of the cut
        assert np.array_equal(ds.labels.numpy(), raw[f"{split}_labels"][keep] - 1)
        assert np.array_equal(ds.images.numpy(), raw[f"{split}_images"][keep])
        assert torch.equal(ds.indices, torch.arange(int(keep.sum())))
    assert int(bundle.train.labels.min()) == 0 and int(bundle.train.labels.max()) == 119
    assert np.array_equal(bundle.train.images[0].numpy(), pattern_image(16))
    assert bundle.train.augment == data.Augment(pad=2, flip=True)
    assert np.allclose(bundle.train.mean.numpy() * 255, [122.68, 116.66, 104.01])
    assert np.allclose(bundle.train.std.numpy() * 255, [63.22, 61.26, 65.09])


def test_imagenet16_missing_files_name_what_is_expected(tmp_path):
    with pytest.raises(UserError) as err:
        data.load("imagenet16-120", data_dir=tmp_path, download=True)
    assert "train_data_batch_1" in str(err.value) and "val_data" in str(err.value)
    assert str(tmp_path) in str(err.value)
