"""What the sale check tells a pharmacist, in Polish and English, keyed by a stable message key.

Clients show ``pl`` or ``en`` as they are, or translate by ``key``; the sentences name the product,
the substance and the amounts so that the pharmacist need not look anything up.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

# Substances of the regulation (Dz.U. 2016 poz. 2189) as a pharmacist names them. A substance added
# to the rule table later without an entry here is shown by its key in both languages.
SUBSTANCE_NAMES: Final[dict[str, tuple[str, str]]] = {
    "pseudoephedrine": ("pseudoefedryna", "pseudoephedrine"),
    "codeine": ("kodeina", "codeine"),
    "dextromethorphan": ("dekstrometorfan", "dextromethorphan"),
}


@dataclass(frozen=True)
class Reason:
    """One message of the sale check; ``substance`` and ``product_id`` let a client point at a line."""

    key: str
    pl: str
    en: str
    substance: str | None = None
    product_id: str | None = None


def substance_pl(key: str) -> str:
    return SUBSTANCE_NAMES.get(key, (key, key))[0]


def substance_en(key: str) -> str:
    return SUBSTANCE_NAMES.get(key, (key, key))[1]


def mg_pl(value: Decimal) -> str:
    """``7,5 mg``: Polish writes a decimal comma."""
    return f"{_plain(value).replace('.', ',')} mg"


def mg_en(value: Decimal) -> str:
    return f"{_plain(value)} mg"


def _plain(value: Decimal) -> str:
    # 120.000 from the database reads as 120, 7.500 as 7.5; never in exponent notation.
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _ratio_pl(value: Decimal) -> str:
    return f"{value:f}".replace(".", ",")


def under_18(substances: list[str]) -> Reason:
    pl_names = ", ".join(substance_pl(s) for s in substances)
    en_names = ", ".join(substance_en(s) for s in substances)
    return Reason(
        "under_18",
        f"Kupujący nie ukończył 18 lat: nie wolno mu wydać produktu z substancją psychoaktywną ({pl_names}).",
        f"The buyer is under 18: a product containing a psychoactive substance ({en_names}) must not be sold to them.",
        substance=substances[0],
    )


def limit_exceeded(substance: str, total_mg: Decimal, max_mg: Decimal, total_multiplier: Decimal) -> Reason:
    return Reason(
        "limit_exceeded",
        f"Przekroczona maksymalna ilość substancji psychoaktywnej w jednej sprzedaży: {substance_pl(substance)} "
        f"{mg_pl(total_mg)}, dozwolone {mg_pl(max_mg)} (suma mnożników {_ratio_pl(total_multiplier)} > 1).",
        f"The sale exceeds the maximum amount of a psychoactive substance per sale: {substance_en(substance)} "
        f"{mg_en(total_mg)}, allowed {mg_en(max_mg)} (total multiplier {total_multiplier:f} > 1).",
        substance=substance,
    )


def pre_2017_one_package(
    product_id: str, product: str, substance: str, mg_per_package: Decimal, max_mg: Decimal, packages: int
) -> Reason:
    return Reason(
        "pre_2017_one_package",
        f"„{product}” wprowadzono do obrotu przed 1 stycznia 2017 r. i jedno opakowanie przekracza limit "
        f"({substance_pl(substance)} {mg_pl(mg_per_package)}, limit {mg_pl(max_mg)}): w jednej sprzedaży "
        f"można wydać najwyżej 1 opakowanie, a w sprzedaży jest {packages}.",
        f"“{product}” was marketed before 1 January 2017 and one package exceeds the limit "
        f"({substance_en(substance)} {mg_en(mg_per_package)}, limit {mg_en(max_mg)}): at most 1 package may be "
        f"sold per sale, this sale has {packages}.",
        substance=substance,
        product_id=product_id,
    )


def substance_data_missing(product_id: str, product: str, substance: str) -> Reason:
    return Reason(
        "substance_data_missing",
        f"„{product}” zawiera substancję psychoaktywną ({substance_pl(substance)}), ale na karcie towaru nie "
        "uzupełniono jej ilości w opakowaniu: system nie sprawdzi limitu, oceń sprzedaż samodzielnie.",
        f"“{product}” contains a psychoactive substance ({substance_en(substance)}) but the product card has no "
        "amount per package filled in: the limit cannot be checked, judge the sale yourself.",
        substance=substance,
        product_id=product_id,
    )


def confirmed_by_pharmacist() -> Reason:
    return Reason(
        "confirmed_by_pharmacist",
        "Farmaceuta potwierdził wydanie mimo powyższych ostrzeżeń.",
        "The pharmacist confirmed the sale despite the warnings above.",
    )


def pre_2017_sale_one_package(product_id: str, product: str, substances: list[str], packages: int) -> Reason:
    pl_names = ", ".join(substance_pl(s) for s in substances)
    en_names = ", ".join(substance_en(s) for s in substances)
    return Reason(
        "pre_2017_sale_one_package",
        f"Do 31 grudnia 2016 r. w jednej sprzedaży można było wydać najwyżej jedno opakowanie „{product}” "
        f"(zawiera: {pl_names}), a w sprzedaży jest {packages}.",
        f"Until 31 December 2016 at most one package of “{product}” (contains: {en_names}) could be sold per "
        f"sale; this sale has {packages}.",
        substance=substances[0],
        product_id=product_id,
    )
