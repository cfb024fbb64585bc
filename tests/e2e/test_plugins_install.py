"""``tmax-mesh plugins install|uninstall``: pip, run by the interpreter
tmax-mesh runs in, puts a plugin in that environment (a throwaway venv here,
installing a wheel built by the test: no network) and takes it out again."""

from __future__ import annotations

import base64
import hashlib
import json
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tmax_core.plugininstall import pip_argv, requirement

PLUGIN = "hello_probe"
DIST = "tmax-mesh-hello-probe"


def build_wheel(out: Path) -> Path:
    """A minimal plugin wheel: one module with one hook, one ``tmax_mesh`` entry point."""
    files = {
        "tmax_mesh_hello_probe.py": (
            "from tmax_core.plugin import hookimpl\n\n\n"
            "@hookimpl\ndef tmax_add_config(registry):\n"
            "    registry.add('hello_probe.greeting', str, 'hi', 'a greeting')\n"
        ),
        "tmax_mesh_hello_probe-0.1.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1\nRequires-Dist: tmax-mesh\n"
        ),
        "tmax_mesh_hello_probe-0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        "tmax_mesh_hello_probe-0.1.dist-info/entry_points.txt": (
            f"[tmax_mesh]\n{PLUGIN} = tmax_mesh_hello_probe\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files["tmax_mesh_hello_probe-0.1.dist-info/RECORD"] = (
        "\n".join([*record, "tmax_mesh_hello_probe-0.1.dist-info/RECORD,,"]) + "\n"
    )
    wheel = out / "tmax_mesh_hello_probe-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel


@pytest.fixture
def env_python(tmp_path: Path) -> Path:
    """A fresh venv (its own pip) that also sees this environment's packages,
    tmax-mesh included, so installing needs no index."""
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "zz_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
    )
    return python


def mesh(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "tmax_core.cli", *args], capture_output=True, text=True, timeout=240)


def plugin_names(python: Path) -> set[str]:
    res = mesh(python, "plugins", "--json")
    assert res.returncode == 0, res.stderr
    return {p["name"] for p in json.loads(res.stdout)}


def test_install_and_uninstall_a_plugin_in_the_running_environment(tmp_path: Path, env_python: Path) -> None:
    wheel = build_wheel(tmp_path)
    assert PLUGIN not in plugin_names(env_python)
    installed = mesh(env_python, "plugins", "install", str(wheel), "--json")
    assert installed.returncode == 0, installed.stderr
    assert json.loads(installed.stdout) == {"installed": [str(wheel)]}  # pip's own output went to stderr
    assert "Successfully installed tmax-mesh-hello-probe-0.1" in installed.stderr
    assert PLUGIN in plugin_names(env_python)
    assert PLUGIN not in plugin_names(Path(sys.executable))  # only the venv that ran it

    removed = mesh(env_python, "plugins", "uninstall", DIST)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.startswith(f"uninstalled {DIST}")
    assert PLUGIN not in plugin_names(env_python)


def test_a_failed_pip_is_one_error_line(env_python: Path, tmp_path: Path) -> None:
    res = mesh(env_python, "plugins", "install", str(tmp_path / "missing.whl"))
    assert res.returncode == 1
    assert (
        res.stderr.rstrip().splitlines()[-1]
        == "tmax-mesh: error: pip install failed (exit 1); see its output above"
    )
    assert "Traceback" not in res.stderr


def test_short_names_map_to_the_projects_distributions() -> None:
    assert [requirement(n) for n in ("relay", "direct", "session_mailbox", "ratelimit", "llm-x>=1")] == [
        "tmax-mesh-relay",
        "tmax-mesh-direct",
        "tmax-mesh-session-mailbox",
        "tmax-mesh-ratelimit",
        "llm-x>=1",
    ]
    assert pip_argv("install", ["relay", "./p"], upgrade=True, editable=True)[1:] == [
        "-m",
        "pip",
        "install",
        "--upgrade",
        "--editable",
        "tmax-mesh-relay",
        "--editable",
        "./p",
    ]
    assert pip_argv("uninstall", ["ratelimit"])[3:] == ["uninstall", "--yes", "tmax-mesh-ratelimit"]


def test_a_name_that_is_a_pip_option_is_refused_before_pip_runs(env_python: Path) -> None:
    """A script passing an untrusted name must not be able to point pip at another index."""
    res = mesh(env_python, "plugins", "install", "--", "--index-url=http://127.0.0.1:9/")
    assert res.returncode == 2, res.stderr
    assert (
        res.stderr.rstrip()
        .splitlines()[-1]
        .startswith("tmax-mesh: error: '--index-url=http://127.0.0.1:9/' is not a plugin name")
    )
    assert "pip" not in res.stderr.replace("'--index-url=http://127.0.0.1:9/'", "")
