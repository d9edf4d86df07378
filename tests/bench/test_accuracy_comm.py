"""bench/accuracy_comm.py: which baseline each variant is paired with, the
gap recovered and the wall time by cores, on synthetic run records (no
training)."""

import json

import pytest

from tests.bench.scripts import load


@pytest.fixture(scope="module")
def bench():
    return load("accuracy_comm.py")


def _runs(top1s, seconds=400.0, cores=1):
    return {s: {"top1": t, "comm_ratio": 0.1, "flops_per_device_ratio": 0.3, "params_per_device_ratio": 0.4,
                "seconds": seconds, "cores": cores} for s, t in enumerate(top1s)}


def _records(with_random_01):
    variants = {"unsplit": _runs([0.83, 0.82, 0.84], 200.0, 2), "independent": _runs([0.78, 0.77, 0.79], 200.0, 2),
                "random_0.2": _runs([0.81, 0.80, 0.82]), "disco_0.2": _runs([0.815, 0.805, 0.826]),
                "disco_0.1": _runs([0.808, 0.797, 0.818])}
    if with_random_01:
        variants["random_0.1"] = _runs([0.800, 0.790, 0.811])
    return {"narrow": variants}


def test_learned_gates_are_paired_with_the_random_subset_at_their_budget(bench):
    summary = bench.summarize(_records(with_random_01=True))["narrow"]
    assert summary["paired"]["disco_0.2"]["baseline"] == "random_0.2"
    assert summary["paired"]["disco_0.1"]["baseline"] == "random_0.1"
    assert summary["paired"]["disco_0.1"]["diff_mean"] == pytest.approx(0.008 - 1e-3 * 2 / 3, abs=1e-9)
    assert summary["paired"]["random_0.1"]["baseline"] == "unsplit"
    # (top1 - independent) / (unsplit - independent) on the means over seeds
    assert summary["variants"]["disco_0.1"]["gap_recovered"] == pytest.approx((0.2423 / 0.3 - 0.78) / 0.05)
    # Without random_0.1 measured, disco_0.1 stays paired with unsplit (the stored preset-cpu results).
    alone = bench.summarize(_records(with_random_01=False))["narrow"]
    assert alone["paired"]["disco_0.1"]["baseline"] == "unsplit"


def test_wall_time_is_reported_by_cores(bench):
    summary = bench.summarize(_records(with_random_01=True))
    assert summary["narrow"]["wall_time"] == ("1 core: 400 s a run (12 runs, 400-400 s); "
                                              "2 cores: 200 s a run (6 runs, 200-200 s)")
    # unsplit - independent is 5 pt on every seed here: no spread, so no half-width to count it in.
    assert summary["narrow"]["instrument"]["gap_in_half_widths"] is None
    text = bench.markdown(summary, {"description": "synthetic", "command": "x"}, bench.verdicts(summary))
    assert "by the cores a run could use: 1 core: 400 s a run (12 runs" in text
    # disco_0.2 - random_0.2 per seed: +0.005, +0.005, +0.006: above on all three.
    assert "| disco_0.2 | 81.53 | 2.10 | 3 | +0.53 | [+0.39, +0.68] | random_0.2 | 3 / 0 |" in text


def test_a_regime_merged_from_the_stored_file_keeps_its_wall_time(bench, monkeypatch):
    # The stored file as written to disk (JSON), then a run of the mid regime merged with it.
    stored = json.loads(json.dumps(bench.summarize(_records(with_random_01=True))))
    stored["setting"] = {"seeds": {"narrow": 3}, "command": "narrow run"}
    monkeypatch.setattr(bench.C, "stored_results", lambda name, setting: stored)
    monkeypatch.setattr(bench.C, "describe", lambda setting: "synthetic")
    mid = bench.summarize({"mid": {"unsplit": _runs([0.88, 0.87, 0.89], 500.0),
                                   "independent": _runs([0.86] * 3, 500.0)}})
    merged = bench.merge_stored(mid, {"preset": "cpu_long", "seeds": {"mid": 3}})
    assert merged["narrow"]["wall_time"] == ("1 core: 400 s a run (12 runs, 400-400 s); "
                                             "2 cores: 200 s a run (6 runs, 200-200 s)")
    assert merged["mid"]["wall_time"] == "1 core: 500 s a run (6 runs, 500-500 s)"
    text = bench.markdown(merged, {"description": "synthetic", "command": "x"}, bench.verdicts(merged))
    assert text.count("by the cores a run could use") == 2


def test_each_regime_has_its_own_instrument_verdict(bench):
    # narrow: the gap 5 pt +- 0.1 pt over five seeds, every contrast tight;
    # mid: the gap 1 pt but independent's spread as wide, so it does not separate.
    narrow = {"unsplit": _runs([0.83, 0.82, 0.84, 0.83, 0.82]),
              "independent": _runs([0.78, 0.771, 0.79, 0.781, 0.769]),
              "random_0.2": _runs([0.81, 0.80, 0.82, 0.81, 0.80]),
              "disco_0.2": _runs([0.812, 0.801, 0.822, 0.811, 0.802])}
    mid = {"unsplit": _runs([0.88, 0.87, 0.89, 0.88, 0.87]),
           "independent": _runs([0.87, 0.86, 0.89, 0.86, 0.86])}
    met = bench.verdicts(bench.summarize({"narrow": narrow, "mid": mid}))
    assert met["narrow.instrument"] is True
    assert met["mid.instrument"] is False
    assert met["instrument"] is False  # asked of every regime
    assert bench.verdicts(bench.summarize({"narrow": narrow}))["instrument"] is True
