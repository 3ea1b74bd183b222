"""Merging duplicate customers, and undoing a wrong merge (admin scope).

``POST /v1/customers/{id}/merge`` appends a ``customer_merged`` event to the log; the
views fold it (``projections.merge``: the survivor's view becomes the fold of both
customers' events, as if they had always been one) and the answer waits for them, so a
read that follows sees the merge. ``POST /v1/merges/{merge_id}/undo`` appends its undoing:
both customers become exactly what their own events make them. Each refusal is a 409
with a code (``same_customer``, ``already_merged``, ``survivor_merged``,
``already_undone``) and, where one helps, the customer to use instead.

The scale-out runtime keeps no merges yet: its API does not offer these routes (its
OpenAPI document lists none).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from projections.merge import Merge, MergeRefused
from services.api.auth import KeyRing, Principal
from services.api.customer_routes import CustomerId
from services.api.input_rules import Identifier
from services.api.responses import JSON
from services.embedded.eventlog import merge_document, unmerge_document
from services.ports import MergeLog

__all__ = ["merge_router"]

WAIT_SECONDS = 10.0  # how long an answer waits for the views to fold the merge


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    absorb: Identifier = Field(description="the duplicate's customer id: shown as this customer from now on")
    reason: str = Field(min_length=1, max_length=500, description="why (kept with the merge, shown in its record)")


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
            raise HTTPException(409, {"code": refusal.split(": ")[1] if refusal.count(": ") >= 2 else "refused",
                                      "message": refusal})
        return await platform.merge_record(merge_id)

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
        except MergeRefused as refused:
            raise HTTPException(409, {"code": refused.code, "message": str(refused),
                                      "customer_id": refused.customer_id}) from None
        now = datetime.now(UTC)
        appended = (await reads.append([merge_document(merge_id, customer_id, body.absorb, body.reason,
                                                          principal.label, now)]))[0]
        record = await settle(appended.position, merge_id)
        if record is None:
            return JSON({"merge_id": merge_id, "position": appended.position, "status": "pending"}, status_code=202)
        return JSON(_merge(record), headers={"X-Touchstream-Position": str(appended.position)})

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


def _merge(record: dict[str, Any]) -> dict[str, Any]:
    undone = record["undone_position"]
    return {"merge_id": record["merge_id"], "survivor": record["survivor"], "absorbed": record["absorbed"],
            "reason": record["reason"], "actor": record["actor"], "position": record["position"],
            "in_force": undone is None,
            "undone": None if undone is None else {"position": undone, "reason": record["undo_reason"],
                                                   "actor": record["undo_actor"]}}
