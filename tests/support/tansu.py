"""A real Tansu broker for integration tests: the product's launcher
(``tools.tansu``), which the Kafka benchmark uses too.

``TansuBroker`` starts on a free loopback port with in-memory storage, ready once a Kafka
Metadata request is answered; ``stop()`` (SIGTERM; 5 s while clients are connected),
``kill()`` (SIGKILL, for outages) and ``start()`` again on the same port, EMPTY (memory
storage). Tests that need data to survive a restart must use another storage engine.
"""

from tools.tansu import TansuBroker, TansuFailed, tansu_binary

__all__ = ["TansuBroker", "TansuFailed", "tansu_binary"]
