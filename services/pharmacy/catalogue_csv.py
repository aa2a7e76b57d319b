"""The bulk product file (a BLOZ-like export): read it line by line, group the lines into products.

Format: a header ``name,marketed_on,substance,mg_per_package`` (any order), then one line per
substance of a product; the lines with the same name and marketed_on are one product. A semicolon
instead of the comma (a Polish spreadsheet's export) and a decimal comma in the amount are accepted.
An empty amount means "not filled in" (the product still counts as containing the substance).

A product is imported whole or not at all: a product missing one of its substances would hide part
of its psychoactive content from the sale check. So one bad line rejects every line of the same
product name, each reported with its line number (the header is line 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from services.pharmacy.domain import Content, canonical_substance, looks_like_limited

HEADER = ("name", "marketed_on", "substance", "mg_per_package")
MAX_NAME = 200
MAX_SUBSTANCE = 100
MAX_SUBSTANCES_PER_PRODUCT = 20
MAX_MG = Decimal(1_000_000)
MG_PLACES = 3
EARLIEST_MARKETED_ON = dt.date(1900, 1, 1)
LATEST_MARKETED_ON = dt.date(2100, 12, 31)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class CsvFileError(ValueError):
    """The file as a whole cannot be read (no header, wrong header): nothing is imported."""


@dataclass(frozen=True)
class CsvLine:
    line: int
    name: str
    marketed_on: dt.date
    substance: str  # canonical key
    mg_per_package: Decimal | None


@dataclass(frozen=True)
class Rejected:
    line: int
    error: str


@dataclass(frozen=True)
class ProductDraft:
    name: str
    marketed_on: dt.date
    lines: tuple[CsvLine, ...]

    @property
    def key(self) -> tuple[str, dt.date]:
        return self.name, self.marketed_on

    @property
    def contents(self) -> tuple[Content, ...]:
        return tuple(Content(line.substance, line.mg_per_package) for line in self.lines)


@dataclass
class ParsedCatalogue:
    products: list[ProductDraft] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def imported_lines(self) -> int:
        return sum(len(p.lines) for p in self.products)

    def reject_products(self, keys: Iterable[tuple[str, dt.date]], error: str) -> None:
        """Move whole products (e.g. already in the catalogue) from imported to rejected."""
        refused = set(keys)
        kept = []
        for product in self.products:
            if product.key in refused:
                self.rejected.extend(Rejected(line.line, error) for line in product.lines)
            else:
                kept.append(product)
        self.products = kept
        self.rejected.sort(key=lambda r: r.line)


def parse_catalogue(text: str, limited: frozenset[str] = frozenset()) -> ParsedCatalogue:
    """``limited``: the substances of the rule table, to catch a misspelt one (see looks_like_limited)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=False)
    columns = _columns(reader)
    good: list[CsvLine] = []
    bad: list[tuple[int, str | None, str]] = []  # line, product name if known, error
    start = reader.line_num + 1
    for row in reader:
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue  # blank lines and spreadsheet filler (",,,") are not data
        parsed = _parse_row(line, row, columns, limited)
        if isinstance(parsed, CsvLine):
            good.append(parsed)
        else:
            bad.append((line, *parsed))
    return _group(good, bad)


def _delimiter(text: str) -> str:
    header = text.split("\n", 1)[0]
    return ";" if ";" in header and "," not in header else ","


def _columns(reader: Iterable[list[str]]) -> dict[str, int]:
    expected = ",".join(HEADER)
    for row in reader:
        names = [cell.strip().casefold() for cell in row]
        if not any(names):
            continue
        if sorted(names) != sorted(HEADER):
            raise CsvFileError(f"the first line must be the header {expected}, found {','.join(row)[:200]!r}")
        return {name: names.index(name) for name in HEADER}
    raise CsvFileError(f"the file is empty; it needs the header {expected} and one line per substance")


def _parse_row(
    line: int, row: list[str], columns: dict[str, int], limited: frozenset[str]
) -> CsvLine | tuple[str | None, str]:
    if len(row) != len(HEADER):
        return None, f"expected {len(HEADER)} fields ({','.join(HEADER)}), found {len(row)}"
    cells = {name: row[index].strip() for name, index in columns.items()}
    errors: list[str] = []
    name = _name(cells["name"], errors)
    marketed_on = _marketed_on(cells["marketed_on"], errors)
    substance = _substance(cells["substance"], errors, limited)
    mg = _mg(cells["mg_per_package"], errors)
    if errors or name is None or marketed_on is None or substance is None:
        return name, "; ".join(errors)
    return CsvLine(line, name, marketed_on, substance, mg)


def _name(value: str, errors: list[str]) -> str | None:
    if not value:
        errors.append("name: is empty")
        return None
    if len(value) > MAX_NAME:
        errors.append(f"name: longer than {MAX_NAME} characters")
        return None
    return value


def _marketed_on(value: str, errors: list[str]) -> dt.date | None:
    try:
        if not _ISO_DATE.match(value):
            raise ValueError(value)
        day = dt.date.fromisoformat(value)
    except ValueError:
        errors.append(f"marketed_on: {value[:40]!r} is not a date YYYY-MM-DD")
        return None
    if not EARLIEST_MARKETED_ON <= day <= LATEST_MARKETED_ON:
        errors.append(f"marketed_on: must be between {EARLIEST_MARKETED_ON} and {LATEST_MARKETED_ON}")
        return None
    return day


def _substance(value: str, errors: list[str], limited: frozenset[str]) -> str | None:
    if not value:
        errors.append("substance: is empty")
        return None
    if len(value) > MAX_SUBSTANCE:
        errors.append(f"substance: longer than {MAX_SUBSTANCE} characters")
        return None
    meant = looks_like_limited(value, limited)
    if meant is not None:
        errors.append(f"substance: {value[:40]!r} looks like {meant}; write {meant} so that its limit is checked")
        return None
    return canonical_substance(value)


def _mg(value: str, errors: list[str]) -> Decimal | None:
    if not value:
        return None  # not filled in: allowed, the sale check will say it cannot check this substance
    text = value.replace(",", ".") if value.count(",") == 1 and "." not in value else value
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        errors.append(f"mg_per_package: {value[:40]!r} is not a number")
    elif amount <= 0 or amount > MAX_MG:
        errors.append(f"mg_per_package: must be more than 0 and at most {MAX_MG}")
    elif amount != amount.quantize(Decimal(1).scaleb(-MG_PLACES)):
        errors.append(f"mg_per_package: at most {MG_PLACES} decimal places")
    else:
        return amount
    return None


def _group(good: list[CsvLine], bad: list[tuple[int, str | None, str]]) -> ParsedCatalogue:
    products: dict[tuple[str, dt.date], list[CsvLine]] = {}
    for line in good:
        same_product = products.setdefault((line.name, line.marketed_on), [])
        earlier = next((e for e in same_product if e.substance == line.substance), None)
        if earlier is not None:
            bad.append((line.line, line.name, f"substance: {line.substance} is already given on line {earlier.line}"))
        elif len(same_product) >= MAX_SUBSTANCES_PER_PRODUCT:
            bad.append((line.line, line.name, f"a product has at most {MAX_SUBSTANCES_PER_PRODUCT} substances"))
        else:
            same_product.append(line)
    faulty: dict[str, list[int]] = {}
    for line_no, name, _ in bad:
        if name is not None:
            faulty.setdefault(name, []).append(line_no)
    result = ParsedCatalogue(rejected=[Rejected(line_no, error) for line_no, _, error in bad])
    for (name, marketed_on), lines in products.items():
        if name in faulty:
            where = ", ".join(str(n) for n in sorted(faulty[name]))
            result.rejected.extend(
                Rejected(line.line, f"not imported with its product {name!r}: line {where} of it is invalid")
                for line in lines
            )
        else:
            result.products.append(ProductDraft(name, marketed_on, tuple(lines)))
    result.rejected.sort(key=lambda r: r.line)
    return result
