"""The rule set the retention tests ingest with: the packaged one."""

from __future__ import annotations

import pytest

from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_ruleset()
