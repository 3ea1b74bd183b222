"""The merge policy's decisions (projections.merge_policy), one conflict at a time."""

from __future__ import annotations

import pytest

from projections.merge import Merge, Merges
from projections.merge_policy import Claim, MergePolicy, decide, policy_merge_id

POLICY = MergePolicy({"external_id": "alone", "email": "with_another"})  # phone: never


@pytest.mark.parametrize(("claims", "rule"), [
    ((Claim("external_id", "o"),), "external_id: alone"),
    ((Claim("email", "o"),), None),  # an email needs a second identifier
    ((Claim("email", "o"), Claim("phone", "o")), "email: with_another"),  # a phone corroborates
    ((Claim("email", "o"), Claim("email", "o")), "email: with_another"),  # two emails of the event
    ((Claim("phone", "o"),), None),
    ((Claim("phone", "o"), Claim("phone", "o")), None),  # phones never merge, however many
    ((Claim("email", "o"), Claim("phone", "other")), None),  # the second identifier is someone else's
    ((Claim("phone", "o"), Claim("external_id", "o")), "external_id: alone"),
])
def test_each_setting_merges_exactly_what_it_says(claims: tuple[Claim, ...], rule: str | None) -> None:
    decided, after = decide(POLICY, "evt-1", "s", claims, Merges())
    assert [d.rule for d in decided if d.absorbed == "o"] == ([] if rule is None else [rule])
    if rule is not None:
        assert after.root("o") == "s"
        assert decided[0].merge().actor == f"policy:{rule.split(':')[0]}"


def test_no_policy_decides_nothing_and_a_decision_is_deterministic() -> None:
    assert decide(MergePolicy(), "evt-1", "s", (Claim("external_id", "o"),), Merges()) == ([], Merges())
    assert not MergePolicy({"phone": "never"}).active
    first, _ = decide(POLICY, "evt-1", "s", (Claim("external_id", "o"),), Merges())
    again, _ = decide(POLICY, "evt-1", "s", (Claim("external_id", "o"),), Merges())
    assert first == again and first[0].merge_id == policy_merge_id("evt-1", "o")
    assert first[0].merge_id != policy_merge_id("evt-2", "o")


def test_claimants_are_merged_as_the_roots_they_are_shown_as() -> None:
    merges = Merges.of([Merge("mrg_a", "r", "o", "earlier", "agent")])  # o is shown as r
    decided, after = decide(POLICY, "evt-1", "s", (Claim("external_id", "o"),), merges)
    assert [(d.survivor, d.absorbed) for d in decided] == [("s", "r")] and after.root("o") == "s"
    # the event's customer was absorbed: its root survives
    decided, _ = decide(POLICY, "evt-2", "o", (Claim("external_id", "x"),), merges)
    assert [(d.survivor, d.absorbed) for d in decided] == [("r", "x")]
    # claimants already shown as the survivor: nothing to do
    assert decide(POLICY, "evt-3", "r", (Claim("external_id", "o"),), merges)[0] == []


@pytest.mark.parametrize("rules", [{"mail": "alone"}, {"email": "sometimes"}])
def test_a_policy_naming_an_unknown_kind_or_setting_is_refused(rules: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="merge policy"):
        MergePolicy(rules)  # type: ignore[arg-type]
