"""Storage: on-disk layout, the content-addressed blob store, the SQLite metadata store and file locks."""
