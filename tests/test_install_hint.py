"""The hint for installing an extra: `pip install -e '<checkout>[serve]'` when vitkit runs from a
source checkout (src/ layout or an editable install), `pip install 'vitkit[serve]'` otherwise;
the command line's help and its missing-extra errors give the same hint."""

from __future__ import annotations

import importlib.metadata
import json
import shlex
from pathlib import Path

import pytest

import vitkit
import vitkit.errors as errors
from vitkit.cli.main import main
from vitkit.errors import MissingExtra, install_hint, require, source_checkout


@pytest.fixture(autouse=True)
def fresh_detection():
    source_checkout.cache_clear()
    yield
    source_checkout.cache_clear()


class FakeDistribution:
    def __init__(self, direct_url: dict | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return None if self.direct_url is None else json.dumps(self.direct_url)


def _installed_as(monkeypatch, tmp_path, direct_url: dict | None) -> None:
    """vitkit's files in a site-packages folder, with this PEP 610 record (None: none)."""
    package = tmp_path / "lib" / "site-packages" / "vitkit"
    package.mkdir(parents=True)
    monkeypatch.setattr(errors, "__file__", str(package / "errors.py"))
    monkeypatch.setattr(importlib.metadata, "distribution",
                        lambda name: FakeDistribution(direct_url))


def _project(folder: Path, name: str = "vitkit") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1"\n')
    return folder


def test_running_from_a_checkout_suggests_an_editable_install_of_it():
    checkout = Path(vitkit.__file__).resolve().parents[2]  # <checkout>/src/vitkit/__init__.py
    assert (checkout / "pyproject.toml").is_file()
    assert source_checkout() == checkout
    assert install_hint("serve") == f"pip install -e '{checkout}[serve]'"


def test_an_installed_wheel_suggests_the_package_index(tmp_path, monkeypatch):
    _installed_as(monkeypatch, tmp_path, None)
    assert source_checkout() is None
    assert install_hint("serve") == "pip install 'vitkit[serve]'"


def test_a_non_editable_install_from_a_folder_suggests_the_package_index(tmp_path,
                                                                         monkeypatch):
    folder = _project(tmp_path / "src-copy")
    _installed_as(monkeypatch, tmp_path, {"url": folder.as_uri(), "dir_info": {}})
    assert install_hint("serve") == "pip install 'vitkit[serve]'"


def test_an_editable_install_names_its_folder_quoted_for_the_shell(tmp_path, monkeypatch):
    folder = _project(tmp_path / "my work's copy")
    _installed_as(monkeypatch, tmp_path,
                  {"url": folder.as_uri(), "dir_info": {"editable": True}})
    assert source_checkout() == folder
    assert shlex.split(install_hint("serve")) == ["pip", "install", "-e", f"{folder}[serve]"]


def test_an_editable_folder_that_is_not_vitkit_is_not_suggested(tmp_path, monkeypatch):
    folder = _project(tmp_path / "other", name="not-vitkit")
    _installed_as(monkeypatch, tmp_path,
                  {"url": folder.as_uri(), "dir_info": {"editable": True}})
    assert install_hint("serve") == "pip install 'vitkit[serve]'"


def test_missing_extra_error_and_help_give_the_hint(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)  # as if not installed
    with pytest.raises(MissingExtra) as caught:
        require("uvicorn", "serve", "vitkit serve")
    assert str(caught.value).endswith(install_hint("serve"))
    for command in ("export", "serve"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the text
        assert install_hint("serve") in shown, command


def test_an_optional_import_says_nothing_meant_for_that_packages_developers():
    """torch's pytree registry warns torchao about a deprecated registration when it is first
    imported; `require` keeps that line off the user's terminal and restores the logger."""
    import subprocess
    import sys

    pytest.importorskip("torchao")
    code = ("import logging; from vitkit.errors import require; "
            "require('torchao.float8', 'fp8', 'float8 training'); "
            "print(logging.getLogger('torch.utils._pytree').level)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert "Enum subclass" not in done.stderr
    assert done.stdout.strip() == "0"  # the logger's level as it was
