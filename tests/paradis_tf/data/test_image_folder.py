import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from paradis_tf.data import image_folder  # noqa: E402  (after the importorskip)


@pytest.fixture
def folder(tmp_path, rng):
    for name, value in (("cat", 40), ("dog", 200)):
        (tmp_path / name).mkdir()
        for i in range(3):
            img = np.full((10, 12, 3), value, np.uint8)
            img[0, 0] = rng.integers(0, 255, 3)
            (tmp_path / name / f"{i}.png").write_bytes(tf.io.encode_png(img).numpy())
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    return tmp_path


def test_reads_classes_resizes_and_scales(folder):
    ds, classes = image_folder(str(folder), image_size=(8, 8), batch_size=4, shuffle=False, return_class_names=True)
    assert classes == ("cat", "dog")
    x, y = zip(*[(np.asarray(a), np.asarray(b)) for a, b in ds])
    x, y = np.concatenate(x), np.concatenate(y)
    assert x.shape == (6, 8, 8, 3) and y.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(x[3:, 4, 4], 200 / 255.0, atol=1e-6)
    gray = image_folder(str(folder), image_size=(8, 8), color_mode="grayscale", shuffle=False)
    assert next(iter(gray))[0].shape == (6, 8, 8, 1)
    some = image_folder(str(folder), image_size=(8, 8), shuffle=False, limit=4, seed=1)
    assert sum(int(b.shape[0]) for _, b in some) == 4


def test_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        image_folder(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="has no sub-folder"):
        image_folder(str(empty))
    (folder / "cat" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot decode .*broken.png"):
        image_folder(str(folder))
    with pytest.raises(ValueError, match="color_mode must be 'rgb' or 'grayscale', received 'cmyk'"):
        image_folder(str(folder), color_mode="cmyk")


def _labels(ds):
    return np.concatenate([np.asarray(y) for _, y in ds]).tolist()


def _write(folder, name, value, count=2):
    (folder / name).mkdir(parents=True)
    for i in range(count):
        img = np.full((6, 6, 3), value, np.uint8)
        (folder / name / f"{i}.png").write_bytes(tf.io.encode_png(img).numpy())


def test_a_split_is_labelled_by_the_training_classes(tmp_path):
    # TEST_DIR lacks 'ant': labelled by its own sorted folders, 'bee' would be 0
    # and 'cat' 1, every label shifted (a 97 % model scored 0 %).
    train, test = tmp_path / "train", tmp_path / "test"
    for i, name in enumerate(("ant", "bee", "cat")):
        _write(train, name, 50 * i)
    _write(test, "bee", 50)
    _write(test, "cat", 100)
    _, classes = image_folder(str(train), (4, 4), shuffle=False, return_class_names=True)
    with pytest.warns(UserWarning, match=r"no image of class\(es\) \['ant'\]"):
        ds, names = image_folder(str(test), (4, 4), shuffle=False, class_names=classes, return_class_names=True)
    assert names == ("ant", "bee", "cat")
    assert _labels(ds) == [1, 1, 2, 2]


def test_a_class_training_never_saw_is_an_error(tmp_path):
    _write(tmp_path / "test", "bee", 50)
    _write(tmp_path / "test", "dog", 90)
    with pytest.raises(ValueError, match=r"images of class\(es\) \['dog'\] that class_names does not know"):
        image_folder(str(tmp_path / "test"), (4, 4), class_names=("ant", "bee"))
    with pytest.raises(ValueError, match="class_names must be a non-empty sequence of distinct names"):
        image_folder(str(tmp_path / "test"), (4, 4), class_names="bee")


def test_an_empty_sub_folder_is_not_a_class(tmp_path):
    _write(tmp_path, "ant", 10)
    _write(tmp_path, "bee", 90)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("no images here")
    with pytest.warns(UserWarning, match=r"\['cat'\] of .* hold no image"):
        ds, classes = image_folder(str(tmp_path), (4, 4), shuffle=False, return_class_names=True)
    assert classes == ("ant", "bee") and _labels(ds) == [0, 0, 1, 1]
