def cancel_order_by_email(email: str, reason: str, status: str = "pending") -> dict:
    """Cancel the newest pending order of the given email because: the given reason.

    Calls `find_customer`, then `list_orders`, then `cancel_order`.

    Args:
        email: The customer's email address, such as 'alice@example.com'; passed to `find_customer`
            as `email` (e.g. "elena@example.com").
        reason: Why the order is cancelled, in the customer's words; passed to `cancel_order` as
            `reason` (e.g. "ordered by mistake").
        status: Only list orders in this status; omit to list all; passed to `list_orders` as
            `status` (e.g. "pending").

    Returns:
        The result of `cancel_order`.
    """
    customer = tools.find_customer(email=email)
    orders = tools.list_orders(customer_id=customer["customer_id"], status=status)
    return tools.cancel_order(order_id=orders["orders"][0]["order_id"], reason=reason)
