import json

import numpy as np
import pytest

from tests.paradis_tf.data.idx import write_idx

pytest.importorskip("tensorflow")

from paradis_tf.cli import main


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch, rng):
    folder = tmp_path / "fmnist"
    folder.mkdir()
    labels = np.arange(96) % 10
    images = (rng.random((96, 28, 28)) * 60).astype(np.uint8)
    for i, label in enumerate(labels):  # learnable: a bright band per class
        images[i, 2 * label : 2 * label + 3, :] = 250
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("PARADIS_FASHION_MNIST", str(folder))
    return folder


def test_train_end_to_end_writes_model_and_summary(tmp_path, fake_fashion_mnist, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "resnet20", "--width", "0.25", "--switches", "1x1.0,2x0.5",
                 "--budget", "0.3", "--epochs", "2", "--batch-size", "32", "--finetune-epochs", "1",
                 "--recalibrate-batches", "2", "--out", str(out), "--verbose", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("switch "):]
    row = next(line.split() for line in table.splitlines() if line.startswith("2x0.5"))
    assert float(row[2]) <= 0.3, table  # the traffic column
    report = json.loads((out / "summary.json").read_text())
    rows = {r["switch"]: r for r in report["results"]}
    assert set(rows) == {"1x1.0", "2x0.5"}
    assert rows["2x0.5"]["comm_ratio"] <= 0.3 and rows["1x1.0"]["comm_ratio"] is None
    assert 0.0 <= rows["2x0.5"]["top1"] <= 1.0
    assert rows["2x0.5"]["params_per_device_ratio"] < 1.0
    assert (out / "model.keras").is_file() and (out / "checkpoint.keras").is_file()
    events = list((out / "logs").rglob("*tfevents*"))
    assert events, "TensorBoard wrote no event file"
    import tensorflow as tf

    tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value}
    # Per-switch loss, accuracy and traffic, and the annealed budget, every epoch.
    assert {"epoch_1x1.0_loss", "epoch_1x1.0_accuracy", "epoch_2x0.5_accuracy", "epoch_2x0.5_comm",
            "epoch_2x0.5_budget"} <= tags, sorted(tags)


def test_bad_arguments_exit_with_a_message(tmp_path, fake_fashion_mnist, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "resnet20", "--budget", "1.5", "--out", str(tmp_path)])
    assert "expected a traffic ratio in (0, 1], received '1.5'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--switches: .*widest switch of total width 1"):
        main(["train", "--model", "resnet20", "--switches", "1x0.5", "--out", str(tmp_path)])
    code = main(["train", "--model", "resnet20", "--dataset", "folder:/nonexistent", "--out", str(tmp_path)])
    assert code == 2 and "is not a folder" in capsys.readouterr().err
