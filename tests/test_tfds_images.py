"""tfds_images: torchvision's eval transform, deterministic batches on TFDS mock data, composites."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
import torch
from torch_ref import torchvision

from jaxsal.data import tfds_images

MOCK = tfds.testing.MockPolicy.USE_CODE


def _torchvision_eval(image: np.ndarray, image_size: int) -> np.ndarray:
    from PIL import Image

    t = torchvision().transforms
    tf = t.Compose(
        [
            t.Resize(tfds_images.resize_size(image_size)),
            t.CenterCrop(image_size),
            t.ToTensor(),
            t.Normalize(tfds_images.IMAGENET_MEAN, tfds_images.IMAGENET_STD),
        ]
    )
    with torch.no_grad():
        return tf(Image.fromarray(image)).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("shape,size", [((300, 400), 224), ((375, 250), 224), ((61, 90), 48)])
def test_preprocess_matches_torchvision(shape, size):
    image = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    ours = tfds_images.preprocess(image, image_size=size)
    ref = _torchvision_eval(image, size)
    assert ours.shape == (size, size, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_preprocess_grayscale_and_bad_shape():
    gray = np.random.default_rng(1).integers(0, 256, (40, 50), dtype=np.uint8)
    out = tfds_images.preprocess(gray, image_size=32)
    np.testing.assert_allclose(out[..., 0] * 0.229 + 0.485, out[..., 1] * 0.224 + 0.456, atol=1e-6)
    with pytest.raises(ValueError, match="RGB"):
        tfds_images.preprocess(np.zeros((8, 8, 4), np.uint8), image_size=8)


@pytest.mark.parametrize("name,split", [("imagenet2012", "validation"), ("cats_vs_dogs", "train")])
def test_batches_on_mock_data(name, split):
    with tfds.testing.mock_data(num_examples=10, policy=MOCK):
        src = tfds_images.source(name, split)
        records = [src[i] for i in range(10)]
        kw = dict(batch_size=4, image_size=32, seed=3)
        got = list(tfds_images.batches(name, split, epochs=2, **kw))
        resumed = list(tfds_images.batches(name, split, epochs=2, start_step=3, **kw))
        plain = list(tfds_images.batches(name, split, batch_size=4, image_size=32, shuffle=False))
    assert len(got) == 4  # 10 // 4 full batches per epoch, shuffled batches drop the rest
    for b in got:
        assert b["image"].shape == (4, 32, 32, 3) and b["image"].dtype == np.float32
        assert b["label"].shape == (4,) and b["label"].dtype == np.int32
    for k, b in enumerate(got):  # each batch is the pure function batch_at(step)
        ref = tfds_images.batch_at(records, k, **kw)
        np.testing.assert_array_equal(b["image"], ref["image"])
        np.testing.assert_array_equal(b["label"], ref["label"])
    np.testing.assert_array_equal(resumed[0]["image"], got[3]["image"])
    assert len(resumed) == 1
    # evaluation order: every record once, in order, last batch smaller
    assert [len(b["label"]) for b in plain] == [4, 4, 2]
    labels = np.concatenate([b["label"] for b in plain])
    np.testing.assert_array_equal(labels, [int(r["label"]) for r in records])
    first = tfds_images.preprocess(records[0]["image"], image_size=32)
    np.testing.assert_array_equal(plain[0]["image"][0], first)
    picked = tfds_images.load(records, [3, 1], image_size=32, workers=2)
    np.testing.assert_array_equal(
        picked["image"], np.stack([plain[0]["image"][3], plain[0]["image"][1]])
    )


def test_batch_indices_shuffle_each_epoch():
    n, b = 10, 3
    epoch0 = np.concatenate(
        [tfds_images.batch_indices(n, s, batch_size=b, seed=1) for s in range(3)]
    )
    epoch1 = np.concatenate(
        [tfds_images.batch_indices(n, s, batch_size=b, seed=1) for s in range(3, 6)]
    )
    assert len(set(epoch0)) == 9 and len(set(epoch1)) == 9
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(
        epoch0, np.random.default_rng((1, 0)).permutation(n)[:9]
    )  # the documented shuffle
    with pytest.raises(ValueError, match="no full batch"):
        tfds_images.batch_indices(2, 0, batch_size=3)


def _colour_records(labels):
    """Records whose image colour encodes the class: red for class 7, blue for class 2."""
    rng = np.random.default_rng(0)
    records = []
    for label in labels:
        h, w = rng.integers(20, 40, 2)
        image = np.zeros((h, w, 3), np.uint8)
        image[..., 0 if label == 7 else 2] = 255
        records.append({"image": image, "label": np.int64(label)})
    return records


def test_composites_tiles_both_classes():
    labels = [7, 2, 2, 7, 5, 7, 2, 7, 2, 5]
    records = _colour_records(labels)
    out = tfds_images.composites(records, classes=(7, 2), n=30, seed=0, image_size=16)
    assert out["image"].shape == (30, 16, 16, 3) and out["image"].dtype == np.float32
    np.testing.assert_array_equal(out["label"], np.tile([[7, 2]], (30, 1)))
    red = (1.0 - 0.485) / 0.229
    blue = (1.0 - 0.406) / 0.225
    for img, cells in zip(out["image"], out["cells"], strict=True):
        assert set(cells) == {7, 2}  # at least one of each class, nothing else
        for cell, cls in enumerate(cells):
            r, c = divmod(cell, 2)
            tile = img[r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8]
            channel, value = (0, red) if cls == 7 else (2, blue)
            np.testing.assert_allclose(tile[..., channel], value, rtol=1e-5)
    counts = (out["cells"] == 7).sum(1)
    assert set(counts) == {1, 2, 3}  # 30 draws hit every split of the four cells
    again = tfds_images.composites(records, classes=(7, 2), n=30, seed=0, image_size=16)
    np.testing.assert_array_equal(again["image"], out["image"])
    with pytest.raises(ValueError, match="class 5"):
        tfds_images.composites(records, classes=(7, 5), n=1, image_size=16)


def test_composites_on_mock_imagenet():
    with tfds.testing.mock_data(num_examples=40, policy=MOCK):
        src = tfds_images.source("imagenet2012", "validation")
        labels = tfds_images.labels_of(src)
        values, counts = np.unique(labels, return_counts=True)
        if (counts >= 3).sum() < 2:  # mock labels are random: build a source with two classes
            src = [dict(src[i], label=np.int64(386 + 169 * (i % 2))) for i in range(12)]
            labels = None
            classes = (386, 555)
        else:
            classes = tuple(int(v) for v in values[counts >= 3][:2])
        out = tfds_images.composites(
            src, classes=classes, n=3, seed=1, image_size=32, labels=labels
        )
    assert out["image"].shape == (3, 32, 32, 3)
    assert np.isfinite(out["image"]).all()
