"""The scale-out runtime: ingest to Kafka, the view workers (adapters around
``projections.batch.fold_batch``) and the Redis view store."""
