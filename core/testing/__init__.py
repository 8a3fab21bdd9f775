"""Prove a plugin the way prunekit proves its built-ins: call these from your plugin's tests.

Each ``check_*`` runs the real thing on small tensors and raises :class:`ContractError` (an
``AssertionError``, so pytest shows it as a failed assertion) saying what is wrong::

    from prunekit.testing import check_layer_type, check_model

    def test_my_conv():
        check_layer_type(MyConvType(), MyConv(8, 16), torch.randn(2, 8, 12, 12))

Add ``pytest_plugins = ["prunekit.testing"]`` to your ``conftest.py`` for the ``plugin_manager``
fixture: a fresh manager to register plugin objects on, without touching the process-wide one.
"""

from __future__ import annotations

import pytest

from ..plugin.manager import Manager
from .contract import ContractError
from .layer_types import check_layer_type
from .models import Comparison, check_model, compare_pruned, prunable_share, randomize
from .objects import check_criterion, check_dataset, check_distillation, check_logger, check_runtime

__all__ = [
    "Comparison",
    "ContractError",
    "check_criterion",
    "check_dataset",
    "check_distillation",
    "check_layer_type",
    "check_logger",
    "check_model",
    "check_runtime",
    "compare_pruned",
    "plugin_manager",
    "prunable_share",
    "randomize",
]


@pytest.fixture
def plugin_manager() -> Manager:
    """A fresh plugin manager with the built-in and installed plugins, for one test."""
    return Manager()
