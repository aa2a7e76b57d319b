"""Item 9 of issue 14: the location an IKP item was addressed to, found by its department code.

The duty-doctor search starts there (DOMAIN.md 2 routing, KS-SOMED "Konfiguracja lekarzy dyżurnych"),
not at the poller's location.
"""

from __future__ import annotations

import uuid

from services.integration.domain import addressed_location

POLLER = uuid.UUID("00000000-0000-0000-0000-00000000000a")
NORTH = uuid.UUID("00000000-0000-0000-0000-00000000000b")
SOUTH = uuid.UUID("00000000-0000-0000-0000-00000000000c")
LOCATIONS = [(POLLER, "0010"), (NORTH, "0020"), (SOUTH, None)]


def test_an_item_addressed_to_another_department_goes_to_that_location() -> None:
    assert addressed_location("0020", LOCATIONS, POLLER) == NORTH


def test_an_item_addressed_to_the_pollers_department_stays_there() -> None:
    assert addressed_location("0010", LOCATIONS, POLLER) == POLLER


def test_without_a_code_or_with_a_code_no_location_has_the_pollers_location_is_used() -> None:
    assert addressed_location(None, LOCATIONS, POLLER) == POLLER
    assert addressed_location("0030", LOCATIONS, POLLER) == POLLER
    assert addressed_location("0020", [], POLLER) == POLLER


def test_a_code_shared_by_several_locations_picks_the_pollers_else_the_lowest_id_whatever_the_order() -> None:
    shared = [(SOUTH, "0020"), (NORTH, "0020"), (POLLER, "0010")]
    assert addressed_location("0020", shared, POLLER) == NORTH
    assert addressed_location("0020", list(reversed(shared)), POLLER) == NORTH
    assert addressed_location("0010", [(NORTH, "0010"), (POLLER, "0010")], POLLER) == POLLER
