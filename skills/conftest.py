"""Run each skill's checks with plain ``pytest skills/`` (see `skillbank.testing`).

Every ``skills/<id>/`` folder gets the items ``validate``, ``replay[<trajectory>]``,
``properties`` and ``determinism``. Set ``SKILLBANK_PROVE_EXAMPLES`` to try more examples.
"""

from skillbank.testing import pytest_collect_file  # noqa: F401
