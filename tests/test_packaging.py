"""The packaging tells the truth: CI runs the README's commands, licences and metadata exist,
and the README's Deploy example runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import nnx

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
    commands = first_block(section("Quick start"), "bash").strip().splitlines()
    assert len(commands) == 2  # one sets up and runs the example, one runs the tests
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command in commands:
        assert command in ci, f".ci/run does not run the README's command {command!r}"


def test_licences_and_metadata():
    tomllib = pytest.importorskip("tomllib")
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"} and project["urls"]
    assert project["scripts"]["nnx"] == "nnx.info:main"
    assert any(d.startswith("onnx") for d in project["optional-dependencies"]["onnx"])
    assert any(d.startswith("onnxruntime") for d in project["optional-dependencies"]["dev"])
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
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
