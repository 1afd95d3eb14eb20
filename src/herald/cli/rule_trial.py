"""``herald rules try``: what a rule file decides for sample events, and the messages it
would send, before it goes live."""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console

from herald.cli.options import RulesOpt, settings_from
from herald.cli.output import counted, fail
from herald.cli.preflight import checked_rules
from herald.config import RulesSettings, Settings

if TYPE_CHECKING:
    from herald.domain.model import Event
    from herald.rules.definition import RuleSet
    from herald.service.intake import Horizon, Rejection
    from herald.service.rule_trial import TrialResult

_BODY_LINES = 6  # of a message's text shown; --json has it whole


def rules_try(
    events: Annotated[
        Path,
        typer.Argument(
            metavar="EVENTS",
            help='a JSON file of events: one event, a list, a batch ({"events": [...]}) or '
            "one event a line; - for stdin",
        ),
    ],
    rules: RulesOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object an event, messages whole")
    ] = False,
) -> None:
    """Decide sample events with a rule file, in the order given, and show each decision
    and the messages it would send (rendered, to whom, held for quiet hours or not).

    The server's own checks and ingestion decide them, in a database of their own that is
    thrown away: limits, windows and arrival order work as they would live. Nothing is
    stored or sent. Exit 1 if an event is rejected (each says why) or the rule file has
    a problem, 2 if EVENTS cannot be read."""
    from herald.bootstrap import utc_now
    from herald.delivery.quiet_hours import hold_policy
    from herald.json_lines import shown_json_line
    from herald.service.intake import horizon
    from herald.service.rule_trial import try_rules

    settings = settings_from(RulesSettings, rules=rules)
    # Nothing is sent, so the providers' secrets are not needed: a file tried where they
    # are not set (an author's machine, a CI job) is not refused for lacking them.
    ruleset, plan = checked_rules(settings.rules, env=_SecretsUnread(os.environ))
    payloads = _read_events(events)
    # emoji=False: a message shows as it would be sent, and a user id `b` in a dedup key
    # (`RULE:b:...`) stays text, where Rich would print `:b:` as an emoji.
    out = Console(highlight=False, soft_wrap=True, emoji=False)
    if not as_json:
        out.print(f"{ruleset.source} (version {ruleset.version})", markup=False)
    ids_given: list[bool] = []  # by index: whether each sample gave its event_id
    now = utc_now()
    # The latest event time the server takes with HERALD_CLOCK_SKEW at its default.
    latest = horizon(now, Settings.model_fields["clock_skew"].default)

    def checked() -> Iterator[tuple[str | None, Event | Rejection]]:
        for payload in payloads:
            given_id, event = _checked(payload, ruleset, latest)
            ids_given.append(given_id is not None)
            yield given_id, event

    alert = _alert_goes(plan.providers["internal"].name)
    decided = rejected = messages = 0
    # Each shown as it is decided: a long file shows its progress.
    for tried in try_rules(ruleset, checked(), now=now, hold=hold_policy(plan.quiet_hours)):
        result = _as_a_batch_answers(tried, id_given=ids_given[tried.index])
        if as_json:
            sys.stdout.buffer.write(shown_json_line(result).encode() + b"\n")
            sys.stdout.buffer.flush()
        else:
            _show(out, result, alert)
        decided += 1
        rejected += result.status == "rejected"
        messages += len(result.messages)
    if not as_json:
        out.print(
            f"\n{counted(decided, 'event')}: {counted(messages, 'message')} would be "
            f"sent, {rejected} rejected (nothing was stored or sent)",
            markup=False,
        )
    if rejected:
        raise typer.Exit(1)


class _SecretsUnread(Mapping[str, str]):
    """An environment in which every variable a provider names is set: its own value
    where it has one, else a stand-in that nothing reads, as nothing is sent."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        return self._environ.get(name) or "unread"

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def _as_a_batch_answers(result: TrialResult, *, id_given: bool) -> TrialResult:
    """``result`` as ``POST /events/batch`` gives it: an event_id reused for another
    payload, or traits that would overfill the profile, is rejected, saying why (a copied
    sample whose id was left as it was is not decided, and must not pass unnoticed)."""
    from herald.api.routes.events import PROFILE_FULL_ERROR, conflict_error

    errors = {"conflict": conflict_error(id_given), "profile_full": PROFILE_FULL_ERROR}
    error = errors.get(result.status)
    return result if error is None else replace(result, status="rejected", errors=[error])


def _checked(
    payload: Any, ruleset: RuleSet, latest: Horizon
) -> tuple[str | None, Event | Rejection]:
    """The id ``payload`` gives, if any, and its event, or why the API would refuse it."""
    from pydantic import ValidationError

    from herald.api.errors import field_errors
    from herald.api.event_bodies import EVENT
    from herald.api.schemas.requests import EVENT_FIELDS
    from herald.service.intake import Rejection, to_event

    given = payload.get("event_id") if isinstance(payload, dict) else None
    given = given if isinstance(given, str) else None
    try:
        envelope = EVENT.validate_python(payload)  # the check POST /events makes
    except ValidationError as exc:
        return given, Rejection(field_errors(exc, fields=EVENT_FIELDS))
    return given, to_event(envelope, ruleset, latest)


def _read_events(path: Path) -> list[Any]:
    """The events of the file at ``path`` (``-``: stdin), in order."""
    from herald.rules.rendering.template_set import not_utf8

    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", code=2)
    # A byte order mark some editors save, as they do in a template, is no part of it.
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # saved as UTF-16 or Latin-1, say
        fail(f"{path} {not_utf8(exc)}", code=2)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        data = _json_lines(raw, path, exc)
    else:
        if isinstance(data, dict) and list(data) == ["events"]:
            data = data["events"]
    events = data if isinstance(data, list) else [data]
    if not events:
        fail(f"{path} holds no event", code=2)
    return events


def _json_lines(raw: bytes, path: Path, as_one: orjson.JSONDecodeError) -> list[Any]:
    """The events of ``raw``, one a line; ``as_one`` is what was wrong with it read as
    one document, said instead when its first line is no JSON alone: a document over many
    lines (a list written with indents) is at fault where the document says, not at its
    first line, `[`, read alone."""
    lines = [(number, line) for number, line in enumerate(raw.splitlines(), 1) if line.strip()]
    events = []
    for number, line in lines:
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            said, at = (as_one, as_one.lineno) if number == lines[0][0] else (exc, number)
            fail(f"{path}, line {at}: not JSON ({said})", code=2)
    return events


# What each kind of provider does with an internal alert.
_ALERT_SENT = {"log": "logged", "webhook": "posted", "stub": "recorded"}


def _alert_goes(provider: str) -> str:
    """How a message line names an alert sent by ``provider`` (``internal:log+webhook``):
    "logged" alone misstated one that a webhook or the stub takes."""
    kinds = provider.partition(":")[2].split("+")
    return "an internal alert, " + " and ".join(_ALERT_SENT.get(kind, kind) for kind in kinds)


def _show(out: Console, result: Any, alert: str) -> None:
    head = f"\n{result.index + 1}. "
    if result.status == "rejected":
        out.print(f"{head}rejected{_id(result)}:", markup=False)
        for error in result.errors:
            where = ".".join(str(part) for part in error["loc"]) or "event"
            out.print(f"   {where}: {error['msg']}", markup=False)
        return
    out.print(f"{head}{result.status}{_id(result)}", markup=False)
    for decision in result.decisions:
        # A condition written over many lines is in its reason so: each further line
        # indented under the decision, not at the margin as the next thing shown.
        reason = decision["reason"].replace("\n", "\n     ")
        out.print(f"   {decision['rule']} {decision['outcome']}: {reason}", markup=False)
    for message in result.messages:
        to = (
            alert
            if message["category"] == "internal"
            else f"{message['channel']} to {message['recipient']}"
        )
        held = f", {message['hold_reason']}" if message["hold_reason"] else ""
        html = " (and an HTML part)" if message["html"] is not None else ""
        out.print(f"   -> {to}{held}: {message['subject']}{html}", markup=False)
        lines = message["body"].splitlines()
        for line in lines[:_BODY_LINES]:
            out.print(f"      {line}", markup=False)
        if len(lines) > _BODY_LINES:
            out.print(f"      ({len(lines) - _BODY_LINES} more lines)", markup=False)


def _id(result: Any) -> str:
    return f" {result.event_id}" if result.event_id else ""
