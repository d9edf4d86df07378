"""Bundle folders: readable by others, never left half-written, and int8
calibration checked against the declared preprocessing."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paradis_export import export_bundle
from tests.paradis_export.helpers import real_images, resnet8

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    return resnet8(switches="1x1.0,2x0.5")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_bundle_folders_take_the_umask_mode(model, tmp_path, umask, mode):
    # The root used to be 0700 (a renamed mkdtemp folder) while its content was
    # 0755: a runtime or web server running as another user could not read it.
    old = os.umask(umask)
    try:
        export_bundle(model, "2x0.5", tmp_path / "b", progress=None)
    finally:
        os.umask(old)
    for folder in (tmp_path / "b", tmp_path / "b" / "2x0.5"):
        assert stat.S_IMODE(folder.stat().st_mode) == mode, folder


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_an_export_removes_stale_staging_folders_it_owns(model, tmp_path):
    stale = tmp_path / f".b.partial-{_dead_pid()}-0badc0de"
    live = tmp_path / ".b.partial-1-0badc0de"  # pid 1 is alive: another export may be running
    other = tmp_path / f".c.partial-{_dead_pid()}-0badc0de"  # another target's
    for folder in (stale, live, other):
        folder.mkdir()
        (folder / "device0.tflite").write_bytes(b"half")
    export_bundle(model, "2x0.5", tmp_path / "b", progress=None)
    assert not stale.exists()
    assert live.exists() and other.exists()


def test_calibration_on_the_wrong_scale_is_refused(model, tmp_path):
    x, _ = real_images(16)
    with pytest.raises(ValueError, match=r"calibration ranges over \[0, 255\], far outside \[0, 1\].*images / 255"):
        export_bundle(model, "2x0.5", tmp_path / "q", int8=True, calibration=np.round(x * 255), progress=None)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="calibration holds NaN"):
        export_bundle(model, "2x0.5", tmp_path / "q", int8=True, calibration=x, progress=None)
    assert not (tmp_path / "q").exists()


def test_sigterm_during_an_export_leaves_nothing(model, tmp_path):
    checkpoint = tmp_path / "model.keras"
    model.save(checkpoint)
    out = tmp_path / "bundle"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "paradis_cli", "export", "--checkpoint", str(checkpoint), "--switches",
         "2x0.5,1x1.0", "--out", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    deadline = time.monotonic() + 300
    lines = []
    for line in proc.stdout:  # wait until the staging folder exists and conversion runs
        lines.append(line)
        if "partitioned" in line or time.monotonic() > deadline:
            break
    staging = list(tmp_path.glob(".bundle.partial-*"))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert staging, "".join(lines)  # the test did catch the export mid-flight
    assert proc.returncode == -signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


@pytest.mark.parametrize("mangle", ["swallowed", "system-error"])
def test_a_ctrl_c_the_converter_mangles_still_stops_the_export(model, tmp_path, monkeypatch, mangle):
    """A SIGINT inside TensorFlow's converter can have its KeyboardInterrupt
    swallowed (the export finished and replaced nothing less than the whole
    bundle, exit 0) or turned into another exception; either way the export
    must stop as interrupted and leave nothing."""
    import paradis_export.bundle as bundle

    real = bundle.export_switch

    def export_switch(*args, **kwargs):
        graph = real(*args, **kwargs)
        try:
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, as the converter's callbacks see it
        except KeyboardInterrupt:
            if mangle == "system-error":
                raise SystemError("Objects/listobject.c:338: bad argument to internal function") from None
        return graph

    monkeypatch.setattr(bundle, "export_switch", export_switch)
    # pytest-xdist's workers ignore SIGINT; a user's shell does not.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            export_bundle(model, "2x0.5", tmp_path / "b", progress=None)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert list(tmp_path.iterdir()) == []
