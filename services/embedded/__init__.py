"""The embedded runtime: the eventsourcing log on SQLite, the projection runner (an adapter
around ``projections.batch.fold_batch``), the SQLite view store and its wiring."""
