"""One module per model: what its DAG reads, how it calls its R service, what it writes."""
