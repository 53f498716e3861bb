def place_order_by_email(email: str, status: str = "delivered") -> dict:
    """Reorder the first item of the latest delivered order for the given email.

    Calls `find_customer`, then `list_orders`, then `get_order`, then `check_stock`, then
    `place_order`.

    Args:
        email: The customer's email address, such as 'alice@example.com'; passed to `find_customer`
            as `email` (e.g. "dmitri@example.com").
        status: Only list orders in this status; omit to list all; passed to `list_orders` as
            `status` (e.g. "delivered").

    Returns:
        The result of `place_order`.
    """
    customer = tools.find_customer(email=email)
    orders = tools.list_orders(customer_id=customer["customer_id"], status=status)
    order = tools.get_order(order_id=orders["orders"][0]["order_id"])
    stock = tools.check_stock(sku=order["items"][0]["sku"])
    return tools.place_order(
        customer_id=order["customer_id"],
        quantity=order["items"][0]["quantity"],
        sku=stock["sku"],
    )
