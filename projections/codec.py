"""Touchpoints to and from their canonical dictionary form.

The canonical form is what the embedded log stores (as JSON) and what the HTTP API
accepts: envelope fields plus the type's own fields at the top level, decimals as
strings with exactly four decimal places (the Avro contracts' scale), instants as ISO 8601 in
UTC. ``to_dict(from_dict(d)) == d`` for any canonical
``d``, so a replay reads back exactly what was accepted.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from projections.touchpoints import (
    TOUCHPOINT_TYPES,
    Channel,
    CustomerRef,
    ExternalId,
    PurchaseLine,
    Touchpoint,
)

__all__ = ["UnknownTouchpointType", "to_dict", "from_dict", "instant", "format_instant", "money"]

_ENVELOPE = frozenset(f.name for f in dataclasses.fields(Touchpoint))


class UnknownTouchpointType(ValueError):
    """The dictionary names a touchpoint type this version does not know."""


def format_instant(moment: datetime) -> str:
    """The one textual form of an instant: UTC, microseconds, explicit offset."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def instant(text: str | datetime) -> datetime:
    """A UTC instant from its ISO text (or an aware datetime, as Avro decodes it)."""
    moment = text if isinstance(text, datetime) else datetime.fromisoformat(text)
    if moment.tzinfo is UTC:  # the canonical form: nothing to convert
        return moment
    if moment.tzinfo is None:
        raise ValueError(f"instant without a time zone: {text!r}")
    return moment.astimezone(UTC)


def _customer_to_dict(ref: CustomerRef) -> dict[str, Any]:
    return {
        "customer_id": ref.customer_id,
        "emails": list(ref.emails),
        "phones": list(ref.phones),
        "external_ids": [{"system": x.system, "id": x.id} for x in ref.external_ids],
    }


def _customer_from_dict(d: dict[str, Any]) -> CustomerRef:
    return CustomerRef(
        customer_id=d.get("customer_id"),
        emails=tuple(d.get("emails") or ()),
        phones=tuple(d.get("phones") or ()),
        external_ids=tuple(ExternalId(x["system"], x["id"]) for x in d.get("external_ids") or ()),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, PurchaseLine):
        return {
            "sku": value.sku,
            "quantity": value.quantity,
            "unit_price": str(value.unit_price),
            "category": value.category,
        }
    return value


def to_dict(event: Touchpoint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "occurred_at": format_instant(event.occurred_at),
        "received_at": format_instant(event.received_at),
        "source": event.source,
        "customer": _customer_to_dict(event.customer),
        "channel": event.channel.value,
        "trigger_id": event.trigger_id,
        "attributes": dict(event.attributes),
    }
    for f in _OWN_FIELDS[type(event)]:
        value = getattr(event, f)
        if f == "fields":
            out[f] = dict(value)
        elif f == "lines":
            out[f] = [_plain(line) for line in value]
        else:
            out[f] = _plain(value)
    return out


MONEY_SCALE = Decimal("0.0001")


def money(value: Any) -> Decimal:
    """Money always carries four decimal places, so "49.9" and "49.90" are one amount and
    sums keep one textual form (the same bytes in every runtime)."""
    return Decimal(value).quantize(MONEY_SCALE)


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else money(value)


def _line(d: dict[str, Any]) -> PurchaseLine:
    return PurchaseLine(d["sku"], int(d["quantity"]), money(d["unit_price"]), d.get("category"))


# Field readers for the type-specific fields that are not plain JSON scalars.
_READERS: dict[str, Any] = {
    "amount": money,
    "margin": _decimal_or_none,
    "lines": lambda v: tuple(_line(x) for x in v or ()),
    "fields": lambda v: tuple(sorted((v or {}).items())),
}

_OWN_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls) if f.name not in _ENVELOPE)
    for cls in TOUCHPOINT_TYPES.values()
}


def from_dict(d: dict[str, Any]) -> Touchpoint:
    """Build the typed touchpoint; raises UnknownTouchpointType, KeyError, ValueError."""
    cls = TOUCHPOINT_TYPES.get(d.get("type", ""))
    if cls is None:
        raise UnknownTouchpointType(f"unknown touchpoint type {d.get('type')!r}")
    own: dict[str, Any] = {}
    for name in _OWN_FIELDS[cls]:
        if name in d:
            reader = _READERS.get(name)
            own[name] = reader(d[name]) if reader else d[name]
    return cls(
        event_id=d["event_id"],
        occurred_at=instant(d["occurred_at"]),
        received_at=instant(d["received_at"]),
        source=d["source"],
        customer=_customer_from_dict(d["customer"]),
        channel=Channel(d["channel"]),
        trigger_id=d.get("trigger_id"),
        attributes=tuple(sorted((d.get("attributes") or {}).items())),
        **own,
    )
