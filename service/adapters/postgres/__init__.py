"""PostgreSQL: migrations, the annotated queries, repositories and the unit of work."""
