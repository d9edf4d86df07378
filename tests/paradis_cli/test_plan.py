"""`paradis profile` and `paradis plan` on a real bundle: output, files, exit codes."""

import json
import shutil

import pytest

import paradis_cli
from paradis_runtime.planner import read_profile

SWITCHES = "1x1.0,2x0.5"


def paradis(monkeypatch, *argv):
    """``paradis ARGV`` through the real entry point (its exit statuses), with
    only these two verbs registered: the parser imports every verb's module,
    and the others are not this test's business."""
    monkeypatch.setattr(paradis_cli, "VERBS", ("profile", "plan"))
    return paradis_cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from paradis_export import export_bundle
    from tests.paradis_export.helpers import resnet8

    out = tmp_path_factory.mktemp("plan_cli") / "bundle"
    export_bundle(resnet8(switches=SWITCHES), SWITCHES, out, progress=None)
    return out


@pytest.fixture(scope="module")
def profile_file(bundle, tmp_path_factory):
    from paradis_runtime.planner import profile_bundle, write_profile

    path = tmp_path_factory.mktemp("plan_cli_profile") / "profile.json"
    write_profile(profile_bundle(bundle, repeats=3, warmup=1), path)
    return path


def test_profile_prints_and_writes(bundle, tmp_path, monkeypatch, capsys):
    out = tmp_path / "p.json"
    assert paradis(monkeypatch, "profile", "--bundle", bundle, "--out", out, "--repeats", 2, "--warmup", 0) == 0
    captured = capsys.readouterr()
    profile = read_profile(out)
    assert profile["repeats"] == 2 and sorted(profile["switches"]) == ["1x1.0", "2x0.5"]
    assert "profiling 2x0.5: device 1" in captured.err  # progress, on stderr
    rows = [line.split() for line in captured.out.splitlines()]
    for name, entry in profile["switches"].items():
        for d, dev in enumerate(entry["devices"]):
            row = next(r for r in rows if r[:2] == [name, str(d)])
            assert row[2] == str(len(dev["stages"]))
            assert row[3] == f"{1e3 * sum(s['median_s'] for s in dev['stages'].values()):.3f}"
    assert f"profile written to {out}" in captured.out

    assert paradis(monkeypatch, "profile", "--bundle", bundle, "--repeats", 1, "--warmup", 0) == 0
    assert "not saved: pass --out FILE" in capsys.readouterr().out


def table(out):
    """The plan's rows: marker, switch, devices, bytes, frames, predicted, ..."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append((line[0], *line[1:].split()))
    return rows


def test_plan_predicts_compares_and_writes_json(bundle, profile_file, tmp_path, monkeypatch, capsys):
    measured = tmp_path / "report.json"
    measured.write_text(json.dumps([
        {"switch": "2x0.5", "link_mbps": 50, "link_latency_ms": 2, "median_ms": 30.0},
        {"switch": "1x1.0", "link_mbps": 10, "link_latency_ms": 2, "median_ms": 0.2},  # another link
    ]))
    out = tmp_path / "plan.json"
    assert paradis(monkeypatch, "plan", "--bundle", bundle, "--link-mbps", 50, "--link-latency-ms", 2,
                   "--profile", profile_file, "--measured", measured, "--json", out) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    # No --frame-overhead-ms: each switch's comes from the profile (0 for stages timed in isolation).
    assert doc["link"] == {"mbps": 50.0, "latency_ms": 2.0, "frame_overhead_ms": None,
                           "frame_overhead_source": "profile", "source": "assumed"}
    assert all(r["frame_overhead_ms"] == 0.0 for r in doc["rows"])
    assert "assumed for the predictions" in printed and "50 Mbit/s, 2 ms one way" in printed
    rows = table(printed)
    # Fastest first and marked; the rows are the JSON's, in its order.
    assert [r[1] for r in rows] == [r["switch"] for r in doc["rows"]]
    assert [r[0] for r in rows] == ["*", " "] and doc["fastest"] == rows[0][1]
    assert doc["rows"][0]["predicted_ms"] <= doc["rows"][1]["predicted_ms"]
    assert f"* fastest predicted: {doc['fastest']}" in printed
    by_name = {r[1]: r for r in rows}
    split = next(r for r in doc["rows"] if r["switch"] == "2x0.5")
    assert split["measured_ms"] == 30.0
    assert by_name["2x0.5"][5:8] == (f"{split['predicted_ms']:.3f}", "30.000", f"{split['error_pct']:+.1f}")
    assert split["error_pct"] == pytest.approx(100 * (split["predicted_ms"] - 30) / 30)
    assert by_name["1x1.0"][6:8] == ("-", "-")  # its measurement was on another link
    assert split["exchanges"] > 0 and by_name["2x0.5"][3] == f"{split['bytes_per_inference']:,}"


def test_plan_without_profile_measures_first(bundle, monkeypatch, capsys):
    assert paradis(monkeypatch, "plan", "--bundle", bundle, "--link-mbps", 0, "--link-latency-ms", 0) == 0
    captured = capsys.readouterr()
    assert "no --profile: profiling" in captured.err and "profiling 2x0.5: device 1" in captured.err
    assert "unlimited bandwidth, 0 ms one way" in captured.out
    assert "measured ms" not in captured.out  # no --measured, no such column
    assert sorted(r[1] for r in table(captured.out)) == ["1x1.0", "2x0.5"]


def test_usage_errors_exit_2_naming_the_flag(bundle, profile_file, tmp_path, monkeypatch, capsys):
    link = ("--link-mbps", 50, "--link-latency-ms", 2)
    assert paradis(monkeypatch, "plan", "--bundle", tmp_path, *link) == 2
    assert f"--bundle '{tmp_path}': no manifest.json" in capsys.readouterr().err
    assert paradis(monkeypatch, "profile", "--bundle", tmp_path / "nope") == 2
    assert "--bundle" in capsys.readouterr().err
    assert paradis(monkeypatch, "plan", "--bundle", bundle, *link, "--profile", tmp_path / "none.json") == 2
    err = capsys.readouterr().err
    assert "--profile" in err and "paradis profile --bundle DIR --out FILE" in err
    assert paradis(monkeypatch, "plan", "--bundle", bundle, *link, "--profile", profile_file,
                   "--measured", tmp_path / "none.json") == 2
    assert "--measured" in capsys.readouterr().err
    assert paradis(monkeypatch, "plan", "--bundle", bundle, *link, "--profile", profile_file,
                   "--json", tmp_path) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "is a folder" in err
    assert paradis(monkeypatch, "profile", "--bundle", bundle, "--out", tmp_path / "no" / "p.json") == 2
    assert "--out" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    for argv, flag in ((("plan", "--bundle", bundle, "--link-mbps", -1, "--link-latency-ms", 2), "--link-mbps"),
                       (("plan", "--bundle", bundle, "--link-mbps", 50, "--link-latency-ms", "nan"),
                        "--link-latency-ms"),
                       (("plan", "--bundle", bundle, "--link-mbps", 50), "--link-latency-ms"),
                       (("profile", "--bundle", bundle, "--repeats", 0), "--repeats")):
        with pytest.raises(SystemExit) as e:
            paradis(monkeypatch, *argv)
        assert e.value.code == 2
        assert flag in capsys.readouterr().err


def test_a_profile_of_another_bundle_fails_naming_the_switch(bundle, profile_file, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    path = other / "2x0.5" / "fusion_graph.json"
    graph = json.loads(path.read_text())
    graph["model"] = "another_model"
    path.write_text(json.dumps(graph))
    assert paradis(monkeypatch, "plan", "--bundle", other, "--link-mbps", 50, "--link-latency-ms", 2,
                   "--profile", profile_file) == 1
    err = capsys.readouterr().err
    assert "switch '2x0.5' was profiled on a fusion graph" in err and "paradis profile --bundle" in err


def test_a_malformed_measurements_file_fails_naming_the_entry(bundle, profile_file, tmp_path, monkeypatch, capsys):
    measured = tmp_path / "report.json"
    measured.write_text(json.dumps([{"switch": "2x0.5", "link_mbps": -3, "link_latency_ms": 2, "median_ms": 1}]))
    assert paradis(monkeypatch, "plan", "--bundle", bundle, "--link-mbps", 50, "--link-latency-ms", 2,
                   "--profile", profile_file, "--measured", measured) == 1
    err = capsys.readouterr().err
    assert "report.json: entry [0] (2x0.5): mbps must be" in err and "received -3" in err
