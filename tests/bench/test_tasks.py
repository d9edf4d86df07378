"""bench/tasks.py: the summary, paired differences, latency ratios and target
verdicts on synthetic run records (no training)."""

import pytest

from tests.bench.scripts import load


@pytest.fixture(scope="module")
def tasks():
    return load("tasks.py")


def _run(metric, value, latency=None, error=None, comm=0.2, **extra):
    return {metric: value, "comm_ratio": comm, "flops_per_device_ratio": 0.5, "params_per_device_ratio": 0.5,
            "latency_ms_per_device": latency, "latency_error": error, "seconds": 10.0, **extra}


def test_paired_difference_and_verdict_per_task(tasks):
    # Per seed: diffs -0.003 and -0.005 -> mean -0.004, inside ViT's 0.5 pt.
    # Segmentation: diffs -0.010 and -0.014 -> mean -0.012, outside its 1 pt.
    records = {
        "vit": {"unsplit": {0: _run("top1", 0.900, comm=0.0), 1: _run("top1", 0.920, comm=0.0)},
                "disco_0.2": {0: _run("top1", 0.897), 1: _run("top1", 0.915)}},
        "segmentation": {"unsplit": {0: _run("miou", 0.600, comm=0.0), 1: _run("miou", 0.620, comm=0.0)},
                         "disco_0.2": {0: _run("miou", 0.590), 1: _run("miou", 0.606)}},
    }
    summary = tasks.summarize(records)
    p = summary["vit"]["paired_unsplit"]["disco_0.2"]
    assert p["n"] == 2 and p["diff_mean"] == pytest.approx(-0.004)
    # t(0.975, 1) * stdev([-0.003, -0.005]) / sqrt(2) = 12.706 * 0.001414 / 1.414 = 0.012706
    assert p["half_width"] == pytest.approx(0.012706, rel=1e-4)
    assert summary["vit"]["variants"]["disco_0.2"]["top1"] == pytest.approx(0.906)
    met = tasks.verdicts(summary)
    assert met["vit"] == {"disco_0.2_vs_unsplit": True, "all": True}
    assert summary["segmentation"]["paired_unsplit"]["disco_0.2"]["diff_mean"] == pytest.approx(-0.012)
    assert met["segmentation"] == {"disco_0.2_vs_unsplit": False, "all": False}


def test_wdsr_needs_both_unsplit_and_bicubic(tasks):
    # Within 0.05 dB of unsplit, but only 0.8 dB above bicubic: not met.
    records = {"wdsr": {"unsplit": {0: _run("psnr", 30.05, comm=0.0, ssim=0.90)},
                        "disco_0.2": {0: _run("psnr", 30.00, ssim=0.89)}}}
    summary = tasks.summarize(records, bicubic={"psnr": 29.2, "ssim": 0.85})
    assert summary["wdsr"]["bicubic"] == {"psnr": 29.2, "ssim": 0.85}
    assert summary["wdsr"]["paired_unsplit"]["disco_0.2"]["ci95"] is None  # one seed: no interval
    met = tasks.verdicts(summary)["wdsr"]
    assert met == {"disco_0.2_vs_unsplit": True, "disco_0.2_above_bicubic": False, "all": False}
    met = tasks.verdicts(tasks.summarize(records, bicubic={"psnr": 28.9, "ssim": 0.85}))["wdsr"]
    assert met["disco_0.2_above_bicubic"] and met["all"]


def test_latency_against_unsplit_and_refused_export(tasks):
    records = {"vit": {"unsplit": {0: _run("top1", 0.9, latency=[2.0], comm=0.0),
                                   1: _run("top1", 0.9, latency=[4.0], comm=0.0)},
                       # Slowest device per seed: 1.4 / 2.0 = 0.7, 2.0 / 4.0 = 0.5 -> mean 0.6.
                       "dense_tp": {0: _run("top1", 0.9, latency=[1.0, 1.4], comm=1.0),
                                    1: _run("top1", 0.9, latency=[2.0, 1.0], comm=1.0)},
                       "independent": {0: _run("top1", 0.8, error="ValueError: Cannot export layer 'x'", comm=0.0),
                                       1: _run("top1", 0.8, error="ValueError: Cannot export layer 'x'", comm=0.0)}}}
    rows = tasks.summarize(records)["vit"]["variants"]
    assert rows["unsplit"]["latency_vs_unsplit"] == pytest.approx(1.0)
    assert rows["dense_tp"]["latency_ms_per_device"] == pytest.approx([1.5, 1.2])
    assert rows["dense_tp"]["latency_vs_unsplit"] == pytest.approx(0.6)
    assert rows["independent"]["latency_ms_per_device"] is None
    assert rows["independent"]["latency_vs_unsplit"] is None
    assert rows["independent"]["latency_error"].startswith("ValueError: Cannot export")


def test_markdown_tables_are_well_formed(tasks):
    records = {"wdsr": {"unsplit": {0: _run("psnr", 30.0, comm=0.0, ssim=0.9, latency=[3.0])},
                        "disco_0.2": {0: _run("psnr", 29.95, ssim=0.89, error="ValueError: no rule")}}}
    summary = tasks.summarize(records, bicubic={"psnr": 28.0, "ssim": 0.8})
    setting = {"description": "test", "command": "python bench/tasks.py --tasks wdsr",
               "tasks": {"wdsr": {"train_limit": 10, "test_limit": None, "epochs": 1, "batch_size": 2, "lr": 1e-3}}}
    md = tasks.markdown(summary, setting, tasks.verdicts(summary))
    table = [line for line in md.splitlines() if line.startswith("|") and "disco_0.2 PSNR" not in line]
    header, rule, *rows = table[:5]
    assert header.count("|") == rule.count("|") and all(r.count("|") == header.count("|") for r in rows)
    assert "| disco_0.2 | 29.95 dB | 0.8900 | -0.05 dB |" in md
    assert "| bicubic | 28.00 dB | 0.8000 |" in md
    assert "`ValueError: no rule`" in md
    assert "| wdsr | disco_0.2 PSNR within 0.1 dB of unsplit and >= 1 dB above bicubic | yes |" in md


def test_run_keys_and_arguments(tasks):
    s = tasks.PRESETS["cpu"]["vit"]
    assert tasks.run_key("cpu", "vit", s, "disco_0.2", 1).endswith("disco_0.2_1_" + tasks.C.GATE_RECIPE)
    # A named ranking is spelled out in full: its runs keep their key when the default changes.
    assert tasks.run_key("cpu", "vit", s, "disco_0.2_late", 1).endswith("disco_0.2_late_1_" + tasks.C.NAMED_GATE_RECIPE)
    assert tasks.C.GATE_RECIPE != tasks.C.NAMED_GATE_RECIPE
    assert tasks.run_key("cpu", "vit", s, "random_0.2", 1).endswith("/random_0.2_1")
    assert tasks.run_key("cpu", "vit", s, "unsplit", 0) != tasks.run_key("cpu", "vit", dict(s, epochs=1), "unsplit", 0)
    with pytest.raises(SystemExit, match="--tasks: unknown"):
        tasks.parse_args(["--tasks", "vit,cifar"])
    assert tasks.parse_args([]).variants.split(",") == list(tasks.DEFAULT_VARIANTS)
    assert tasks.parse_args(["--variants", "disco_0.2_freeze"]).variants == "disco_0.2_freeze"
    assert tasks.variant_ranking("disco_0.2_freeze") == ({"freeze_after_anneal": True}, 0.5)
    assert tasks.variant_ranking("disco_0.2_late") == ({"freeze_after_anneal": False}, 0.5)
    assert tasks.variant_ranking("disco_0.2_early_wnorm") == (
        {"score": "weight_norm", "freeze_after_anneal": True}, 0.1)
    assert tasks.variant_ranking("disco_0.2") == (None, 0.1) == tasks.variant_ranking("random_0.2")
    assert "disco_0.2_early_wnorm" in tasks.VARIANTS
    args = tasks.parse_args(["--epochs", "1", "--tasks", "wdsr"])
    assert tasks.task_setting("gpu", "wdsr", args)["epochs"] == 1


def test_payload_is_keyed_by_task_then_variant(tasks):
    records = {"wdsr": {"unsplit": {0: _run("psnr", 30.0, comm=0.0, ssim=0.9)},
                        "disco_0.2": {0: _run("psnr", 29.0, ssim=0.8)}}}
    summary = tasks.summarize(records, bicubic={"psnr": 28.0, "ssim": 0.8})
    payload = tasks.to_payload(summary, tasks.verdicts(summary), {"command": "x"})
    assert set(payload) == {"wdsr", "setting"}
    wdsr = payload["wdsr"]
    assert set(wdsr) == {"unsplit", "disco_0.2", "targets", "met", "bicubic"}
    assert wdsr["disco_0.2"]["psnr"] == 29.0 and wdsr["disco_0.2"]["paired_unsplit"]["diff_mean"] == -1.0
    assert wdsr["unsplit"]["paired_unsplit"] is None
    assert wdsr["met"]["disco_0.2_vs_unsplit"] is False and wdsr["targets"]["within"] == 0.1
