"""A synthetic outdoor-and-home product catalog, and a stream of updates to it.

Deterministic for a seed, so a run, its test and the README show the same
products. Each product has a name and a description written from its kind's
features, so that questions in plain words ("something to keep me dry on a
hike") have a right answer the embeddings can find.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["KINDS", "make_catalog", "make_updates", "product_id"]


@dataclass(frozen=True)
class Kind:
    """A kind of product: the words its names and descriptions are made of."""

    category: str
    nouns: tuple[str, ...]
    features: tuple[str, ...]
    uses: tuple[str, ...]
    price: tuple[float, float]


KINDS: tuple[Kind, ...] = (
    Kind(
        "rain jackets",
        ("rain jacket", "waterproof shell", "storm jacket"),
        ("taped seams", "a breathable membrane", "a stowable hood", "pit zips"),
        ("hiking in the rain", "wet commutes", "stormy coastal walks"),
        (79, 320),
    ),
    Kind(
        "hiking boots",
        ("hiking boot", "trail boot", "mountain boot"),
        ("a grippy rubber sole", "ankle support", "a waterproof lining", "a cushioned midsole"),
        ("rocky trails", "multi-day treks", "muddy paths"),
        (95, 260),
    ),
    Kind(
        "tents",
        ("two-person tent", "backpacking tent", "family tent"),
        ("aluminium poles", "a full rain fly", "two vestibules", "mesh ventilation panels"),
        ("camping", "windy campsites", "festival weekends"),
        (120, 650),
    ),
    Kind(
        "headphones",
        ("wireless headphones", "noise-cancelling headphones", "earbuds"),
        ("active noise cancelling", "30-hour battery life", "a clear microphone", "fast charging"),
        ("flights", "open-plan offices", "the daily commute"),
        (49, 380),
    ),
    Kind(
        "coffee makers",
        ("espresso machine", "pour-over kettle", "drip coffee maker"),
        ("a milk frother", "a built-in grinder", "temperature control", "a thermal carafe"),
        ("slow weekend mornings", "small kitchens", "a busy household"),
        (35, 900),
    ),
    Kind(
        "backpacks",
        ("daypack", "travel backpack", "laptop backpack"),
        ("a padded laptop sleeve", "a hip belt", "water-resistant fabric", "lockable zips"),
        ("city days", "carry-on travel", "school and work"),
        (40, 210),
    ),
    Kind(
        "sleeping bags",
        ("down sleeping bag", "synthetic sleeping bag", "summer sleeping bag"),
        ("a comfort rating of -5 C", "a draft collar", "a compression sack", "a two-way zip"),
        ("cold nights outdoors", "alpine huts", "summer camping"),
        (60, 480),
    ),
    Kind(
        "bike lights",
        ("bike light set", "USB rechargeable headlight", "rear bike light"),
        ("800 lumens", "a daytime flash mode", "USB-C charging", "a quick-release mount"),
        ("night commuting", "winter rides", "unlit country lanes"),
        (15, 120),
    ),
)

_BRANDS = ("Northpeak", "Alder & Co", "Fjellform", "Brightline", "Kettlewood", "Otterbay")
_ADJECTIVES = ("lightweight", "rugged", "compact", "classic", "premium", "everyday")


def product_id(i: int) -> str:
    """The id of the ``i``-th product of the catalog."""
    return f"p-{i:05d}"


def _describe(kind: Kind, rng: random.Random) -> str:
    features = rng.sample(kind.features, 2)
    return (
        f"A {rng.choice(_ADJECTIVES)} {rng.choice(kind.nouns)} with {features[0]} "
        f"and {features[1]}, made for {rng.choice(kind.uses)}."
    )


def make_catalog(count: int, seed: int = 7) -> list[dict[str, object]]:
    """``count`` products, their kinds taken in turn so every category is present."""
    rng = random.Random(seed)
    products: list[dict[str, object]] = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        low, high = kind.price
        products.append(
            {
                "id": product_id(i),
                "name": f"{rng.choice(_BRANDS)} {rng.choice(kind.nouns).title()} {100 + i}",
                "category": kind.category,
                "description": _describe(kind, rng),
                "price": round(rng.uniform(low, high), 2),
                "stock": rng.randrange(0, 200),
            }
        )
    return products


def make_updates(
    catalog: list[dict[str, object]], count: int, *, rewrite_every: int = 5, seed: int = 8
) -> list[dict[str, object]]:
    """``count`` updates to products of ``catalog``: mostly price and stock changes.

    Every ``rewrite_every``-th update also rewrites the description (a new
    text to embed); the others leave name and description as they were, so
    the text is one the model has already embedded: the result cache answers.
    Each product is updated at most once, so the updates' ids are distinct.
    """
    rng = random.Random(seed)
    picked = rng.sample(range(len(catalog)), min(count, len(catalog)))
    kinds = {k.category: k for k in KINDS}
    updates: list[dict[str, object]] = []
    for n, i in enumerate(picked):
        product = dict(catalog[i])
        product["price"] = round(float(str(product["price"])) * rng.uniform(0.8, 1.1), 2)
        product["stock"] = rng.randrange(0, 200)
        if rewrite_every and n % rewrite_every == rewrite_every - 1:
            product["description"] = _describe(kinds[str(product["category"])], rng) + " New model."
        updates.append(product)
    return updates
