"""Execute the notebooks in place, so they are stored with their outputs.

    python notebooks/execute.py [notebooks/01_quickstart.ipynb ...]

TensorFlow writes a few start-up lines from C++ to stderr before its logging can be configured (oneDNN notice,
"Could not find cuda drivers"); they are dropped from the stored outputs. Everything else is kept as produced.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\).*|[IWE]\d{4} .*(port\.cc|cudart_stub\.cc|"
    r"cuda_platform\.cc|cuda_executor\.cc|cpu_feature_guard\.cc).*|To enable the following instructions.*|"
    r".*rebuild TensorFlow with the appropriate compiler flags.*)$"
)


def strip_startup_noise(notebook: nbformat.NotebookNode) -> None:
    """Remove TensorFlow's C++ start-up lines from stderr outputs (and outputs left empty by that)."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stderr":
                lines = output.text.splitlines(keepends=True)
                output.text = "".join(line for line in lines if not STARTUP_NOISE.match(line.strip()))
                if not output.text.strip():
                    continue
            kept.append(output)
        cell.outputs = kept


def execute(path: Path, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run ``path`` top to bottom with its folder as working directory and write it back with its outputs."""
    notebook = nbformat.read(path, as_version=4)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    strip_startup_noise(notebook)
    nbformat.write(notebook, path)
    return notebook


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        print(f"executing {path}", flush=True)
        execute(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
