"""A small shop on SQLite: the tool environment the bundled example trajectories use.

`Shop` wraps one SQLite file holding customers, products, orders, returns and refunds. Its
tools (`Shop.tools`) are plain functions that take keyword arguments and return JSON-ready
dicts, so an agent, a recorded trajectory or a sandboxed skill can call them the same way.
Bad input (an unknown id, too little stock, an order in the wrong status) raises `ValueError`
with a message that names the value and says what to do instead.

Everything is deterministic. The seed data is fixed, new ids count up from the largest
existing one, and order timestamps come from a counter kept in the database rather than from
the wall clock, so two fresh shops given the same calls end in the same state (compare them
with `Shop.snapshot`).

Money is stored as integer cents and returned as floats rounded to two decimals. Seed values
are chosen so that ids, prices, stock levels and quantities rarely coincide by accident: ids
are prefixed strings, stock levels are not multiples of five and prices are not small whole
numbers. That keeps the data flow in a recorded trajectory (which argument came from which
earlier result) unambiguous.

From the command line, point a tool-taking command at the module-level `tools` function::

    SKILLBANK_SHOP_DB=shop.sqlite skillbank run ... --tools skillbank.examples.shop:tools
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeAlias

__all__ = ["ORDER_STATUSES", "SHOP_DB_ENV", "Shop", "TOOL_SPECS", "ToolResult", "tools"]

#: A tool's return value: a JSON object (str keys; str, int, float, bool, list, dict values).
ToolResult: TypeAlias = dict[str, Any]

#: Every status an order can have, in lifecycle order.
ORDER_STATUSES: Final = ("pending", "shipped", "delivered", "cancelled")

#: Environment variable naming the database file the module-level `tools` opens.
SHOP_DB_ENV: Final = "SKILLBANK_SHOP_DB"

_SCHEMA: Final = """
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL UNIQUE,
    tier        TEXT NOT NULL
);
CREATE TABLE products (
    sku         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    stock       INTEGER NOT NULL
);
CREATE TABLE orders (
    order_id      TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL REFERENCES customers (customer_id),
    status        TEXT NOT NULL,
    tick          INTEGER NOT NULL UNIQUE,
    cancel_reason TEXT
);
CREATE TABLE order_items (
    order_id         TEXT NOT NULL REFERENCES orders (order_id),
    line             INTEGER NOT NULL,
    sku              TEXT NOT NULL REFERENCES products (sku),
    quantity         INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, line)
);
CREATE TABLE returns (
    return_id TEXT PRIMARY KEY,
    order_id  TEXT NOT NULL REFERENCES orders (order_id),
    sku       TEXT NOT NULL REFERENCES products (sku),
    reason    TEXT NOT NULL,
    status    TEXT NOT NULL
);
CREATE TABLE refunds (
    refund_id    TEXT PRIMARY KEY,
    return_id    TEXT NOT NULL UNIQUE REFERENCES returns (return_id),
    amount_cents INTEGER NOT NULL
);
CREATE TABLE clock (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    tick INTEGER NOT NULL
);
"""

# (customer_id, name, email, tier). The last customer has no orders and is never used by the
# generated trajectories, so a demo can run a learned skill on someone it has not seen.
_CUSTOMERS: Final = (
    ("C-1001", "Alice Moreau", "alice@example.com", "gold"),
    ("C-1002", "Bob Tanaka", "bob@example.com", "silver"),
    ("C-1003", "Carol Okafor", "carol@example.com", "bronze"),
    ("C-1004", "Dmitri Volkov", "dmitri@example.com", "gold"),
    ("C-1005", "Elena Rossi", "elena@example.com", "silver"),
    ("C-1006", "Farid Haddad", "farid@example.com", "bronze"),
    ("C-1007", "Grace Lindqvist", "grace@example.com", "silver"),
    ("C-1008", "Hiro Sato", "hiro@example.com", "bronze"),
)

# (sku, name, price in cents, stock). Stock is what is left after the seeded orders.
_PRODUCTS: Final = (
    ("SKU-BAG-TOTE", "Canvas tote bag", 1820, 41),
    ("SKU-CHAIR-OAK", "Oak desk chair", 21460, 7),
    ("SKU-CLOCK-WALL", "Walnut wall clock", 5730, 17),
    ("SKU-KETTLE", "Stainless steel kettle", 4215, 13),
    ("SKU-LAMP-DSK", "Brass desk lamp", 4890, 19),
    ("SKU-LAMP-FLR", "Linen floor lamp", 12900, 11),
    ("SKU-MUG-BLU", "Blue ceramic mug", 1325, 23),
    ("SKU-MUG-RED", "Red ceramic mug", 1250, 37),
    ("SKU-NOTE-A5", "A5 dotted notebook", 875, 64),
    ("SKU-PEN-FTN", "Fountain pen", 3640, 27),
    ("SKU-PLANT-POT", "Terracotta plant pot", 1585, 29),
    ("SKU-TEA-BLK", "Black tea tin", 1045, 0),
    ("SKU-TEA-GRN", "Green tea tin", 995, 53),
)

# (order_id, customer_id, status, tick, [(sku, quantity), ...]). Items are charged at the
# product's current price.
_ORDERS: Final = (
    ("O-5001", "C-1001", "delivered", 1, (("SKU-MUG-RED", 2), ("SKU-TEA-GRN", 3))),
    ("O-5002", "C-1002", "delivered", 2, (("SKU-LAMP-DSK", 1),)),
    ("O-5003", "C-1003", "delivered", 3, (("SKU-NOTE-A5", 4), ("SKU-PEN-FTN", 1))),
    ("O-5004", "C-1001", "shipped", 4, (("SKU-BAG-TOTE", 1),)),
    ("O-5005", "C-1004", "delivered", 5, (("SKU-KETTLE", 1), ("SKU-TEA-BLK", 2))),
    ("O-5006", "C-1002", "pending", 6, (("SKU-MUG-BLU", 2),)),
    ("O-5007", "C-1005", "delivered", 7, (("SKU-PLANT-POT", 3),)),
    ("O-5008", "C-1003", "pending", 8, (("SKU-CHAIR-OAK", 1),)),
    ("O-5009", "C-1006", "shipped", 9, (("SKU-LAMP-FLR", 1),)),
    ("O-5010", "C-1001", "pending", 10, (("SKU-NOTE-A5", 2), ("SKU-PEN-FTN", 1))),
    ("O-5011", "C-1004", "pending", 11, (("SKU-MUG-RED", 3),)),
    ("O-5012", "C-1005", "pending", 12, (("SKU-TEA-GRN", 2), ("SKU-BAG-TOTE", 1))),
    ("O-5013", "C-1006", "delivered", 13, (("SKU-PEN-FTN", 2),)),
    ("O-5014", "C-1007", "pending", 14, (("SKU-LAMP-DSK", 1),)),
    ("O-5015", "C-1007", "delivered", 15, (("SKU-MUG-BLU", 4),)),
    ("O-5016", "C-1002", "pending", 16, (("SKU-PLANT-POT", 2),)),
)

# One finished return, so new return and refund ids visibly count on from existing ones.
_RETURNS: Final = (("R-6001", "O-5013", "SKU-PEN-FTN", "nib arrived bent", "refunded"),)
_REFUNDS: Final = (("RF-7001", "R-6001", 7280),)

# Tick 0 is this instant; each tick is one step later. Odd step, so times look organic.
_EPOCH: Final = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
_TICK: Final = timedelta(hours=9, minutes=41)


def _placed_at(tick: int) -> str:
    """Return the ISO 8601 UTC timestamp of an order placed at `tick`."""
    return (_EPOCH + tick * _TICK).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(cents: int) -> float:
    """Return an amount in cents as a float rounded to two decimals."""
    return round(cents / 100, 2)


def _next_id(prefix: str, existing: Iterable[str], first: int) -> str:
    """Return the id after the largest `existing` one, e.g. ``O-5017`` after ``O-5016``."""
    numbers = [int(value.removeprefix(prefix)) for value in existing]
    return f"{prefix}{max(numbers, default=first - 1) + 1}"


def _text(name: str, value: object) -> str:
    """Return `value` stripped, or raise `ValueError` unless it is a non-blank string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}={value!r} must be a non-empty string")
    return value.strip()


def _count(name: str, value: object) -> int:
    """Return `value`, or raise `ValueError` unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer, such as 2")
    return value


class Shop:
    """A shop whose state lives in one SQLite file.

    Every tool call opens its own short-lived connection and commits before returning, so the
    tools may be called from any thread or process that can reach the file.

    Args:
        path: The database file. A missing or empty file is created and seeded.

    Raises:
        ValueError: If `path` holds something other than a shop database.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        not_a_shop = (
            f"{str(self._path)!r} is not a shop database; pass a new or empty file, "
            "or use Shop.create(path) to replace it"
        )
        try:
            with self._transaction() as conn:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
                if not tables:
                    _seed(conn)
                elif "customers" not in tables:
                    raise ValueError(not_a_shop)
        except sqlite3.DatabaseError as exc:  # the file is not SQLite at all
            raise ValueError(not_a_shop) from exc

    @classmethod
    def create(cls, path: str | Path, *, overwrite: bool = True, crowd: int = 0) -> Shop:
        """Create a freshly seeded shop at `path`.

        Args:
            path: The database file to create.
            overwrite: Replace an existing file. If false, an existing file is an error.
            crowd: Extra customers beyond the fixed seed data, each with a few orders
                (`crowd_customers`), for generating many distinct runs; 0 for none.

        Returns:
            The new shop.

        Raises:
            FileExistsError: If `path` exists and `overwrite` is false.
        """
        target = Path(path)
        if target.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{str(target)!r} already exists; pass overwrite=True to replace it "
                    "or open it with Shop(path)"
                )
            target.unlink()
        for suffix in ("-journal", "-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        shop = cls(target)
        if crowd:
            with shop._transaction() as conn:
                _add_crowd(conn, crowd)
        return shop

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def __repr__(self) -> str:
        return f"Shop({str(self._path)!r})"

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside a write transaction; commit on success, then close."""
        with contextlib.closing(sqlite3.connect(self._path, timeout=10.0)) as conn:
            conn.isolation_level = None  # we issue BEGIN/COMMIT ourselves
            # IMMEDIATE takes the write lock up front, so a read-check-write sequence (is there
            # enough stock? then take it) cannot interleave with another caller's.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def tools(self) -> dict[str, Callable[..., ToolResult]]:
        """Return the shop's tools by name, in the order of `TOOL_SPECS`.

        Each tool takes keyword arguments only and returns a JSON-ready dict.
        """
        return {
            "find_customer": self.find_customer,
            "list_orders": self.list_orders,
            "get_order": self.get_order,
            "search_products": self.search_products,
            "check_stock": self.check_stock,
            "place_order": self.place_order,
            "cancel_order": self.cancel_order,
            "create_return": self.create_return,
            "issue_refund": self.issue_refund,
            "restock": self.restock,
            "update_email": self.update_email,
        }

    def snapshot(self) -> dict[str, Any]:
        """Return the whole database state as plain JSON data.

        Tables map to lists of rows (dicts keyed by column), ordered by primary key, so two
        shops in the same state give equal snapshots.
        """
        keys = {
            "customers": "customer_id",
            "products": "sku",
            "orders": "order_id",
            "order_items": "order_id, line",
            "returns": "return_id",
            "refunds": "refund_id",
            "clock": "id",
        }
        state: dict[str, Any] = {}
        with self._transaction() as conn:
            conn.row_factory = sqlite3.Row
            for table, key in keys.items():
                rows = conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
                state[table] = [dict(row) for row in rows]
        return state

    # -- reads -----------------------------------------------------------------------------

    def find_customer(self, *, email: str) -> ToolResult:
        """Look a customer up by email address (case-insensitive)."""
        email = _text("email", email)
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT customer_id, name, email, tier FROM customers WHERE lower(email) = ?",
                (email.lower(),),
            ).fetchone()
        if row is None:
            raise ValueError(
                f"no customer has email {email!r}; check the address, "
                "or ask the customer for the one they registered with"
            )
        return {"customer_id": row[0], "name": row[1], "email": row[2], "tier": row[3]}

    def list_orders(self, *, customer_id: str, status: str | None = None) -> ToolResult:
        """List a customer's orders, newest first, optionally only those in one status."""
        customer_id = _text("customer_id", customer_id)
        if status is not None and status not in ORDER_STATUSES:
            raise ValueError(
                f"status={status!r} is not an order status; use one of {list(ORDER_STATUSES)} "
                "or leave it out to list every order"
            )
        with self._transaction() as conn:
            _customer_exists(conn, customer_id)
            rows = conn.execute(
                "SELECT order_id, status, tick FROM orders "
                "WHERE customer_id = ? AND (? IS NULL OR status = ?) ORDER BY tick DESC",
                (customer_id, status, status),
            ).fetchall()
            orders = [
                {
                    "order_id": order_id,
                    "status": order_status,
                    "total": _money(_order_total(conn, order_id)),
                    "placed_at": _placed_at(tick),
                }
                for order_id, order_status, tick in rows
            ]
        return {"customer_id": customer_id, "orders": orders}

    def get_order(self, *, order_id: str) -> ToolResult:
        """Return one order with its line items and total."""
        order_id = _text("order_id", order_id)
        with self._transaction() as conn:
            customer_id, status = _order(conn, order_id)
            items = conn.execute(
                "SELECT i.sku, p.name, i.quantity, i.unit_price_cents "
                "FROM order_items AS i JOIN products AS p USING (sku) "
                "WHERE i.order_id = ? ORDER BY i.line",
                (order_id,),
            ).fetchall()
        return {
            "order_id": order_id,
            "customer_id": customer_id,
            "status": status,
            "items": [
                {"sku": sku, "name": name, "quantity": quantity, "unit_price": _money(cents)}
                for sku, name, quantity, cents in items
            ],
            "total": _money(sum(quantity * cents for _, _, quantity, cents in items)),
        }

    def search_products(self, *, query: str) -> ToolResult:
        """Find products whose name contains `query` (case-insensitive), sorted by sku."""
        query = _text("query", query)
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT sku, name, price_cents, stock FROM products "
                "WHERE instr(lower(name), ?) > 0 ORDER BY sku",
                (query.lower(),),
            ).fetchall()
        return {
            "query": query,
            "products": [
                {"sku": sku, "name": name, "price": _money(cents), "in_stock": stock > 0}
                for sku, name, cents, stock in rows
            ],
        }

    def check_stock(self, *, sku: str) -> ToolResult:
        """Return how many units of a product are available."""
        sku = _text("sku", sku)
        with self._transaction() as conn:
            _, stock = _product(conn, sku)
        return {"sku": sku, "available": stock}

    # -- writes ----------------------------------------------------------------------------

    def place_order(self, *, customer_id: str, sku: str, quantity: int) -> ToolResult:
        """Place a pending order for `quantity` units of one product; takes them from stock."""
        customer_id = _text("customer_id", customer_id)
        sku = _text("sku", sku)
        quantity = _count("quantity", quantity)
        with self._transaction() as conn:
            _customer_exists(conn, customer_id)
            price, stock = _product(conn, sku)
            if stock < quantity:
                raise ValueError(
                    f"only {stock} of {sku!r} in stock, cannot order quantity={quantity}; "
                    "order fewer or restock first"
                )
            order_id = _next_id(
                "O-", [row[0] for row in conn.execute("SELECT order_id FROM orders")], 5001
            )
            conn.execute("UPDATE clock SET tick = tick + 1")
            (tick,) = conn.execute("SELECT tick FROM clock").fetchone()
            conn.execute(
                "INSERT INTO orders (order_id, customer_id, status, tick) "
                "VALUES (?, ?, 'pending', ?)",
                (order_id, customer_id, tick),
            )
            conn.execute(
                "INSERT INTO order_items VALUES (?, 1, ?, ?, ?)", (order_id, sku, quantity, price)
            )
            conn.execute("UPDATE products SET stock = stock - ? WHERE sku = ?", (quantity, sku))
        return {
            "order_id": order_id,
            "customer_id": customer_id,
            "status": "pending",
            "total": _money(price * quantity),
        }

    def cancel_order(self, *, order_id: str, reason: str) -> ToolResult:
        """Cancel a pending order and put its items back in stock."""
        order_id = _text("order_id", order_id)
        reason = _text("reason", reason)
        with self._transaction() as conn:
            _, status = _order(conn, order_id)
            if status != "pending":
                raise ValueError(
                    f"order {order_id!r} is {status!r}; only pending orders can be cancelled "
                    "(for a delivered order, create a return instead)"
                )
            conn.execute(
                "UPDATE orders SET status = 'cancelled', cancel_reason = ? WHERE order_id = ?",
                (reason, order_id),
            )
            conn.execute(
                "UPDATE products SET stock = stock + (SELECT sum(quantity) FROM order_items "
                "WHERE order_items.order_id = ? AND order_items.sku = products.sku) "
                "WHERE sku IN (SELECT sku FROM order_items WHERE order_id = ?)",
                (order_id, order_id),
            )
        return {"order_id": order_id, "status": "cancelled", "reason": reason}

    def create_return(self, *, order_id: str, sku: str, reason: str) -> ToolResult:
        """Open a return for one product of a delivered order."""
        order_id = _text("order_id", order_id)
        sku = _text("sku", sku)
        reason = _text("reason", reason)
        with self._transaction() as conn:
            _, status = _order(conn, order_id)
            if status != "delivered":
                raise ValueError(
                    f"order {order_id!r} is {status!r}; only delivered orders can be returned "
                    "(a pending order can be cancelled instead)"
                )
            skus = [
                r[0]
                for r in conn.execute(
                    "SELECT sku FROM order_items WHERE order_id = ? ORDER BY line", (order_id,)
                )
            ]
            if sku not in skus:
                raise ValueError(
                    f"order {order_id!r} has no item with sku {sku!r}; its items are {skus}"
                )
            existing = conn.execute(
                "SELECT return_id FROM returns WHERE order_id = ? AND sku = ?", (order_id, sku)
            ).fetchone()
            if existing is not None:
                raise ValueError(
                    f"{sku!r} from order {order_id!r} already has return {existing[0]!r}; "
                    "refund that return instead of opening another"
                )
            return_id = _next_id(
                "R-", [row[0] for row in conn.execute("SELECT return_id FROM returns")], 6001
            )
            conn.execute(
                "INSERT INTO returns VALUES (?, ?, ?, ?, 'open')",
                (return_id, order_id, sku, reason),
            )
        return {"return_id": return_id, "order_id": order_id, "sku": sku, "status": "open"}

    def issue_refund(self, *, return_id: str) -> ToolResult:
        """Refund an open return; the amount is what the customer paid for those items."""
        return_id = _text("return_id", return_id)
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT order_id, sku, status FROM returns WHERE return_id = ?", (return_id,)
            ).fetchone()
            if row is None:
                raise ValueError(
                    f"no return has id {return_id!r}; create one with create_return first"
                )
            order_id, sku, status = row
            if status != "open":
                raise ValueError(f"return {return_id!r} is already {status!r}; nothing to refund")
            (amount,) = conn.execute(
                "SELECT sum(quantity * unit_price_cents) FROM order_items "
                "WHERE order_id = ? AND sku = ?",
                (order_id, sku),
            ).fetchone()
            refund_id = _next_id(
                "RF-", [r[0] for r in conn.execute("SELECT refund_id FROM refunds")], 7001
            )
            conn.execute("INSERT INTO refunds VALUES (?, ?, ?)", (refund_id, return_id, amount))
            conn.execute("UPDATE returns SET status = 'refunded' WHERE return_id = ?", (return_id,))
        return {"refund_id": refund_id, "return_id": return_id, "amount": _money(amount)}

    def restock(self, *, sku: str, quantity: int) -> ToolResult:
        """Add `quantity` units of a product to stock."""
        sku = _text("sku", sku)
        quantity = _count("quantity", quantity)
        with self._transaction() as conn:
            _, stock = _product(conn, sku)
            stock += quantity
            conn.execute("UPDATE products SET stock = ? WHERE sku = ?", (stock, sku))
        return {"sku": sku, "available": stock}

    def update_email(self, *, customer_id: str, email: str) -> ToolResult:
        """Change a customer's email address."""
        customer_id = _text("customer_id", customer_id)
        email = _text("email", email)
        local, at, domain = email.partition("@")
        if not (local and at and "." in domain.strip(".")) or " " in email:
            raise ValueError(
                f"email={email!r} is not an email address; expected something like "
                "'name@example.com'"
            )
        with self._transaction() as conn:
            _customer_exists(conn, customer_id)
            owner = conn.execute(
                "SELECT customer_id FROM customers WHERE lower(email) = ?", (email.lower(),)
            ).fetchone()
            if owner is not None and owner[0] != customer_id:
                raise ValueError(
                    f"email {email!r} already belongs to customer {owner[0]!r}; "
                    "each customer needs their own address"
                )
            conn.execute(
                "UPDATE customers SET email = ? WHERE customer_id = ?", (email, customer_id)
            )
        return {"customer_id": customer_id, "email": email}


def _seed(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty database and fill it with the fixed seed data."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", _CUSTOMERS)
    conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", _PRODUCTS)
    prices = {sku: cents for sku, _, cents, _ in _PRODUCTS}
    for order_id, customer_id, status, tick, items in _ORDERS:
        conn.execute(
            "INSERT INTO orders (order_id, customer_id, status, tick) VALUES (?, ?, ?, ?)",
            (order_id, customer_id, status, tick),
        )
        conn.executemany(
            "INSERT INTO order_items VALUES (?, ?, ?, ?, ?)",
            [
                (order_id, line, sku, quantity, prices[sku])
                for line, (sku, quantity) in enumerate(items, start=1)
            ],
        )
    conn.executemany("INSERT INTO returns VALUES (?, ?, ?, ?, ?)", _RETURNS)
    conn.executemany("INSERT INTO refunds VALUES (?, ?, ?)", _REFUNDS)
    conn.execute("INSERT INTO clock VALUES (1, ?)", (max(order[3] for order in _ORDERS),))


_FIRST: Final = ("Ana", "Ben", "Chen", "Dara", "Emil", "Fatou", "Gus", "Hana", "Ivo", "Jun")
_LAST: Final = ("Abara", "Berg", "Costa", "Dubois", "Eklund", "Fischer", "Garcia", "Horvat")


def crowd_customers(n: int) -> list[tuple[str, str, str, str]]:
    """The ``n`` extra customers of `Shop.create(..., crowd=n)`: (id, name, email, tier).

    Deterministic and distinct from the seed data: ids from ``C-2001``, emails at
    ``example.org``.
    """
    if not 0 <= n <= 9000:
        raise ValueError(f"crowd={n!r} must be between 0 and 9000")
    tiers = ("gold", "silver", "bronze")
    rows = []
    for i in range(n):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i // len(_FIRST)) % len(_LAST)]
        email = f"{first}.{last}.{i + 1}@example.org".lower()
        rows.append((f"C-{2001 + i}", f"{first} {last}", email, tiers[i % 3]))
    return rows


def _add_crowd(conn: sqlite3.Connection, n: int) -> None:
    """Add `crowd_customers` with one to three orders each (delivered, pending, shipped).

    Their orders come after the seed data's and leave stock as it is, as the seed's do; they
    buy only what seed customers bought, so products no seed order holds stay unseen.
    """
    rows = crowd_customers(n)
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", rows)
    skus = sorted({sku for order in _ORDERS for sku, _ in order[4]})
    prices = {sku: cents for sku, _, cents, _ in _PRODUCTS}
    statuses = ("delivered", "pending", "shipped")
    tick = int(conn.execute("SELECT tick FROM clock").fetchone()[0])
    number = 7001
    for i, (customer_id, *_rest) in enumerate(rows):
        for k in range(1 + i % 3):
            tick += 1
            order_id = f"O-{number}"
            number += 1
            conn.execute(
                "INSERT INTO orders (order_id, customer_id, status, tick) VALUES (?, ?, ?, ?)",
                (order_id, customer_id, statuses[(i + k) % 3], tick),
            )
            sku = skus[(i * 7 + k * 3) % len(skus)]
            conn.execute(
                "INSERT INTO order_items VALUES (?, ?, ?, ?, ?)",
                (order_id, 1, sku, 1 + (i + k) % 3, prices[sku]),
            )
    conn.execute("UPDATE clock SET tick = ?", (tick,))


def _customer_exists(conn: sqlite3.Connection, customer_id: str) -> None:
    """Raise `ValueError` unless `customer_id` names a customer."""
    if (
        conn.execute("SELECT 1 FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
        is None
    ):
        raise ValueError(
            f"no customer has id {customer_id!r}; look the id up with find_customer(email=...)"
        )


def _product(conn: sqlite3.Connection, sku: str) -> tuple[int, int]:
    """Return a product's (price in cents, stock), or raise `ValueError` for an unknown sku."""
    row = conn.execute("SELECT price_cents, stock FROM products WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        raise ValueError(f"no product has sku {sku!r}; find skus with search_products(query=...)")
    return int(row[0]), int(row[1])


def _order(conn: sqlite3.Connection, order_id: str) -> tuple[str, str]:
    """Return an order's (customer id, status), or raise `ValueError` for an unknown id."""
    row = conn.execute(
        "SELECT customer_id, status FROM orders WHERE order_id = ?", (order_id,)
    ).fetchone()
    if row is None:
        raise ValueError(
            f"no order has id {order_id!r}; list a customer's orders with "
            "list_orders(customer_id=...)"
        )
    return str(row[0]), str(row[1])


def _order_total(conn: sqlite3.Connection, order_id: str) -> int:
    """Return an order's total in cents."""
    (total,) = conn.execute(
        "SELECT coalesce(sum(quantity * unit_price_cents), 0) FROM order_items WHERE order_id = ?",
        (order_id,),
    ).fetchone()
    return int(total)


def _string(description: str, **extra: Any) -> dict[str, Any]:
    """Return the JSON Schema of a string parameter."""
    return {"type": "string", "description": description, **extra}


def _positive(description: str) -> dict[str, Any]:
    """Return the JSON Schema of a positive integer parameter."""
    return {"type": "integer", "minimum": 1, "description": description}


def _spec(
    name: str, description: str, properties: dict[str, Any], *optional: str
) -> dict[str, Any]:
    """Return one tool definition in the OpenAI Chat Completions shape."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": [key for key in properties if key not in optional],
                "additionalProperties": False,
            },
        },
    }


_CUSTOMER_ID: Final = "Customer id, such as 'C-1001' (from find_customer)."
_ORDER_ID: Final = "Order id, such as 'O-5001'."
_SKU: Final = "Product sku, such as 'SKU-MUG-RED' (from search_products)."

#: The shop's tools as OpenAI Chat Completions tool definitions, in the order of `Shop.tools`.
TOOL_SPECS: Final[list[dict[str, Any]]] = [
    _spec(
        "find_customer",
        "Look up a customer by email address. Returns customer_id, name, email and tier.",
        {"email": _string("The customer's email address, such as 'alice@example.com'.")},
    ),
    _spec(
        "list_orders",
        "List a customer's orders, newest first, with order_id, status, total and placed_at.",
        {
            "customer_id": _string(_CUSTOMER_ID),
            "status": _string(
                "Only list orders in this status; omit to list all.", enum=list(ORDER_STATUSES)
            ),
        },
        "status",
    ),
    _spec(
        "get_order",
        "Get one order: its customer_id, status, line items (sku, name, quantity, "
        "unit_price) and total.",
        {"order_id": _string(_ORDER_ID)},
    ),
    _spec(
        "search_products",
        "Search products by a case-insensitive substring of their name. Returns matching "
        "products (sku, name, price, in_stock) sorted by sku.",
        {"query": _string("Text to look for in product names, such as 'mug'.")},
    ),
    _spec(
        "check_stock",
        "Return how many units of a product are available.",
        {"sku": _string(_SKU)},
    ),
    _spec(
        "place_order",
        "Place a pending order for some units of one product and take them from stock. "
        "Returns the new order_id and the total.",
        {
            "customer_id": _string(_CUSTOMER_ID),
            "sku": _string(_SKU),
            "quantity": _positive("How many units to order."),
        },
    ),
    _spec(
        "cancel_order",
        "Cancel a pending order and return its items to stock. Only pending orders can be "
        "cancelled.",
        {
            "order_id": _string(_ORDER_ID),
            "reason": _string("Why the order is cancelled, in the customer's words."),
        },
    ),
    _spec(
        "create_return",
        "Open a return for one product of a delivered order. Returns the new return_id.",
        {
            "order_id": _string(_ORDER_ID),
            "sku": _string("Sku of the item to return; it must be part of the order."),
            "reason": _string("Why the item is returned."),
        },
    ),
    _spec(
        "issue_refund",
        "Refund an open return. The amount is computed from what the customer paid.",
        {"return_id": _string("Return id, such as 'R-6002' (from create_return).")},
    ),
    _spec(
        "restock",
        "Add units of a product to stock. Returns the new available count.",
        {"sku": _string(_SKU), "quantity": _positive("How many units to add.")},
    ),
    _spec(
        "update_email",
        "Change a customer's email address.",
        {
            "customer_id": _string(_CUSTOMER_ID),
            "email": _string("The new email address; no other customer may have it."),
        },
    ),
]


def tools() -> dict[str, Callable[..., ToolResult]]:
    """Return the tools of the shop named by ``$SKILLBANK_SHOP_DB`` (default ``shop.sqlite``).

    The file is resolved against the current directory, and created and seeded if missing.
    This is the entry point for ``--tools skillbank.examples.shop:tools``.
    """
    return Shop(os.environ.get(SHOP_DB_ENV) or "shop.sqlite").tools()
