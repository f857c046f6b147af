"""Pure domain logic: data contracts, validation, training, metrics, scoring, table storage."""
