"""The pharmacy service's psychoactive OTC endpoints over HTTP (ASGI), as a pharmacy would use them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.api.test_scheduling_api import assert_problem
from tests.conftest import running_client

API = "/api/v1/pharmacy"
PHARMACY = "pharmacy-1"
OTHER_PHARMACY = "pharmacy-2"
SALE_DAY = "2025-03-01"
HEADER = "name,marketed_on,substance,mg_per_package\n"
Headers = dict[str, str]

ADVIL = {
    "name": "Advil Zatoki 4 tabl.",
    "marketed_on": "2017-03-01",
    "substances": [{"substance": "Pseudoephedrinum", "mg_per_package": 120}, {"substance": "Ibuprofen"}],
}
STRONG_2016 = {
    "name": "Sudafed Max",
    "marketed_on": "2016-06-01",
    "substances": [{"substance": "pseudoephedrine", "mg_per_package": "900"}],
}
UNFILLED = {"name": "Syrop z kodeiną", "marketed_on": "2019-01-01", "substances": [{"substance": "Codeinum"}]}


@pytest.fixture
async def pharmacy_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from services.pharmacy.app import create_app

    async for client in running_client(create_app(settings)):
        yield client


@dataclass
class Pharmacy:
    """One pharmacy's pharmacist talking to the pharmacy API."""

    client: httpx.AsyncClient
    auth: Callable[..., Headers]
    pharmacy_id: str = PHARMACY

    @property
    def pharmacist(self) -> Headers:
        return self.auth("pharmacist", pharmacy_id=self.pharmacy_id)

    async def product(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.client.post(f"{API}/products", json=body, headers=self.pharmacist)
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def import_csv(self, text: str | bytes, content_type: str = "text/csv") -> httpx.Response:
        headers = {**self.pharmacist, "content-type": content_type}
        content = text.encode() if isinstance(text, str) else text
        return await self.client.post(f"{API}/products/import", content=content, headers=headers)

    async def products(self, **params: Any) -> list[dict[str, Any]]:
        answer = await self.client.get(f"{API}/products", params=params, headers=self.pharmacist)
        assert answer.status_code == 200, answer.text
        result: list[dict[str, Any]] = answer.json()
        return result

    async def set_policy(self, policy: str) -> None:
        answer = await self.client.put(f"{API}/settings", json={"psychoactive_policy": policy}, headers=self.pharmacist)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"psychoactive_policy": policy}

    async def check(self, *lines: tuple[dict[str, Any], int], **body: Any) -> httpx.Response:
        payload = {
            "buyer_age": 30,
            "on_date": SALE_DAY,
            "lines": [{"product_id": product["id"], "packages": packages} for product, packages in lines],
            **body,
        }
        return await self.client.post(f"{API}/sales/check", json=payload, headers=self.pharmacist)

    async def checked(self, *lines: tuple[dict[str, Any], int], **body: Any) -> dict[str, Any]:
        answer = await self.check(*lines, **body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


@pytest.fixture
def pharmacy(pharmacy_client: httpx.AsyncClient, auth: Callable[..., Headers]) -> Pharmacy:
    return Pharmacy(pharmacy_client, auth)


@pytest.fixture
def other_pharmacy(pharmacy_client: httpx.AsyncClient, auth: Callable[..., Headers]) -> Pharmacy:
    return Pharmacy(pharmacy_client, auth, OTHER_PHARMACY)


def reason_keys(result: dict[str, Any]) -> list[str]:
    return [r["key"] for r in result["reasons"]]


# ----------------------------------------------------------------------------- products


async def test_a_product_is_entered_by_hand_with_its_multiplier(pharmacy: Pharmacy) -> None:
    created = await pharmacy.product(ADVIL)
    assert created["name"] == ADVIL["name"]
    assert created["marketed_on"] == "2017-03-01"
    assert created["substances"] == [
        {"substance": "pseudoephedrine", "mg_per_package": 120, "max_mg_per_sale": 720, "multiplier": 0.16667},
        {"substance": "ibuprofen", "mg_per_package": None, "max_mg_per_sale": None, "multiplier": None},
    ]
    uuid.UUID(created["id"])
    fetched = await pharmacy.client.get(f"{API}/products/{created['id']}", headers=pharmacy.pharmacist)
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_a_product_with_an_unfilled_amount_has_no_multiplier(pharmacy: Pharmacy) -> None:
    created = await pharmacy.product(UNFILLED)
    assert created["substances"] == [
        {"substance": "codeine", "mg_per_package": None, "max_mg_per_sale": 240, "multiplier": None}
    ]


async def test_products_are_listed_by_name_and_paged(pharmacy: Pharmacy) -> None:
    for body in (ADVIL, STRONG_2016, UNFILLED):
        await pharmacy.product(body)
    assert [p["name"] for p in await pharmacy.products()] == [ADVIL["name"], STRONG_2016["name"], UNFILLED["name"]]
    assert [p["name"] for p in await pharmacy.products(name="SUDAFED")] == ["Sudafed Max"]
    assert [p["name"] for p in await pharmacy.products(name="%")] == []  # a LIKE wildcard is a plain character
    assert [p["name"] for p in await pharmacy.products(limit=1, offset=1)] == ["Sudafed Max"]


async def test_the_same_product_twice_is_a_conflict(pharmacy: Pharmacy) -> None:
    await pharmacy.product(ADVIL)
    answer = await pharmacy.client.post(f"{API}/products", json=ADVIL, headers=pharmacy.pharmacist)
    assert_problem(answer, 409, "body.name")
    assert len(await pharmacy.products()) == 1


async def test_a_substance_given_twice_under_two_names_is_refused(pharmacy: Pharmacy) -> None:
    body = {**UNFILLED, "substances": [{"substance": "Codeinum"}, {"substance": "kodeina", "mg_per_package": 10}]}
    answer = await pharmacy.client.post(f"{API}/products", json=body, headers=pharmacy.pharmacist)
    assert_problem(answer, 422, "body.substances.1.substance")


async def test_a_misspelt_limited_substance_is_refused_rather_than_left_unchecked(pharmacy: Pharmacy) -> None:
    body = {**UNFILLED, "substances": [{"substance": "Paracetamol"}, {"substance": "pseudoefedrine"}]}
    answer = await pharmacy.client.post(f"{API}/products", json=body, headers=pharmacy.pharmacist)
    problem = assert_problem(answer, 422, "body.substances.1.substance")
    assert "pseudoephedrine" in problem["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "body.name"),
        ({"name": "x" * 201}, "body.name"),
        ({"name": None}, "body.name"),
        ({"marketed_on": "2017-02-30"}, "body.marketed_on"),
        ({"marketed_on": "01.03.2017"}, "body.marketed_on"),
        ({"marketed_on": "1899-12-31"}, "body.marketed_on"),
        ({"substances": []}, "body.substances"),
        ({"substances": [{"substance": f"s{i}"} for i in range(21)]}, "body.substances"),
        ({"substances": [{"substance": ""}]}, "body.substances.0.substance"),
        ({"substances": [{"substance": "s" * 101}]}, "body.substances.0.substance"),
        ({"substances": [{"substance": "codeine", "mg_per_package": 0}]}, "body.substances.0.mg_per_package"),
        ({"substances": [{"substance": "codeine", "mg_per_package": -1}]}, "body.substances.0.mg_per_package"),
        ({"substances": [{"substance": "codeine", "mg_per_package": 1.2345}]}, "body.substances.0.mg_per_package"),
        ({"substances": [{"substance": "codeine", "mg_per_package": 1e9}]}, "body.substances.0.mg_per_package"),
        ({"substances": [{"substance": "codeine", "mg_per_package": "abc"}]}, "body.substances.0.mg_per_package"),
        ({"substances": [{"substance": "codeine", "multiplier": 1}]}, "body.substances.0.multiplier"),
        ({"pharmacy_id": "pharmacy-2"}, "body.pharmacy_id"),
    ],
)
async def test_bad_product_input_names_the_field(pharmacy: Pharmacy, change: dict[str, Any], field: str) -> None:
    answer = await pharmacy.client.post(f"{API}/products", json={**ADVIL, **change}, headers=pharmacy.pharmacist)
    assert_problem(answer, 422, field)


async def test_a_card_is_rewritten_to_fill_in_a_missing_amount(pharmacy: Pharmacy) -> None:
    syrup = await pharmacy.product(UNFILLED)
    assert reason_keys(await pharmacy.checked((syrup, 1))) == ["substance_data_missing"]
    filled = {**UNFILLED, "substances": [{"substance": "Codeinum", "mg_per_package": 300}, {"substance": "Sorbitol"}]}
    answer = await pharmacy.client.put(f"{API}/products/{syrup['id']}", json=filled, headers=pharmacy.pharmacist)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == syrup["id"]
    assert [(s["substance"], s["multiplier"]) for s in answer.json()["substances"]] == [
        ("codeine", 1.25),
        ("sorbitol", None),
    ]
    result = await pharmacy.checked((syrup, 1))
    assert (result["decision"], reason_keys(result)) == ("warn", ["limit_exceeded"])
    assert (await pharmacy.products())[0]["substances"] == answer.json()["substances"]


async def test_a_card_cannot_be_rewritten_onto_another_or_in_another_pharmacy(
    pharmacy: Pharmacy, other_pharmacy: Pharmacy
) -> None:
    advil, syrup = await pharmacy.product(ADVIL), await pharmacy.product(UNFILLED)
    onto = await pharmacy.client.put(f"{API}/products/{syrup['id']}", json=ADVIL, headers=pharmacy.pharmacist)
    assert_problem(onto, 409, "body.name")
    elsewhere = await other_pharmacy.client.put(
        f"{API}/products/{advil['id']}", json=UNFILLED, headers=other_pharmacy.pharmacist
    )
    assert_problem(elsewhere, 404)
    bad = await pharmacy.client.put(
        f"{API}/products/{advil['id']}", json={**ADVIL, "marketed_on": "2017-13-01"}, headers=pharmacy.pharmacist
    )
    assert_problem(bad, 422, "body.marketed_on")
    assert {p["name"] for p in await pharmacy.products()} == {ADVIL["name"], UNFILLED["name"]}


async def test_an_unknown_product_is_not_found(pharmacy: Pharmacy) -> None:
    answer = await pharmacy.client.get(f"{API}/products/{uuid.uuid4()}", headers=pharmacy.pharmacist)
    assert_problem(answer, 404)
    answer = await pharmacy.client.get(f"{API}/products/not-a-uuid", headers=pharmacy.pharmacist)
    assert_problem(answer, 422, "path.product_id")


async def test_bad_list_queries_name_the_parameter(pharmacy: Pharmacy) -> None:
    for params, field in (
        ({"limit": 0}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"name": "x" * 201}, "query.name"),
    ):
        answer = await pharmacy.client.get(f"{API}/products", params=params, headers=pharmacy.pharmacist)
        assert_problem(answer, 422, field)


async def test_a_body_that_is_not_json_is_a_bad_request(pharmacy: Pharmacy) -> None:
    answer = await pharmacy.client.post(
        f"{API}/products", content=b"{not json", headers={**pharmacy.pharmacist, "content-type": "application/json"}
    )
    assert_problem(answer, 400)


async def test_a_retried_entry_with_the_same_idempotency_key_creates_one_product(pharmacy: Pharmacy) -> None:
    headers = {**pharmacy.pharmacist, "Idempotency-Key": "advil-1"}
    first = await pharmacy.client.post(f"{API}/products", json=ADVIL, headers=headers)
    again = await pharmacy.client.post(f"{API}/products", json=ADVIL, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert len(await pharmacy.products()) == 1


# ----------------------------------------------------------------------------- CSV import


async def test_the_import_takes_the_good_lines_and_reports_each_bad_one(pharmacy: Pharmacy) -> None:
    answer = await pharmacy.import_csv(
        HEADER + "Advil Zatoki,2017-03-01,Pseudoephedrinum,120\n"  # 2
        "Gripex,2018-05-10,Pseudoephedrinum,360\n"  # 3
        "Gripex,2018-05-10,Dextromethorphanum,120\n"  # 4
        "Thiocodin,2015-01-01,Codeinum,abc\n"  # 5: bad amount
        "Thiocodin,2015-01-01,Sulfogaiacolum,3000\n"  # 6: rejected with its product
        "Syrop,2019-13-01,kodeina,\n"  # 7: bad date
        "Acodin,2019-01-01,dekstrometorfan,150\n"  # 8
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["imported"], report["products"]) == (4, 3)
    assert [(r["line"], r["error"].split(":")[0]) for r in report["rejected"]] == [
        (5, "mg_per_package"),
        (6, "not imported with its product 'Thiocodin'"),
        (7, "marketed_on"),
    ]
    products = {p["name"]: p for p in await pharmacy.products()}
    assert sorted(products) == ["Acodin", "Advil Zatoki", "Gripex"]
    assert products["Advil Zatoki"]["substances"][0]["multiplier"] == 0.16667
    assert [(s["substance"], s["multiplier"]) for s in products["Gripex"]["substances"]] == [
        ("pseudoephedrine", 0.5),
        ("dextromethorphan", 0.33333),
    ]


async def test_importing_the_same_file_again_adds_nothing(pharmacy: Pharmacy) -> None:
    text = HEADER + "Advil Zatoki,2017-03-01,Pseudoephedrinum,120\nAcodin,2019-01-01,dekstrometorfan,150\n"
    assert (await pharmacy.import_csv(text)).json()["imported"] == 2
    again = (await pharmacy.import_csv(text)).json()
    assert (again["imported"], again["products"]) == (0, 0)
    assert [r["line"] for r in again["rejected"]] == [2, 3]
    assert "already in your catalogue" in again["rejected"][0]["error"]
    assert len(await pharmacy.products()) == 2


async def test_an_imported_product_is_checked_like_a_hand_entered_one(pharmacy: Pharmacy) -> None:
    await pharmacy.import_csv(HEADER + "Gripex,2018-05-10,Pseudoephedrinum,360\nGripex,2018-05-10,DXM,\n")
    (gripex,) = await pharmacy.products()
    result = await pharmacy.checked((gripex, 2))
    assert result["decision"] == "warn"  # the dextromethorphan amount is not filled in
    assert [(r["key"], r["substance"]) for r in result["reasons"]] == [("substance_data_missing", "dextromethorphan")]
    assert result["substances"] == [
        {"substance": "pseudoephedrine", "total_multiplier": 1.0, "total_mg": 720, "max_mg_per_sale": 720}
    ]


async def test_a_windows_1250_export_with_semicolons_is_read(pharmacy: Pharmacy) -> None:
    text = "name;marketed_on;substance;mg_per_package\r\nSyrop z kodeiną;2019-01-01;Codeinum;7,5\r\n"
    answer = await pharmacy.import_csv(text.encode("cp1250"), "text/csv; charset=windows-1250")
    assert answer.json() == {"imported": 1, "products": 1, "rejected": []}
    (syrup,) = await pharmacy.products()
    assert syrup["name"] == "Syrop z kodeiną"
    assert syrup["substances"][0]["mg_per_package"] == 7.5
    assert syrup["substances"][0]["multiplier"] == 0.03125


async def test_a_utf8_file_with_a_byte_order_mark_is_read(pharmacy: Pharmacy) -> None:
    answer = await pharmacy.import_csv(
        b"\xef\xbb\xbf" + (HEADER + "Acodin,2019-01-01,Dextromethorphanum,150\n").encode()
    )
    assert answer.json()["imported"] == 1


@pytest.mark.parametrize(
    ("content", "content_type", "status", "field"),
    [
        (b"", "text/csv", 422, "body"),
        (b"name,substance\nA,codeine\n", "text/csv", 422, "body"),
        ("Syrop z kodeiną".encode("cp1250"), "text/csv", 422, "body"),  # not UTF-8 and no charset said
        (HEADER.encode(), "text/csv; charset=klingon", 415, None),
        (HEADER.encode(), "application/json", 415, None),
        (HEADER.encode(), "multipart/form-data; boundary=x", 415, None),
    ],
)
async def test_an_unreadable_file_is_refused_whole(
    pharmacy: Pharmacy, content: bytes, content_type: str, status: int, field: str | None
) -> None:
    assert_problem(await pharmacy.import_csv(content, content_type), status, field)
    assert await pharmacy.products() == []


async def test_the_import_takes_files_up_to_10_mib(pharmacy: Pharmacy) -> None:
    # 3 MiB (over the 1 MiB default of other endpoints) of blank lines around one product.
    big = HEADER + "\n" * (3 * 1024 * 1024) + "Acodin,2019-01-01,Dextromethorphanum,150\n"
    answer = await pharmacy.import_csv(big)
    assert answer.status_code == 200, answer.text
    assert answer.json()["imported"] == 1
    too_big = HEADER + "\n" * (10 * 1024 * 1024)
    assert_problem(await pharmacy.import_csv(too_big), 413)


async def test_other_endpoints_keep_the_default_body_limit(pharmacy: Pharmacy) -> None:
    body = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    answer = await pharmacy.client.post(
        f"{API}/products", content=body, headers={**pharmacy.pharmacist, "content-type": "application/json"}
    )
    assert_problem(answer, 413)


async def test_the_openapi_document_describes_the_csv_upload(pharmacy: Pharmacy) -> None:
    spec = (await pharmacy.client.get("/openapi.json")).json()
    operation = spec["paths"][f"{API}/products/import"]["post"]
    assert "text/csv" in operation["requestBody"]["content"]
    assert operation["x-roles"] == ["pharmacist"]
    assert spec["paths"][f"{API}/sales/check"]["post"]["x-roles"] == ["pharmacist"]


# ----------------------------------------------------------------------------- settings


async def test_the_policy_defaults_to_ask_and_is_set_per_pharmacy(pharmacy: Pharmacy, other_pharmacy: Pharmacy) -> None:
    answer = await pharmacy.client.get(f"{API}/settings", headers=pharmacy.pharmacist)
    assert answer.json() == {"psychoactive_policy": "ask"}
    for policy in ("block", "off", "warn_from_card", "ask", "block"):
        await pharmacy.set_policy(policy)
    assert (await pharmacy.client.get(f"{API}/settings", headers=pharmacy.pharmacist)).json() == {
        "psychoactive_policy": "block"
    }
    other = await other_pharmacy.client.get(f"{API}/settings", headers=other_pharmacy.pharmacist)
    assert other.json() == {"psychoactive_policy": "ask"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"psychoactive_policy": "sometimes"}, "body.psychoactive_policy"),
        ({}, "body.psychoactive_policy"),
        ({"psychoactive_policy": "ask", "colour": "red"}, "body.colour"),
    ],
)
async def test_a_bad_policy_names_the_field(pharmacy: Pharmacy, body: dict[str, Any], field: str) -> None:
    answer = await pharmacy.client.put(f"{API}/settings", json=body, headers=pharmacy.pharmacist)
    assert_problem(answer, 422, field)


# ----------------------------------------------------------------------------- sale check


async def test_six_packages_of_advil_zatoki_are_allowed_and_seven_are_over(pharmacy: Pharmacy) -> None:
    advil = await pharmacy.product(ADVIL)
    six = await pharmacy.checked((advil, 6))
    assert six == {
        "decision": "allow",
        "reasons": [],
        "substances": [
            {"substance": "pseudoephedrine", "total_multiplier": 1.0, "total_mg": 720, "max_mg_per_sale": 720}
        ],
        "policy": "ask",
        "on_date": SALE_DAY,
    }
    seven = await pharmacy.checked((advil, 7))
    assert seven["decision"] == "warn"
    (reason,) = seven["reasons"]
    assert reason["key"] == "limit_exceeded"
    assert reason["substance"] == "pseudoephedrine"
    assert "pseudoefedryna 840 mg, dozwolone 720 mg" in reason["pl"]
    assert "pseudoephedrine 840 mg, allowed 720 mg" in reason["en"]
    assert seven["substances"][0]["total_multiplier"] == 1.16667


async def test_each_policy_through_the_api(pharmacy: Pharmacy) -> None:
    advil, unfilled = await pharmacy.product(ADVIL), await pharmacy.product(UNFILLED)
    expected = {
        "ask": ("warn", ["limit_exceeded", "substance_data_missing"]),
        "block": ("block", ["limit_exceeded", "substance_data_missing"]),
        "off": ("allow", []),
        "warn_from_card": ("warn", ["substance_data_missing"]),
    }
    for policy, (decision, keys) in expected.items():
        await pharmacy.set_policy(policy)
        result = await pharmacy.checked((advil, 7), (unfilled, 1))
        assert (result["policy"], result["decision"], reason_keys(result)) == (policy, decision, keys)


async def test_confirmed_turns_an_ask_warning_into_allow_but_never_lifts_a_block(pharmacy: Pharmacy) -> None:
    advil = await pharmacy.product(ADVIL)
    confirmed = await pharmacy.checked((advil, 7), confirmed=True)
    assert confirmed["decision"] == "allow"
    assert reason_keys(confirmed) == ["limit_exceeded", "confirmed_by_pharmacist"]
    await pharmacy.set_policy("block")
    assert (await pharmacy.checked((advil, 7), confirmed=True))["decision"] == "block"


async def test_a_buyer_under_18_is_refused(pharmacy: Pharmacy) -> None:
    advil = await pharmacy.product(ADVIL)
    await pharmacy.set_policy("off")
    result = await pharmacy.checked((advil, 1), buyer_age=17, confirmed=True)
    assert result["decision"] == "block"
    assert reason_keys(result) == ["under_18"]
    assert "18 lat" in result["reasons"][0]["pl"]
    assert (await pharmacy.checked((advil, 1), buyer_age=18))["decision"] == "allow"


async def test_a_product_marketed_before_2017_goes_one_package_per_sale(pharmacy: Pharmacy) -> None:
    strong = await pharmacy.product(STRONG_2016)
    assert strong["substances"][0]["multiplier"] == 1.25
    assert (await pharmacy.checked((strong, 1)))["decision"] == "allow"
    two = await pharmacy.checked((strong, 1), (strong, 1))
    assert two["decision"] == "warn"
    (reason,) = two["reasons"]
    assert reason["key"] == "pre_2017_one_package"
    assert reason["product_id"] == strong["id"]
    assert "Sudafed Max" in reason["en"]


async def test_several_lines_and_substances_add_up(pharmacy: Pharmacy) -> None:
    gripex = await pharmacy.product(
        {
            "name": "Gripex",
            "marketed_on": "2018-05-10",
            "substances": [
                {"substance": "Pseudoephedrini hydrochloridum", "mg_per_package": 360},
                {"substance": "Dextromethorphani hydrobromidum", "mg_per_package": 120},
                {"substance": "Paracetamolum", "mg_per_package": 3900},
            ],
        }
    )
    advil = await pharmacy.product(ADVIL)
    result = await pharmacy.checked((gripex, 2), (advil, 1))
    assert [(s["substance"], s["total_multiplier"]) for s in result["substances"]] == [
        ("dextromethorphan", 0.66667),
        ("pseudoephedrine", 1.16667),
    ]
    assert [(r["key"], r["substance"]) for r in result["reasons"]] == [("limit_exceeded", "pseudoephedrine")]


async def test_the_check_uses_the_limits_in_force_on_the_sale_day(pharmacy: Pharmacy) -> None:
    advil = await pharmacy.product(ADVIL)
    assert (await pharmacy.checked((advil, 9), on_date="2017-01-01"))["decision"] == "warn"
    # Before 2017 the one-package rule of art. 8 ust. 2 applies instead of the table (see below).
    before = await pharmacy.checked((advil, 9), on_date="2016-12-31")
    assert (before["decision"], reason_keys(before), before["substances"]) == (
        "warn",
        ["pre_2017_sale_one_package"],
        [],
    )
    today = await pharmacy.checked((advil, 1), on_date=None)
    assert today["on_date"] >= "2025-01-01"


async def test_a_product_of_another_pharmacy_or_none_names_the_sale_line(
    pharmacy: Pharmacy, other_pharmacy: Pharmacy
) -> None:
    mine = await pharmacy.product(ADVIL)
    theirs = await other_pharmacy.product(ADVIL)
    answer = await pharmacy.check((mine, 1), (theirs, 1), ({"id": str(uuid.uuid4())}, 1))
    problem = assert_problem(answer, 422)
    assert [e["field"] for e in problem["errors"]] == ["body.lines.1.product_id", "body.lines.2.product_id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"buyer_age": -1}, "body.buyer_age"),
        ({"buyer_age": 131}, "body.buyer_age"),
        ({"buyer_age": "adult"}, "body.buyer_age"),
        ({"buyer_age": None}, "body.buyer_age"),
        ({"lines": []}, "body.lines"),
        ({"lines": [{"product_id": "x", "packages": 1}]}, "body.lines.0.product_id"),
        ({"lines": [{"packages": 1}]}, "body.lines.0.product_id"),
        ({"on_date": "2025-02-30"}, "body.on_date"),
        ({"on_date": "yesterday"}, "body.on_date"),
        ({"confirmed": "maybe"}, "body.confirmed"),
        ({"price": "9.99"}, "body.price"),
    ],
)
async def test_bad_sale_input_names_the_field(pharmacy: Pharmacy, change: dict[str, Any], field: str) -> None:
    advil = await pharmacy.product(ADVIL)
    body = {"buyer_age": 30, "lines": [{"product_id": advil["id"], "packages": 1}], **change}
    answer = await pharmacy.client.post(f"{API}/sales/check", json=body, headers=pharmacy.pharmacist)
    assert_problem(answer, 422, field)


@pytest.mark.parametrize("packages", [0, -1, 1001, 1.5, "two"])
async def test_a_bad_package_count_names_the_line(pharmacy: Pharmacy, packages: Any) -> None:
    advil = await pharmacy.product(ADVIL)
    body = {
        "buyer_age": 30,
        "lines": [{"product_id": advil["id"], "packages": 1}, {"product_id": advil["id"], "packages": packages}],
    }
    answer = await pharmacy.client.post(f"{API}/sales/check", json=body, headers=pharmacy.pharmacist)
    assert_problem(answer, 422, "body.lines.1.packages")


# ----------------------------------------------------------------------------- tenants and roles


async def test_each_pharmacy_sees_only_its_own_catalogue(pharmacy: Pharmacy, other_pharmacy: Pharmacy) -> None:
    mine = await pharmacy.product(ADVIL)
    assert await other_pharmacy.products() == []
    answer = await other_pharmacy.client.get(f"{API}/products/{mine['id']}", headers=other_pharmacy.pharmacist)
    assert_problem(answer, 404)
    theirs = await other_pharmacy.product(ADVIL)  # the same name and date in another pharmacy is fine
    assert theirs["id"] != mine["id"]
    assert [p["id"] for p in await pharmacy.products()] == [mine["id"]]


# A fixed unknown id: test ids must be the same in every collecting process (parallel workers).
UNKNOWN = "7d0c6a56-2f0e-4c53-9a43-3b1f4d8f2e11"
ENDPOINTS = [
    ("GET", "/products", None),
    ("GET", f"/products/{UNKNOWN}", None),
    ("POST", "/products", ADVIL),
    ("PUT", f"/products/{UNKNOWN}", ADVIL),
    ("POST", "/products/import", None),
    ("GET", "/settings", None),
    ("PUT", "/settings", {"psychoactive_policy": "off"}),
    ("POST", "/sales/check", {"buyer_age": 30, "lines": [{"product_id": UNKNOWN, "packages": 1}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize("role", ["facility_admin", "registrar", "practitioner", "partner", "patient"])
async def test_only_a_pharmacist_may_use_the_pharmacy(
    pharmacy: Pharmacy, method: str, path: str, body: dict[str, Any] | None, role: str
) -> None:
    answer = await pharmacy.client.request(method, API + path, json=body, headers=pharmacy.auth(role))
    assert_problem(answer, 403)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_no_token_or_a_bad_one_is_401(
    pharmacy: Pharmacy, method: str, path: str, body: dict[str, Any] | None
) -> None:
    assert_problem(await pharmacy.client.request(method, API + path, json=body), 401)
    forged = {"Authorization": "Bearer not.a.token"}
    assert_problem(await pharmacy.client.request(method, API + path, json=body, headers=forged), 401)


# ----------------------------------------------------------------------------- through the gateway


async def test_the_pharmacy_is_reachable_through_the_gateway(
    gateway_client: httpx.AsyncClient, auth: Callable[..., Headers]
) -> None:
    pharmacy = Pharmacy(gateway_client, auth)
    imported = await pharmacy.import_csv(HEADER + "Advil Zatoki,2017-03-01,Pseudoephedrinum,120\n" + "\n" * 2_000_000)
    assert imported.status_code == 200, imported.text  # the gateway lets a 2 MB file through to the import
    assert imported.json()["imported"] == 1
    (advil,) = await pharmacy.products()
    await pharmacy.set_policy("block")
    result = await pharmacy.checked((advil, 7))
    assert (result["decision"], reason_keys(result)) == ("block", ["limit_exceeded"])
    # The gateway refuses a wrong role and a missing token itself, as problem+json.
    assert_problem(await gateway_client.get(f"{API}/products", headers=auth("facility_admin")), 403)
    assert_problem(await gateway_client.get(f"{API}/products"), 401)
    bad = await gateway_client.post(
        f"{API}/sales/check", json={"buyer_age": 200, "lines": []}, headers=pharmacy.pharmacist
    )
    assert_problem(bad, 422, "body.buyer_age")
    spec = (await gateway_client.get("/openapi.json")).json()
    for path in ("/products", "/products/{product_id}", "/products/import", "/settings", "/sales/check"):
        assert API + path in spec["paths"], path


# ----------------------------------------------------------------------------- sales before 2017


async def test_a_sale_dated_2016_allows_one_package_of_each_product_with_a_listed_substance(pharmacy: Pharmacy) -> None:
    await pharmacy.set_policy("block")
    advil, strong = await pharmacy.product(ADVIL), await pharmacy.product(STRONG_2016)
    unfilled = await pharmacy.product(UNFILLED)

    one_each = await pharmacy.checked((advil, 1), (strong, 1), (unfilled, 1), on_date="2016-12-31")
    two_advil = await pharmacy.checked((advil, 1), (strong, 1), (advil, 1), on_date="2016-12-31")
    minor = await pharmacy.checked((unfilled, 1), on_date="2016-12-31", buyer_age=17)
    next_day = await pharmacy.checked((advil, 2), on_date="2017-01-01")

    assert (one_each["decision"], one_each["reasons"]) == ("allow", [])  # 1,020 mg pseudoephedrine: 2016 law
    assert two_advil["decision"] == "block" and reason_keys(two_advil) == ["pre_2017_sale_one_package"]
    assert two_advil["reasons"][0]["product_id"] == advil["id"] and "2" in two_advil["reasons"][0]["en"]
    assert (minor["decision"], reason_keys(minor)) == ("block", ["under_18"])
    assert next_day["decision"] == "allow"


# ----------------------------------------------------------------------------- refusals


async def test_a_refusal_for_suspected_non_medical_use_is_recorded_with_its_reason(pharmacy: Pharmacy) -> None:
    advil = await pharmacy.product(ADVIL)
    body = {
        "lines": [{"product_id": advil["id"], "packages": 2}],
        "reason": "podejrzenie użycia w celach pozamedycznych",
        "buyer_age": 24,
    }

    answer = await pharmacy.client.post(f"{API}/sales/refusals", json=body, headers=pharmacy.pharmacist)

    assert answer.status_code == 201, answer.text
    refusal = answer.json()
    assert {k: refusal[k] for k in ("lines", "reason", "buyer_age")} == body
    assert refusal["pharmacist"] and uuid.UUID(refusal["id"]) and refusal["on_date"] >= "2025-01-01"
    assert refusal["refused_at"].startswith(refusal["on_date"][:4])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": ""}, "body.reason"),
        ({"reason": "x" * 1001}, "body.reason"),
        ({"reason": None}, "body.reason"),
        ({"lines": []}, "body.lines"),
        ({"lines": [{"product_id": "not-an-id", "packages": 1}]}, "body.lines.0.product_id"),
        ({"lines": [{"product_id": str(uuid.uuid4()), "packages": 0}]}, "body.lines.0.packages"),
        ({"buyer_age": -1}, "body.buyer_age"),
        ({"on_date": "2016-12-31"}, "body.on_date"),
    ],
)
async def test_a_bad_refusal_names_the_field(pharmacy: Pharmacy, change: dict[str, Any], field: str) -> None:
    advil = await pharmacy.product(ADVIL)
    body = {"lines": [{"product_id": advil["id"], "packages": 1}], "reason": "non-medical use", **change}

    answer = await pharmacy.client.post(f"{API}/sales/refusals", json=body, headers=pharmacy.pharmacist)

    assert_problem(answer, 422, field)


async def test_a_refusal_names_only_this_pharmacys_products(pharmacy: Pharmacy, other_pharmacy: Pharmacy) -> None:
    theirs = await other_pharmacy.product(ADVIL)
    body = {"lines": [{"product_id": theirs["id"], "packages": 1}], "reason": "non-medical use"}

    answer = await pharmacy.client.post(f"{API}/sales/refusals", json=body, headers=pharmacy.pharmacist)

    assert_problem(answer, 422, "body.lines.0.product_id")


# ----------------------------------------------------------------------------- imports in short batches


async def test_an_import_writes_in_short_transactions_and_stops_at_the_catalogue_cap(
    settings: Settings, auth: Callable[..., Headers], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import event

    from services.pharmacy.app import create_app

    monkeypatch.setenv("IMPORT_BATCH_PRODUCTS", "2")
    monkeypatch.setenv("MAX_PRODUCTS_PER_PHARMACY", "4")
    app = create_app(settings)
    commits: list[int] = []
    event.listen(app.state.ctx.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    async for client in running_client(app):
        pharmacy = Pharmacy(client, auth)
        await pharmacy.product({**ADVIL, "name": "Lek C", "marketed_on": "2020-01-01"})  # already in the catalogue
        lines = [f"Lek {letter},2020-01-01,Pseudoephedrinum,120" for letter in "ABCDEF"]
        commits.clear()
        answer = await pharmacy.import_csv("name,marketed_on,substance,mg_per_package\n" + "\n".join(lines) + "\n")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["products"] == 3  # 1 held + 3 = the cap of 4
        rejected = {r["line"]: r["error"] for r in body["rejected"]}
        assert "already in your catalogue" in rejected[4]  # Lek C
        assert [line for line, error in rejected.items() if "at most 4 products" in error] == [6, 7]
        assert len(commits) >= 3  # six products, two per transaction: other writers get the lock between
        names = sorted(p["name"] for p in await pharmacy.products())
        assert names == ["Lek A", "Lek B", "Lek C", "Lek D"]
