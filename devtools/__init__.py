"""Developer tooling: local services (Kafka, MLServer, fake endpoints) for tests and examples."""
