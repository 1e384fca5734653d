"""Records: the field registry and schema, the store (one atomic JSON file per record), loading."""
