"""The synthetic shop behind the personalization example: catalog, shoppers, features.

Everything here is deterministic and uses only the standard library, because three
programs with different virtualenvs share it: the trainer (MLServer's venv, with
scikit-learn), the producer and the Faust app (the project's venv, without numpy).
Sharing the feature code is the point: the ranker sees at serving time exactly the
features it was trained on (no training/serving skew).

The world:

* a catalog of 240 items, 30 in each of 8 categories, each with a price tier
  (0 cheap .. 3 premium), a popularity (Zipf-like within its category) and a quality;
* shoppers with hidden tastes: a category preference drawn from a sparse Dirichlet
  (most shoppers care about two or three categories) and a preferred price tier;
* events: a shopper views, clicks, adds to cart or buys an item of a category drawn
  from their taste, an item drawn by popularity and price fit.

A shopper's *profile* (kept in a Faust table by the app) is what the events reveal:
decayed, action-weighted category counts, the mean price tier of what they touched,
the last category and the last items. A ranking request pairs a profile with 20
candidate items (mostly from the shopper's top categories, some best-sellers);
``candidate_rows`` turns the pair into the model's input, one row per candidate::

    profile = update_profile({}, "books-03", "click")
    rows = candidate_rows(profile, candidates(profile))   # 20 rows of len(FEATURES)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIONS",
    "CATALOG",
    "CATEGORIES",
    "FEATURES",
    "N_CANDIDATES",
    "Item",
    "Shopper",
    "candidate_rows",
    "candidates",
    "click_probability",
    "make_shoppers",
    "next_event",
    "update_profile",
]

CATEGORIES = ("electronics", "books", "fashion", "home", "sports", "beauty", "toys", "grocery")
ITEMS_PER_CATEGORY = 30
N_CANDIDATES = 20
RECENT = 10  # items remembered per shopper; they are not suggested again
DECAY = 0.92  # per event: older interests fade
# How much each action says about interest (and how often shoppers do it).
ACTIONS = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 6.0}
_ACTION_ODDS = (0.62, 0.25, 0.09, 0.04)

FEATURES = (
    "category_share",  # share of the shopper's (decayed, weighted) activity in the category
    "category_rank",  # 0 for the shopper's top category, 1 for the next, ... 8 if never seen
    "is_last_category",  # 1.0 if the shopper's last event was in the category
    "log_popularity",  # ln of the item's popularity weight
    "quality",  # 0..1
    "price_tier",  # 0..3
    "price_gap",  # |shopper's mean price tier - item's tier|
    "log_activity",  # ln(1 + events seen from the shopper)
)


@dataclass(frozen=True)
class Item:
    """One product of the catalog."""

    id: str
    category: int
    price_tier: int
    popularity: float
    quality: float


def _make_catalog(seed: int = 2024) -> dict[str, Item]:
    rng = random.Random(seed)
    items: dict[str, Item] = {}
    for c, name in enumerate(CATEGORIES):
        for j in range(ITEMS_PER_CATEGORY):
            item_id = f"{name}-{j:02d}"
            popularity = 1.0 / (j + 1) ** 0.9 * rng.uniform(0.7, 1.3)
            items[item_id] = Item(
                item_id, c, rng.choices((0, 1, 2, 3), (3, 4, 2, 1))[0], popularity, rng.random()
            )
    return items


CATALOG: dict[str, Item] = _make_catalog()
_BY_CATEGORY: list[list[Item]] = [
    sorted((i for i in CATALOG.values() if i.category == c), key=lambda i: -i.popularity)
    for c in range(len(CATEGORIES))
]
_BEST_SELLERS: list[Item] = sorted(CATALOG.values(), key=lambda i: -i.popularity)


@dataclass(frozen=True)
class Shopper:
    """A shopper's hidden tastes (the producer knows them, the app must learn them)."""

    id: str
    preference: tuple[float, ...]  # over CATEGORIES, sums to 1
    price_tier: float
    activity: float  # relative event rate

    def favourites(self, n: int = 2) -> list[str]:
        """The ``n`` categories this shopper likes best."""
        ranked = sorted(range(len(CATEGORIES)), key=lambda c: -self.preference[c])
        return [CATEGORIES[c] for c in ranked[:n]]


def make_shoppers(n: int, seed: int = 0, prefix: str = "u") -> list[Shopper]:
    """``n`` shoppers with sparse category tastes; deterministic for ``(n, seed)``."""
    rng = random.Random(seed)
    shoppers = []
    for i in range(n):
        raw = [rng.gammavariate(0.35, 1.0) + 1e-9 for _ in CATEGORIES]
        total = sum(raw)
        shoppers.append(
            Shopper(
                f"{prefix}-{seed}-{i:04d}",
                tuple(x / total for x in raw),
                min(3.0, max(0.0, rng.gauss(1.3, 0.8))),
                rng.lognormvariate(0.0, 0.6),
            )
        )
    return shoppers


def next_event(shopper: Shopper, rng: random.Random) -> tuple[str, str]:
    """What ``shopper`` does next: ``(item id, action)``."""
    category = rng.choices(range(len(CATEGORIES)), shopper.preference)[0]
    items = _BY_CATEGORY[category]
    weights = [i.popularity * math.exp(-abs(i.price_tier - shopper.price_tier)) for i in items]
    item = rng.choices(items, weights)[0]
    return item.id, rng.choices(tuple(ACTIONS), _ACTION_ODDS)[0]


def update_profile(profile: dict[str, Any], item_id: str, action: str) -> dict[str, Any]:
    """The profile after one more event (a new dict: Faust tables store what is assigned).

    Unknown items or actions leave the profile as it was: a producer's mistake must
    not corrupt what the shop knows about a shopper.
    """
    item = CATALOG.get(item_id)
    weight = ACTIONS.get(action)
    if item is None or weight is None:
        return profile
    categories = [x * DECAY for x in profile.get("categories", [0.0] * len(CATEGORIES))]
    categories[item.category] += weight
    price_w = profile.get("price_weight", 0.0) * DECAY + weight
    price_sum = profile.get("price_sum", 0.0) * DECAY + weight * item.price_tier
    recent = [i for i in profile.get("recent", []) if i != item_id][-(RECENT - 1) :]
    return {
        "events": profile.get("events", 0) + 1,
        "categories": [round(x, 6) for x in categories],
        "price_weight": round(price_w, 6),
        "price_sum": round(price_sum, 6),
        "last_category": item.category,
        "recent": [*recent, item_id],
    }


def _category_order(profile: dict[str, Any]) -> list[int]:
    weights = profile.get("categories")
    if not weights:
        return []
    return [c for c in sorted(range(len(weights)), key=lambda c: -weights[c]) if weights[c] > 0]


def candidates(profile: dict[str, Any], n: int = N_CANDIDATES) -> list[str]:
    """Item ids worth ranking for this profile: ``n`` of them, none seen recently.

    Most come from the shopper's top three categories (8, 5 and 2 of their best
    sellers); best-sellers of the whole shop fill the rest, so a new shopper gets
    candidates too.
    """
    seen = set(profile.get("recent", []))
    chosen: list[str] = []
    for category, take in zip(_category_order(profile), (8, 5, 2), strict=False):
        fresh = [i.id for i in _BY_CATEGORY[category] if i.id not in seen]
        chosen.extend(fresh[:take])
    taken = set(chosen)
    for item in _BEST_SELLERS:
        if len(chosen) >= n:
            break
        if item.id not in seen and item.id not in taken:
            chosen.append(item.id)
    return chosen[:n]


def candidate_rows(profile: dict[str, Any], item_ids: Sequence[str]) -> list[list[float]]:
    """The ranker's input: one row of ``FEATURES`` per candidate, in order."""
    weights = profile.get("categories") or [0.0] * len(CATEGORIES)
    total = sum(weights)
    order = _category_order(profile)
    rank = {c: r for r, c in enumerate(order)}
    price_w = profile.get("price_weight", 0.0)
    mean_tier = profile.get("price_sum", 0.0) / price_w if price_w > 0 else 1.5
    last = profile.get("last_category", -1)
    activity = math.log1p(profile.get("events", 0))
    rows = []
    for item_id in item_ids:
        item = CATALOG[item_id]
        rows.append(
            [
                weights[item.category] / total if total > 0 else 0.0,
                float(rank.get(item.category, len(CATEGORIES))),
                1.0 if item.category == last else 0.0,
                math.log(item.popularity),
                item.quality,
                float(item.price_tier),
                abs(mean_tier - item.price_tier),
                activity,
            ]
        )
    return rows


def click_probability(shopper: Shopper, item_id: str) -> float:
    """The hidden truth the ranker learns: how likely ``shopper`` clicks a suggestion."""
    item = CATALOG[item_id]
    logit = (
        -3.4
        + 7.0 * shopper.preference[item.category]
        + 1.6 * item.quality
        + 0.5 * math.log(item.popularity)
        - 0.9 * abs(shopper.price_tier - item.price_tier)
    )
    return 1.0 / (1.0 + math.exp(-logit))
