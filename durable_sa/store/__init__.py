"""The imperative shell over the database: the schema, reads, and applying transitions."""
