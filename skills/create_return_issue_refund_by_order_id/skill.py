def create_return_issue_refund_by_order_id(order_id: str, reason: str) -> dict:
    """Return the first item of order the given order id and refund it, reason: the given reason.

    Calls `get_order`, then `create_return`, then `issue_refund`.

    Args:
        order_id: Order id, such as 'O-5001'; passed to `get_order` as `order_id` (e.g. "O-5005").
        reason: Why the item is returned; passed to `create_return` as `reason` (e.g. "wrong
            colour").

    Returns:
        The result of `issue_refund`.
    """
    order = tools.get_order(order_id=order_id)
    create_return_result = tools.create_return(
        order_id=order_id,
        reason=reason,
        sku=order["items"][0]["sku"],
    )
    return tools.issue_refund(return_id=create_return_result["return_id"])
