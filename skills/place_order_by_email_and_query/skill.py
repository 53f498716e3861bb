def place_order_by_email_and_query(email: str, query: str, quantity: int) -> dict:
    """Order the given quantity x 'the given query' for the given email.

    Calls `find_customer`, then `search_products`, then `check_stock`, then `place_order`.

    Args:
        email: The customer's email address, such as 'alice@example.com'; passed to `find_customer`
            as `email` (e.g. "grace@example.com").
        query: Text to look for in product names, such as 'mug'; passed to `search_products` as
            `query` (e.g. "kettle").
        quantity: How many units to order; passed to `place_order` as `quantity` (e.g. 2).

    Returns:
        The result of `place_order`.
    """
    customer = tools.find_customer(email=email)
    products = tools.search_products(query=query)
    stock = tools.check_stock(sku=products["products"][0]["sku"])
    return tools.place_order(
        customer_id=customer["customer_id"],
        quantity=quantity,
        sku=stock["sku"],
    )
