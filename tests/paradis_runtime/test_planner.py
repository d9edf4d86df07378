"""The planner: the link/compute simulation against hand-worked numbers, and
profiles of a real bundle."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paradis_runtime.fusion_graph import read_graph, sha256_file
from paradis_runtime.manifest import read_manifest
from paradis_runtime.planner import (LinkModel, ProfileError, attach_measurements, check_profile, exchange_cost_s,
                                     plan, predict_latency, profile_bundle, read_measurements, read_profile,
                                     stage_seconds, tensor_bytes, write_profile)

REPO = Path(__file__).resolve().parents[2]
MB = 10**6


# --- hand-built graphs ------------------------------------------------------


def tiny_graph(stages, sends=(), wire_bytes=None, fusion=(0, ()), input_device=0):
    """A fusion graph with only what the simulation reads.

    ``stages[d]`` = [(name, inputs, outputs)]; ``sends`` = [(tensor, from
    device, to device, to stage)]; ``wire_bytes[t]`` = the frame size of
    tensor t on the wire (header included; float32, so a multiple of 4 plus 64).
    """
    wire_bytes = dict(wire_bytes or {})
    names = {"x"} | {t for dev in stages for _, i, o in dev for t in (*i, *o)}
    tensors = {}
    for t in sorted(names):
        payload = wire_bytes.get(t, 64 + 16) - 64
        assert payload > 0 and payload % 4 == 0, t
        tensors[t] = {"shape": [1, payload // 4], "dtype": "float32"}
    producer = {t: (d, name) for d, dev in enumerate(stages) for name, _, outs in dev for t in outs}
    return {
        "input": {"tensor": "x", "device": input_device},
        "tensors": tensors,
        "devices": [{"device": d, "stages": [{"name": n, "inputs": list(i), "outputs": list(o)} for n, i, o in dev]}
                    for d, dev in enumerate(stages)],
        "sends": [{"tensor": t, "from": {"device": src, "stage": producer[t][1]},
                   "to": {"device": dst, "stage": stage}} for t, src, dst, stage in sends],
        "fusion": {"device": fusion[0], "inputs": list(fusion[1])},
    }


def critical_sum(prediction):
    return sum(r["seconds"] for r in prediction["critical_path"])


def test_single_device_is_the_sum_of_its_stages_whatever_the_link():
    g = tiny_graph([[("s0", ["x"], ["a"]), ("s1", ["a"], ["b"]), ("s2", ["b"], ["p"])]], fusion=(0, ["p"]))
    times = [{"s0": 0.1, "s1": 0.2, "s2": 0.3}]
    for mbps, latency in ((None, 0.0), (math.inf, 0.0), (1.0, 100.0)):
        p = predict_latency(g, times, mbps, latency)
        assert p["latency_s"] == pytest.approx(0.6)
        assert p["exchanges"] == 0 and p["bytes"] == 0
        assert p["per_device"][0]["wait_s"] == pytest.approx(0.0)
        assert p["bottleneck"] == "device 0 compute 100%"
    assert predict_latency(g, times, None, 0, fusion_s=0.05)["latency_s"] == pytest.approx(0.65)


def two_devices(a_seconds):
    """Device 0 captures x (1 MB on the wire) and computes p0 in ``a_seconds``;
    device 1 receives x, computes p1 (80 B on the wire) in 0.25 s and sends
    it back for the fusion on device 0."""
    g = tiny_graph([[("a", ["x"], ["p0"])], [("b", ["x"], ["p1"])]],
                   sends=[("p1", 1, 0, "fusion")], wire_bytes={"x": MB, "p1": 80}, fusion=(0, ["p0", "p1"]))
    return g, [{"a": a_seconds}, {"b": 0.25}]


def test_one_exchange_of_1_mb_at_8_mbps_takes_1_s_plus_latency():
    g, times = two_devices(0.5)
    p = predict_latency(g, times, 8, 10)
    # x: 1 s on the link + 10 ms; b: 0.25 s; p1: 80 B * 8 / 8e6 = 80 us + 10 ms.
    assert p["latency_s"] == pytest.approx(1.0 + 0.010 + 0.25 + 80e-6 + 0.010, abs=1e-12)
    assert p["exchanges"] == 2 and p["bytes"] == MB + 80
    d0, d1 = p["per_device"]
    assert (d0["bytes_sent"], d0["frames_sent"], d1["bytes_sent"], d1["frames_sent"]) == (MB, 1, 80, 1)
    assert d1["wait_s"] == pytest.approx(1.010) and d1["finish_s"] == pytest.approx(1.260)
    # The fusion device waits for p1: compute + wait is the whole latency.
    assert d0["compute_s"] + d0["wait_s"] == pytest.approx(p["latency_s"])
    assert critical_sum(p) == pytest.approx(p["latency_s"])
    assert {(r["kind"], r["where"]): r["seconds"] for r in p["critical_path"]} == pytest.approx({
        ("transfer", "link 0->1"): 1.0, ("latency", "link 0->1"): 0.010, ("compute", "device 1"): 0.25,
        ("transfer", "link 1->0"): 80e-6, ("latency", "link 1->0"): 0.010})
    assert p["bottleneck"] == "link 0->1 transfer 79%"
    assert exchange_cost_s(MB - 64, 8, 10) == pytest.approx(1.010)


def test_compute_overlaps_with_transfers():
    # Device 0 computes while x crosses to device 1 and p1 comes back: up to
    # 1.27008 s of its own work costs nothing; beyond, the fusion waits for it.
    base = 1.0 + 0.010 + 0.25 + 80e-6 + 0.010
    for a, expected in ((0.0, base), (1.2, base), (1.3, 1.3)):
        g, times = two_devices(a)
        assert predict_latency(g, times, 8, 10)["latency_s"] == pytest.approx(expected)
    g, times = two_devices(1.3)
    assert predict_latency(g, times, 8, 10)["bottleneck"] == "device 0 compute 100%"


def test_the_fusion_device_fuses_after_its_own_stages():
    # Device 0 has its partial at 0.1 s and p1 arrives at 0.3 s, but the peer
    # runs every ready stage before it fuses: c (2 s, for device 1) comes first.
    g = tiny_graph([[("a", ["x"], ["p0"]), ("c", ["p0"], ["z"])], [("r1", ["x"], ["p1"]), ("r2", ["z"], ["q"])]],
                   sends=[("p1", 1, 0, "fusion"), ("z", 0, 1, "r2")], fusion=(0, ["p0", "p1"]))
    p = predict_latency(g, [{"a": 0.1, "c": 2.0}, {"r1": 0.3, "r2": 0.0}], None, 0, fusion_s=0.01)
    assert p["latency_s"] == pytest.approx(2.11)


def queue_graph(s1_seconds):
    """Device 0: s0 (0 s) makes u, s1 makes v; both go to device 1 (1 MB
    frames), whose stage r reads both; fusion of r's output on device 1."""
    g = tiny_graph([[("s0", ["x"], ["u"]), ("s1", ["u"], ["v"])], [("r", ["u", "v"], ["w"])]],
                   sends=[("u", 0, 1, "r"), ("v", 0, 1, "r")], wire_bytes={"u": MB, "v": MB}, fusion=(1, ["w"]))
    return g, [{"s0": 0.0, "s1": s1_seconds}, {"r": 0.0}]


def test_back_to_back_frames_queue_for_bandwidth_but_overlap_latency():
    g, times = queue_graph(0.0)
    # v is queued while u still occupies the link: 1 s + 1 s, and the 50 ms
    # latency of each overlaps: 2.05 s (not 1.05: bandwidth adds; not 2.1:
    # latency does not).
    assert predict_latency(g, times, 8, 50)["latency_s"] == pytest.approx(2.05)
    assert predict_latency(g, times, None, 50)["latency_s"] == pytest.approx(0.05)
    assert predict_latency(g, times, 0, 0)["latency_s"] == pytest.approx(0.0)
    # A per-frame overhead lengthens each frame's delay, like latency.
    assert predict_latency(g, times, 8, 50, per_frame_overhead_s=0.01)["latency_s"] == pytest.approx(2.06)
    # v queued at 0.3 s waits for the link (free at 1 s); queued at 1.5 s it
    # finds the link idle.
    g, times = queue_graph(0.3)
    assert predict_latency(g, times, 8, 50)["latency_s"] == pytest.approx(2.05)
    g, times = queue_graph(1.5)
    p = predict_latency(g, times, 8, 50)
    assert p["latency_s"] == pytest.approx(1.5 + 1.0 + 0.05)
    assert critical_sum(p) == pytest.approx(p["latency_s"])


def test_a_stage_writes_its_frames_in_output_order():
    # s0 makes v then u (both 1 MB to device 1), as the peer writes them: u
    # waits for v on the link, whatever the order of `sends`.
    g = tiny_graph([[("s0", ["x"], ["v", "u"])], [("r", ["u"], ["p"]), ("r2", ["v"], ["q"])]],
                   sends=[("u", 0, 1, "r"), ("v", 0, 1, "r2")], wire_bytes={"u": MB, "v": MB}, fusion=(1, ["p"]))
    assert predict_latency(g, [{"s0": 0.0}, {"r": 0.0, "r2": 0.0}], 8, 5)["latency_s"] == pytest.approx(2.005)


def test_directed_links_are_independent_queues():
    # 0 -> 1 and 0 -> 2 each carry one 1 MB frame at the same time: 1 s each,
    # in parallel (a shared medium would take 2 s).
    g = tiny_graph([[("s0", ["x"], ["u", "v"])], [("r1", ["u"], ["p1"])], [("r2", ["v"], ["p2"])]],
                   sends=[("u", 0, 1, "r1"), ("v", 0, 2, "r2"), ("p2", 2, 1, "fusion")],
                   wire_bytes={"u": MB, "v": MB}, fusion=(1, ["p1", "p2"]))
    p = predict_latency(g, [{"s0": 0.0}, {"r1": 0.0}, {"r2": 0.0}], 8, 0)
    assert p["latency_s"] == pytest.approx(1.0 + 80 * 8 / 8e6)


def test_a_tensor_crosses_to_a_device_once():
    # Two sends of u to stages of device 1 make one frame; u to device 2 another.
    g = tiny_graph([[("s0", ["x"], ["u"])], [("r1", ["u"], ["p1"]), ("r2", ["u"], ["q1"])], [("t", ["u"], ["p2"])]],
                   sends=[("u", 0, 1, "r1"), ("u", 0, 1, "r2"), ("u", 0, 2, "t"), ("p1", 1, 0, "fusion"),
                          ("p2", 2, 0, "fusion")],
                   fusion=(0, ["p1", "p2"]))
    p = predict_latency(g, [{"s0": 0.0}, {"r1": 0.0, "r2": 0.0}, {"t": 0.0}], 8, 0)
    assert p["exchanges"] == 4
    assert [d["frames_sent"] for d in p["per_device"]] == [2, 1, 1]


def test_the_input_goes_only_to_devices_that_read_it():
    g = tiny_graph([[("s0", ["x"], ["u"])], [("r", ["u"], ["p"])], [("idle", ["u"], ["q"])]],
                   sends=[("u", 0, 1, "r"), ("u", 0, 2, "idle"), ("p", 1, 0, "fusion")], fusion=(0, ["p"]))
    p = predict_latency(g, [{"s0": 0}, {"r": 0}, {"idle": 0}], 8, 0)
    assert p["per_device"][0]["frames_sent"] == 2  # u twice, never x
    g["devices"][2]["stages"][0]["inputs"] = ["x"]
    p = predict_latency(g, [{"s0": 0}, {"r": 0}, {"idle": 0}], 8, 0)
    assert p["per_device"][0]["frames_sent"] == 3  # x to device 2 now


def test_refusals_name_the_argument():
    g, times = two_devices(0.5)
    with pytest.raises(ValueError, match=r"mbps must be .* received -1"):
        predict_latency(g, times, -1, 0)
    with pytest.raises(ValueError, match=r"latency_ms must be .* received nan"):
        predict_latency(g, times, 8, float("nan"))
    with pytest.raises(ValueError, match=r"stage_seconds\[1\] has no time for stage 'b'"):
        predict_latency(g, [{"a": 0.5}, {}], 8, 0)
    with pytest.raises(ValueError, match=r"one dict per device \(2\), received 1"):
        predict_latency(g, times[:1], 8, 0)
    with pytest.raises(ValueError, match=r"nbytes must be an int >= 0, received -5"):
        exchange_cost_s(-5, 8, 0)
    # p1 never sent to the fusion device: say who waits for what.
    g["sends"] = []
    with pytest.raises(ValueError, match=r"fusion on device 0 needs \['p1'\]"):
        predict_latency(g, times, 8, 0)
    g = tiny_graph([[("s0", ["x"], ["u"])], [("r", ["u"], ["p"])]], fusion=(1, ["p"]))
    with pytest.raises(ValueError, match=r"device 1 stage 'r' waits for \['u'\]"):
        predict_latency(g, [{"s0": 0}, {"r": 0}], 8, 0)


def test_link_model_spellings_of_unlimited():
    assert LinkModel(0).mbps is None and LinkModel(math.inf).mbps is None and LinkModel(None).mbps is None
    assert LinkModel(8).transfer_s(MB) == pytest.approx(1.0)
    assert LinkModel(None, 2).transfer_s(MB) == 0.0 and LinkModel(None, 2).delay_s == pytest.approx(0.002)
    assert exchange_cost_s(MB, 0, 2) == pytest.approx(0.002)
    assert exchange_cost_s(0, 0.512, 0) == pytest.approx(0.001)  # the header alone
    with pytest.raises(ValueError, match="per_frame_overhead_s"):
        LinkModel(8, 0, -1)


# --- a real bundle ----------------------------------------------------------


SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from paradis_export import export_bundle
    from tests.paradis_export.helpers import resnet8

    out = tmp_path_factory.mktemp("planner") / "bundle"
    export_bundle(resnet8(switches=SWITCHES), SWITCHES, out, progress=None)
    return out


@pytest.fixture(scope="module")
def profile(bundle):
    return profile_bundle(bundle, repeats=3, warmup=1)


def test_profile_times_every_stage_of_every_switch(bundle, profile, tmp_path):
    manifest = read_manifest(bundle)
    assert profile["schema"] == "paradis-profile" and profile["version"] == 1 and profile["num_threads"] == 1
    assert profile["machine"]["cores"] >= 1 and profile["machine"]["cpu"]
    assert sorted(profile["switches"]) == sorted(e["name"] for e in manifest["switches"])
    for e in manifest["switches"]:
        graph = read_graph(bundle / e["graph"])
        entry = profile["switches"][e["name"]]
        assert entry["graph_sha256"] == sha256_file(bundle / e["graph"])
        assert len(entry["devices"]) == len(graph["devices"])
        for dev, timed in zip(graph["devices"], entry["devices"]):
            assert sorted(timed["stages"]) == sorted(s["name"] for s in dev["stages"])
            for stats in timed["stages"].values():
                assert 0 < stats["median_s"] <= stats["p90_s"] < 1.0
        assert entry["fusion"]["median_s"] > 0
    write_profile(profile, tmp_path / "p.json")
    assert read_profile(tmp_path / "p.json") == json.loads(json.dumps(profile))
    assert sorted(check_profile(profile, bundle)) == sorted(profile["switches"])


def test_a_profile_of_another_bundle_is_refused(bundle, profile, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    path = other / "2x0.5" / "fusion_graph.json"
    graph = json.loads(path.read_text())
    graph["model"] = "another_model"  # still a valid graph, but not the one profiled
    path.write_text(json.dumps(graph))
    with pytest.raises(ProfileError, match=r"switch '2x0\.5' was profiled on a fusion graph .*paradis profile"):
        check_profile(profile, other)
    with pytest.raises(ProfileError, match=r"switch '2x0\.5'"):
        plan(other, profile, 50, 2)
    partial = json.loads(json.dumps(profile))
    del partial["switches"]["0.5+0.3+0.2"]
    with pytest.raises(ProfileError, match=r"has no switch '0\.5\+0\.3\+0\.2'.*paradis profile"):
        check_profile(partial, bundle)


def test_read_profile_names_the_bad_field(profile, tmp_path):
    bad = json.loads(json.dumps(profile))
    bad["switches"]["2x0.5"]["devices"][1]["stages"]["stage3"]["median_s"] = -1
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ProfileError, match=r"switches\.2x0\.5\.devices\[1\]\.stages\.stage3\.median_s.*-1"):
        read_profile(tmp_path / "bad.json")
    (tmp_path / "graph.json").write_text(json.dumps({"schema": "paradis-fusion-graph"}))
    with pytest.raises(ProfileError, match=r"field 'schema' must be 'paradis-profile'"):
        read_profile(tmp_path / "graph.json")
    with pytest.raises(ProfileError, match="no such profile file"):
        read_profile(tmp_path / "missing.json")


def test_plan_ranks_switches_from_the_profile(bundle, profile):
    rows = plan(bundle, profile, None, 0)
    assert [r["predicted_ms"] for r in rows] == sorted(r["predicted_ms"] for r in rows)
    by_name = {r["switch"]: r for r in rows}
    graphs = {e["name"]: read_graph(bundle / e["graph"]) for e in read_manifest(bundle)["switches"]}
    one = profile["switches"]["1x1.0"]
    alone = sum(s["median_s"] for s in one["devices"][0]["stages"].values()) + one["fusion"]["median_s"]
    assert by_name["1x1.0"]["predicted_ms"] == pytest.approx(1e3 * alone)
    for name, row in by_name.items():
        graph = graphs[name]
        frames = len({(s["tensor"], s["to"]["device"]) for s in graph["sends"]}) + row["devices"] - 1
        assert row["exchanges"] == frames
        assert row["bytes_per_inference"] == (graph["totals"]["bytes_per_inference"] + 64 * frames
                                              + graph["totals"]["input_bytes"] * (row["devices"] - 1))
        # Even on an unlimited link a split switch is no faster than its busiest device.
        assert row["predicted_ms"] >= row["compute_ms"] * (1 - 1e-9)
    # A slower link can only slow a split switch down, and never the single device.
    slow = {r["switch"]: r for r in plan(bundle, profile, 1, 20)}
    assert slow["1x1.0"]["predicted_ms"] == pytest.approx(by_name["1x1.0"]["predicted_ms"])
    for name in ("2x0.5", "0.5+0.3+0.2"):
        assert slow[name]["predicted_ms"] > by_name[name]["predicted_ms"] + 20
    assert [r["switch"] for r in plan(bundle, profile, 1, 20)][0] == "1x1.0"


def test_real_graph_invariants(bundle, profile):
    graph = read_graph(bundle / "0.5+0.3+0.2" / "fusion_graph.json")
    p = predict_latency(graph, stage_seconds(profile, "0.5+0.3+0.2"), 50, 2)
    assert critical_sum(p) == pytest.approx(p["latency_s"])
    for d in p["per_device"]:
        assert d["compute_s"] + d["wait_s"] == pytest.approx(d["finish_s"])
        assert d["finish_s"] <= p["latency_s"] + 1e-12
    assert p["per_device"][graph["fusion"]["device"]]["finish_s"] == pytest.approx(p["latency_s"])
    assert tensor_bytes(graph, graph["input"]["tensor"]) == graph["totals"]["input_bytes"]


def test_measurements_sit_beside_matching_predictions(bundle, profile, tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([
        {"switch": "2x0.5", "link_mbps": 50, "link_latency_ms": 2, "median_ms": 10.0},
        {"switch": "2x0.5", "link_mbps": 50.0, "link_latency_ms": 2.0, "median_ms": 20.0},  # newer: wins
        {"switch": "1x1.0", "link_mbps": 0, "link_latency_ms": 0, "median_ms": 1.0},  # another link
    ]))
    measured = read_measurements(tmp_path / "m.json")
    rows = {r["switch"]: r for r in attach_measurements(plan(bundle, profile, 50, 2), measured, 50, 2)}
    assert rows["2x0.5"]["measured_ms"] == 20.0
    assert rows["2x0.5"]["error_pct"] == pytest.approx(100 * (rows["2x0.5"]["predicted_ms"] - 20) / 20)
    assert rows["1x1.0"]["measured_ms"] is None and rows["1x1.0"]["error_pct"] is None
    unlimited = {r["switch"]: r for r in attach_measurements(plan(bundle, profile, None, 0), measured, None, 0)}
    assert unlimited["1x1.0"]["measured_ms"] == 1.0 and unlimited["2x0.5"]["measured_ms"] is None
    (tmp_path / "bad.json").write_text(json.dumps([{"switch": "2x0.5", "link_mbps": 50, "link_latency_ms": 2}]))
    with pytest.raises(ValueError, match=r"bad\.json: entry \[0\] \(2x0\.5\): median_ms must be"):
        read_measurements(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(ValueError, match="must hold a JSON list"):
        read_measurements(tmp_path / "obj.json")


def test_profiling_loads_neither_keras_nor_tensorflow(bundle):
    script = (
        "import sys\n"
        "from paradis_runtime.planner import profile_bundle, plan\n"
        "p = profile_bundle(sys.argv[1], repeats=1, warmup=0)\n"
        "print(len(plan(sys.argv[1], p, 50, 2)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('keras', 'tensorflow', 'paradis_tf', 'paradis_export', 'jax')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(bundle)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows, loaded = proc.stdout.strip().splitlines()[-2:]
    assert rows == "3"
    assert loaded == "[]", loaded


def test_profile_arguments_are_checked(bundle):
    with pytest.raises(ValueError, match=r"repeats must be an int >= 1, received 0"):
        profile_bundle(bundle, repeats=0)
    with pytest.raises(ValueError, match=r"num_threads must be an int >= 1, received 1\.5"):
        profile_bundle(bundle, num_threads=1.5)


def _write_traces(folder, graph, stage_times, total_s, requests=5, switch="2x0.5"):
    paths = []
    for d, dev in enumerate(graph["devices"]):
        path = folder / f"trace{d}.jsonl"
        with open(path, "w") as f:
            for rid in range(1, requests + 1):
                t, stages = 0.0, []
                for st in dev["stages"]:
                    stages.append([st["name"], t, t + stage_times[d][st["name"]]])
                    t += stage_times[d][st["name"]]
                f.write(json.dumps({"switch": switch, "device": d, "request_id": rid, "stages": stages,
                                    "total_s": total_s if d == graph["input"]["device"] else t,
                                    "link_mbps": 0.0, "link_latency_ms": 0.0}) + "\n")
        paths.append(path)
    return paths


def test_a_profile_from_traces_recovers_stage_times_and_the_per_frame_overhead(bundle, profile, tmp_path):
    from paradis_runtime.planner import profile_from_traces

    graph = read_graph(bundle / "2x0.5" / "fusion_graph.json")
    times = stage_seconds(profile, "2x0.5")
    # What the runtime measured: the link model plus 0.5 ms per frame on the critical path.
    truth = predict_latency(graph, times, None, 0, per_frame_overhead_s=0.0005)
    paths = _write_traces(tmp_path, graph, times, truth["latency_s"])
    traced = profile_from_traces(bundle, paths, skip=2)
    entry = traced["switches"]["2x0.5"]
    assert list(traced["switches"]) == ["2x0.5"] and traced["source"] == "traces" and entry["requests"] == 3
    assert stage_seconds(traced, "2x0.5") == [pytest.approx(t) for t in times]
    assert entry["per_frame_overhead_s"] == pytest.approx(0.0005, rel=1e-6)
    # The planner adds it to every frame over any link, and plans only the switches that ran.
    rows = plan(bundle, traced, 50, 2)
    assert [r["switch"] for r in rows] == ["2x0.5"]
    want = predict_latency(graph, times, 50, 2, per_frame_overhead_s=0.0005)["latency_s"]
    assert rows[0]["predicted_ms"] == pytest.approx(1e3 * want) and rows[0]["frame_overhead_ms"] == pytest.approx(0.5)
    assert plan(bundle, traced, 50, 2, per_frame_overhead_s=0.0)[0]["predicted_ms"] < rows[0]["predicted_ms"]
    write_profile(traced, tmp_path / "p.json")
    assert read_profile(tmp_path / "p.json")["switches"]["2x0.5"]["per_frame_overhead_s"] == pytest.approx(0.0005)


def test_the_traced_overhead_is_found_when_no_frame_is_critical_without_it(bundle, tmp_path):
    from paradis_runtime.planner import profile_from_traces

    # Device 1 twice as fast as device 0: at zero overhead device 0's own
    # chain is the longest path and carries no frame, so a search that starts
    # from the zero-overhead critical path sees no frame to charge. 1 ms per
    # frame is enough to put frames on the critical path of this graph.
    graph = read_graph(bundle / "2x0.5" / "fusion_graph.json")
    times = [{s["name"]: 0.001 / (1 + d) for s in dev["stages"]} for d, dev in enumerate(graph["devices"])]
    assert predict_latency(graph, times, None, 0)["critical_frames"] == 0
    truth = predict_latency(graph, times, None, 0, per_frame_overhead_s=0.001)
    assert truth["critical_frames"] > 0
    traced = profile_from_traces(bundle, _write_traces(tmp_path, graph, times, truth["latency_s"]), skip=2)
    assert traced["switches"]["2x0.5"]["per_frame_overhead_s"] == pytest.approx(0.001, rel=1e-6)
    # Stage times that already explain the measurement leave no overhead.
    slow = _write_traces(tmp_path, graph, times, 0.5 * truth["latency_s"])
    assert profile_from_traces(bundle, slow, skip=2)["switches"]["2x0.5"]["per_frame_overhead_s"] == 0.0


def test_a_profile_from_traces_names_what_is_missing_or_foreign(bundle, profile, tmp_path):
    from paradis_runtime.planner import profile_from_traces

    graph = read_graph(bundle / "2x0.5" / "fusion_graph.json")
    times = stage_seconds(profile, "2x0.5")
    t0, t1 = _write_traces(tmp_path, graph, times, 0.01)
    with pytest.raises(ProfileError, match="no trace records of device 1"):
        profile_from_traces(bundle, [t0])
    first = graph["devices"][1]["stages"][0]["name"]
    (tmp_path / "foreign.jsonl").write_text(t1.read_text().replace(f'["{first}"', '["nope"'))
    with pytest.raises(ProfileError, match="names stage 'nope'"):
        profile_from_traces(bundle, [t0, tmp_path / "foreign.jsonl"])
    # Same stage names, another export (int8 against float32, other weights): the graph's digest tells.
    from paradis_runtime.fusion_graph import sha256_file

    digest = sha256_file(bundle / "2x0.5" / "fusion_graph.json")
    tagged = [json.loads(line) for line in t1.read_text().splitlines()]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps({**r, "graph_sha256": digest}) + "\n" for r in tagged))
    assert "2x0.5" in profile_from_traces(bundle, [t0, tmp_path / "mine.jsonl"])["switches"]
    (tmp_path / "other.jsonl").write_text("".join(json.dumps({**r, "graph_sha256": "ab" * 32}) + "\n"
                                                  for r in tagged))
    with pytest.raises(ProfileError, match=r"device 1 was recorded running another export \(graph sha256 "
                                           r"abababababab\.\.\."):
        profile_from_traces(bundle, [t0, tmp_path / "other.jsonl"])
    (tmp_path / "junk.jsonl").write_text("not json\n")
    with pytest.raises(ProfileError, match="junk.jsonl: line 1 is not JSON"):
        profile_from_traces(bundle, [tmp_path / "junk.jsonl"])
    _write_traces(tmp_path, graph, times, 0.01, switch="9x9")
    with pytest.raises(ProfileError, match="none of which"):
        profile_from_traces(bundle, [tmp_path / "trace0.jsonl"])
    with pytest.raises(ValueError, match="traces must be a non-empty list"):
        profile_from_traces(bundle, str(t0))
    # Only device 0 emulated a link (each sender emulates its own): no one link
    # describes the run, so no overhead is fitted to it.
    t0, t1 = _write_traces(tmp_path, graph, times, 0.01)
    t0.write_text(t0.read_text().replace('"link_mbps": 0.0, "link_latency_ms": 0.0',
                                         '"link_mbps": 50.0, "link_latency_ms": 2.0'))
    with pytest.raises(ProfileError, match=r"emulated different links \(device 0: 50 Mbps, 2 ms; device 1: no "
                                           r"emulation\); .*same --link-mbps"):
        profile_from_traces(bundle, [t0, t1])
