"""Turning an API payload into an event, or into errors a client can act on."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.domain.model import Event, Outcome, UserProfile
from herald.domain.properties import PropertySpec, validate_properties
from herald.rules import engine
from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset, parse_ruleset
from herald.service.intake import Rejection, horizon, to_event

GOOD_PROPERTIES = {"amount": 14.25, "attempt_number": 2, "failure_reason": "INSUFFICIENT_FUNDS"}


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_ruleset()


def payload(**changes: Any) -> dict[str, Any]:
    """A valid payment_failed payload, as the API envelope hands it over, with ``changes``."""
    base: dict[str, Any] = {
        "event_id": "evt_1",
        "user_id": "u_1",
        "event_type": "payment_failed",
        "event_timestamp": "2025-10-31T19:24:11Z",
        "properties": dict(GOOD_PROPERTIES),
        "user_traits": {"email": "maria@example.com"},
    }
    base.update(changes)
    return base


def accepted(result: Event | Rejection) -> Event:
    assert isinstance(result, Event), result
    return result


def rejected(result: Event | Rejection) -> list[dict[str, Any]]:
    assert isinstance(result, Rejection), result
    return result.errors


def test_a_valid_payload_becomes_an_event_with_everything_it_said(ruleset: RuleSet) -> None:
    event = accepted(to_event(payload(), ruleset))

    assert event.event_id == "evt_1"
    assert event.user_id == "u_1"
    assert event.event_type == "payment_failed"
    assert event.timestamp == datetime(2025, 10, 31, 19, 24, 11, tzinfo=UTC)
    assert event.properties == GOOD_PROPERTIES
    assert event.user_traits == {"email": "maria@example.com"}


def test_an_unknown_event_type_is_refused_listing_the_supported_ones(ruleset: RuleSet) -> None:
    errors = rejected(to_event(payload(event_type="payment_refunded"), ruleset))

    assert len(errors) == 1
    assert errors[0]["loc"] == ["event_type"]
    assert errors[0]["type"] == "unknown_event_type"
    assert "'payment_refunded'" in errors[0]["msg"]
    assert (
        "supported: link_bank_success, payment_failed, payment_initiated, signup_completed"
        in errors[0]["msg"]
    )


@pytest.mark.parametrize(
    "timestamp",
    [
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-10-31T25:00",
        "2025-02-30T00:00:00Z",
        "2025-10-31x19:24:11Z",  # Python's own parser takes any separator
        "2025-10-31T19:24:11.Z",  # ... a point with no fraction
        "2025-10-31T19:24:11+00:00:30",  # ... and an offset with seconds
        "20251031",
    ],
)
def test_a_timestamp_that_is_not_iso_8601_is_refused(timestamp: str, ruleset: RuleSet) -> None:
    errors = rejected(to_event(payload(event_timestamp=timestamp), ruleset))

    assert len(errors) == 1
    assert errors[0]["loc"] == ["event_timestamp"]
    assert errors[0]["type"] == "invalid_timestamp"
    assert repr(timestamp) in errors[0]["msg"]


@pytest.mark.parametrize(
    "timestamp",
    [
        "0001-01-01T00:00:00Z",
        "1899-12-31T23:59:59Z",
        "9000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-05:00",  # past the last datetime once in UTC
        "0001-01-01T00:00:00+01:00",  # before the first one
    ],
)
def test_a_timestamp_outside_the_supported_range_is_refused_not_a_crash(
    timestamp: str, ruleset: RuleSet
) -> None:
    errors = rejected(to_event(payload(event_timestamp=timestamp), ruleset))

    assert errors[0]["loc"] == ["event_timestamp"]
    assert "outside the supported range, 1900-01-01 to 9000-01-01" in errors[0]["msg"]


@pytest.mark.parametrize(
    ("timestamp", "moment"),
    [
        ("1900-01-01T00:00:00Z", datetime(1900, 1, 1, tzinfo=UTC)),
        ("8999-12-31T23:59:59Z", datetime(8999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_the_ends_of_the_supported_range_are_accepted(
    timestamp: str, moment: datetime, ruleset: RuleSet
) -> None:
    event = accepted(to_event(payload(event_timestamp=timestamp), ruleset))

    assert event.timestamp == moment


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        # As the client wrote it, in JSON: not Python's '14.25' and True.
        ("amount", "14.25", 'must be of type number, got "14.25"'),
        ("amount", True, "must be of type number, got true"),
        ("amount", {"n": None}, 'must be of type number, got {"n": null}'),
        ("amount", -1, "must be >= 0, got -1"),
        ("attempt_number", 2.5, "must be of type integer, got 2.5"),
        ("attempt_number", 0, "must be >= 1, got 0"),
        ("failure_reason", 42, "must be of type string, got 42"),
    ],
)
def test_a_property_of_the_wrong_type_or_range_is_refused_naming_it(
    name: str, value: Any, message: str, ruleset: RuleSet
) -> None:
    properties = {**GOOD_PROPERTIES, name: value}

    errors = rejected(to_event(payload(properties=properties), ruleset))

    assert errors == [{"loc": ["properties", name], "msg": message, "type": "invalid_property"}]


def test_an_integer_written_with_a_zero_fraction_is_taken_as_that_integer(
    ruleset: RuleSet,
) -> None:
    # JSON does not tell 3 from 3.0, and a client whose numbers are all doubles sends 3.0.
    properties = {**GOOD_PROPERTIES, "attempt_number": 3.0}

    event = accepted(to_event(payload(properties=properties), ruleset))

    assert event.properties["attempt_number"] == 3
    assert type(event.properties["attempt_number"]) is int


@pytest.mark.parametrize("value", [2.5, 2e19, -1e300])
def test_a_float_that_is_no_64_bit_integer_is_refused_for_an_integer(
    value: float, ruleset: RuleSet
) -> None:
    properties = {**GOOD_PROPERTIES, "attempt_number": value}

    [error] = rejected(to_event(payload(properties=properties), ruleset))

    assert error["loc"] == ["properties", "attempt_number"]
    assert error["msg"].startswith("must be of type integer")


@pytest.mark.parametrize("value", [2.0**63, 1e19, 2.0**64 - 2048])
def test_a_whole_float_in_the_64_bit_range_is_the_integer_sent_as_an_int_would_be(
    value: float, ruleset: RuleSet
) -> None:
    # An integer from 2**63 to 2**64-1 is accepted as unsigned 64 bits; the same number
    # from a client whose numbers are all doubles must be too.
    as_float = {**GOOD_PROPERTIES, "attempt_number": value}
    as_int = {**GOOD_PROPERTIES, "attempt_number": int(value)}

    from_float = accepted(to_event(payload(properties=as_float), ruleset))
    from_int = accepted(to_event(payload(properties=as_int), ruleset))

    assert from_float.properties["attempt_number"] == from_int.properties["attempt_number"]
    assert type(from_float.properties["attempt_number"]) is int


def test_a_missing_required_property_is_refused_naming_it(ruleset: RuleSet) -> None:
    properties = {"amount": 14.25, "failure_reason": "INSUFFICIENT_FUNDS"}

    errors = rejected(to_event(payload(properties=properties), ruleset))

    assert errors == [
        {
            "loc": ["properties", "attempt_number"],
            "msg": "field required",
            "type": "invalid_property",
        }
    ]


def test_a_required_property_sent_as_null_is_refused_saying_it_was_null(
    ruleset: RuleSet,
) -> None:
    properties = {"amount": 14.25, "attempt_number": None, "failure_reason": "X"}

    [error] = rejected(to_event(payload(properties=properties), ruleset))

    assert error["loc"] == ["properties", "attempt_number"]
    assert error["msg"] == "field required (got null, which is no integer)"


def test_every_problem_of_a_payload_is_reported_together(ruleset: RuleSet) -> None:
    bad = payload(event_timestamp="soon", properties={"amount": "lots"})

    errors = rejected(to_event(bad, ruleset))

    assert sorted(tuple(error["loc"]) for error in errors) == [
        ("event_timestamp",),
        ("properties", "amount"),
        ("properties", "attempt_number"),
        ("properties", "failure_reason"),
    ]


def test_undeclared_properties_are_kept_as_they_are(ruleset: RuleSet) -> None:
    properties = {**GOOD_PROPERTIES, "merchant": "ACME", "retry": {"after_s": 30}}

    event = accepted(to_event(payload(properties=properties), ruleset))

    assert event.properties["merchant"] == "ACME"
    assert event.properties["retry"] == {"after_s": 30}


@pytest.mark.parametrize(
    ("given", "utc"),
    [
        ("2025-11-03T01:30:00+02:00", datetime(2025, 11, 2, 23, 30, tzinfo=UTC)),
        ("2025-11-02T22:30:00-05:00", datetime(2025, 11, 3, 3, 30, tzinfo=UTC)),
        ("2025-11-03T01:30:00", datetime(2025, 11, 3, 1, 30, tzinfo=UTC)),
        ("2025-11-03T01:30:00.250z", datetime(2025, 11, 3, 1, 30, 0, 250_000, tzinfo=UTC)),
        ("2025-11-03 01:30:00,5+0130", datetime(2025, 11, 3, 0, 0, 0, 500_000, tzinfo=UTC)),
        ("2025-11-03T01:30+01", datetime(2025, 11, 3, 0, 30, tzinfo=UTC)),
        # A leap second is the last microsecond of its minute: still that UTC day.
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        # The same leap second as the local time of another offset.
        ("2016-12-31T18:59:60.5-05:00", datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        ("2017-01-01T05:44:60+05:45", datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    ],
)
def test_a_timestamp_is_normalised_to_utc(given: str, utc: datetime, ruleset: RuleSet) -> None:
    event = accepted(to_event(payload(event_timestamp=given), ruleset))

    assert event.timestamp == utc
    assert event.timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "given", ["2025-10-31T10:15:60Z", "2016-12-31T23:59:60+01:00", "2016-12-31T23:58:60"]
)
def test_a_second_of_60_away_from_the_end_of_a_utc_day_is_refused(
    given: str, ruleset: RuleSet
) -> None:
    errors = rejected(to_event(payload(event_timestamp=given), ruleset))

    assert [(tuple(error["loc"]), error["type"]) for error in errors] == [
        (("event_timestamp",), "invalid_timestamp")
    ]
    assert "falls only at 23:59:60 UTC" in errors[0]["msg"]


def without_id(**changes: Any) -> dict[str, Any]:
    return {**payload(**changes), "event_id": None}


def test_an_event_sent_twice_without_id_gets_the_same_derived_id(ruleset: RuleSet) -> None:
    first = accepted(to_event(without_id(), ruleset))
    again = accepted(to_event(without_id(properties={**GOOD_PROPERTIES, "amount": 1}), ruleset))

    assert first.event_id == again.event_id
    assert first.event_id.startswith("evt_")


def test_the_same_moment_in_another_offset_derives_the_same_id(ruleset: RuleSet) -> None:
    in_utc = accepted(to_event(without_id(event_timestamp="2025-11-02T23:30:00Z"), ruleset))
    in_paris = accepted(to_event(without_id(event_timestamp="2025-11-03T00:30:00+01:00"), ruleset))

    assert in_utc.event_id == in_paris.event_id


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": "u_2"},
        {"event_type": "payment_initiated", "properties": {"amount": 1}},
        {"event_timestamp": "2025-10-31T19:24:12Z"},
    ],
    ids=["other_user", "other_type", "one_second_later"],
)
def test_events_differing_in_user_type_or_time_derive_different_ids(
    change: dict[str, Any], ruleset: RuleSet
) -> None:
    base = accepted(to_event(without_id(), ruleset))
    other = accepted(to_event(without_id(**change), ruleset))

    assert other.event_id != base.event_id


def test_a_given_event_id_is_kept(ruleset: RuleSet) -> None:
    assert accepted(to_event(payload(event_id="evt_client_42"), ruleset)).event_id == (
        "evt_client_42"
    )


@pytest.mark.parametrize("field", ["user_id", "event_id"])
@pytest.mark.parametrize(
    ("char", "code"), [("\n", "U+000A"), ("\x1b", "U+001B"), ("\x85", "U+0085")]
)
def test_an_id_with_a_control_character_is_refused(
    field: str, char: str, code: str, ruleset: RuleSet
) -> None:
    errors = rejected(to_event(payload(**{field: f"u{char}2"}), ruleset))

    assert errors == [
        {
            "loc": [field],
            "msg": f"contains the control character {code}; ids must be printable",
            "type": "invalid_id",
        }
    ]


@pytest.mark.parametrize("field", ["user_id", "event_id"])
@pytest.mark.parametrize(
    "code", [*range(0x202A, 0x202F), *range(0x2066, 0x206A)], ids=lambda code: f"U+{code:04X}"
)
def test_an_id_with_a_bidirectional_formatting_character_is_refused_naming_it(
    field: str, code: int, ruleset: RuleSet
) -> None:
    """Each reorders how the id displays: "u_\u202e21" reads as "u_12"."""
    character = chr(code)

    errors = rejected(to_event(payload(**{field: f"u_{character}21"}), ruleset))

    [error] = errors
    assert (error["loc"], error["type"]) == ([field], "invalid_id")
    assert error["msg"] == (
        f"contains U+{code:04X} {unicodedata.name(character)}, which is not allowed in an "
        "id: it can make the id display as another"
    )


@pytest.mark.parametrize("mark", ["\u200e", "\u200f"])
def test_an_id_with_a_left_to_right_or_right_to_left_mark_is_kept(
    mark: str, ruleset: RuleSet
) -> None:
    event = accepted(to_event(payload(user_id=f"\u05e9\u05e8\u05d4{mark}-7"), ruleset))

    assert event.user_id == f"\u05e9\u05e8\u05d4{mark}-7"


def test_a_bidirectional_override_in_a_value_is_text_and_kept(ruleset: RuleSet) -> None:
    name = "\u202e\u0645\u0631\u064a\u0645\u202c"
    properties = {**GOOD_PROPERTIES, "note": "\u2067x\u2069"}

    event = accepted(
        to_event(payload(user_traits={"first_name": name}, properties=properties), ruleset)
    )

    assert event.user_traits == {"first_name": name}
    assert event.properties["note"] == "\u2067x\u2069"


@pytest.mark.parametrize("field", ["user_id", "event_id"])
@pytest.mark.parametrize(
    ("given", "msg"),
    [
        (" u_1", "must not start or end with whitespace"),
        ("u_1\u2028", "must not start or end with whitespace"),
        ("   ", "must not be blank"),
    ],
)
def test_an_id_with_whitespace_at_an_end_is_refused_not_trimmed_into_another_id(
    field: str, given: str, msg: str, ruleset: RuleSet
) -> None:
    errors = rejected(to_event(payload(**{field: given}), ruleset))

    assert errors == [{"loc": [field], "msg": msg, "type": "invalid_id"}]


def test_an_id_with_a_space_inside_is_kept_as_it_is(ruleset: RuleSet) -> None:
    event = accepted(to_event(payload(user_id="ada lovelace"), ruleset))

    assert event.user_id == "ada lovelace"


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_number_that_is_not_finite_is_refused_where_it_is(
    number: float, ruleset: RuleSet
) -> None:
    properties = {**GOOD_PROPERTIES, "fees": [1.5, {"late": number}]}

    errors = rejected(to_event(payload(properties=properties), ruleset))

    assert [(error["loc"], error["type"]) for error in errors] == [
        (["properties", "fees", 1, "late"], "unstorable_value")
    ]
    assert "not a finite number" in errors[0]["msg"]


def test_a_nul_character_in_a_trait_is_refused_naming_the_trait(ruleset: RuleSet) -> None:
    errors = rejected(to_event(payload(user_traits={"email": "maria\x00@x.pt"}), ruleset))

    assert errors[0]["loc"] == ["user_traits", "email"]
    assert "U+0000" in errors[0]["msg"]


def test_a_null_or_a_string_with_escapes_is_not_mistaken_for_a_bad_value(
    ruleset: RuleSet,
) -> None:
    traits = {"nickname": None, "note": "a \\u0000 in text, escaped"}

    event = accepted(to_event(payload(user_traits=traits), ruleset))

    assert event.user_traits == traits


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        # As the rule file wrote the bound: not `1e+06`, nor cut to six digits.
        (
            PropertySpec("price", "integer", minimum=1000000),
            999999,
            "must be >= 1000000, got 999999",
        ),
        (
            PropertySpec("rate", "number", maximum=0.1234567),
            0.12346,
            "must be <= 0.1234567, got 0.12346",
        ),
        (
            PropertySpec("cents", "integer", maximum=2**53 + 1),
            2**53 + 2,
            "must be <= 9007199254740993, got 9007199254740994",
        ),
    ],
)
def test_a_bound_is_named_as_the_rule_file_wrote_it(
    spec: PropertySpec, value: Any, message: str
) -> None:
    errors = validate_properties({spec.name: value}, {spec.name: spec})

    assert [error.msg for error in errors] == [message]


@pytest.mark.parametrize(
    ("kind", "allowed", "value", "accepted"),
    [
        ("array", [1, 2], [True, 2], False),
        ("array", [1, 2], [1.0, 2], True),
        ("object", {"on": True}, {"on": 1}, False),
        ("object", {"on": True}, {"on": True}, True),
        ("array", [[0]], [[False]], False),
    ],
)
def test_an_enum_of_arrays_or_objects_tells_true_from_1_as_json_does(
    kind: str, allowed: Any, value: Any, accepted: bool
) -> None:
    spec = PropertySpec("plan", kind, enum=(allowed,))

    errors = validate_properties({"plan": value}, {"plan": spec})

    assert (errors == []) is accepted


AGE_RULES = """
events:
  signup_completed: {}
traits:
  age: integer
rules:
  - id: GROWN_UP_ALERT
    trigger: signup_completed
    when: "user.age + 1 > 19"
    channel: internal
"""


@pytest.mark.parametrize(("sent", "kept"), [(30.0, 30), (30, 30), (30.5, 30.5), ("30", "30")])
def test_an_integer_trait_sent_as_a_whole_double_is_taken_as_the_integer(
    sent: Any, kept: Any, tmp_path: Any
) -> None:
    """JSON does not tell 30 from 30.0, and a client whose numbers are all doubles sends the
    latter: CEL refuses ``30.0 + 1``, so the rule would be skipped as unevaluable."""
    rules = parse_ruleset(AGE_RULES, source="rules.yaml", template_dir=tmp_path)
    event = to_event(
        payload(event_type="signup_completed", properties={}, user_traits={"age": sent}), rules
    )
    assert isinstance(event, Event)

    assert event.user_traits["age"] == kept and type(event.user_traits["age"]) is type(kept)
    if kept == 30:
        [decision] = engine.evaluate(event, UserProfile(event.user_id), [], rules, NOW)
        assert decision.outcome is Outcome.TRIGGERED, decision.reason


NOW = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "ahead"),
    [
        ("2025-11-03T12:05:00.000001Z", "more than 5 minutes"),
        ("2025-11-03T15:00:00+00:00", "3 hours"),
        ("2025-11-03T13:30:00+01:00", "30 minutes"),  # 12:30 UTC
        ("2026-11-03T12:00:00Z", "365 days"),
    ],
)
def test_an_event_later_than_the_horizon_is_refused_saying_how_far_ahead(
    ruleset: RuleSet, given: str, ahead: str
) -> None:
    [error] = rejected(to_event(payload(event_timestamp=given), ruleset, horizon(NOW, 300)))

    assert error["loc"] == ["event_timestamp"] and error["type"] == "future_timestamp"
    assert error["msg"].startswith(
        f"{given!r} is {ahead} ahead of Herald's clock (2025-11-03T12:00:00Z); an event may be "
        "at most 5 minutes in the future (HERALD_CLOCK_SKEW)"
    )


def test_an_event_at_the_horizon_itself_is_accepted(ruleset: RuleSet) -> None:
    at_most = payload(event_timestamp="2025-11-03T12:05:00Z")

    assert accepted(to_event(at_most, ruleset, horizon(NOW, 300))).timestamp == NOW.replace(
        minute=5
    )
