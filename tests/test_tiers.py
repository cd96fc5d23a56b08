"""The test tiers: the fast tier (``-m "not ray and not soak"``) starts no Ray, and the marks say so.

``conftest.py`` refuses, at collection, a test that uses the session's Ray
fixtures without the ``ray`` mark, or a ``soak`` without it; and fails a
test not marked ``ray`` that starts a Ray anyway (in a subprocess too).
Here those checks run on small suites of their own, in a pytest subprocess
with this ``conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

INI = """[pytest]
addopts = --strict-markers -p no:cacheprovider
markers =
    ray: starts Ray
    soak: long fault loops
"""


def pytest_on(tmp_path: Path, test_module: str, *args: str) -> subprocess.CompletedProcess:
    """Run pytest on ``test_module`` beside a copy of this suite's ``conftest.py``."""
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "test_module.py").write_text(test_module)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )


def test_a_test_using_the_session_ray_without_the_ray_mark_is_refused_at_collection(tmp_path):
    result = pytest_on(
        tmp_path,
        "import pytest\n\n"
        "@pytest.fixture\ndef sweep(ray_running):\n    return 1\n\n"
        "def test_direct(ray_session):\n    pass\n\n"
        "def test_through_a_fixture(sweep):\n    pass\n\n"
        "@pytest.mark.ray\ndef test_marked(ray_running):\n    pass\n",
        "--collect-only",
    )
    assert result.returncode != 0, result.stdout
    out = result.stdout + result.stderr
    assert "test_module.py::test_direct: uses ray_session but is not marked `ray`" in out, out
    assert (
        "test_module.py::test_through_a_fixture: uses ray_session, ray_running but is not marked `ray`" in out
    ), out
    assert "test_marked" not in out.split("must be marked ray")[1], out


def test_a_soak_without_the_ray_mark_is_refused_at_collection(tmp_path):
    result = pytest_on(
        tmp_path, "import pytest\n\n@pytest.mark.soak\ndef test_loop():\n    pass\n", "--collect-only"
    )
    assert result.returncode != 0, result.stdout
    assert "test_module.py::test_loop: is marked `soak` but not `ray`" in result.stdout + result.stderr


def test_a_test_not_marked_ray_that_starts_a_ray_fails(tmp_path):
    # What a Ray started in the test (or in a subprocess it runs) leaves: $RAY_TMPDIR/ray.
    result = pytest_on(
        tmp_path,
        "import os\nfrom pathlib import Path\n\n"
        "def test_starts_one():\n    Path(os.environ['RAY_TMPDIR'], 'ray').mkdir()\n\n"
        "def test_starts_none():\n    pass\n",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed, 1 error" in result.stdout, result.stdout  # the error: test_starts_one's teardown
    assert "ERROR test_module.py::test_starts_one" in result.stdout, result.stdout
    assert "test_module.py::test_starts_one started Ray" in result.stdout, result.stdout
    assert "but is not marked `ray`" in result.stdout


@pytest.mark.ray
def test_an_embedded_ray_writes_where_the_guard_looks():
    """The guard's premise: lrtune's embedded Ray, in a subprocess, writes its files under $RAY_TMPDIR/ray."""
    folder = tempfile.mkdtemp(prefix="lrtune-tiers-")  # short: Ray's socket paths must fit
    try:
        started = subprocess.run(
            [sys.executable, "-c",
             "import ray; from lrtune.engine.ray_runtime import start_ray; start_ray(None); ray.shutdown()"],
            capture_output=True, text=True, timeout=180, env={**os.environ, "RAY_TMPDIR": folder},
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert (Path(folder) / "ray").is_dir()
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.ray
def test_the_session_ray_is_lrtunes_embedded_ray(ray_running):
    import ray
    from ray._private.utils import get_num_cpus

    from lrtune.engine.ray_runtime import TRIAL_SLOT, UNLIMITED_SLOTS

    resources = ray.cluster_resources()
    assert resources[TRIAL_SLOT] == UNLIMITED_SLOTS
    # Ray's own count of this machine's CPUs (cgroup limits included), as `lrtune sweep` users get.
    assert resources["CPU"] == get_num_cpus()
