"""notebooks/explore.ipynb runs top to bottom in a fresh, headless kernel, so it cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from snapkit.errors import WeightsError
from snapkit.models.backbones.registry import BACKBONES
from snapkit.models.weights import resolve_weights

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore.ipynb"
# Only catches a hung cell: the whole notebook takes 50-80 s on 2 busy cores (printed when run with -s).
CELL_TIMEOUT_S = 600
# matplotlib's notebook backend: it renders each figure with Agg into a PNG output and needs no display. Unlike plain
# "Agg" it draws every figure; an error while drawing comes after the cell has finished, as an error output that
# nbclient does not raise, so the test looks for those itself. Set explicitly so a user's MPLBACKEND cannot leak in.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
KERNEL_NAME = "snapkit-venv-python"


def _register_venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec running this very interpreter (the venv's), found before any kernel the user registered.

    JUPYTER_PATH comes first in Jupyter's search path, and the name is ours, so no other ``python3`` can answer.
    """
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "snapkit venv",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL_NAME


def _weights_resolve(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the notebook's kernel (same environment) will find the sfx-cnn9 weights without a download."""
    with monkeypatch.context() as patch:
        patch.setenv("SNAPKIT_CACHE_DIR", str(cache_dir))
        try:
            resolve_weights(BACKBONES["sfx-cnn9"].weights, download=False, progress=False)
        except WeightsError:
            return False
    return True


@pytest.mark.slow
def test_explore_notebook_runs_headless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells), "commit notebooks/explore.ipynb without outputs"

    work = tmp_path / "cwd"
    work.mkdir()
    cache = tmp_path / "cache"  # embeddings go here, not into the user's cache; weights come from SNAPKIT_WEIGHTS_DIR
    env = {
        **os.environ,
        "MPLBACKEND": INLINE_BACKEND,
        "SNAPKIT_CACHE_DIR": str(cache),
        "TMPDIR": str(tmp_path),  # the notebook's scratch folder (tempfile.mkdtemp) is cleaned up with tmp_path
        # One torch thread: on this 2-core machine shared with other jobs, two intra-op threads waiting on each
        # other made the sfx-cnn9 head's training 14x slower (217 s against 15 s, measured under load).
        "OMP_NUM_THREADS": "1",
    }
    if env.get("SNAPKIT_WEIGHTS_DIR"):
        # CI sets it relative (../shared/models); the kernel runs in another folder, so pass where it points from here.
        env["SNAPKIT_WEIGHTS_DIR"] = str(Path(env["SNAPKIT_WEIGHTS_DIR"]).expanduser().resolve())
    client = NotebookClient(
        notebook,
        kernel_name=_register_venv_kernel(tmp_path, monkeypatch),
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(work)}},
    )
    start = time.monotonic()
    client.execute(env=env)  # raises CellExecutionError, with the cell and its traceback, on any error
    print(f"explore.ipynb ran in {time.monotonic() - start:.0f} s")

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    errors = [f"{output.ename}: {output.evalue}" for output in outputs if output.output_type == "error"]
    assert not errors, f"errors while drawing: {errors}"
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    images = sum("image/png" in output.get("data", {}) for output in outputs)
    assert images >= 4, f"expected the level, spectrogram, PCA and detection figures, got {images} image(s)"
    backbone = "sfx-cnn9" if _weights_resolve(cache, monkeypatch) else "convnet"
    assert f"model: {backbone}" in text, f"the notebook should have trained on {backbone}:\n{text}"
    assert "planted sounds found" in text
