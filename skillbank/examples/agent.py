"""A scripted shop agent that records what it does as OpenAI fine-tuning records.

Each `Procedure` is an ordinary Python function of the shop's tools and a few arguments. Later
tool arguments come from earlier results (the customer id `find_customer` returned, the first
sku `search_products` found), which is exactly the data flow the skill compiler has to recover.
`run_procedure` runs one against a `Shop` and returns the transcript::

    {"id": "shop-order_product-01", "task": "Order 3 x 'desk lamp' for bob@example.com",
     "messages": [system, user, assistant tool call, tool result, ..., assistant summary],
     "tools": TOOL_SPECS, "outcome": {"success": true}}

Tool calls are numbered ``call_1``, ``call_2``, ... within a record, arguments and results are
``json.dumps`` of the dicts, and a tool that raises is recorded with its error text as the tool
message's content plus our own ``"is_error": true`` field, after which the procedure stops and
the outcome is a failure.

Every procedure also knows how to draw arguments it will succeed with from the current shop
state (`Procedure.draw_args`), and has a few task templates. Every argument value appears
verbatim in the task text, so a learner can tell which values the user supplied.
"""

from __future__ import annotations

import copy
import inspect
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from skillbank.examples.shop import TOOL_SPECS, Shop, ToolResult

__all__ = ["DEMO_ARGS", "PROCEDURES", "Procedure", "SYSTEM_PROMPT", "Tools", "run_procedure"]

#: The tools a procedure is given: tool name to a function taking keyword arguments.
Tools: TypeAlias = Mapping[str, Callable[..., ToolResult]]

#: The system message that opens every record.
SYSTEM_PROMPT: Final = (
    "You are a support agent for a small online shop. Use the tools to do what the user asks: "
    "look things up before you change them, take ids from tool results rather than guessing, "
    "and finish with a one-sentence summary of what you did."
)

#: Arguments reserved for a demo that runs a learned skill on new input. The generated records
#: never mention this customer or this product, so a skill that handles them has generalised.
DEMO_ARGS: Final[dict[str, dict[str, Any]]] = {
    "order_product": {"email": "hiro@example.com", "query": "wall clock", "quantity": 4},
}

# Queries that match product names. None matches the demo product, so it never shows up in a
# generated record.
_QUERIES: Final = (
    "mug",
    "blue ceramic",
    "red ceramic mug",
    "lamp",
    "desk lamp",
    "floor lamp",
    "desk",
    "notebook",
    "fountain pen",
    "tea",
    "green tea",
    "black tea",
    "tote",
    "kettle",
    "plant pot",
    "chair",
)
_CANCEL_REASONS: Final = (
    "ordered by mistake",
    "found a better price elsewhere",
    "delivery takes too long",
    "no longer needed",
    "duplicate of another order",
)
_RETURN_REASONS: Final = (
    "arrived damaged",
    "wrong colour",
    "not as described",
    "stopped working after a week",
    "too small for the shelf",
)
_ORDER_QUANTITIES: Final = (2, 3, 4, 5, 6)
# Multiples of five, unlike every seeded stock level, so a restock amount never equals a count.
_RESTOCK_QUANTITIES: Final = (20, 25, 30, 40, 50, 60)
_EMAIL_DOMAINS: Final = ("mail.test", "inbox.test", "post.test")


class _Stop(Exception):
    """Raised inside a procedure to end it unsuccessfully; the message becomes the summary."""


@dataclass(frozen=True)
class Procedure:
    """A scripted way to do one kind of shop task."""

    #: Registry key, also used in record ids.
    name: str
    #: The steps: ``steps(tools, **args)`` calls the tools and returns the closing summary.
    steps: Callable[..., str]
    #: Task texts as `str.format` templates over the arguments; each uses every argument.
    templates: tuple[str, ...]
    #: Draws arguments the steps succeed with, from a random source and the shop's state.
    draw_args: Callable[[random.Random, Shop], dict[str, Any]]

    @property
    def parameters(self) -> tuple[str, ...]:
        """The argument names `steps` takes after the tools."""
        return tuple(inspect.signature(self.steps).parameters)[1:]

    def task(self, args: Mapping[str, Any], template_index: int = 0) -> str:
        """Return the task text for `args`, using template number `template_index`.

        Raises:
            ValueError: If `template_index` is out of range.
        """
        if not 0 <= template_index < len(self.templates):
            raise ValueError(
                f"template_index={template_index!r} is out of range for {self.name!r}, "
                f"which has {len(self.templates)} templates (0 to {len(self.templates) - 1})"
            )
        return self.templates[template_index].format(**args)


#: The shop's read-only tools and the argument each is looked up by: what a messy run reads
#: while it looks around.
_READS: Final[dict[str, str]] = {
    "find_customer": "email",
    "list_orders": "customer_id",
    "get_order": "order_id",
    "search_products": "query",
    "check_stock": "sku",
}


class _Mess:
    """How a realistic agent strays from the straight path, drawn from a seeded `random.Random`.

    Before any read the procedure makes it may (a) look around: read something else it has an
    id for (another order, another product, the customer's whole history), never a thing it is
    about to change; or (b) mistype the lookup first (two letters swapped), get an error, and
    retry with the right value. So runs of one procedure differ in how many reads they make,
    in what order, and in failed calls, while doing the same thing.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        #: Values seen in results so far, by the argument name a read takes them as.
        self.seen: dict[str, list[Any]] = {}

    def note(self, result: Any) -> None:
        """Remember the ids a result holds, for later looking around."""
        if isinstance(result, dict):
            for key, value in result.items():
                if key in _READS.values() and isinstance(value, str):
                    self.seen.setdefault(key, []).append(value)
                else:
                    self.note(value)
        elif isinstance(result, list):
            for item in result:
                self.note(item)

    def detour(self, name: str, arguments: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The extra reads to make before ``name(**arguments)``: (tool, arguments) pairs."""
        if name not in _READS:
            return []
        out: list[tuple[str, dict[str, Any]]] = []
        if self.rng.random() < 0.3:  # look around first
            wanted = set(arguments.values())
            options = [
                (tool, {key: value})
                for tool, key in _READS.items()
                for value in self.seen.get(key, [])
                if value not in wanted
            ]
            if options:
                out.append(self.rng.choice(options))
        key = _READS[name]
        value = arguments.get(key)
        if isinstance(value, str) and len(value) > 3 and self.rng.random() < 0.25:
            cut = self.rng.randrange(1, len(value) - 1)
            typo = value[: cut - 1] + value[cut] + value[cut - 1] + value[cut + 1 :]
            if typo != value:  # two letters swapped: the lookup fails, the agent retries
                out.append((name, {**arguments, key: typo}))
        return out


class _Transcript:
    """Wraps the shop's tools so every call is recorded as chat messages."""

    def __init__(self, tools: Tools, mess: _Mess | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self._tools = tools
        self._calls = 0
        self._mess = mess
        self.tools: Tools = {name: self._recording(name) for name in tools}

    def _stray(self, name: str, arguments: Mapping[str, Any]) -> None:
        """A messy run's detours before a call: recorded, and an error does not stop it."""
        assert self._mess is not None
        for tool, args in self._mess.detour(name, arguments):
            self._calls += 1
            call_id = f"call_{self._calls}"
            self.messages.append(_call_message(call_id, tool, args))
            try:
                result = self._tools[tool](**args)
            except Exception as exc:  # a failed lookup: the agent fixes it and goes on
                error = str(exc) or type(exc).__name__
                self.messages.append(
                    {"role": "tool", "tool_call_id": call_id, "content": error, "is_error": True}
                )
                continue
            self._mess.note(result)
            self.messages.append(
                {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)}
            )

    def _recording(self, name: str) -> Callable[..., ToolResult]:
        def call(**arguments: Any) -> ToolResult:
            if self._mess is not None:
                self._stray(name, arguments)
            self._calls += 1
            call_id = f"call_{self._calls}"
            self.messages.append(_call_message(call_id, name, arguments))
            try:
                result = self._tools[name](**arguments)
            except Exception as exc:  # any failure is the tool's answer; the agent stops here
                error = str(exc) or type(exc).__name__
                self.messages.append(
                    {"role": "tool", "tool_call_id": call_id, "content": error, "is_error": True}
                )
                raise _Stop(f"{name} failed: {error}") from exc
            if self._mess is not None:
                self._mess.note(result)
            self.messages.append(
                {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)}
            )
            return result

        return call


def _call_message(call_id: str, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }


def run_procedure(
    shop: Shop,
    name: str,
    args: Mapping[str, Any],
    *,
    record_id: str,
    template_index: int = 0,
    messy: random.Random | None = None,
) -> dict[str, Any]:
    """Run procedure `name` with `args` against `shop` and return its fine-tuning record.

    With ``messy`` (a seeded random source) the agent strays as real ones do: it looks
    around before reads and sometimes mistypes a lookup, gets an error and retries (`_Mess`);
    it still does exactly what the procedure does.

    A failing tool call does not raise: it is recorded (``"is_error": true`` on the tool
    message) and the record's outcome is ``{"success": false}``.

    Args:
        shop: The shop to act on; write tools change it.
        name: A key of `PROCEDURES`.
        args: The procedure's arguments, exactly its `Procedure.parameters`.
        record_id: The record's ``id``.
        template_index: Which of the procedure's task templates phrases the task.

    Returns:
        The record: ``id``, ``task``, ``messages``, ``tools`` and ``outcome``.

    Raises:
        ValueError: If the procedure is unknown, `args` do not match its parameters or
            `template_index` is out of range.
    """
    procedure = PROCEDURES.get(name)
    if procedure is None:
        raise ValueError(f"unknown procedure {name!r}; choose one of {sorted(PROCEDURES)}")
    if set(args) != set(procedure.parameters):
        raise ValueError(
            f"procedure {name!r} takes arguments {list(procedure.parameters)}, got {sorted(args)}"
        )
    task = procedure.task(args, template_index)
    transcript = _Transcript(shop.tools(), _Mess(messy) if messy is not None else None)
    try:
        summary = procedure.steps(transcript.tools, **args)
        success = True
    except _Stop as stop:
        summary = f"I could not finish the task: {stop}"
        success = False
    return {
        "id": record_id,
        "task": task,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": task},
            *transcript.messages,
            {"role": "assistant", "content": summary},
        ],
        "tools": copy.deepcopy(TOOL_SPECS),
        "outcome": {"success": success},
    }


# -- procedures -------------------------------------------------------------------------------


def order_product(tools: Tools, email: str, query: str, quantity: int) -> str:
    """Order `quantity` units of the first product matching `query` for a customer."""
    customer = tools["find_customer"](email=email)
    found = tools["search_products"](query=query)
    if not found["products"]:
        raise _Stop(f"no product matches {query!r}")
    product = found["products"][0]
    stock = tools["check_stock"](sku=product["sku"])
    if stock["available"] < quantity:
        raise _Stop(f"only {stock['available']} of {product['name']} left")
    order = tools["place_order"](
        customer_id=customer["customer_id"], sku=product["sku"], quantity=quantity
    )
    return (
        f"Placed order {order['order_id']} for {customer['name']}: {quantity} x "
        f"{product['name']}, total {order['total']:.2f}."
    )


def cancel_pending_order(tools: Tools, email: str, reason: str) -> str:
    """Cancel a customer's newest pending order."""
    customer = tools["find_customer"](email=email)
    pending = tools["list_orders"](customer_id=customer["customer_id"], status="pending")
    if not pending["orders"]:
        raise _Stop(f"{customer['name']} has no pending orders")
    cancelled = tools["cancel_order"](order_id=pending["orders"][0]["order_id"], reason=reason)
    return (
        f"Cancelled order {cancelled['order_id']} for {customer['name']}; "
        "its items are back in stock."
    )


def return_item(tools: Tools, order_id: str, reason: str) -> str:
    """Return the first item of a delivered order and refund it."""
    order = tools["get_order"](order_id=order_id)
    item = order["items"][0]
    opened = tools["create_return"](order_id=order_id, sku=item["sku"], reason=reason)
    refund = tools["issue_refund"](return_id=opened["return_id"])
    return (
        f"Opened return {opened['return_id']} for the {item['name']} from order {order_id} "
        f"and refunded {refund['amount']:.2f}."
    )


def restock_product(tools: Tools, query: str, quantity: int) -> str:
    """Add stock to the first product matching `query` and confirm the new level."""
    found = tools["search_products"](query=query)
    if not found["products"]:
        raise _Stop(f"no product matches {query!r}")
    product = found["products"][0]
    tools["restock"](sku=product["sku"], quantity=quantity)
    stock = tools["check_stock"](sku=product["sku"])
    return f"Added {quantity} x {product['name']}; {stock['available']} are now in stock."


def order_history(tools: Tools, email: str) -> str:
    """List all of a customer's orders."""
    customer = tools["find_customer"](email=email)
    history = tools["list_orders"](customer_id=customer["customer_id"])
    orders = history["orders"]
    if not orders:
        return f"{customer['name']} has not placed any orders yet."
    listed = ", ".join(f"{o['order_id']} ({o['status']}, {o['total']:.2f})" for o in orders)
    return f"{customer['name']} has {len(orders)} orders, newest first: {listed}."


def change_email(tools: Tools, email: str, new_email: str) -> str:
    """Change a customer's email address."""
    customer = tools["find_customer"](email=email)
    updated = tools["update_email"](customer_id=customer["customer_id"], email=new_email)
    return f"Changed {customer['name']}'s email from {customer['email']} to {updated['email']}."


def reorder_last_delivered(tools: Tools, email: str) -> str:
    """Order the first item of a customer's newest delivered order again, same quantity."""
    customer = tools["find_customer"](email=email)
    delivered = tools["list_orders"](customer_id=customer["customer_id"], status="delivered")
    if not delivered["orders"]:
        raise _Stop(f"{customer['name']} has no delivered orders")
    previous = tools["get_order"](order_id=delivered["orders"][0]["order_id"])
    item = previous["items"][0]
    stock = tools["check_stock"](sku=item["sku"])
    if stock["available"] < item["quantity"]:
        raise _Stop(f"only {stock['available']} of {item['name']} left")
    order = tools["place_order"](
        customer_id=customer["customer_id"], sku=item["sku"], quantity=item["quantity"]
    )
    return (
        f"Reordered {item['quantity']} x {item['name']} from {previous['order_id']} as "
        f"{order['order_id']}, total {order['total']:.2f}."
    )


# -- argument drawing -------------------------------------------------------------------------


def _emails(shop: Shop, customer_ids: set[str] | None = None) -> list[str]:
    """Return customers' emails (all, or those of `customer_ids`), leaving out the demo's."""
    reserved = {args["email"] for args in DEMO_ARGS.values() if "email" in args}
    return [
        row["email"]
        for row in shop.snapshot()["customers"]
        if row["email"] not in reserved
        and (customer_ids is None or row["customer_id"] in customer_ids)
    ]


def _stocked_query(rng: random.Random, shop: Shop, minimum: int) -> str:
    """Draw a query whose first match has at least `minimum` units in stock."""
    for query in rng.sample(_QUERIES, len(_QUERIES)):
        products = shop.search_products(query=query)["products"]
        if products and shop.check_stock(sku=products[0]["sku"])["available"] >= minimum:
            return query
    raise ValueError(f"no query finds a product with {minimum} units in stock")


def _draw_order_product(rng: random.Random, shop: Shop) -> dict[str, Any]:
    quantity = rng.choice(_ORDER_QUANTITIES)
    query = _stocked_query(rng, shop, quantity)
    return {"email": rng.choice(_emails(shop)), "query": query, "quantity": quantity}


def _draw_cancel_pending_order(rng: random.Random, shop: Shop) -> dict[str, Any]:
    orders = shop.snapshot()["orders"]
    with_pending = {o["customer_id"] for o in orders if o["status"] == "pending"}
    return {"email": rng.choice(_emails(shop, with_pending)), "reason": rng.choice(_CANCEL_REASONS)}


def _draw_return_item(rng: random.Random, shop: Shop) -> dict[str, Any]:
    state = shop.snapshot()
    returned = {(r["order_id"], r["sku"]) for r in state["returns"]}
    first_items = {i["order_id"]: i["sku"] for i in state["order_items"] if i["line"] == 1}
    returnable = [
        o["order_id"]
        for o in state["orders"]
        if o["status"] == "delivered"
        and (o["order_id"], first_items[o["order_id"]]) not in returned
    ]
    return {"order_id": rng.choice(returnable), "reason": rng.choice(_RETURN_REASONS)}


def _draw_restock_product(rng: random.Random, shop: Shop) -> dict[str, Any]:
    # Skip products that are sold out: restocking them would make the new level equal the
    # amount added, and a learner could not tell which one the summary reports.
    return {"query": _stocked_query(rng, shop, 1), "quantity": rng.choice(_RESTOCK_QUANTITIES)}


def _draw_order_history(rng: random.Random, shop: Shop) -> dict[str, Any]:
    return {"email": rng.choice(_emails(shop))}


def _draw_change_email(rng: random.Random, shop: Shop) -> dict[str, Any]:
    state = shop.snapshot()
    taken = {c["email"] for c in state["customers"]}
    email = rng.choice(_emails(shop))
    name = next(c["name"] for c in state["customers"] if c["email"] == email)
    first, _, last = name.lower().partition(" ")
    candidates = [f"{first}.{last}@{domain}" for domain in _EMAIL_DOMAINS]
    return {"email": email, "new_email": rng.choice([c for c in candidates if c not in taken])}


def _draw_reorder_last_delivered(rng: random.Random, shop: Shop) -> dict[str, Any]:
    state = shop.snapshot()
    stock = {p["sku"]: p["stock"] for p in state["products"]}
    first_items = {i["order_id"]: i for i in state["order_items"] if i["line"] == 1}
    newest: dict[str, dict[str, Any]] = {}
    for order in state["orders"]:
        if order["status"] == "delivered":
            best = newest.get(order["customer_id"])
            if best is None or order["tick"] > best["tick"]:
                newest[order["customer_id"]] = order
    can_reorder = {
        customer_id
        for customer_id, order in newest.items()
        if stock[first_items[order["order_id"]]["sku"]]
        >= first_items[order["order_id"]]["quantity"]
    }
    return {"email": rng.choice(_emails(shop, can_reorder))}


#: Every procedure by name.
PROCEDURES: Final[dict[str, Procedure]] = {
    procedure.name: procedure
    for procedure in (
        Procedure(
            "order_product",
            order_product,
            (
                "Order {quantity} x '{query}' for {email}",
                "Customer {email} wants {quantity} of the '{query}', please place the order",
                "Please buy {quantity} units of '{query}' for the customer with email {email}",
            ),
            _draw_order_product,
        ),
        Procedure(
            "cancel_pending_order",
            cancel_pending_order,
            (
                "Cancel the newest pending order of {email} because: {reason}",
                "{email} wants their latest pending order cancelled, reason '{reason}'",
                "Please cancel the most recent pending order for {email} ({reason})",
            ),
            _draw_cancel_pending_order,
        ),
        Procedure(
            "return_item",
            return_item,
            (
                "Return the first item of order {order_id} and refund it, reason: {reason}",
                "Order {order_id} needs a return for its first item ('{reason}'), "
                "then issue the refund",
            ),
            _draw_return_item,
        ),
        Procedure(
            "restock_product",
            restock_product,
            (
                "Restock {quantity} units of '{query}'",
                "We received {quantity} more '{query}' from the supplier, "
                "add them to stock and confirm the level",
            ),
            _draw_restock_product,
        ),
        Procedure(
            "order_history",
            order_history,
            (
                "Show the order history for {email}",
                "Which orders has {email} placed so far?",
                "List every order of customer {email} from newest to oldest",
            ),
            _draw_order_history,
        ),
        Procedure(
            "change_email",
            change_email,
            (
                "Change the email of {email} to {new_email}",
                "Customer {email} moved to a new address: {new_email}",
            ),
            _draw_change_email,
        ),
        Procedure(
            "reorder_last_delivered",
            reorder_last_delivered,
            (
                "Reorder the first item of the latest delivered order for {email}",
                "Customer {email} wants the first item of their most recent delivery again, "
                "same quantity",
            ),
            _draw_reorder_last_delivered,
        ),
    )
}
