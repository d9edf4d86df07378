import os

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("PIL")

from paradis_tf.data import photos  # noqa: E402
from paradis_tf.data.photos import (  # noqa: E402
    EVAL_PHOTOS, PHOTOS, TRAIN_PHOTOS, bicubic_resize, load_photo, sr_eval_images, sr_patches,
)
from paradis_tf.metrics import psnr  # noqa: E402


def _keys(x, a=-0.5):
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1, np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _resample_axis0(src, out_size):
    """Pillow's resampling written out: Keys' kernel widened by the scale when shrinking,
    cut at the borders and renormalised."""
    in_size = src.shape[0]
    scale = in_size / out_size
    widen = max(scale, 1.0)
    out = []
    for j in range(out_size):
        centre = (j + 0.5) * scale
        lo = max(int(centre - 2 * widen + 0.5), 0)
        hi = min(int(centre + 2 * widen + 0.5), in_size)
        w = _keys((np.arange(lo, hi) - centre + 0.5) / widen)
        out.append(np.tensordot(w / w.sum(), src[lo:hi], axes=1))
    return np.stack(out)


def _reference_resize(image, height, width):
    rows = _resample_axis0(image.astype(np.float64), height)  # (height, W, C)
    return np.clip(_resample_axis0(rows.transpose(1, 0, 2), width).transpose(1, 0, 2), 0, 1)


def test_split_is_fixed_disjoint_and_in_the_wheel():
    assert set(TRAIN_PHOTOS) | set(EVAL_PHOTOS) == set(PHOTOS)
    assert not set(TRAIN_PHOTOS) & set(EVAL_PHOTOS)
    assert EVAL_PHOTOS == ("camera", "chelsea", "rocket") and len(TRAIN_PHOTOS) == 11
    folder = photos._data_dir()
    for name, filename in PHOTOS.items():
        assert os.path.isfile(os.path.join(folder, filename)), name
    chelsea, camera = load_photo("chelsea"), load_photo("camera")
    assert chelsea.shape == (300, 451, 3) and chelsea.dtype == np.float32
    assert 0 <= chelsea.min() and chelsea.max() <= 1 and chelsea.max() > 0.9
    assert camera.shape == (512, 512, 3)
    np.testing.assert_array_equal(camera[..., 0], camera[..., 2])  # gray photo -> three equal channels


def test_bicubic_matches_the_written_out_kernel():
    rng = np.random.default_rng(0)
    image = rng.random((12, 9, 2)).astype(np.float32)
    for height, width in ((6, 3), (4, 3), (24, 18), (5, 13)):  # x2, x3 down; x2 up; mixed
        expected = _reference_resize(image, height, width)
        np.testing.assert_allclose(bicubic_resize(image, (height, width)), expected, atol=2e-6)


def test_bicubic_by_hand():
    # Shrinking a constant keeps it (weights sum to 1); enlarging a ramp keeps the
    # ramp away from the borders (Keys' kernel reproduces linear functions).
    np.testing.assert_allclose(bicubic_resize(np.full((9, 9, 3), 0.3), (3, 3)), 0.3, atol=1e-6)
    ramp = np.tile(np.arange(16, dtype=np.float32)[None, :, None] / 20, (4, 1, 1))  # (4, 16, 1)
    up = bicubic_resize(ramp, (4, 32))[0, :, 0]
    # Output column j samples input x = (j + 0.5) / 2 - 0.5.
    np.testing.assert_allclose(up[4:-4], ((np.arange(4, 28) + 0.5) / 2 - 0.5) / 20, atol=1e-6)
    # A batch is resized image by image.
    batch = np.stack([ramp, ramp[:, ::-1]])
    np.testing.assert_array_equal(bicubic_resize(batch, (4, 32))[1], bicubic_resize(ramp[:, ::-1], (4, 32)))


@pytest.mark.parametrize("scale", [2, 3])
def test_patches(scale):
    lr, hr = sr_patches(6, hr_size=48, scale=scale, seed=4)
    assert hr.shape == (6, 48, 48, 3) and lr.shape == (6, 48 // scale, 48 // scale, 3)
    assert lr.dtype == hr.dtype == np.float32 and 0 <= hr.min() and hr.max() <= 1
    np.testing.assert_array_equal(lr, bicubic_resize(hr, (48 // scale, 48 // scale)))
    again = sr_patches(6, hr_size=48, scale=scale, seed=4)
    assert lr.tobytes() == again[0].tobytes() and hr.tobytes() == again[1].tobytes()
    assert hr.tobytes() != sr_patches(6, hr_size=48, scale=scale, seed=5)[1].tobytes()


def test_unaugmented_patches_are_crops_of_the_split():
    # Patches of the "eval" split without augmentation are crops of an eval photo.
    _, hr = sr_patches(3, hr_size=24, scale=2, seed=0, split="eval", augment=False)
    sources = [load_photo(name) for name in EVAL_PHOTOS]
    for patch in hr:
        found = False
        for photo in sources:
            # Candidate corners: where the patch's first pixel occurs, then compare the crop.
            for y, x in zip(*np.nonzero(np.all(photo == patch[0, 0], axis=-1))):
                crop = photo[y:y + 24, x:x + 24]
                if crop.shape == patch.shape and np.array_equal(crop, patch):
                    found = True
                    break
            if found:
                break
        assert found


def test_eval_images_are_modcropped():
    images = sr_eval_images(scale=3)
    assert [name for _, _, name in images] == list(EVAL_PHOTOS)
    shapes = {name: (lr.shape, hr.shape) for lr, hr, name in images}
    # camera 512 x 512, chelsea 300 x 451, rocket 427 x 640, cropped to multiples of 3.
    assert shapes == {
        "camera": ((170, 170, 3), (510, 510, 3)),
        "chelsea": ((100, 150, 3), (300, 450, 3)),
        "rocket": ((142, 213, 3), (426, 639, 3)),
    }
    for lr, hr, name in images:
        np.testing.assert_array_equal(hr, load_photo(name)[: hr.shape[0], : hr.shape[1]])
        np.testing.assert_array_equal(lr, bicubic_resize(hr, lr.shape[:2]))
    # The bicubic baseline: upscaled back, it is close to but not the photo.
    lr, hr, _ = sr_eval_images(scale=2, names=["chelsea"])[0]
    baseline = psnr(bicubic_resize(lr, hr.shape[:2]), hr, shave=2)
    assert 28 < baseline < 45


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"hr_size 50 is not divisible by scale 3: .* \(e.g. 48 or 51\)"):
        sr_patches(2, hr_size=50, scale=3)
    with pytest.raises(ValueError, match="scale must be an int of at least 2.*received 1"):
        sr_patches(2, scale=1)
    with pytest.raises(ValueError, match="split must be 'train' or 'eval', received 'test'"):
        sr_patches(2, split="test")
    with pytest.raises(ValueError, match="count must be a positive int, received 0"):
        sr_patches(0)
    with pytest.raises(ValueError, match="hr_size 400 is larger than the smallest eval photo \\(300 pixels\\)"):
        sr_patches(1, hr_size=400, split="eval")
    with pytest.raises(ValueError, match="name must be one of .*received 'lena'"):
        load_photo("lena")
    with pytest.raises(ValueError, match=r"size must be a \(height, width\) pair, received 4"):
        bicubic_resize(np.zeros((4, 4, 1)), 4)
