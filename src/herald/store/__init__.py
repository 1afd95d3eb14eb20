"""Storage: the schema, the unit of work and its repositories, on SQLite or PostgreSQL."""
