"""A small example tool environment and the trajectories recorded in it.

The demo runs from an installed wheel, offline, with no API key:

- `skillbank.examples.shop`: `Shop`, a customer-service shop on SQLite whose tools take keyword
  arguments and return JSON dicts, and `TOOL_SPECS`, those tools as OpenAI tool definitions.
  ``--tools skillbank.examples.shop:tools`` opens the shop named by ``$SKILLBANK_SHOP_DB``.
- `skillbank.examples.agent`: a scripted agent with a handful of `PROCEDURES` (order a product,
  cancel an order, return an item, ...) that records what it does as OpenAI fine-tuning records
  (`run_procedure`), and `DEMO_ARGS`, arguments no recorded trajectory uses.
- `skillbank.examples.generate`: writes those records to ``trajectories/shop.jsonl``
  (``python -m skillbank.examples.generate``). Its `generate` function is not re-exported
  here, so that running the module with ``-m`` does not find it already imported.
"""

from __future__ import annotations

from skillbank.examples.agent import DEMO_ARGS, PROCEDURES, Procedure, run_procedure
from skillbank.examples.shop import TOOL_SPECS, Shop, tools

__all__ = ["DEMO_ARGS", "PROCEDURES", "Procedure", "Shop", "TOOL_SPECS", "run_procedure", "tools"]
