def restock_by_query(query: str, quantity: int) -> dict:
    """Restock the given quantity units of 'the given query'.

    Calls `search_products`, then `restock`.

    Args:
        query: Text to look for in product names, such as 'mug'; passed to `search_products` as
            `query` (e.g. "mug").
        quantity: How many units to add; passed to `restock` as `quantity` (e.g. 50).

    Returns:
        The result of `restock`.
    """
    products = tools.search_products(query=query)
    return tools.restock(quantity=quantity, sku=products["products"][0]["sku"])
