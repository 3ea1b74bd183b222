"""Identity resolution: deterministic, never a silent merge."""

from __future__ import annotations

from projections.identity import new_customer_id, resolve
from projections.touchpoints import CustomerRef, ExternalId
from tests.support.touchpoints import call


def ref(**kw) -> CustomerRef:  # type: ignore[no-untyped-def]
    return CustomerRef(**kw)


def test_unknown_identifiers_create_a_customer_whose_id_comes_from_the_event() -> None:
    res = resolve(call("e1", ref=ref(emails=("ana@example.com",))), {})
    assert res.created and res.customer_id == new_customer_id("e1")
    assert res.links == (("email", "ana@example.com"),)


def test_a_known_identifier_maps_to_its_customer_and_links_the_new_ones() -> None:
    known = {("email", "ana@example.com"): "c-9"}
    res = resolve(call("e2", ref=ref(emails=("ana@example.com",), phones=("+33612345678",))), known)
    assert (res.customer_id, res.created, res.conflicts) == ("c-9", False, ())
    assert res.links == (("phone", "+33612345678"),)


def test_an_external_id_is_trusted_before_an_email() -> None:
    known = {("email", "x@example.com"): "c-email", ("external_id", "crm:7"): "c-crm"}
    res = resolve(call("e3", ref=ref(emails=("x@example.com",), external_ids=(ExternalId("crm", "7"),))), known)
    assert res.customer_id == "c-crm"
    assert res.conflicts == ((("email", "x@example.com"), "c-email"),)


def test_identifiers_of_two_customers_are_a_conflict_and_are_not_merged() -> None:
    known = {("email", "ana@example.com"): "c-1", ("phone", "+33612345678"): "c-2"}
    res = resolve(call("e4", ref=ref(emails=("ana@example.com",), phones=("+33612345678",))), known)
    assert res.customer_id == "c-1"
    assert res.conflicts == ((("phone", "+33612345678"), "c-2"),)
    assert res.links == ()
    assert res.folded.customer.phones == ()  # the view of c-1 does not take c-2's phone


def test_an_explicit_customer_id_wins_and_reports_identifiers_owned_by_someone_else() -> None:
    known = {("email", "ana@example.com"): "c-1"}
    res = resolve(call("e5", ref=ref(customer_id="c-3", emails=("ana@example.com",))), known)
    assert res.customer_id == "c-3" and not res.created
    assert res.conflicts == ((("email", "ana@example.com"), "c-1"),)
