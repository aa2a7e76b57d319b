"""Psychoactive OTC sale rules as plain functions: substances, the dated limit table, the sale check.

Sources: the regulation on psychoactive substances (Dz.U. 2016 poz. 2189, in force 2017-01-01),
art. 8 of the act of 24 April 2015, and the KS-AOW manual ("SUBSTANCJE PSYCHOAKTYWNE", option
APW11.2.116). Every comparison is exact (milligrams as ``Decimal``, ratios as ``Fraction``); the
5-place multiplier is for display and storage only, never for a decision.
"""

from __future__ import annotations

import bisect
import datetime as dt
import difflib
import enum
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from services.pharmacy import messages
from services.pharmacy.messages import Reason

# Art. 8 ust. 1: a product marketed before this day whose package exceeds the limit may still be
# sold, one package per sale.
LIMITS_START = dt.date(2017, 1, 1)
# Art. 8 ust. 2: until 31.12.2016 "nie więcej niż jedno opakowanie danego produktu leczniczego
# zawierającego w składzie pseudoefedrynę, dekstrometorfan lub kodeinę" (OTC) per sale.
PRE_2017_SUBSTANCES = frozenset({"pseudoephedrine", "dextromethorphan", "codeine"})
ADULT_AGE = 18  # art. 8 ust. 3: refused to a buyer who "nie ukończył 18. roku życia"
MULTIPLIER_PLACES = 5  # KS-AOW shows 0.16667


class Policy(enum.StrEnum):
    """Pharmacy option APW11.2.116 "Blokuj sprzedaż towarów przekraczających maksymalną ilość ..."."""

    ask = "ask"  # "Z PYTANIEM" (default): warn, the pharmacist answers yes or no
    block = "block"  # "TAK": refuse a sale over the limit
    off = "off"  # "NIE": no limit check
    warn_from_card = "warn_from_card"  # "OSTRZEGAJ NA PODSTAWIE KARTY TOWARU"


DEFAULT_POLICY = Policy.ask


class Decision(enum.StrEnum):
    allow = "allow"
    warn = "warn"
    block = "block"


# ----------------------------------------------------------------------------- substances

# Names a product file or a pharmacist may use, mapped to one key. Salts count under their base
# substance with the amount as declared, as KS-AOW does (Advil Zatoki: 30 mg pseudoephedrine
# hydrochloride counted as 30 mg); leaving them unmapped would silently skip the limit.
_ALIASES: dict[str, tuple[str, ...]] = {
    "pseudoephedrine": (
        "pseudoephedrinum",
        "pseudoephedrinium",  # so spelt in the KS-AOW manual
        "pseudoefedryna",
        "pseudoephedrine hydrochloride",
        "pseudoephedrini hydrochloridum",
        "pseudoefedryny chlorowodorek",
        "pseudoephedrine sulfate",
        "pseudoephedrini sulfas",
        "pseudoefedryny siarczan",
    ),
    "codeine": (
        "codeinum",
        "kodeina",
        "codeine phosphate",
        "codeine phosphate hemihydrate",
        "codeini phosphas",
        "codeini phosphas hemihydricus",
        "kodeiny fosforan",
        "kodeiny fosforan półwodny",
    ),
    "dextromethorphan": (
        "dextromethorphanum",
        "dekstrometorfan",
        "dxm",  # the pharmacists' shorthand
        "dextromethorphan hydrobromide",
        "dextromethorphani hydrobromidum",
        "dextromethorphani hydrobromidum monohydricum",
        "dekstrometorfanu bromowodorek",
    ),
}
SUBSTANCE_ALIASES: dict[str, str] = {alias: key for key, names in _ALIASES.items() for alias in (key, *names)}


def canonical_substance(name: str) -> str:
    """One key per substance: case and spacing ignored, Latin, Polish and salt names mapped.

    A name that is not an alias is its own key, so a substance added to the rule table later
    works without a code change.
    """
    folded = _fold(name)
    return SUBSTANCE_ALIASES.get(folded, folded)


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


# First words of the known names: "pseudoephedrini", "codeini", ... (salts differ in the second word).
_BASE_WORDS: dict[str, str] = {alias.split()[0]: key for alias, key in SUBSTANCE_ALIASES.items()}
NEAR_MISS_CUTOFF = 0.85  # "ephedrinum" vs "pseudoephedrinum" is 0.77 (another substance), "codein" 0.92


def looks_like_limited(name: str, limited: frozenset[str] = frozenset()) -> str | None:
    """The limited substance an unknown name seems to mean (a typo, an unlisted salt), else None.

    Stored under its own key such a name would never be checked against the limit, so the caller
    refuses it and asks for the canonical name instead.
    """
    folded = _fold(name)
    if not folded or folded in SUBSTANCE_ALIASES or folded in limited:
        return None
    return _closest_limited(folded.split()[0], limited)


@functools.lru_cache(maxsize=4096)  # a product file repeats the same few substance names
def _closest_limited(first_word: str, limited: frozenset[str]) -> str | None:
    bases = _BASE_WORDS | {key.split()[0]: key for key in limited}
    match = difflib.get_close_matches(first_word, list(bases), n=1, cutoff=NEAR_MISS_CUTOFF)
    return bases[match[0]] if match else None


# ----------------------------------------------------------------------------- the dated rule table


@dataclass(frozen=True)
class LimitRule:
    """Maximum amount of a substance in one sale, from ``valid_from`` until a later rule."""

    substance: str
    max_mg: Decimal
    valid_from: dt.date


class LimitTable:
    """The limits as data: a change of law is a new row, never a code change."""

    def __init__(self, rules: Iterable[LimitRule]) -> None:
        by_substance: dict[str, list[LimitRule]] = {}
        for rule in rules:
            if rule.max_mg <= 0:
                raise ValueError(f"the limit of {rule.substance} must be positive")
            by_substance.setdefault(rule.substance, []).append(rule)
        self._rules = {s: sorted(r, key=lambda rule: rule.valid_from) for s, r in by_substance.items()}
        self._starts = {s: [r.valid_from for r in rules] for s, rules in self._rules.items()}

    def in_force(self, substance: str, on: dt.date) -> LimitRule | None:
        """The newest rule for ``substance`` that started on or before ``on``."""
        starts = self._starts.get(substance)
        if not starts:
            return None
        index = bisect.bisect_right(starts, on)
        return self._rules[substance][index - 1] if index else None

    @property
    def substances(self) -> frozenset[str]:
        return frozenset(self._rules)

    @property
    def starts_on(self) -> dt.date | None:
        """The first day any limit applies; the table says nothing about the law before it."""
        return min((rules[0].valid_from for rules in self._rules.values()), default=None)


# ----------------------------------------------------------------------------- multiplier


def multiplier(mg_per_package: Decimal, max_mg: Decimal) -> Fraction:
    """Mnożnik = amount per package / max per sale, exactly (Advil Zatoki: 120 / 720 = 1/6)."""
    return Fraction(mg_per_package) / Fraction(max_mg)


def rounded(value: Fraction, places: int = MULTIPLIER_PLACES) -> Decimal:
    """Half-up rounding for display, done on the exact fraction so nothing is rounded twice."""
    if value < 0:
        raise ValueError("a multiplier is never negative")
    scaled = math.floor(value * 10**places + Fraction(1, 2))
    return Decimal(scaled).scaleb(-places)


@dataclass(frozen=True)
class Content:
    """One row of a product's "SUBSTANCJE PSYCHOAKTYWNE" window; ``mg_per_package`` None: not filled in."""

    substance: str
    mg_per_package: Decimal | None


@dataclass(frozen=True)
class ContentFigures:
    """What the product card stores and shows for a substance on a given day."""

    substance: str
    mg_per_package: Decimal | None
    max_mg: Decimal | None  # "Maksymalna ilość"; None: not a limited substance on that day
    multiplier: Decimal | None  # rounded; None when either amount is missing


def content_figures(content: Content, limits: LimitTable, on: dt.date) -> ContentFigures:
    rule = limits.in_force(content.substance, on)
    if rule is None or content.mg_per_package is None:
        return ContentFigures(content.substance, content.mg_per_package, rule.max_mg if rule else None, None)
    return ContentFigures(
        content.substance,
        content.mg_per_package,
        rule.max_mg,
        rounded(multiplier(content.mg_per_package, rule.max_mg)),
    )


# ----------------------------------------------------------------------------- the sale check


@dataclass(frozen=True)
class ProductCard:
    id: str
    name: str
    marketed_on: dt.date
    contents: tuple[Content, ...]


@dataclass(frozen=True)
class SaleLine:
    product: ProductCard
    packages: int


@dataclass(frozen=True)
class SubstanceTotal:
    substance: str
    total_mg: Decimal
    max_mg: Decimal

    @property
    def ratio(self) -> Fraction:
        """The exact sum of multiplier × packages; over 1 means over the limit."""
        return multiplier(self.total_mg, self.max_mg)

    @property
    def total_multiplier(self) -> Decimal:
        return rounded(self.ratio)


@dataclass(frozen=True)
class SaleCheck:
    decision: Decision
    reasons: tuple[Reason, ...]
    substances: tuple[SubstanceTotal, ...]


def check_sale(
    lines: Sequence[SaleLine],
    *,
    buyer_age: int,
    policy: Policy,
    confirmed: bool,
    on: dt.date,
    limits: LimitTable,
) -> SaleCheck:
    """Decide one sale (one transaction) of OTC products on day ``on``.

    - A buyer under 18 is refused whenever the sale holds a limited substance, under every policy:
      that is the law (art. 8 ust. 3), not the pharmacy's option.
    - ``ask``: limit violations and unchecked substances warn; ``confirmed`` is the pharmacist's "yes"
      and turns the warning into ``allow`` (the reasons stay, plus ``confirmed_by_pharmacist``).
    - ``block``: limit violations block, nothing overrides them; unchecked substances only warn.
    - ``off``: no limit check at all.
    - ``warn_from_card``: no limit check; only a product whose substance amount is not filled in warns.
    A warning without a violation (the pharmacist acknowledges it) is also turned into ``allow`` by
    ``confirmed``.
    """
    sale = merge_lines(lines)
    if on < LIMITS_START:
        return _check_sale_before_2017(sale, buyer_age=buyer_age, policy=policy, confirmed=confirmed)
    totals = substance_totals(sale, limits, on)
    blocking: list[Reason] = []
    warnings: list[Reason] = []
    limited = limited_substances(sale, limits, on)
    if limited and buyer_age < ADULT_AGE:
        blocking.append(messages.under_18(limited))
    if policy in (Policy.ask, Policy.block):
        violations = limit_violations(sale, totals, limits, on)
        (blocking if policy == Policy.block else warnings).extend(violations)
    if policy != Policy.off:
        warnings.extend(unchecked_contents(sale, limits, on))
    return SaleCheck(*_decide(blocking, warnings, confirmed), substances=tuple(totals.values()))


def _check_sale_before_2017(sale: Sequence[SaleLine], *, buyer_age: int, policy: Policy, confirmed: bool) -> SaleCheck:
    """A sale dated before 2017-01-01 (a correction, a report over old data): art. 8 ust. 2 and 3.

    One package of each product containing pseudoephedrine, dextromethorphan or codeine per sale,
    whatever the amount (so a card without amounts is judged too); refused under 18. The policy
    applies as after 2017: ``ask`` warns, ``block`` blocks, ``off`` and ``warn_from_card`` (which
    only warns about missing amounts, and amounts did not matter then) check nothing.
    """
    blocking: list[Reason] = []
    warnings: list[Reason] = []
    concerned = [line for line in sale if pre_2017_substances(line.product)]
    if concerned and buyer_age < ADULT_AGE:
        blocking.append(messages.under_18(sorted({s for line in concerned for s in pre_2017_substances(line.product)})))
    if policy in (Policy.ask, Policy.block):
        over = [
            messages.pre_2017_sale_one_package(
                line.product.id, line.product.name, pre_2017_substances(line.product), line.packages
            )
            for line in concerned
            if line.packages > 1
        ]
        (blocking if policy == Policy.block else warnings).extend(over)
    return SaleCheck(*_decide(blocking, warnings, confirmed), substances=())


def pre_2017_substances(product: ProductCard) -> list[str]:
    """The substances of art. 8 ust. 2 the product contains, amount known or not."""
    return sorted({c.substance for c in product.contents if c.substance in PRE_2017_SUBSTANCES})


def _decide(blocking: list[Reason], warnings: list[Reason], confirmed: bool) -> tuple[Decision, tuple[Reason, ...]]:
    if blocking:
        return Decision.block, (*blocking, *warnings)
    if warnings and confirmed:
        return Decision.allow, (*warnings, messages.confirmed_by_pharmacist())
    if warnings:
        return Decision.warn, tuple(warnings)
    return Decision.allow, ()


def merge_lines(lines: Sequence[SaleLine]) -> list[SaleLine]:
    """One line per product: splitting a product over two lines must not dodge the one-package rule."""
    merged: dict[str, SaleLine] = {}
    for line in lines:
        if line.packages < 1:
            raise ValueError("a sale line has at least one package")
        earlier = merged.get(line.product.id)
        merged[line.product.id] = SaleLine(line.product, line.packages + (earlier.packages if earlier else 0))
    return list(merged.values())


def limited_substances(sale: Sequence[SaleLine], limits: LimitTable, on: dt.date) -> list[str]:
    """The limited substances in the sale, amount known or not (it is the substance that counts)."""
    found = {c.substance for line in sale for c in line.product.contents if limits.in_force(c.substance, on)}
    return sorted(found)


def substance_totals(sale: Sequence[SaleLine], limits: LimitTable, on: dt.date) -> dict[str, SubstanceTotal]:
    """Per limited substance with a known amount: milligrams in the whole sale and the maximum."""
    sums: dict[str, tuple[Decimal, Decimal]] = {}
    for line in sale:
        for content in line.product.contents:
            rule = limits.in_force(content.substance, on)
            if rule is None or content.mg_per_package is None:
                continue
            so_far, _ = sums.get(content.substance, (Decimal(0), rule.max_mg))
            sums[content.substance] = (so_far + content.mg_per_package * line.packages, rule.max_mg)
    return {substance: SubstanceTotal(substance, *sums[substance]) for substance in sorted(sums)}


def over_limit_per_package(product: ProductCard, limits: LimitTable, on: dt.date) -> list[tuple[Content, LimitRule]]:
    """The substances of which ONE package already holds more than a sale may."""
    found = []
    for content in product.contents:
        rule = limits.in_force(content.substance, on)
        if rule is not None and content.mg_per_package is not None and content.mg_per_package > rule.max_mg:
            found.append((content, rule))
    return found


def limit_violations(
    sale: Sequence[SaleLine], totals: dict[str, SubstanceTotal], limits: LimitTable, on: dt.date
) -> list[Reason]:
    reasons = [
        messages.pre_2017_one_package(
            line.product.id, line.product.name, content.substance, content.mg_per_package, rule.max_mg, line.packages
        )
        for line in sale
        if line.packages > 1 and line.product.marketed_on < LIMITS_START
        for content, rule in over_limit_per_package(line.product, limits, on)
        if content.mg_per_package is not None
    ]
    for total in totals.values():
        if total.ratio > 1 and not _only_from_one_grandfathered_product(sale, total.substance, limits, on):
            reasons.append(
                messages.limit_exceeded(total.substance, total.total_mg, total.max_mg, total.total_multiplier)
            )
    return reasons


def _only_from_one_grandfathered_product(
    sale: Sequence[SaleLine], substance: str, limits: LimitTable, on: dt.date
) -> bool:
    """The pre-2017 exception covers that product alone; anything else with the substance counts on top.

    Its own package count is judged by the one-package rule (a reason of its own), so such a sale is
    not reported a second time as over the limit.
    """
    sources = [
        line
        for line in sale
        if any(c.substance == substance and c.mg_per_package is not None for c in line.product.contents)
    ]
    if len(sources) != 1 or sources[0].product.marketed_on >= LIMITS_START:
        return False
    return any(content.substance == substance for content, _ in over_limit_per_package(sources[0].product, limits, on))


def unchecked_contents(sale: Sequence[SaleLine], limits: LimitTable, on: dt.date) -> list[Reason]:
    """Limited substances whose amount per package is not on the card: nobody can check their limit."""
    return [
        messages.substance_data_missing(line.product.id, line.product.name, content.substance)
        for line in sale
        for content in line.product.contents
        if content.mg_per_package is None and limits.in_force(content.substance, on)
    ]
