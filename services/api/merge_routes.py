"""Merging duplicate customers, and undoing a wrong merge (admin scope).

``POST /v1/customers/{id}/merge`` appends a ``customer_merged`` event to the log; the
views fold it (``projections.merge``: the survivor's view becomes the fold of both
customers' events, as if they had always been one) and the answer waits for them, so a
read that follows sees the merge. ``POST /v1/merges/{merge_id}/undo`` appends its undoing:
both customers become exactly what their own events make them. Each refusal is a 409
with a code (``same_customer``, ``already_merged``, ``survivor_merged``,
``already_undone``) and, where one helps, the customer to use instead.

``POST /v1/identity/conflicts/{position}/resolve`` resolves a listed identity conflict in
one call: every other customer the conflicting event's identifiers belong to is merged
into the one kept. ``GET /v1/merges`` is the feed of merges made and undone, in log
order, each a ``CustomerMerged`` or ``CustomerUnmerged`` (schemas/identity), so a
downstream system can follow.

The scale-out runtime keeps no merges yet: its API does not offer these routes (its
OpenAPI document lists none).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from projections.merge import Merge, MergeRefused
from services.api.auth import KeyRing, Principal
from services.api.customer_routes import CustomerId
from services.api.input_rules import Identifier
from services.api.responses import JSON
from services.embedded.eventlog import merge_document, unmerge_document
from services.ports import MergeLog

__all__ = ["merge_router", "merge_event"]

WAIT_SECONDS = 10.0  # how long an answer waits for the views to fold the merge


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    absorb: Identifier = Field(description="the duplicate's customer id: shown as this customer from now on")
    reason: str = Field(min_length=1, max_length=500, description="why (kept with the merge, shown in its record)")


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500, description="why these customers are one person")
    keep: Identifier | None = Field(None, description="the customer kept (one of the conflict's customers); by "
                                                      "default the one the event was resolved to")


class UndoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


_REFUSED: dict[int | str, dict[str, Any]] = {409: {"description": "refused: `error.code` says why (same_customer, already_merged, "
                                 "survivor_merged, already_undone), `error.customer_id` what to use instead"}}


def merge_router(platform: MergeLog, keys: KeyRing) -> APIRouter:
    router = APIRouter(tags=["identity"])
    admin = Depends(keys.require("admin"))  # a default value: evaluated here, where ``keys`` is
    reads: Any = platform  # the platform's other ports: caught_up, state, append

    async def settle(position: int, merge_id: str) -> dict[str, Any] | None:
        """The merge's record once the views folded it; None if they have not yet."""
        caught = await reads.caught_up(position, WAIT_SECONDS)
        if not caught.reached:
            return None
        refusal = await platform.merge_refusal(position)
        if refusal is not None:
            raise HTTPException(409, {"code": _refusal_code(refusal), "message": refusal})
        return await platform.merge_record(merge_id)

    def refused(error: MergeRefused) -> HTTPException:
        return HTTPException(409, {"code": error.code, "message": str(error), "customer_id": error.customer_id})

    @router.post("/v1/customers/{customer_id}/merge", responses={
        **_REFUSED, 202: {"description": "appended; the views have not folded it yet (read with min_position)"},
        404: {"description": "no such customer"}})
    async def merge(customer_id: CustomerId, body: MergeRequest, principal: Principal = admin) -> JSON:
        """Merge the customer ``absorb`` into this one (the survivor)."""
        merges = platform.merges()
        for who in (customer_id, body.absorb):
            if merges.root(who) == who and await reads.state(who) is None:
                raise HTTPException(404, f"no such customer: {who}")
        merge_id = "mrg_" + uuid.uuid4().hex[:24]
        try:
            merges.merge(Merge(merge_id, customer_id, body.absorb, body.reason, principal.label))
        except MergeRefused as error:
            raise refused(error) from None
        now = datetime.now(UTC)
        appended = (await reads.append([merge_document(merge_id, customer_id, body.absorb, body.reason,
                                                          principal.label, now)]))[0]
        record = await settle(appended.position, merge_id)
        if record is None:
            return JSON({"merge_id": merge_id, "position": appended.position, "status": "pending"}, status_code=202)
        return JSON(_merge(record), headers={"X-Touchstream-Position": str(appended.position)})

    @router.post("/v1/identity/conflicts/{position}/resolve", responses={
        **_REFUSED, 202: {"description": "appended; the views have not folded it yet (read with min_position)"},
        404: {"description": "no conflict at this position"},
        422: {"description": "`keep` is not one of the conflict's customers"}})
    async def resolve(position: Annotated[int, Path(ge=1, le=2**63 - 1)], body: ResolveRequest,
                      principal: Principal = admin) -> JSON:
        """Resolve an identity conflict in one call: every customer the event's identifiers
        belong to is merged into the one kept (``cause`` conflict, the event as evidence).
        409 ``already_resolved`` when they are shown as one customer already."""
        found = await reads.conflicts(position - 1, 1)
        if not found or found[0]["position"] != position:
            raise HTTPException(404, f"no identity conflict at position {position}")
        conflict = found[0]
        merges = platform.merges()
        claims: dict[str, list[str]] = {}  # each customer shown apart -> the kinds of the event's identifiers it owns
        claims[merges.root(conflict["customer_id"])] = []
        for claim in conflict["identifiers"]:
            claims.setdefault(merges.root(claim["owner"]), []).append(claim["kind"])
        keep = merges.root(body.keep or conflict["customer_id"])
        if keep not in claims:
            raise HTTPException(422, [{"path": "body.keep", "message": f"{body.keep} is not one of the customers of "
                                       f"the conflict at position {position}: {sorted(claims)}"}])
        if len(claims) == 1:
            raise HTTPException(409, {"code": "already_resolved", "message": f"the customers of the conflict at "
                                      f"position {position} are all shown as {keep}", "customer_id": keep})
        now, documents, graph = datetime.now(UTC), [], merges
        for absorbed in sorted(c for c in claims if c != keep):
            merge_id = "mrg_" + uuid.uuid4().hex[:24]
            try:
                graph = graph.merge(Merge(merge_id, keep, absorbed, body.reason, principal.label))
            except MergeRefused as error:
                raise refused(error) from None
            evidence = {"event_id": conflict["event_id"], "conflict_position": position, "rule": None,
                        "identifiers": sorted(set(claims[absorbed] or claims[keep]))}
            documents.append(merge_document(merge_id, keep, absorbed, body.reason, principal.label, now,
                                            cause="conflict", evidence=evidence))
        appended = await reads.append(documents)
        caught = await reads.caught_up(appended[-1].position, WAIT_SECONDS)
        if not caught.reached:
            return JSON({"conflict_position": position, "survivor": keep, "status": "pending",
                         "merges": [{"merge_id": d["merge_id"], "position": a.position, "status": "pending"}
                                    for d, a in zip(documents, appended, strict=True)]}, status_code=202)
        answers: list[dict[str, Any]] = []
        for document, added in zip(documents, appended, strict=True):
            refusal = await platform.merge_refusal(added.position)
            record = await platform.merge_record(document["merge_id"])
            if refusal is not None or record is None:  # another merge raced this one
                done = ", ".join(a["merge_id"] for a in answers) or "none"
                raise HTTPException(409, {"code": _refusal_code(refusal), "customer_id": None,
                                          "message": f"{refusal or 'refused'} (merges of this resolution in force: "
                                                     f"{done}; undo them or resolve again)"})
            answers.append(_merge(record))
        return JSON({"conflict_position": position, "survivor": keep, "merges": answers},
                    headers={"X-Touchstream-Position": str(appended[-1].position)})

    @router.get("/v1/merges", dependencies=[Depends(keys.require("read"))])
    async def merge_feed(after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        """Merges made and undone after the log position ``after``, in log order: each a
        ``CustomerMerged`` or ``CustomerUnmerged`` (schemas/identity). ``next_after`` is
        the position to ask after next (``after`` itself when nothing is new)."""
        rows = await platform.merge_feed(after, limit)
        events = [merge_event(row) for row in rows]
        return JSON({"events": events, "next_after": events[-1]["position"] if events else after})

    @router.post("/v1/merges/{merge_id}/undo", responses={
        **_REFUSED, 202: {"description": "appended; the views have not folded it yet"},
        404: {"description": "no such merge"}})
    async def undo(merge_id: Annotated[str, Path(pattern="^mrg_[0-9a-f]{24}$")],
                   body: Annotated[UndoRequest, Body()], principal: Principal = admin) -> JSON:
        """Undo a merge: both customers become what their own events make them."""
        record = await platform.merge_record(merge_id)
        if record is None:
            raise HTTPException(404, f"no merge {merge_id}")
        if record["undone_position"] is not None:
            raise HTTPException(409, {"code": "already_undone", "message": f"merge {merge_id} was undone at "
                                      f"position {record['undone_position']}", "customer_id": None})
        appended = (await reads.append([unmerge_document(merge_id, body.reason, principal.label,
                                                            datetime.now(UTC))]))[0]
        if appended.duplicate:  # undone by a request that raced this one
            raise HTTPException(409, {"code": "already_undone", "message": f"merge {merge_id} is being undone",
                                      "customer_id": None})
        record = await settle(appended.position, merge_id)
        if record is None:
            return JSON({"merge_id": merge_id, "position": appended.position, "status": "pending"}, status_code=202)
        return JSON(_merge(record), headers={"X-Touchstream-Position": str(appended.position)})

    @router.get("/v1/merges/{merge_id}", dependencies=[Depends(keys.require("read"))],
                responses={404: {"description": "no such merge"}})
    async def get_merge(merge_id: Annotated[str, Path(pattern="^mrg_[0-9a-f]{24}$")]) -> JSON:
        """A merge as recorded, and its undoing if it was undone."""
        record = await platform.merge_record(merge_id)
        if record is None:
            raise HTTPException(404, f"no merge {merge_id}")
        return JSON(_merge(record))

    return router


def _refusal_code(reason: str | None) -> str:
    """The graph's code in a refused merge's dead-letter reason ("merge_refused: <code>: ...")."""
    return reason.split(": ")[1] if reason is not None and reason.count(": ") >= 2 else "refused"


def _evidence(record: dict[str, Any]) -> dict[str, Any] | None:
    raw = record["evidence"]
    return None if raw is None else orjson.loads(raw)


def _merge(record: dict[str, Any]) -> dict[str, Any]:
    undone = record["undone_position"]
    return {"merge_id": record["merge_id"], "survivor": record["survivor"], "absorbed": record["absorbed"],
            "cause": record["cause"], "reason": record["reason"], "actor": record["actor"],
            "evidence": _evidence(record), "position": record["position"], "at": record["at"],
            "in_force": undone is None,
            "undone": None if undone is None else {"position": undone, "reason": record["undo_reason"],
                                                   "actor": record["undo_actor"], "at": record["undone_at"]}}


def merge_event(row: dict[str, Any]) -> dict[str, Any]:
    """A merge feed row (``merge_feed``) as its contract: CustomerMerged, or CustomerUnmerged
    for the row of an undoing."""
    if row["undone"]:
        return {"type": "customer_unmerged", "merge_id": row["merge_id"], "survivor": row["survivor"],
                "absorbed": row["absorbed"], "reason": row["undo_reason"], "actor": row["undo_actor"],
                "position": row["undone_position"], "at": row["undone_at"]}
    return {"type": "customer_merged", "merge_id": row["merge_id"], "survivor": row["survivor"],
            "absorbed": row["absorbed"], "cause": row["cause"], "reason": row["reason"], "actor": row["actor"],
            "evidence": _evidence(row), "position": row["position"], "at": row["at"]}
