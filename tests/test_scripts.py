"""scripts/_env.sh: which Python the scripts take, and how uv is found without touching it.

Each case runs the shell functions with ``PATH`` holding only a scratch
directory of chosen interpreters (links to this one, or stand-ins that fail
the way a missing module does): no pyenv, no uv, no system Python.  The full
path (Debian's own ``python3``, uv bootstrapped, both README commands) is a
CI step in .ci/run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def shell(script: str, bin_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` after sourcing scripts/_env.sh, with only ``bin_dir`` on PATH."""
    return subprocess.run(
        ["/bin/bash", "-c", f". {ROOT / 'scripts' / '_env.sh'}\n{script}"],
        cwd=cwd,
        env={"PATH": str(bin_dir), "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """The only entry of PATH: ``rm`` and ``mv`` (the scripts clean up and move the
    bootstrap into place with them) and the interpreters a test puts there."""
    path = tmp_path / "bin"
    path.mkdir()
    for tool in ("rm", "mv"):
        found = shutil.which(tool)
        assert found is not None
        (path / tool).symlink_to(found)
    return path


def stand_in(bin_dir: Path, name: str, body: str) -> Path:
    """An executable shell script called ``name``."""
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_an_exact_version_is_found_on_path(bin_dir: Path, tmp_path: Path) -> None:
    """``find_python X.Y`` takes pythonX.Y from PATH when it really is X.Y."""
    (bin_dir / f"python{VERSION}").symlink_to(sys.executable)
    result = shell(f"find_python {VERSION}", bin_dir, tmp_path)
    assert (result.returncode, result.stdout) == (0, f"{bin_dir}/python{VERSION}\n")


def test_a_missing_exact_version_says_how_to_get_it(bin_dir: Path, tmp_path: Path) -> None:
    """A named version that is absent fails with one line naming it."""
    result = shell("find_python 3.99", bin_dir, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "no Python 3.99 found (install it with pyenv, or put python3.99 on PATH)\n",
    )


def test_a_shim_of_a_missing_version_does_not_count(bin_dir: Path, tmp_path: Path) -> None:
    """A ``python3.13`` that does not run (pyenv's shim for an uninstalled version) is no
    Python 3.13."""
    stand_in(bin_dir, "python3.13", "exit 127")
    result = shell("find_python 3.13", bin_dir, tmp_path)
    assert (result.returncode, result.stdout) == (1, "")


def test_without_a_version_any_python3_from_3_10_on_will_do(bin_dir: Path, tmp_path: Path) -> None:
    """No 3.11 or other tested version by name: ``python3`` is taken if it is 3.10+."""
    (bin_dir / "python3").symlink_to(sys.executable)
    result = shell("find_python", bin_dir, tmp_path)
    assert (result.returncode, result.stdout) == (0, f"{bin_dir}/python3\n")


def test_an_old_python3_is_refused(bin_dir: Path, tmp_path: Path) -> None:
    """A ``python3`` older than 3.10 (its version check fails) is not taken."""
    stand_in(bin_dir, "python3", "exit 1")
    result = shell("find_python", bin_dir, tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("no Python 3.10 or newer found")


def test_uv_is_never_installed_outside_the_checkout(bin_dir: Path, tmp_path: Path) -> None:
    """Without uv on PATH and with a Python whose venv module and pip both fail (Debian
    without python3-venv or python3-pip), ensure_uv says what to install, shows what the
    two attempts printed, and leaves nothing behind."""
    python = stand_in(bin_dir, "python3", 'echo "No module named $2" >&2; exit 1')
    result = shell(f"ensure_uv {python}", bin_dir, tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"uv is not on PATH: installing it into .venvs/bootstrap with {python} (nothing "
        "outside this checkout changes)",
        f"cannot install uv with {python}: neither a virtual environment (python -m venv) "
        "nor that Python's pip (python -m pip install --target) worked. On Debian or Ubuntu: "
        "sudo apt install python3-venv python3-pip; or install uv yourself "
        "(https://docs.astral.sh/uv/) and run this again. What they printed:",
        "    No module named venv",
        "    No module named pip",
    ]
    assert list(tmp_path.iterdir()) == [bin_dir]


def test_without_venv_the_python_s_own_pip_installs_uv(bin_dir: Path, tmp_path: Path) -> None:
    """A Python whose venv fails (no ensurepip) but whose pip works: uv's wheel goes into
    .venvs/bootstrap with ``pip install --target`` and its binary leads PATH."""
    python = stand_in(
        bin_dir,
        "python3",
        '[ "$2" = venv ] && { echo "ensurepip is not available" >&2; exit 1; }\n'
        "# -m pip install --quiet --disable-pip-version-check --target DIR uv\n"
        "dir=$7\n"
        '/bin/mkdir -p "$dir/bin" && printf "#!/bin/sh\\necho wheel uv\\n" > "$dir/bin/uv"'
        ' && /bin/chmod +x "$dir/bin/uv"',
    )
    result = shell(f"ensure_uv {python} && command -v uv && uv", bin_dir, tmp_path)
    boot = tmp_path / ".venvs" / "bootstrap"
    assert (result.returncode, result.stdout) == (0, f"{boot}/bin/uv\nwheel uv\n"), result.stderr


def test_uv_bootstrapped_before_is_reused_and_put_on_path(bin_dir: Path, tmp_path: Path) -> None:
    """A uv in .venvs/bootstrap from an earlier run is used as is: nothing is installed,
    and it leads PATH for what the script runs next."""
    boot = tmp_path / ".venvs" / "bootstrap" / "bin"
    boot.mkdir(parents=True)
    stand_in(boot, "uv", "echo fake uv")
    result = shell("ensure_uv /nonexistent/python && command -v uv && uv", bin_dir, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"{boot}/uv\nfake uv\n",
        "",
    )


def test_a_checkout_path_with_a_colon_is_named(bin_dir: Path, tmp_path: Path) -> None:
    """A folder whose path holds ':' cannot go on PATH (and venv refuses it): ensure_uv
    says so instead of failing later with "uv: command not found"."""
    checkout = tmp_path / "ci:1"
    checkout.mkdir()
    result = shell("ensure_uv /nonexistent/python", bin_dir, checkout)
    assert result.returncode == 1
    assert result.stderr.startswith(f"this checkout's path ({checkout}) contains ':'")
    assert list(checkout.iterdir()) == []


def test_two_scripts_bootstrapping_at_once_share_one_uv(bin_dir: Path, tmp_path: Path) -> None:
    """Two ensure_uv calls at the same moment (CI starts FastAPI's suite beside the test
    step) each build their own folder and end with one working .venvs/bootstrap."""
    python = stand_in(
        bin_dir,
        "python3",
        '[ "$2" = venv ] && { echo "no ensurepip" >&2; exit 1; }\n'
        "dir=$7\n"
        '/bin/mkdir -p "$dir/bin" && /bin/sleep 0.5 && printf "#!/bin/sh\\necho uv\\n" '
        '> "$dir/bin/uv" && /bin/chmod +x "$dir/bin/uv"',
    )
    result = shell(
        f"(ensure_uv {python} && uv) & (ensure_uv {python} && uv) & wait", bin_dir, tmp_path
    )
    assert (result.returncode, result.stdout) == (0, "uv\nuv\n"), result.stderr
    assert sorted(p.name for p in (tmp_path / ".venvs").iterdir()) == ["bootstrap"]
