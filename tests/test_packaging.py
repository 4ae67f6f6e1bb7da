"""The packaging tells the truth: CI runs the README's commands, licences and metadata exist,
and the README's Deploy example runs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import nnx
from nnx.testing import assert_within, forward_bound

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The README text from ``## title`` up to the next ``## `` heading."""
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def first_block(text: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", text, re.S)
    assert match, f"no ```{language} block"
    return match.group(1)


def test_ci_runs_exactly_the_quick_start_commands():
    """.ci/run runs, in a fresh virtual environment, what .ci/quickstart.py reads from the
    README: the quick start's two lines, as written."""
    commands = first_block(section("Quick start"), "bash").strip().splitlines()
    assert len(commands) == 2  # one sets up and runs the example, one runs the tests
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / ".ci" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    assert quickstart.quickstart(README) == commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv" in ci and "python .ci/quickstart.py README.md" in ci
    assert "pip install" not in ci  # no install step of its own: only the README's


def test_licences_and_metadata():
    tomllib = pytest.importorskip("tomllib")
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"} and project["urls"]
    assert project["scripts"]["nnx"] == "nnx.info:main"
    assert any(d.startswith("onnx") for d in project["optional-dependencies"]["onnx"])
    extras = project["optional-dependencies"]
    for tool in ("pytest", "onnxruntime", "matplotlib", "mpi4py", "numba", "ruff"):
        assert any(d.startswith(tool) for d in extras["test"]), f"the test extra lacks {tool}"
    for plugin in sorted((ROOT / "backends").glob("*/pyproject.toml")):
        meta = tomllib.loads(plugin.read_text())["project"]
        assert meta["license"] == {"text": "MIT"}, plugin
        assert meta["description"] and (plugin.parent / meta["readme"]).is_file(), plugin


def test_readme_deploy_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    code = first_block(section("Deploy"), "python")
    assert len([line for line in code.splitlines() if line.strip()]) == 5
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md (Deploy)", "exec"), scope)
    printed = capsys.readouterr().out
    assert printed.startswith("[") and len(printed.split()) >= 4  # four class indices
    ort = scope["onnxruntime"].InferenceSession("model.onnx")
    (got,) = ort.run(None, {"input": scope["x"]})
    expected = nnx.to_numpy(scope["model"](nnx.asarray(scope["x"])))
    # the README's model: a 3x3 convolution, BatchNorm, a Linear of 2704 inputs
    assert_within(got, expected, forward_bound(expected, 9 + 2 + 2704), "onnxruntime")


def _shape_of(text: str) -> list[str]:
    """Printed lines with every number replaced: what must match whatever the BLAS."""
    return [re.sub(r"-?\d[\d,]*\.?\d*(e-?\d+)?", "#", line) for line in text.strip().splitlines()]


def test_readme_tour_runs_verbatim_and_prints_what_it_shows(tmp_path, monkeypatch, capsys):
    from nnx.datasets import DatasetError

    code = first_block(section("A tour"), "python")
    shown = first_block(section("A tour").split("It prints", 1)[1], "text")
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, "README.md (A tour)", "exec"), {})
    except DatasetError as err:  # offline without Debian's dataset-fashion-mnist
        pytest.skip(f"the tour needs Fashion-MNIST: {err}")
    assert _shape_of(capsys.readouterr().out) == _shape_of(shown)


def test_readme_device_snippet_runs_verbatim_on_this_machine(capsys):
    code = first_block(section("Choosing a device"), "python")
    exec(compile(code, "README.md (Choosing a device)", "exec"), {})
    out = capsys.readouterr().out
    assert "numpy" in out and "available" in out
    if not any(b.name == "cupy" and b.available for b in nnx.backends()):
        assert out.strip().endswith("<nnx backend numpy:cpu> <nnx backend numpy:cpu>")
