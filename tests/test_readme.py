"""The README's commands are the ones that CI runs and that the package provides."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = next(b for b in _bash_blocks(readme) if "python -m pytest" in b and b.startswith("python3 -m venv"))
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = block.splitlines()
    assert [c for c in commands if "KERAS_BACKEND=" in c] == [
        f"KERAS_BACKEND={backend} python -m pytest -m backend" for backend in ("jax", "torch")
    ]
    for command in commands:
        assert command in ci_lines, command


def test_readme_main_command_uses_installed_console_scripts():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    main_command = _bash_blocks(readme)[0]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "soundnet-classify --example" in main_command and "soundnet-classify" in scripts
    for name in re.findall(r"`(soundnet-[a-z-]+)", readme):
        assert name in scripts, name
    for module in scripts.values():
        path = REPO / (module.split(":")[0].replace(".", "/") + ".py")
        assert path.is_file(), module


def test_requirements_pin_every_runtime_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    optional = extras["jax"] + extras["torch"] + extras["events"] + extras["parquet"] + extras["beam"]  # tested
    names = {re.split(r"[<>=!~ ]", d)[0].lower() for d in project["dependencies"] + optional}
    pinned = {
        line.split("==")[0].strip().lower()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert names == pinned
