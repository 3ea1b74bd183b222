"""The embedded runtime's storage, split per concern; ``unit.ViewStore`` commits them together.

Every concern owns its tables in views.sqlite, its reads and its part of a runner batch
(``write``): customer views and timelines (``customers``), the identity index and its
conflicts (``identity``), lifecycle stages, deadlines and RFM cells (``lifecycle``), the
trigger feed, outcomes and per-rule figures (``contacts``), the webhook delivery ledger
(``delivery``), fitted value models (``models``), dead letters (``dead_letters``) and
segment membership (``segments``). ``unit.ViewStore`` is the unit of work: it creates
every concern's tables and writes a batch's changes to all of them in one transaction,
with the tracking record of the log position the batch ends at.
"""
