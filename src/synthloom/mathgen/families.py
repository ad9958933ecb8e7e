"""Problem families: each samples a small world (hidden values + true premises) of about `depth`.

The generator, not the family, decides which derived quantity to ask about and which premises the
question keeps, so families only need to build rich, consistent premise sets. A family returns None
when a random choice led nowhere (the generator then retries with the next draw).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from fractions import Fraction

from synthloom.mathgen.builder import Builder
from synthloom.mathgen.numbers import format_money, format_number
from synthloom.mathgen.render import polynomial_text

NAMES = (
    "Alice",
    "Ben",
    "Carla",
    "Dev",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Kira",
    "Leo",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Victor",
)
ITEMS = (
    "apples",
    "stickers",
    "marbles",
    "books",
    "coins",
    "shells",
    "pencils",
    "cards",
    "stamps",
    "cookies",
    "balloons",
    "toy cars",
)
GOODS = (
    ("pen", "pens"),
    ("notebook", "notebooks"),
    ("sandwich", "sandwiches"),
    ("ticket", "tickets"),
    ("mug", "mugs"),
    ("candle", "candles"),
    ("plant", "plants"),
    ("scarf", "scarves"),
)
MULTIPLIER_WORDS = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}
FRACTION_WORDS = {2: "half", 3: "a third", 4: "a quarter"}

IMPLICIT = ""  # world knowledge (cost = count x price, ...): a premise with no sentence of its own

Family = Callable[[random.Random, int], Builder | None]


def _limit(depth: int) -> int:
    """Easy tier keeps numbers small; deeper problems may use larger ones."""
    return 12 if depth <= 2 else 30


# ------------------------------------------------------------------------------------------------
# Word problems
# ------------------------------------------------------------------------------------------------


def comparison(rng: random.Random, depth: int) -> Builder | None:
    """People owning items: more/fewer/times/fraction/combined, forward or inverse, or a system."""
    item = rng.choice(ITEMS)
    names = rng.sample(NAMES, min(len(NAMES), depth + 4))
    world = Builder()

    def person(name: str, value: Fraction | int) -> str:
        return world.quantity(
            value,
            f"How many {item} does {name} have?",
            f"{name} has {{v}} {item}",
            f"{name}'s {item}",
        )

    chain: list[tuple[str, str]] = []  # (name, quantity key)
    if depth >= 1 and rng.random() < 0.2:
        # A 2x2 system as the opening: "A and B have N together; A has c more than B".
        low, gap = rng.randint(2, _limit(depth)), rng.randint(2, 9)
        first, second = names[0], names[1]
        b, a = person(second, low), person(first, low + gap)
        world.together(
            [a, b], low * 2 + gap, f"{first} and {second} have {low * 2 + gap} {item} together."
        )
        world.add(a, b, gap, f"{first} has {gap} more {item} than {second}.")
        chain += [(second, b), (first, a)]
        roots: list[str] = []
    else:
        root = person(names[0], rng.randint(2, _limit(depth)))
        chain.append((names[0], root))
        roots = [root]
    extra_givens: list[str] = []
    spare_names = names[len(chain) + depth :]  # for the second person of a "combined" step
    for name in names[len(chain) : len(chain) + depth]:
        previous_name, previous = chain[-1]
        value = world.value(previous)
        choice = rng.random()
        if choice < 0.3:
            c = rng.randint(2, 9)
            key = person(name, value + c)
            world.add(key, previous, c, f"{name} has {c} more {item} than {previous_name}.")
        elif choice < 0.45 and value > 3:
            c = rng.randint(2, int(value) - 1)
            key = person(name, value - c)
            world.add(key, previous, -c, f"{name} has {c} fewer {item} than {previous_name}.")
        elif choice < 0.65 and value <= 60:
            k = rng.choice((2, 3)) if value > 10 else rng.choice((2, 3, 4, 5))
            key = person(name, value * k)
            world.scale(
                key,
                previous,
                k,
                f"{name} has {MULTIPLIER_WORDS[k]} as many {item} as {previous_name}.",
            )
        elif choice < 0.8 and any(value % q == 0 for q in (2, 3, 4)):
            q = rng.choice([q for q in (2, 3, 4) if value % q == 0])
            key = person(name, value / q)
            world.scale(
                key,
                previous,
                Fraction(1, q),
                f"{name} has {FRACTION_WORDS[q]} as many {item} as {previous_name}.",
            )
        elif not spare_names:
            key = person(name, value + 2)
            world.add(key, previous, 2, f"{name} has 2 more {item} than {previous_name}.")
        else:
            other_name = spare_names.pop()
            other = person(other_name, rng.randint(1, _limit(depth)))
            extra_givens.append(other)
            key = person(name, value + world.value(other))
            world.total(
                key,
                [previous, other],
                f"{name} has as many {item} as {previous_name} and {other_name} combined.",
            )
            chain.append((other_name, other))
        chain.append((name, key))
    people = [key for _, key in chain]
    if rng.random() < 0.2 and len(people) >= 2:
        everyone = world.quantity(
            sum(world.value(p) for p in people),
            f"How many {item} do they have altogether?",
            f"Altogether they have {{v}} {item}",
            f"the total number of {item}",
        )
        world.total(everyone, people, IMPLICIT)
    if roots and depth >= 1 and rng.random() < 0.3:
        world.given(people[-1])  # inverse problem: reveal the end of the chain, ask the start
    else:
        for root in roots:
            world.given(root)
    for other in extra_givens:
        world.given(other)
    return world


def shopping(rng: random.Random, depth: int) -> Builder | None:
    """Unit prices, quantities, costs, totals and change from a bill."""
    (one_a, many_a), (one_b, many_b) = rng.sample(GOODS, 2)
    buyer = rng.choice(NAMES)
    world = Builder()
    cents = depth >= 3 and rng.random() < 0.3
    price_a_value = Fraction(rng.randint(2, 10)) + (Fraction(1, 2) if cents else 0)
    price_a = world.quantity(
        price_a_value,
        f"How much does one {one_a} cost?",
        f"A {one_a} costs {{v}}",
        f"the price of a {one_a}",
        money=True,
    )
    world.given(price_a)
    if rng.random() < 0.5:
        c = rng.randint(1, 5)
        price_b = world.quantity(
            price_a_value + c,
            f"How much does one {one_b} cost?",
            f"A {one_b} costs {{v}}",
            f"the price of a {one_b}",
            money=True,
        )
        world.add(
            price_b, price_a, c, f"A {one_b} costs {format_money(Fraction(c))} more than a {one_a}."
        )
    else:
        k = rng.choice((2, 3))
        price_b = world.quantity(
            price_a_value * k,
            f"How much does one {one_b} cost?",
            f"A {one_b} costs {{v}}",
            f"the price of a {one_b}",
            money=True,
        )
        world.scale(
            price_b, price_a, k, f"A {one_b} costs {MULTIPLIER_WORDS[k]} as much as a {one_a}."
        )
    count_a = world.quantity(
        rng.randint(2, 6),
        f"How many {many_a} does {buyer} buy?",
        f"{buyer} buys {{v}} {many_a}",
        f"the number of {many_a}",
    )
    count_b = world.quantity(
        rng.randint(2, 6),
        f"How many {many_b} does {buyer} buy?",
        f"{buyer} buys {{v}} {many_b}",
        f"the number of {many_b}",
    )
    cost_a = world.quantity(
        world.value(count_a) * price_a_value,
        f"How much does {buyer} spend on {many_a}?",
        f"{buyer} spends {{v}} on {many_a}",
        f"the cost of the {many_a}",
        money=True,
    )
    cost_b = world.quantity(
        world.value(count_b) * world.value(price_b),
        f"How much does {buyer} spend on {many_b}?",
        f"{buyer} spends {{v}} on {many_b}",
        f"the cost of the {many_b}",
        money=True,
    )
    world.product(cost_a, count_a, price_a, IMPLICIT)
    world.product(cost_b, count_b, price_b, IMPLICIT)
    world.given(count_a)
    if rng.random() < 0.3:
        world.given(cost_b)  # inverse: from the spend, find how many were bought
    else:
        world.given(count_b)
    spent = world.value(cost_a) + world.value(cost_b)
    total = world.quantity(
        spent,
        f"How much does {buyer} spend in total?",
        f"{buyer} spends {{v}} in total",
        "the total cost",
        money=True,
    )
    world.total(total, [cost_a, cost_b], IMPLICIT)
    if depth >= 4:
        bill = next(b for b in (10, 20, 50, 100, 200, 500) if b > spent)
        paid = world.quantity(
            bill,
            f"How much does {buyer} pay with?",
            f"{buyer} pays with a {{v}} bill",
            "the bill",
            money=True,
        )
        world.given(paid)
        change = world.quantity(
            bill - spent,
            f"How much change does {buyer} get?",
            f"{buyer} gets {{v}} in change",
            "the change",
            money=True,
        )
        world.difference(change, paid, total, IMPLICIT)
    return world


def rates(rng: random.Random, depth: int) -> Builder | None:
    """rate x time = amount, for travel (km) or work (items), over one or two legs."""
    who = rng.choice(NAMES)
    travel = rng.random() < 0.5
    unit, rate_unit = ("km", "km per hour") if travel else ("boxes", "boxes per hour")
    verb = "drives" if travel else "packs"
    world = Builder()

    def leg(index: int, rate: int, hours: int) -> tuple[str, str, str]:
        when = ("first", "second")[index]
        r = world.quantity(
            rate,
            f"What is {who}'s rate in the {when} part?",
            f"In the {when} part, {who} {verb} at {{v}} {rate_unit}",
            f"the {when} rate",
        )
        t = world.quantity(
            hours,
            f"How many hours does the {when} part take?",
            f"The {when} part takes {{v}} hours",
            f"the {when} time",
        )
        amount = world.quantity(
            rate * hours,
            f"How many {unit} does {who} cover in the {when} part?"
            if travel
            else f"How many boxes does {who} pack in the {when} part?",
            f"In the {when} part, {who} {verb} {{v}} {unit}",
            f"the {when} amount",
        )
        world.product(amount, r, t, IMPLICIT)
        return r, t, amount

    rate_1 = rng.randint(2, 12) * (5 if travel else 1)
    r1, t1, a1 = leg(0, rate_1, rng.randint(2, 5))
    world.given(r1)
    if rng.random() < 0.3:
        world.given(a1)  # inverse: time = amount / rate
    else:
        world.given(t1)
    if depth >= 2:
        change = rng.choice((-1, 1)) * rng.randint(1, 3) * (5 if travel else 1)
        if rate_1 + change <= 0:
            change = -change
        r2, t2, a2 = leg(1, rate_1 + change, rng.randint(2, 4))
        faster = "faster" if change > 0 else "slower"
        world.add(
            r2,
            r1,
            change,
            f"In the second part, {who} is {abs(change)} {rate_unit} {faster} than in the first part.",
        )
        world.given(t2)
        amount_total = world.value(a1) + world.value(a2)
        overall = world.quantity(
            amount_total,
            f"How many {unit} does {who} {'drive' if travel else 'pack'} in total?",
            f"In total, {who} {verb} {{v}} {unit}",
            f"the total {unit}",
        )
        world.total(overall, [a1, a2], IMPLICIT)
        hours_total = world.value(t1) + world.value(t2)
        if depth >= 4 and (world.value(a1) + world.value(a2)) % hours_total == 0:
            hours = world.quantity(
                hours_total,
                f"How many hours does {who} spend in total?",
                f"{who} spends {{v}} hours in total",
                "the total time",
            )
            world.total(hours, [t1, t2], IMPLICIT)
            average = world.quantity(
                (world.value(a1) + world.value(a2)) / hours_total,
                f"What is {who}'s average rate in {rate_unit} over both parts?",
                f"{who}'s average rate is {{v}} {rate_unit}",
                "the average rate",
            )
            world.quotient(average, overall, hours, IMPLICIT)
    return world


def _buy_copies(rng: random.Random, world: Builder, sale: str, thing: str, depth: int) -> None:
    """Copies bought at the sale price (one step deeper), then change from a bill (two)."""
    buyer, copies = rng.choice(NAMES), rng.randint(2, 4)
    spent = world.quantity(
        world.value(sale) * copies,
        f"How much does {buyer} pay?",
        f"{buyer} pays {{v}}",
        "the amount paid",
        money=True,
    )
    world.scale(spent, sale, copies, f"{buyer} buys {copies} of the {thing}s at the sale price.")
    if depth >= 4:
        bill_value = next(b for b in (20, 50, 100, 200, 500, 1000) if b > world.value(spent))
        bill = world.quantity(
            bill_value,
            "How big is the bill?",
            f"{buyer} hands over a {{v}} bill",
            "the bill",
            money=True,
        )
        change = world.quantity(
            bill_value - world.value(spent),
            f"How much change does {buyer} get?",
            f"{buyer} gets {{v}} in change",
            "the change",
            money=True,
        )
        world.given(bill)
        world.difference(change, bill, spent, IMPLICIT)


def percentages(rng: random.Random, depth: int) -> Builder | None:
    """Discounts on a price (forward, or inverse through a 2x2 step), or a percent of a group."""
    world = Builder()
    p = rng.choice((10, 20, 25, 50, 75) if depth <= 2 else (5, 10, 15, 20, 25, 30, 40, 60, 75))
    step = 100 // math.gcd(p, 100)  # smallest whole that p% of is a whole number
    if depth >= 3 or rng.random() < 0.5:
        thing = rng.choice(("jacket", "bike", "lamp", "backpack", "phone case"))
        base_value = step * rng.randint(1, max(1, 200 // step))
        price = world.quantity(
            base_value,
            f"What was the original price of the {thing}?",
            f"The {thing} originally costs {{v}}",
            "the original price",
            money=True,
        )
        discount = world.quantity(
            Fraction(base_value * p, 100),
            "How much is the discount?",
            "The discount is {v}",
            "the discount",
            money=True,
        )
        sale = world.quantity(
            world.value(price) - world.value(discount),
            f"What is the sale price of the {thing}?",
            f"The {thing} costs {{v}} after the discount",
            "the sale price",
            money=True,
        )
        world.percent(discount, price, p, f"The {thing} is on sale at {p}% off.")
        world.difference(sale, price, discount, IMPLICIT)
        world.given(sale if rng.random() < 0.3 else price)
        if depth >= 3:
            _buy_copies(rng, world, sale, thing, depth)
        return world
    group, part, rest = rng.choice(
        (
            ("students", "play chess", "do not play chess"),
            ("trees", "are oaks", "are not oaks"),
            ("guests", "are children", "are adults"),
        )
    )
    size = world.quantity(
        step * rng.randint(1, max(1, 300 // step)),
        f"How many {group} are there?",
        f"There are {{v}} {group}",
        f"the number of {group}",
    )
    count = world.quantity(
        world.value(size) * p / 100,
        f"How many {group} {part}?",
        f"{{v}} {group} {part}",
        f"the {group} that {part}",
    )
    others = world.quantity(
        world.value(size) - world.value(count),
        f"How many {group} {rest}?",
        f"{{v}} {group} {rest}",
        f"the other {group}",
    )
    world.percent(count, size, p, f"{p}% of the {group} {part}.")
    world.difference(others, size, count, IMPLICIT)
    world.given(size)
    return world


def ratios(rng: random.Random, depth: int) -> Builder | None:
    """a : b = p : q with one part or the total given."""
    world = Builder()
    first, second, whole = rng.choice(
        (
            ("boys", "girls", "children"),
            ("red beads", "blue beads", "beads"),
            ("cats", "dogs", "pets"),
        )
    )
    p, q = rng.choice(
        [(p, q) for p in range(1, 8) for q in range(1, 8) if p != q and math.gcd(p, q) == 1]
    )
    unit = rng.randint(2, 6 if depth <= 2 else 15)
    a = world.quantity(
        p * unit,
        f"How many {first} are there?",
        f"There are {{v}} {first}",
        f"the number of {first}",
    )
    b = world.quantity(
        q * unit,
        f"How many {second} are there?",
        f"There are {{v}} {second}",
        f"the number of {second}",
    )
    total = world.quantity(
        (p + q) * unit,
        f"How many {whole} are there in total?",
        f"There are {{v}} {whole} in total",
        f"the number of {whole}",
    )
    world.ratio(a, b, p, q, f"The ratio of {first} to {second} is {p}:{q}.")
    world.total(total, [a, b], IMPLICIT)
    world.given(total if rng.random() < 0.4 else a)
    if depth >= 2 and first.endswith(("boys", "cats")) or depth >= 3:
        things = "pencils" if first == "boys" else ("treats" if first == "cats" else "tags")
        verb = "brings" if first == "boys" else "gets"
        counts = []
        for group in (first, second):
            k = rng.randint(2, 5)
            key = world.quantity(
                k * world.value(a if group == first else b),
                f"How many {things} do the {group} {verb[:-1]} altogether?",
                f"The {group} {verb[:-1]} {{v}} {things} altogether",
                f"the {things} for the {group}",
            )
            world.scale(
                key, a if group == first else b, k, f"Each of the {group} {verb} {k} {things}."
            )
            counts.append(key)
        overall = world.quantity(
            sum(world.value(c) for c in counts),
            f"How many {things} are there in total?",
            f"There are {{v}} {things} in total",
            f"all the {things}",
        )
        world.total(overall, counts, IMPLICIT)
    return world


# ------------------------------------------------------------------------------------------------
# Algebra
# ------------------------------------------------------------------------------------------------

SYMBOLS = ("x", "y", "z", "w", "u", "v", "s", "t", "r")


def _symbol(world: Builder, name: str, value: Fraction | int) -> str:
    return world.quantity(
        value, f"What is the value of {name}?", f"{name} = {{v}}", name, name=name
    )


def _linear_text(coefficients: list[int], names: list[str], constant: int, rhs: int) -> str:
    parts: list[str] = []
    for k, name in zip(coefficients, names):
        term = name if abs(k) == 1 else f"{abs(k)}{name}"
        parts.append(
            ("-" if k < 0 else "") + term if not parts else (" - " if k < 0 else " + ") + term
        )
    text = "".join(parts)
    if constant:
        text += f" + {constant}" if constant > 0 else f" - {-constant}"
    return f"{text} = {rhs}"


def _affine_chain(rng: random.Random, world: Builder, start: str, steps: int) -> None:
    """y = k*x + m, z = k'*y + m', ... each step one deeper."""
    previous = start
    for name in SYMBOLS[len(world.quantities) : len(world.quantities) + steps]:
        k, m = rng.choice((2, 3, -2, 4)), rng.randint(-9, 9)
        value = k * world.value(previous) + m
        key = _symbol(world, name, value)
        shift = f" + {m}" if m > 0 else (f" - {-m}" if m < 0 else "")
        world.affine(key, previous, k, m, f"{name} = {k}{previous}{shift}.")
        previous = key


def linear_equation(rng: random.Random, depth: int) -> Builder | None:
    world = Builder()
    x_value = rng.randint(-9, 12) if depth >= 3 else rng.randint(1, 10)
    x = _symbol(world, "x", x_value)
    k, b = rng.choice((2, 3, 4, 5, 6)), rng.randint(-15, 20)
    rhs = k * x_value + b
    world.equation([x], [k], b, rhs, f"{_linear_text([k], ['x'], b, rhs)}.")
    _affine_chain(rng, world, x, depth - 1)
    return world


def linear_system(rng: random.Random, depth: int) -> Builder | None:
    world = Builder()
    xv, yv = rng.randint(-5, 10), rng.randint(-5, 10)
    x, y = _symbol(world, "x", xv), _symbol(world, "y", yv)
    a1, b1, a2, b2 = (rng.choice((1, 1, 2, 3, -1, -2)) for _ in range(4))
    if a1 * b2 - a2 * b1 == 0:
        return None
    for a, b in ((a1, b1), (a2, b2)):
        rhs = a * xv + b * yv
        world.equation([x, y], [a, b], 0, rhs, f"{_linear_text([a, b], ['x', 'y'], 0, rhs)}.")
    if depth >= 2:
        _affine_chain(rng, world, rng.choice((x, y)), depth - 1)
    return world


def quadratic(rng: random.Random, depth: int) -> Builder | None:
    """x^2 + b x + c = 0 with exactly one positive integer root, then an affine chain."""
    world = Builder()
    root, other = rng.randint(1, 9), -rng.randint(1, 9)
    b, c = -(root + other), root * other
    x = _symbol(world, "x", root)
    world.quadratic(
        x,
        1,
        b,
        c,
        f"x is positive and {polynomial_text((Fraction(1), Fraction(b), Fraction(c)), 'x')} = 0.",
    )
    _affine_chain(rng, world, x, depth - 1)
    return world


FAMILIES: dict[str, Family] = {
    "comparison": comparison,
    "shopping": shopping,
    "rates": rates,
    "percent": percentages,
    "ratio": ratios,
    "linear": linear_equation,
    "system": linear_system,
    "quadratic": quadratic,
}
# The deepest proof each family's worlds can reach; the generator only asks a family for depths
# it can reach, so deep requests do not waste draws (or skew the mix) on shallow families.
FAMILY_MAX_DEPTH: dict[str, int] = {
    "comparison": 8,
    "shopping": 4,
    "rates": 4,
    "percent": 4,
    "ratio": 3,
    "linear": 8,
    "system": 8,
    "quadratic": 8,
}
WORD_FAMILIES = ("comparison", "shopping", "rates", "percent", "ratio")
ALGEBRA_FAMILIES = ("linear", "system", "quadratic")

__all__ = ["ALGEBRA_FAMILIES", "FAMILIES", "WORD_FAMILIES", "Family", "format_number"]
