"""``pytester`` runs small user test suites against the installed pytest plugin.

pytest only accepts ``pytest_plugins = ["pytester"]`` in the rootdir's conftest: here it
would break ``pytest .`` (this conftest is loaded late then, and pytest refuses it). So
the plugin is loaded when this conftest is configured, whichever way pytest got here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("pytester")
