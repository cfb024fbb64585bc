"""``tmax-mesh completion``: a real bash sources the script and completes
commands, actions and options, plugin commands included; zsh and fish
scripts come from the same argparse tree."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.harness import script


def completion(shell: str) -> str:
    res = subprocess.run([script("tmax-mesh"), "completion", shell], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.decode()


def bash_complete(line: str) -> list[str]:
    """What bash offers at the end of ``line``, with the generated script sourced."""
    words = line.split(" ")
    program = f"""
source <(tmax_completion)
complete -p tmax-mesh
COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({" ".join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}
_shtab_tmax_mesh tmax-mesh {words[-1]!r} {words[-2]!r}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    bash = shutil.which("bash")
    assert bash, "bash is needed for this test"
    res = subprocess.run(
        [
            bash,
            "--norc",
            "--noprofile",
            "-c",
            f"tmax_completion() {{ {script('tmax-mesh')} completion bash; }}\n{program}",
        ],
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    first, *offers = res.stdout.decode().splitlines()
    assert first == "complete -o bashdefault -F _shtab_tmax_mesh tmax-mesh"  # registered by the script
    return offers


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("tmax-mesh st", ["status"]),
        ("tmax-mesh inbox ", ["list", "ack", "delete", "unread", "watch"]),
        ("tmax-mesh session ", ["send", "list", "ack", "delete", "unread"]),  # a plugin's command
        ("tmax-mesh msg send --t", ["--to", "--timeout", "--ttl"]),
        ("tmax-mesh completion ", ["bash", "zsh", "fish"]),
    ],
)
def test_bash_sources_the_script_and_completes(line: str, expected: list[str]) -> None:
    assert bash_complete(line) == expected


def test_zsh_and_fish_scripts_cover_every_command() -> None:
    zsh, fish = completion("zsh"), completion("fish")
    assert zsh.startswith("#compdef tmax-mesh")
    for command in ("status", "inbox", "session", "host", "completion"):
        assert f"\n    {command}:'" in zsh, command
        assert f"-n __fish_use_subcommand -a {command} " in fish, command
    assert "-n '__fish_seen_subcommand_from msg; and __fish_seen_subcommand_from send' -l to -r" in fish


def test_unknown_shell_is_a_usage_error() -> None:
    res = subprocess.run([script("tmax-mesh"), "completion", "tcsh"], capture_output=True, timeout=60)
    assert res.returncode == 2 and b"invalid choice: 'tcsh'" in res.stderr
