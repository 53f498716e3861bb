def list_orders_by_email(email: str) -> dict:
    """Show the order history for the given email.

    Calls `find_customer`, then `list_orders`.

    Args:
        email: The customer's email address, such as 'alice@example.com'; passed to `find_customer`
            as `email` (e.g. "carol@example.com").

    Returns:
        The result of `list_orders`.
    """
    customer = tools.find_customer(email=email)
    return tools.list_orders(customer_id=customer["customer_id"])
