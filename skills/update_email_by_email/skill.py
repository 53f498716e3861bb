def update_email_by_email(email: str, update_email: str) -> dict:
    """Change the email of the given email to the given update email.

    Calls `find_customer`, then `update_email`.

    Args:
        email: The customer's email address, such as 'alice@example.com'; passed to `find_customer`
            as `email` (e.g. "grace@example.com").
        update_email: The new email address; no other customer may have it; passed to
            `update_email` as `email` (e.g. "grace.lindqvist@inbox.test").

    Returns:
        The result of `update_email`.
    """
    customer = tools.find_customer(email=email)
    return tools.update_email(customer_id=customer["customer_id"], email=update_email)
