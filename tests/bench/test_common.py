"""bench/_common.py: the check that decides whether --merge may keep a stored
results file's rows (rows measured in another setting must never be mixed),
and the per-run records a long benchmark resumes from."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "_common.py")


@pytest.fixture
def common(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_common", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", str(tmp_path))
    return module


def _setting(**changes):
    setting = {"train_limit": 20000, "test_limit": 5000, "epochs": 4, "seeds": {"full": 1}, "batch_size": 128,
               "lr": 0.01, "recipe": "r2", "gate_recipe": "g1", "preset": "cpu", "backend": "tensorflow on cpu",
               "command": "python bench/x.py --regimes full --merge"}
    setting.update(changes)
    return setting


def _store(tmp_path, setting):
    stored = {"narrow": {"a": {"top1": 0.5}}, "setting": {**setting, "description": "stored"}}
    (tmp_path / "x.json").write_text(json.dumps(stored))
    return stored


def test_same_setting_is_merged_and_the_earlier_commands_recorded(common, tmp_path):
    _store(tmp_path, _setting(command="python bench/x.py --regimes narrow", merged_from=["python bench/x.py"]))
    setting = _setting()
    stored = common.stored_results("x.json", setting)
    assert stored["narrow"] == {"a": {"top1": 0.5}}
    assert setting["merged_from"] == ["python bench/x.py", "python bench/x.py --regimes narrow"]


@pytest.mark.parametrize("key, value",
                         [("lr", 0.001), ("epochs", 12), ("gate_recipe", "g2"), ("backend", "jax on gpu")])
def test_another_setting_is_refused_naming_the_key(common, tmp_path, key, value):
    _store(tmp_path, _setting(**{key: value}))
    # The exact list, not the bare key: the key may also be in tmp_path's name.
    with pytest.raises(SystemExit, match=re.escape(f"other ['{key}']")):
        common.stored_results("x.json", _setting())


def test_a_stored_file_without_a_recipe_is_refused(common, tmp_path):
    stored = _setting()
    del stored["recipe"]
    _store(tmp_path, stored)
    with pytest.raises(SystemExit, match=re.escape("other ['recipe']")):
        common.stored_results("x.json", _setting())


def test_no_stored_file_says_to_run_without_merge(common):
    with pytest.raises(SystemExit, match="without --merge"):
        common.stored_results("x.json", _setting())


def test_describe_names_preset_seeds_and_backend(common):
    text = common.describe(_setting(seeds={"full": 1, "narrow": 3}))
    assert text.startswith("preset cpu; 20000 training / 5000 test images, 4 epochs")
    assert "seeds {'full': 1, 'narrow': 3}" in text and text.endswith("backend tensorflow on cpu")


def test_a_run_is_recorded_once_and_reused(common, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RECORDS", str(tmp_path / "records"))
    calls = []

    def run():
        calls.append(1)
        return {"top1": 0.875}

    first = common.cached_run("bench_x", "r3-cpu/narrow_unsplit_0", run)
    again = common.cached_run("bench_x", "r3-cpu/narrow_unsplit_0", run)
    assert calls == [1] and first == again and first["result"] == {"top1": 0.875}
    assert first["backend"].endswith(" on cpu") and re.fullmatch(r"\d{4}-\d\d-\d\d", first["date"])
    assert first["cores"] == len(os.sched_getaffinity(0))
    assert (tmp_path / "records" / "bench_x" / "r3-cpu" / "narrow_unsplit_0.json").is_file()
    # cached_only never starts a run that is not stored.
    assert common.cached_run("bench_x", "r3-cpu/narrow_unsplit_1", run, cached_only=True) is None
    assert calls == [1]


def test_a_run_claimed_by_a_live_process_is_left_to_it(common, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RECORDS", str(tmp_path / "records"))
    path = common.record_path("bench_x", "r3-cpu/narrow_unsplit_0")
    os.makedirs(os.path.dirname(path))
    other = subprocess.Popen(["sleep", "30"])
    try:
        with open(path + ".claim", "w") as f:
            f.write(str(other.pid))
        assert common.cached_run("bench_x", "r3-cpu/narrow_unsplit_0", lambda: pytest.fail("ran twice")) is None
        assert open(path + ".claim").read() == str(other.pid) and not os.path.exists(path)
    finally:
        other.kill()
        other.wait()
    # The claimant is gone (killed, or the machine restarted): the run is taken over.
    record = common.cached_run("bench_x", "r3-cpu/narrow_unsplit_0", lambda: {"top1": 0.5})
    assert record["result"] == {"top1": 0.5} and not os.path.exists(path + ".claim")


def test_a_failed_run_leaves_no_claim_and_no_record(common, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RECORDS", str(tmp_path / "records"))

    def run():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        common.cached_run("bench_x", "r3-cpu/narrow_unsplit_0", run)
    assert os.listdir(tmp_path / "records" / "bench_x" / "r3-cpu") == []


_WORKER_BENCH = """
import argparse, glob, json, os, sys, time
sys.path.insert(0, {bench!r})
import _common as C
C.RECORDS = {records!r}
args, setting, tag = C.parse_setting(argparse.ArgumentParser(), {{"cpu": {setting!r}}}, "x.py", regimes="narrow")
def other_worker_seen():
    # A claim or a record of another process: the other worker has taken a run.
    me = str(os.getpid())
    for f in glob.glob(os.path.join(C.RECORDS, "**", "*.claim"), recursive=True):
        if open(f).read().strip() != me:
            return True
    for f in glob.glob(os.path.join(C.RECORDS, "**", "*.json"), recursive=True):
        if str(json.load(open(f))["result"]["pid"]) != me:
            return True
    return False
def run():
    # Held until the other worker has taken a run too (or 120 s), so the
    # split does not depend on how fast each worker starts.
    end = time.monotonic() + 120
    while time.monotonic() < end and not other_worker_seen():
        time.sleep(0.05)
    return {{"pid": os.getpid(), "cores": sorted(os.sched_getaffinity(0))}}
records = [C.cached_run("x", f"{{tag}}/narrow_{{seed}}", run, cached_only=args.cached_only) for seed in range(4)]
if not args.worker:
    print(json.dumps([r and r["result"] for r in records]))
"""


def test_workers_split_the_runs_one_core_each_and_the_parent_reports_all(tmp_path):
    setting = {"train_limit": 10, "test_limit": 10, "epochs": 1, "seeds": 1, "batch_size": 1, "lr": 0.1}
    script = tmp_path / "x.py"
    script.write_text(_WORKER_BENCH.format(bench=os.path.dirname(_PATH), records=str(tmp_path / "records"),
                                           setting=setting))
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, str(script), "--workers", "2"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(results), results  # the parent read every run the workers stored
    pids = {r["pid"] for r in results}
    assert len(pids) == 2, results  # both workers ran some
    assert all(len(r["cores"]) == 1 for r in results), results
    if len(os.sched_getaffinity(0)) > 1:
        assert len({r["cores"][0] for r in results}) == 2, results
    assert not [f for _, _, files in os.walk(tmp_path / "records") for f in files if not f.endswith(".json")]
    stored = [json.loads(p.read_text()) for p in (tmp_path / "records").rglob("*.json")]
    assert len(stored) == 4 and all(r["cores"] == 1 for r in stored), stored  # each worker had one core
    bad = subprocess.run([sys.executable, str(script), "--workers", "0"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "--workers: expected at least 1, received 0" in bad.stderr


def test_run_records_are_committed_not_ignored(common):
    """A benchmark spans sessions on fresh machines: its records must reach
    the repository (bench/.runs, the scratch folder, is ignored)."""
    root = os.path.dirname(os.path.dirname(common.RECORDS))
    record = os.path.relpath(common.record_path("accuracy_comm", "r3-cpu/narrow_unsplit_0"), root)
    ignored = subprocess.run(["git", "check-ignore", "-q", record], cwd=root)
    assert ignored.returncode == 1, f"{record} is ignored by git"
    scratch = os.path.relpath(os.path.join(common.RUNS, "tasks", "x.weights.h5"), root)
    assert subprocess.run(["git", "check-ignore", "-q", scratch], cwd=root).returncode == 0


@pytest.mark.parametrize("diffs, target", [([0.0, 0.01, -0.005, 0.02, 0.012], 0.003), ([0.01, 0.03], 0.003),
                                           ([0.001, 0.0012, 0.0009], 0.003)])
def test_seeds_for_half_width_is_the_fewest_that_reach_the_target(common, diffs, target):
    import statistics

    n = common.seeds_for_half_width(diffs, target)
    sd = statistics.stdev(diffs)
    # n seeds at this spread give a half-width within the target, n - 1 do not (the same t as the intervals).
    assert common._t975(n - 1) * sd / n ** 0.5 <= target
    assert n == 2 or common._t975(n - 2) * sd / (n - 1) ** 0.5 > target
    spread = [target + d for d in diffs]  # a shift leaves the spread, and the answer, as it is
    assert common.seeds_for_half_width(spread, target) == n


def test_seeds_for_half_width_needs_a_spread(common):
    assert common.seeds_for_half_width([0.01], 0.003) is None
    with pytest.raises(ValueError, match="target must be > 0, received 0"):
        common.seeds_for_half_width([0.01, 0.02], 0)


def test_random_gate_logits_are_one_draw_per_seed(common):
    # Every random-gate variant of one seed (accuracy_comm, tasks) must draw the same logits.
    import keras
    from paradis_tf.models import CifarResNet

    def logits(seed, trainable):
        keras.utils.set_random_seed(123)
        model = CifarResNet(depth=8, width=0.25, num_classes=10, input_shape=(8, 8, 1), switches="2x0.5",
                            gates="learned")
        common.randomize_gate_logits(model, seed, trainable)
        variables = [v for layer in model._flatten_layers() for v in getattr(layer, "_gate_logits", {}).values()]
        assert variables and all(v.trainable is trainable for v in variables)
        return np.concatenate([np.ravel(keras.ops.convert_to_numpy(v)) for v in variables])

    first = logits(0, False)
    assert np.array_equal(first, logits(0, True))
    assert not np.allclose(first, logits(1, False))
    assert abs(float(np.std(first)) - 1.0) < 0.5  # N(0, 1), not the layers' initial logits


def test_wall_time_is_split_by_the_cores_a_run_had(common):
    said = common.wall_by_cores([(400.0, 1), (380.0, 1), (200.0, 2), (300.0, None)])
    assert said == ("1 core: 390 s a run (2 runs, 380-400 s); 2 cores: 200 s a run (1 run, 200-200 s); "
                    "cores not recorded: 300 s a run (1 run, 300-300 s)"), said
    assert common.wall_by_cores([]) == ""


def test_paired_difference_counts_the_seeds_above_and_below(common):
    p = common.paired_difference([0.82, 0.80, 0.81, 0.79], [0.80, 0.81, 0.81, 0.78])
    assert (p["above"], p["below"]) == (2, 1)  # the third seed is a tie
    assert p["diff_mean"] == pytest.approx(0.005)
    one = common.paired_difference([0.80], [0.81])
    assert (one["above"], one["below"], one["ci95"]) == (0, 1, None)
