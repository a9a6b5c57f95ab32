"""Fixtures shared by the top-level test files."""

import pytest

from gxnor import cli


@pytest.fixture
def data_cli(monkeypatch):
    """gxnor.cli.main with only the data commands registered (isolates the data tests)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["gxnor.cmd_data"])
    return cli.main
