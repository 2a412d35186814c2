"""Who still calls the old API: the usage store (SQLite on one host, Redis for a fleet),
the flusher that fills it from the request path's recorder, and the report."""
