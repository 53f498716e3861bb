"""Tests for the bundled example environment: the shop, its scripted agent and the trajectories."""

from __future__ import annotations

import inspect
import json
import random
import re
import sqlite3
import threading
from pathlib import Path

import pytest

from skillbank.examples import agent, generate, shop
from skillbank.examples.agent import DEMO_ARGS, PROCEDURES, run_procedure
from skillbank.examples.shop import TOOL_SPECS, Shop

JSONL = Path(shop.__file__).with_name("trajectories") / "shop.jsonl"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "shop.sqlite"


@pytest.fixture
def store(db: Path) -> Shop:
    return Shop.create(db)


@pytest.fixture
def tools(store: Shop):
    return store.tools()


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return generate.generate()


def tool_calls(record: dict) -> list[tuple[str, dict, dict]]:
    """Return (tool name, arguments, tool message) for every call in a record."""
    by_id = {m["tool_call_id"]: m for m in record["messages"] if m["role"] == "tool"}
    return [
        (call["function"]["name"], json.loads(call["function"]["arguments"]), by_id[call["id"]])
        for message in record["messages"]
        for call in message.get("tool_calls") or []
    ]


# -- tool definitions ---------------------------------------------------------------------------


def test_tool_specs_match_the_tools(tools) -> None:
    assert [spec["function"]["name"] for spec in TOOL_SPECS] == list(tools)
    for spec in TOOL_SPECS:
        assert spec["type"] == "function"
        function = spec["function"]
        assert function["description"]
        parameters = function["parameters"]
        assert parameters["type"] == "object"
        assert parameters["additionalProperties"] is False
        signature = inspect.signature(tools[function["name"]]).parameters
        assert list(parameters["properties"]) == list(signature)
        assert all(p.kind is p.KEYWORD_ONLY for p in signature.values())
        required = [n for n, p in signature.items() if p.default is inspect.Parameter.empty]
        assert parameters["required"] == required
        for prop in parameters["properties"].values():
            assert prop["type"] in {"string", "integer"}
            assert prop["description"]
    json.dumps(TOOL_SPECS)


# -- reads --------------------------------------------------------------------------------------


def test_find_customer(tools) -> None:
    assert tools["find_customer"](email="Bob@Example.com") == {
        "customer_id": "C-1002",
        "name": "Bob Tanaka",
        "email": "bob@example.com",
        "tier": "silver",
    }


def test_list_orders_is_newest_first_and_filters_by_status(tools) -> None:
    everything = tools["list_orders"](customer_id="C-1002")
    assert everything["customer_id"] == "C-1002"
    assert [o["order_id"] for o in everything["orders"]] == ["O-5016", "O-5006", "O-5002"]
    stamps = [o["placed_at"] for o in everything["orders"]]
    assert stamps == sorted(stamps, reverse=True)
    assert everything["orders"][0] == {
        "order_id": "O-5016",
        "status": "pending",
        "total": 31.7,
        "placed_at": "2024-03-10T19:56:00Z",
    }
    pending = tools["list_orders"](customer_id="C-1002", status="pending")
    assert [o["order_id"] for o in pending["orders"]] == ["O-5016", "O-5006"]
    assert tools["list_orders"](customer_id="C-1008") == {"customer_id": "C-1008", "orders": []}


def test_get_order(tools) -> None:
    assert tools["get_order"](order_id="O-5001") == {
        "order_id": "O-5001",
        "customer_id": "C-1001",
        "status": "delivered",
        "items": [
            {"sku": "SKU-MUG-RED", "name": "Red ceramic mug", "quantity": 2, "unit_price": 12.5},
            {"sku": "SKU-TEA-GRN", "name": "Green tea tin", "quantity": 3, "unit_price": 9.95},
        ],
        "total": 54.85,
    }


def test_search_products_is_case_insensitive_and_sorted(tools) -> None:
    found = tools["search_products"](query="TEA")
    assert found == {
        "query": "TEA",
        "products": [
            {"sku": "SKU-TEA-BLK", "name": "Black tea tin", "price": 10.45, "in_stock": False},
            {"sku": "SKU-TEA-GRN", "name": "Green tea tin", "price": 9.95, "in_stock": True},
        ],
    }
    assert tools["search_products"](query="no such thing")["products"] == []


def test_check_stock(tools) -> None:
    assert tools["check_stock"](sku="SKU-MUG-RED") == {"sku": "SKU-MUG-RED", "available": 37}


# -- writes -------------------------------------------------------------------------------------


def test_place_order_takes_stock_and_numbers_orders(tools) -> None:
    first = tools["place_order"](customer_id="C-1003", sku="SKU-MUG-RED", quantity=3)
    assert first == {
        "order_id": "O-5017",
        "customer_id": "C-1003",
        "status": "pending",
        "total": 37.5,
    }
    second = tools["place_order"](customer_id="C-1003", sku="SKU-KETTLE", quantity=2)
    assert second["order_id"] == "O-5018"
    assert tools["check_stock"](sku="SKU-MUG-RED")["available"] == 34
    listed = tools["list_orders"](customer_id="C-1003")["orders"]
    assert [o["order_id"] for o in listed][:2] == ["O-5018", "O-5017"]
    assert listed[0]["placed_at"] > listed[1]["placed_at"] > listed[2]["placed_at"]
    assert tools["get_order"](order_id="O-5017")["items"] == [
        {"sku": "SKU-MUG-RED", "name": "Red ceramic mug", "quantity": 3, "unit_price": 12.5}
    ]


def test_cancel_order_restores_stock(tools) -> None:
    before = tools["check_stock"](sku="SKU-NOTE-A5")["available"]
    assert tools["cancel_order"](order_id="O-5010", reason="ordered by mistake") == {
        "order_id": "O-5010",
        "status": "cancelled",
        "reason": "ordered by mistake",
    }
    assert tools["check_stock"](sku="SKU-NOTE-A5")["available"] == before + 2
    assert tools["get_order"](order_id="O-5010")["status"] == "cancelled"


def test_return_and_refund(tools) -> None:
    opened = tools["create_return"](order_id="O-5003", sku="SKU-NOTE-A5", reason="too small")
    assert opened == {
        "return_id": "R-6002",
        "order_id": "O-5003",
        "sku": "SKU-NOTE-A5",
        "status": "open",
    }
    refund = tools["issue_refund"](return_id="R-6002")
    assert refund == {"refund_id": "RF-7002", "return_id": "R-6002", "amount": 35.0}


def test_restock_and_update_email(tools) -> None:
    assert tools["restock"](sku="SKU-TEA-BLK", quantity=25) == {
        "sku": "SKU-TEA-BLK",
        "available": 25,
    }
    assert tools["update_email"](customer_id="C-1002", email="bob.tanaka@mail.test") == {
        "customer_id": "C-1002",
        "email": "bob.tanaka@mail.test",
    }
    assert tools["find_customer"](email="bob.tanaka@mail.test")["customer_id"] == "C-1002"


ERRORS = [
    pytest.param(
        "find_customer",
        {"email": "nobody@example.com"},
        "no customer has email",
        id="unknown-email",
    ),
    pytest.param("find_customer", {"email": "  "}, "must be a non-empty string", id="blank-email"),
    pytest.param(
        "list_orders",
        {"customer_id": "C-9999"},
        "no customer has id 'C-9999'",
        id="unknown-customer",
    ),
    pytest.param(
        "list_orders",
        {"customer_id": "C-1001", "status": "lost"},
        "is not an order status",
        id="bad-status",
    ),
    pytest.param("get_order", {"order_id": "O-1"}, "no order has id 'O-1'", id="unknown-order"),
    pytest.param("search_products", {"query": ""}, "must be a non-empty string", id="empty-query"),
    pytest.param(
        "check_stock", {"sku": "SKU-NOPE"}, "no product has sku 'SKU-NOPE'", id="unknown-sku"
    ),
    pytest.param(
        "place_order",
        {"customer_id": "C-1001", "sku": "SKU-TEA-BLK", "quantity": 2},
        "only 0 of 'SKU-TEA-BLK' in stock",
        id="out-of-stock",
    ),
    pytest.param(
        "place_order",
        {"customer_id": "C-1001", "sku": "SKU-MUG-RED", "quantity": 0},
        "quantity=0 must be a positive integer",
        id="zero-quantity",
    ),
    pytest.param(
        "place_order",
        {"customer_id": "C-1001", "sku": "SKU-MUG-RED", "quantity": "2"},
        "quantity='2' must be a positive integer",
        id="string-quantity",
    ),
    pytest.param(
        "place_order",
        {"customer_id": "C-0", "sku": "SKU-MUG-RED", "quantity": 2},
        "no customer has id 'C-0'",
        id="order-unknown-customer",
    ),
    pytest.param(
        "cancel_order",
        {"order_id": "O-5001", "reason": "late"},
        "only pending orders can be cancelled",
        id="cancel-delivered",
    ),
    pytest.param(
        "cancel_order",
        {"order_id": "O-5006", "reason": ""},
        "reason='' must be a non-empty string",
        id="cancel-no-reason",
    ),
    pytest.param(
        "create_return",
        {"order_id": "O-5006", "sku": "SKU-MUG-BLU", "reason": "x"},
        "only delivered orders can be returned",
        id="return-pending",
    ),
    pytest.param(
        "create_return",
        {"order_id": "O-5001", "sku": "SKU-KETTLE", "reason": "x"},
        "has no item with sku 'SKU-KETTLE'",
        id="return-wrong-sku",
    ),
    pytest.param(
        "create_return",
        {"order_id": "O-5013", "sku": "SKU-PEN-FTN", "reason": "x"},
        "already has return 'R-6001'",
        id="return-twice",
    ),
    pytest.param(
        "issue_refund", {"return_id": "R-1"}, "no return has id 'R-1'", id="unknown-return"
    ),
    pytest.param("issue_refund", {"return_id": "R-6001"}, "already 'refunded'", id="refund-twice"),
    pytest.param(
        "restock",
        {"sku": "SKU-MUG-RED", "quantity": -5},
        "must be a positive integer",
        id="negative-restock",
    ),
    pytest.param(
        "update_email",
        {"customer_id": "C-1001", "email": "not-an-email"},
        "is not an email address",
        id="bad-email",
    ),
    pytest.param(
        "update_email",
        {"customer_id": "C-1001", "email": "bob@example.com"},
        "already belongs to customer 'C-1002'",
        id="email-taken",
    ),
]


@pytest.mark.parametrize(("name", "arguments", "message"), ERRORS)
def test_bad_input_raises_value_error_and_changes_nothing(
    store: Shop, tools, name: str, arguments: dict, message: str
) -> None:
    before = store.snapshot()
    with pytest.raises(ValueError, match=re.escape(message)):
        tools[name](**arguments)
    assert store.snapshot() == before


# -- the database -------------------------------------------------------------------------------


def test_snapshot_is_deterministic_json(tmp_path: Path) -> None:
    one = Shop.create(tmp_path / "one.sqlite").snapshot()
    two = Shop.create(tmp_path / "two.sqlite").snapshot()
    assert one == two
    assert json.loads(json.dumps(one)) == one
    assert len(one["customers"]) == 8
    assert len(one["products"]) >= 12
    assert {o["status"] for o in one["orders"]} == {"pending", "shipped", "delivered"}


def test_reopening_keeps_state_and_create_resets_it(db: Path, store: Shop) -> None:
    store.restock(sku="SKU-KETTLE", quantity=20)
    assert Shop(db).check_stock(sku="SKU-KETTLE")["available"] == 33
    assert Shop.create(db).check_stock(sku="SKU-KETTLE")["available"] == 13
    with pytest.raises(FileExistsError, match="overwrite=True"):
        Shop.create(db, overwrite=False)


def test_opening_something_else_is_an_error(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    with pytest.raises(ValueError, match="not a shop database"):
        Shop(other)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="not a shop database"):
        Shop(garbage)


def test_tools_work_from_another_thread(tools) -> None:
    results: list[dict] = []
    worker = threading.Thread(
        target=lambda: results.append(
            tools["place_order"](customer_id="C-1001", sku="SKU-PEN-FTN", quantity=2)
        )
    )
    worker.start()
    worker.join()
    assert results == [
        {"order_id": "O-5017", "customer_id": "C-1001", "status": "pending", "total": 72.8}
    ]
    assert tools["check_stock"](sku="SKU-PEN-FTN")["available"] == 25


def test_module_tools_use_the_env_var_or_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKILLBANK_SHOP_DB", str(tmp_path / "env.sqlite"))
    assert shop.tools()["check_stock"](sku="SKU-MUG-RED")["available"] == 37
    assert (tmp_path / "env.sqlite").exists()
    monkeypatch.delenv("SKILLBANK_SHOP_DB")
    monkeypatch.chdir(tmp_path)
    assert list(shop.tools()) == [spec["function"]["name"] for spec in TOOL_SPECS]
    assert (tmp_path / "shop.sqlite").exists()


# -- the scripted agent -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROCEDURES))
def test_task_texts_contain_every_argument(tmp_path: Path, name: str) -> None:
    procedure = PROCEDURES[name]
    rng = random.Random(name)
    for attempt in range(4):
        args = procedure.draw_args(rng, Shop.create(tmp_path / f"{attempt}.sqlite"))
        assert set(args) == set(procedure.parameters)
        for index in range(len(procedure.templates)):
            task = procedure.task(args, index)
            for value in args.values():
                assert str(value) in task


def test_a_failing_tool_is_recorded_as_an_error(store: Shop) -> None:
    record = run_procedure(
        store, "return_item", {"order_id": "O-5006", "reason": "too late"}, record_id="r"
    )
    assert record["outcome"] == {"success": False}
    failed = record["messages"][-2]
    assert failed["role"] == "tool"
    assert failed["is_error"] is True
    assert "only delivered orders can be returned" in failed["content"]
    assert record["messages"][-1]["role"] == "assistant"
    assert [name for name, _, _ in tool_calls(record)] == ["get_order", "create_return"]


def test_run_procedure_rejects_misuse(store: Shop) -> None:
    with pytest.raises(ValueError, match="unknown procedure 'fly'"):
        run_procedure(store, "fly", {}, record_id="x")
    with pytest.raises(ValueError, match="takes arguments"):
        run_procedure(store, "order_history", {"mail": "bob@example.com"}, record_id="x")
    with pytest.raises(ValueError, match="template_index=9"):
        run_procedure(
            store, "order_history", {"email": "bob@example.com"}, record_id="x", template_index=9
        )


def test_demo_args_succeed_on_a_fresh_shop(store: Shop) -> None:
    record = run_procedure(store, "order_product", DEMO_ARGS["order_product"], record_id="demo")
    assert record["outcome"] == {"success": True}


# -- the generated trajectories -----------------------------------------------------------------


def test_generated_records_cover_every_procedure(records: list[dict]) -> None:
    assert len(records) >= 30
    assert all(r["outcome"] == {"success": True} for r in records)
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    for name in PROCEDURES:
        mine = [r for r in records if r["id"].startswith(f"shop-{name}-")]
        assert len(mine) >= 4
        assert len({r["task"] for r in mine}) == len(mine)
    assert ids[0] == "shop-order_product-01"


def test_records_are_well_formed(records: list[dict]) -> None:
    for record in records:
        assert set(record) == {"id", "task", "messages", "tools", "outcome"}
        assert record["tools"] == TOOL_SPECS
        messages = record["messages"]
        assert messages[0]["role"] == "system"
        assert messages[1] == {"role": "user", "content": record["task"]}
        assert messages[-1]["role"] == "assistant"
        assert isinstance(messages[-1]["content"], str) and "tool_calls" not in messages[-1]
        steps = messages[2:-1]
        assert len(steps) % 2 == 0 and steps
        for n, (call, answer) in enumerate(zip(steps[::2], steps[1::2], strict=True), start=1):
            assert call["role"] == "assistant" and call["content"] is None
            (tool_call,) = call["tool_calls"]
            assert tool_call["id"] == f"call_{n}"
            assert tool_call["type"] == "function"
            assert tool_call["function"]["name"] in {s["function"]["name"] for s in TOOL_SPECS}
            assert isinstance(json.loads(tool_call["function"]["arguments"]), dict)
            assert answer == {
                "role": "tool",
                "tool_call_id": tool_call["id"],
                "content": answer["content"],
            }
            assert isinstance(json.loads(answer["content"]), dict)


def test_replaying_a_record_on_a_fresh_shop_gives_the_same_results(
    db: Path, records: list[dict]
) -> None:
    for record in records:
        tools = Shop.create(db).tools()
        for name, arguments, answer in tool_calls(record):
            assert json.dumps(tools[name](**arguments)) == answer["content"], record["id"]


def test_later_arguments_come_from_earlier_results(records: list[dict]) -> None:
    # The point of the example: ids such as customer_id and sku are never in the task text,
    # so a learner must take them from an earlier tool result.
    for record in records:
        seen = ""
        for _, arguments, answer in tool_calls(record):
            for key in ("customer_id", "sku", "return_id"):
                if key in arguments:
                    assert arguments[key] not in record["task"]
                    assert json.dumps(arguments[key]) in seen, (record["id"], key)
            seen += answer["content"]


def test_committed_jsonl_is_up_to_date(records: list[dict]) -> None:
    assert JSONL.read_bytes() == generate.to_jsonl(records).encode("utf-8")
    assert generate.main(["--check", "--output", str(JSONL)]) == 0


def test_generation_is_deterministic(records: list[dict]) -> None:
    assert generate.generate(seed=7, per_procedure=2) == [
        r for r in records if r["id"].endswith(("-01", "-02"))
    ]


def test_demo_values_never_appear_in_the_trajectories(store: Shop) -> None:
    text = JSONL.read_text(encoding="utf-8")
    demo = DEMO_ARGS["order_product"]
    customer = store.find_customer(email=demo["email"])
    product = store.search_products(query=demo["query"])["products"]
    assert product
    for value in (demo["email"], demo["query"], customer["customer_id"], customer["name"]):
        assert value not in text
    for item in product:
        assert item["sku"] not in text
        assert item["name"] not in text


def test_agent_module_is_reexported() -> None:
    from skillbank import examples

    assert examples.PROCEDURES is agent.PROCEDURES
    assert examples.Shop is Shop
    for module in (examples, agent, generate, shop):
        assert sorted(module.__all__) == module.__all__
        assert all(hasattr(module, name) for name in module.__all__)


MESSY = JSONL.with_name("shop_messy.jsonl")


def test_committed_messy_jsonl_is_up_to_date() -> None:
    assert generate.main(["--messy", "--check"]) == 0


def test_messy_runs_stray_but_change_the_shop_as_the_clean_ones_do() -> None:
    # The same seed draws the same arguments with or without mess (the mess has its own
    # random source), so record N of each procedure is the same request in both.
    clean = generate.generate(seed=generate.MESSY_SEED, per_procedure=3)
    messy = generate.generate(seed=generate.MESSY_SEED, per_procedure=3, messy=True)
    assert all(r["outcome"]["success"] for r in messy)
    assert any(m.get("is_error") for r in messy for m in r["messages"]), "no lookup was retried"
    assert sum(len(tool_calls(r)) for r in messy) > sum(len(tool_calls(r)) for r in clean)
    reads = {"find_customer", "list_orders", "get_order", "search_products", "check_stock"}
    for plain, strayed in zip(clean, messy, strict=True):
        assert strayed["id"] == plain["id"].replace("shop-", "shop-messy-", 1)
        assert strayed["task"] == plain["task"]
        writes = [(n, a) for n, a, _ in tool_calls(plain) if n not in reads]
        assert [(n, a) for n, a, _ in tool_calls(strayed) if n not in reads] == writes
