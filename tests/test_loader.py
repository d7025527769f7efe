import torch

from cifar_lib.data import CifarSplit
import torch.nn.functional as F

from cifar_lib.batches import BatchIterator, flip_some, normalize, resize_window, translate


def _split(n=10):
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    return CifarSplit(images, torch.arange(n) % 10)


def test_normalize_maps_uint8_to_standardised_floats():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 1, 1)
    out = normalize(x, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([-1.0, 1.0]))


def test_translate_shifts_content_and_zero_shift_is_identity():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    out = translate(x, torch.tensor([[0, 0], [1, 2]]), pad=2)
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1, 0, :5, :4], x[1, 0, 1:, 2:])  # shifted by (1, 2)


def test_flip_some_mirrors_only_masked_images():
    x = torch.randn(3, 3, 4, 4)
    out = flip_some(x, torch.tensor([True, False, True]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])


def test_every_image_once_per_epoch_with_labels_kept_and_last_partial_batch():
    split = _split(10)
    it = BatchIterator(split, 4, shuffle=True, flip="random", translate=2, seed=1)
    batches = list(it)
    assert [len(y) for _, y in batches] == [4, 4, 2] and len(it) == 3
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == sorted(split.labels.tolist())
    assert all(x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32 for x, _ in batches)
    dropped = BatchIterator(split, 4, drop_last=True)
    assert [len(y) for _, y in dropped] == [4, 4] and len(dropped) == 2


def test_labels_travel_with_their_images_under_shuffling():
    split = _split(10)
    it = BatchIterator(split, 10, shuffle=True, seed=3)
    x, y = next(iter(it))
    reference = normalize(split.images, (0.5,) * 3, (0.5,) * 3)
    for img, label in zip(x, y):
        assert torch.equal(img, reference[label])


def test_same_seed_same_batches_and_epochs_differ():
    split = _split()

    def epochs(seed):
        it = BatchIterator(split, 5, flip="alternating", translate=2, seed=seed)
        return [torch.cat([x for x, _ in it]) for _ in range(2)]
    a, b = epochs(0), epochs(0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], epochs(1)[0])


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_epochs():
    split = _split(8)
    it = BatchIterator(split, 8, shuffle=False, flip="alternating", seed=0)
    plain = normalize(split.images, (0.5,) * 3, (0.5,) * 3)
    flipped = [[not torch.equal(a, b) for a, b in zip(next(iter(it))[0], plain)]
               for _ in range(2)]
    assert all(f0 != f1 for f0, f1 in zip(*flipped))
    assert 0 < sum(flipped[0]) < 8


def test_shards_split_an_epoch_without_overlap():
    split = _split(10)
    shards = [BatchIterator(split, 3, seed=2, shard=(r, 2)).epoch_order() for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(torch.cat(shards).tolist()) == list(range(10))


def test_training_batches_are_built_from_the_config_and_crop_by_epoch():
    from cifar_lib.recipes import configure
    split = _split(40)
    cfg = configure("fast", batch_size=8, epochs=4, crop_epochs=2, crop_size=24, seed=3)
    it = BatchIterator.for_training(split, cfg)
    assert (it.batch_size, it.flip, it.pad, it.seed) == (8, "alternating", 2, 3)
    assert (it.brightness, it.contrast, it.drop_last) == (cfg.brightness, cfg.contrast, True)
    sizes = []
    for epoch in range(4):
        it.set_epoch(epoch)
        x, _ = next(iter(it))
        sizes.append(x.shape[-1])
    assert sizes == [24, 24, 32, 32]  # the crop epochs first, then whole images


def test_resize_window_takes_a_square_of_the_drawn_side_and_place():
    x = torch.rand(3, 2, 32, 32)
    # side 1: the whole image, resized
    whole = resize_window(x, torch.tensor([[0.0, 0.3, 0.9]] * 3), 1.0, 24)
    assert torch.allclose(whole, F.interpolate(x, size=24, mode="bilinear"), atol=1e-5)
    # side 1/2, no room drawn (0, 0): the top-left quarter, pixel for pixel at 16×16
    quarter = resize_window(x, torch.zeros(3, 3), 0.5, 16)
    assert torch.allclose(quarter, x[..., :16, :16], atol=1e-5)
    # all the room to the right (column 1), none below (row 0): the top-right quarter
    right = resize_window(x, torch.tensor([[0.0, 1.0, 0.0]] * 3), 0.5, 16)
    assert torch.allclose(right, x[..., :16, 16:], atol=1e-5)


def test_crop_window_resizes_the_crop_epochs_windows_and_only_those():
    from cifar_lib.recipes import configure
    split = _split(40)
    sizes, firsts = [], {}
    for window in (None, 0.75):
        cfg = configure("fast", batch_size=8, epochs=3, crop_epochs=2, crop_size=24,
                        seed=3).replace(crop_window=window)  # configure reads None as fast's
        it = BatchIterator.for_training(split, cfg)
        for epoch in range(3):
            it.set_epoch(epoch)
            x, _ = next(iter(it))
            sizes.append(x.shape[-1])
            firsts[window, epoch] = x
            if epoch == 0:  # corners are top-left pixels; resized windows have draws of their own
                corners, windows = it.crop_corners(), it.window_draws()
                assert (corners is None, windows is None) == (window is not None, window is None)
    assert sizes == [24, 24, 32] * 2
    assert not torch.allclose(firsts[None, 0], firsts[0.75, 0])  # resized windows, not pixels
    assert torch.equal(firsts[None, 2], firsts[0.75, 2])         # whole-image epochs unchanged
