"""Synthetic customer-support tickets, each with the category a person would give it.

Deterministic for a seed. The expected category lets a run print how often
the model agreed, which is the first thing to look at when swapping models.
"""

from __future__ import annotations

import random

__all__ = ["CATEGORIES", "make_tickets", "ticket_id"]

CATEGORIES = ("billing", "shipping", "technical", "account", "returns")

_TEMPLATES: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "billing": (
        ("Charged twice", "I was charged twice for order {order}. Please refund one.", True),
        ("Invoice missing VAT", "My invoice for order {order} has no VAT number on it.", False),
        (
            "Card declined",
            "My card keeps getting declined at checkout but the bank says it is fine.",
            False,
        ),
    ),
    "shipping": (
        (
            "Where is my parcel",
            "Order {order} was due {days} days ago and tracking has not moved.",
            True,
        ),
        (
            "Wrong address",
            "I typed the wrong street for order {order}. Can you change it before it ships?",
            True,
        ),
        ("Delivery options", "Do you deliver to Norway, and how long does it take?", False),
    ),
    "technical": (
        ("App crashes", "The app crashes every time I open my basket on Android.", False),
        (
            "Cannot pair headphones",
            "My new headphones from order {order} will not pair with my phone.",
            False,
        ),
        ("Site down", "Your website shows an error 500 and I cannot check out at all.", True),
    ),
    "account": (
        ("Password reset", "The password reset email never arrives. I have checked spam.", False),
        ("Delete my account", "Please delete my account and all my data.", False),
        (
            "Account hacked",
            "Someone changed my email address and placed order {order}. Help!",
            True,
        ),
    ),
    "returns": (
        (
            "Return a jacket",
            "The rain jacket from order {order} is too small. How do I return it?",
            False,
        ),
        (
            "Refund not received",
            "I sent back order {order} {days} days ago and have no refund yet.",
            True,
        ),
        ("Broken on arrival", "The tent from order {order} arrived with a broken pole.", False),
    ),
}
_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jon")


def ticket_id(seed: int, i: int) -> str:
    """The id of the ``i``-th ticket of a run."""
    return f"t-{seed}-{i:05d}"


def make_tickets(count: int, seed: int = 11) -> list[dict[str, object]]:
    """``count`` tickets, categories taken in turn; ``expected`` is the right category."""
    rng = random.Random(seed)
    tickets: list[dict[str, object]] = []
    for i in range(count):
        category = CATEGORIES[i % len(CATEGORIES)]
        subject, body, urgent = rng.choice(_TEMPLATES[category])
        tickets.append(
            {
                "id": ticket_id(seed, i),
                "customer": f"{rng.choice(_NAMES)} {rng.randrange(1000, 9999)}",
                "subject": subject,
                "body": body.format(
                    order=f"#{rng.randrange(10000, 99999)}", days=rng.randrange(3, 15)
                ),
                "expected": category,
                "expected_urgent": urgent,
            }
        )
    return tickets
