"""The database: the schema (ORM entities and tables), reads, and the statements that write."""
