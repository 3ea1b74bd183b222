"""The scale-out runtime's Kafka side: topics from ``schemas/topics.yaml`` and the ingest
publisher.

- ``services.scaleout.kafka.topics``: the topic list (the one in ``schemas/``) and
  ``ensure_topics``, which creates the touchpoints, customer-views (compacted) and
  dead-letters topics with the configured partitions; idempotent.
- ``services.scaleout.kafka.publisher``: ``TouchpointPublisher``, which writes accepted
  touchpoints to the touchpoints topic (key = customer id, Avro single-object value,
  CloudEvents-style headers) and returns only after the broker acknowledged them with
  ``acks=all``; any broker failure is ``services.embedded.ingest.StorageUnavailable`` (503).

Submodules are imported explicitly (``from services.scaleout.kafka.publisher import ...``) so that
importing the package does not pull aiokafka into the embedded runtime.
"""
