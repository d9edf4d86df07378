"""The wheel: ``python -m build --wheel`` gives a distribution that installs in
a fresh virtual environment, whose ``paradis`` command answers ``--help`` and
runs ``paradis inspect`` on a bundle exported by the installed copy.

How the fresh environment gets its dependencies, and why: installing
TensorFlow, Keras, LiteRT and the rest into a new venv takes minutes and a
package index, and ``python -m venv --system-site-packages`` would expose the
system Python's packages, not this project's venv. So the wheel goes in with
``pip install --no-deps`` into a bare ``python -m venv --without-pip``
environment (pip is the outer venv's, pointed at it with ``pip --python``),
and one ``.pth`` line in the fresh venv's site-packages appends the project
venv's site-packages to ``sys.path`` for the dependencies. A ``.pth`` line is
appended *after* the fresh venv's own site-packages and its ``.pth`` files are
not processed (no ``site.addsitedir``), so the project's own editable install
there stays inactive and every ``paradis_*`` module comes from the wheel; the
test checks each module's path. Everything runs from a temporary working
directory, never from the checkout. The build runs on a copy of the source
tree (so ``build/`` and ``*.egg-info`` never appear in the checkout) with
``--no-isolation`` (setuptools and wheel from this venv, no index needed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("paradis_tf", "paradis_runtime", "paradis_export", "paradis_cli")

# Run by the fresh venv's python: build a tiny split model and export one switch.
EXPORT = """
import sys
import paradis_export, paradis_tf, paradis_runtime, paradis_cli
from paradis_tf.models import CifarResNet
from paradis_export import export_bundle
for m in (paradis_export, paradis_tf, paradis_runtime, paradis_cli):
    print("MODULE", m.__name__, m.__file__)
model = CifarResNet(depth=8, width=0.25, num_classes=10, input_shape=(16, 16, 1), switches="1x1.0,2x0.5")
model.finalize_gates(budget=0.2)
export_bundle(model, "2x0.5", sys.argv[1])
"""


def _copy_source(dest: Path) -> Path:
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "vectors")
    for name in ("paradis_tf", "paradis_runtime", "paradis_cli", "export"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_source(tmp)
    out = tmp / "dist"
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                           capture_output=True, text=True, timeout=300)
    # `build`, setuptools>=77 and wheel come with the test extra (pip install -e '.[test]').
    assert build.returncode == 0, (build.stdout + build.stderr)[-3000:]
    (whl,) = out.glob("paradis_tf-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, (install.stdout + install.stderr)[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies: this venv's site-packages, after the fresh one's (see the module docstring).
    Path(site, "zz_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    return env


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
    # Every (sub)package of the checkout ships: pyproject.toml lists them by hand.
    sources = {"paradis_tf": ROOT / "paradis_tf", "paradis_runtime": ROOT / "paradis_runtime",
               "paradis_cli": ROOT / "paradis_cli", "paradis_export": ROOT / "export" / "paradis_export"}
    for package, folder in sources.items():
        for init in folder.rglob("__init__.py"):
            inside = init.relative_to(folder).as_posix()
            assert f"{package}/{inside}" in names, f"{package}/{inside} is not in the wheel: add it to pyproject.toml"
        for module in folder.rglob("*.py"):
            assert f"{package}/{module.relative_to(folder).as_posix()}" in names, module
    # The runtime validates every graph against the schema it carries (a real file, not the checkout's symlink).
    assert "paradis_runtime/fusion_graph.schema.json" in names
    # No top-level `export` module and no test or bench code in the wheel.
    assert not any(n.split("/")[0] in ("export", "tests", "bench", "android_demo") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "paradis = paradis_cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_paradis_command(venv, tmp_path):
    paradis = venv / "bin" / "paradis"
    python = venv / "bin" / "python"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    run = dict(cwd=cwd, env=_env(), capture_output=True, text=True)

    help_ = subprocess.run([str(paradis), "--help"], timeout=60, **run)
    assert help_.returncode == 0, help_.stderr
    assert "inspect" in help_.stdout and "serve-web" in help_.stdout

    bundle = tmp_path / "bundle"
    export = subprocess.run([str(python), "-c", EXPORT, str(bundle)], timeout=300, **run)
    assert export.returncode == 0, export.stderr[-3000:]
    modules = dict(line.split()[1:] for line in export.stdout.splitlines() if line.startswith("MODULE"))
    assert set(modules) == set(PACKAGES)
    for name, path in modules.items():
        assert Path(path).resolve().is_relative_to(venv.resolve()), (name, path)

    inspect = subprocess.run([str(paradis), "inspect", str(bundle)], timeout=120, **run)
    assert inspect.returncode == 0, inspect.stderr[-3000:]
    assert "2x0.5" in inspect.stdout

    # serve-web's page (android_demo/web, LiteRT.js from npm) is not in the wheel: the
    # installed command must say where to point it rather than start without a page.
    web = subprocess.run([str(paradis), "serve-web", "--bundle", str(bundle), "--host", "127.0.0.1",
                          "--port", "0"], timeout=60, **run)
    assert web.returncode == 2, (web.returncode, web.stdout, web.stderr)
    assert "android_demo/web" in web.stderr
