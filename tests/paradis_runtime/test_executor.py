"""ReferenceExecutor at the boundary: what it refuses and what it says."""

import hashlib
import json
import warnings

import numpy as np
import pytest

from paradis_export import FusionGraphError, ReferenceExecutor
from tests.paradis_export.helpers import real_images, seeded_bundles


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("executor")
    seeded_bundles(root, "1x1.0,2x0.5", export="2x0.5")
    return root


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_non_finite_input_is_refused(bundles, precision):
    # int8 used to quantize NaN to some byte and answer with finite logits.
    executor = ReferenceExecutor(bundles / precision)
    x, _ = real_images(1)
    executor.run(x)
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[0, 3, 4, 0] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            executor.run(y)


def test_pixels_off_the_declared_scale_warn_once(bundles):
    executor = ReferenceExecutor(bundles / "float32")
    x, _ = real_images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        executor.predict(x)  # in [0, 1]: silent
    message = r"ranges over \[0, 255\], far outside \[0, 1\].*pixel \(0..255\) \* 0.00392157 \+ 0"
    with pytest.warns(UserWarning, match=message) as caught:
        executor.predict(np.round(x * 255))
        executor.predict(np.round(x * 255))
    assert len(caught) == 1


def test_run_on_a_batch_points_to_predict(bundles):
    x, _ = real_images(3)
    with pytest.raises(ValueError, match=r"received a batch of 3: use predict\(images\)"):
        ReferenceExecutor(bundles / "float32").run(x)


def test_predict_takes_one_input_without_its_batch_axis_and_refuses_an_empty_batch(bundles):
    executor = ReferenceExecutor(bundles / "float32")
    x, _ = real_images(2)
    np.testing.assert_array_equal(executor.predict(x[1]), executor.predict(x)[1:])
    with pytest.raises(ValueError, match=r"empty batch \(shape \(0, 28, 28, 1\)\); pass at least one input"):
        executor.predict(x[:0])
    with pytest.raises(ValueError, match=r"batch of inputs of shape \(N, 28, 28, 1\).*received shape \(28, 1\)"):
        executor.predict(x[0, 0])


def test_a_broken_file_with_a_matching_hash_names_device_and_file(bundles, tmp_path):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(bundles / "float32", bundle)
    file = bundle / "2x0.5" / "device1.tflite"
    file.write_bytes(file.read_bytes()[:1000])
    graph_file = bundle / "2x0.5" / "fusion_graph.json"
    graph = json.loads(graph_file.read_text())
    graph["devices"][1]["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    graph_file.write_text(json.dumps(graph))
    with pytest.raises(FusionGraphError, match=r"device 1's file .*device1.tflite cannot be loaded by LiteRT"):
        ReferenceExecutor(bundle)
