"""The example plugin's own tests (examples/third_party_plugin/tests), run from the example's
folder as its README says, pass both from a checkout (not installed: its pytest settings put
``src/`` on the path) and with it visible as an installed distribution whose entry point registers
it: the ``hybridrec_plugin`` fixture they use works either way. Nothing is installed into the
environment (see the ``installed`` fixture in ``tests/core/conftest.py``)."""

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "third_party_plugin"


def run_example_tests() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=300,
    )


def test_example_tests_pass_with_the_package_installed(installed: None) -> None:
    done = run_example_tests()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "5 passed" in done.stdout


def test_example_tests_pass_from_a_checkout_without_installing() -> None:
    # the example's [tool.pytest.ini_options] pythonpath = ["src"] makes the package importable
    done = run_example_tests()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "5 passed" in done.stdout
