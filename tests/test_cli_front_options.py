"""The command line itself, through the real CLI: `--version`, defaults in `--help`, shell completion, a settings
file and KUBESCRIBE_* variables for `run` (pydantic-settings), and README's options table checked against
`kubescribe run --help` so the two cannot drift."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_support import cli_env
from tests.support import ROOT

pytestmark = pytest.mark.e2e


def kubescribe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflows.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=cli_env(COLUMNS="100", **(env or {})))


def help_entries(text: str) -> dict[str, tuple[list[str], str]]:
    """``--option`` -> (every spelling, its help text joined) from argparse's help output."""
    entries: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if re.match(r"^  -", line):
            invocation, _, help_text = line.strip().partition("  ")
            entries.append((invocation, [help_text.strip()]))
        elif entries and line.startswith("    "):
            entries[-1][1].append(line.strip())
        elif not line.strip() or not line.startswith(" "):
            entries.append(("", []))  # a section break ends the entry
    found = {}
    for invocation, parts in entries:
        names = re.findall(r"(?<![\w-])(--[\w-]+)", invocation)
        if names and names[0] != "--help":
            found[names[0]] = (names, " ".join(parts))
    return found


def readme_table() -> dict[str, str]:
    """README's `kubescribe run` options table: every ``--option`` named in a row -> that row's default cell."""
    text = (ROOT / "README.md").read_text()
    start = text.index("| option | default | |", text.index("## Running locally"))
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in re.findall(r"`(--[\w-]+)`", cells[0]):
            rows[name] = cells[1]
    return rows


def test_readme_options_table_matches_the_help() -> None:
    result = kubescribe("run", "--help")
    assert result.returncode == 0
    entries = help_entries(result.stdout)
    table = readme_table()
    spelled = {n for names, _ in entries.values() for n in names}
    assert set(entries) <= set(table), f"options missing from README: {sorted(set(entries) - set(table))}"
    assert set(table) <= spelled, f"README lists options the CLI lacks: {sorted(set(table) - spelled)}"
    for option, (_, help_text) in entries.items():
        m = re.search(r"\(default: ([^)]*)\)$", help_text)
        if m:  # README's default cell names the same default (for a pair, among its values)
            assert f"`{m.group(1)}`" in table[option] or m.group(1) in table[option].split("`"), (option, m.group(1))


def test_version_defaults_in_help_and_completion() -> None:
    version = kubescribe("--version")
    assert version.returncode == 0 and re.fullmatch(r"kubescribe \d+\.\d+\.\d+\S*\n", version.stdout)
    help_text = " ".join(kubescribe("run", "--help").stdout.split())
    assert "(default: 5)" in help_text and "(default: tiny.en)" in help_text and "(default: None)" not in help_text
    bash = kubescribe("--print-completion", "bash")
    assert bash.returncode == 0 and "--beam-size" in bash.stdout and "complete" in bash.stdout
    assert "--output-format" in kubescribe("--print-completion", "zsh").stdout


def test_settings_file_and_environment_give_run_defaults_flags_win(tmp_path: Path) -> None:
    """beam_size 0 is refused by the preflight in seconds: which source it came from shows that it was read."""
    (tmp_path / "in").mkdir()
    config = tmp_path / "kubescribe.yaml"
    config.write_text("beam_size: 0\nout: " + str(tmp_path / "out") + "\n")
    from_file = kubescribe("run", str(tmp_path / "in"), "--config", str(config))
    assert from_file.returncode == 2 and from_file.stderr.startswith("error: --beam-size 0:"), from_file.stderr
    from_env = kubescribe("run", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                          env={"KUBESCRIBE_BEAM_SIZE": "0"})
    assert from_env.returncode == 2 and from_env.stderr.startswith("error: --beam-size 0:"), from_env.stderr
    # the flag wins over the file: the preflight goes on to the (empty) input folder
    flag = kubescribe("run", str(tmp_path / "in"), "--config", str(config), "--beam-size", "1")
    assert flag.returncode == 2 and flag.stderr.startswith("error: no audio files found"), flag.stderr
    # the environment wins over the file
    env_wins = kubescribe("run", str(tmp_path / "in"), "--config", str(config), env={"KUBESCRIBE_BEAM_SIZE": "2"})
    assert env_wins.stderr.startswith("error: no audio files found"), env_wins.stderr
    config.write_text("beam_sise: 2\n")
    typo = kubescribe("run", str(tmp_path / "in"), "--config", str(config), "--out", str(tmp_path / "out"))
    assert typo.returncode == 2 and "beam_sise: unknown setting" in typo.stderr and "Traceback" not in typo.stderr


def test_every_settings_key_is_a_run_option() -> None:
    from workflows.cli import _run_parser, build_parser
    from workflows.run_config import RunConfig

    dests = {a.dest for a in _run_parser(build_parser())._actions}
    assert set(RunConfig.model_fields) <= dests
