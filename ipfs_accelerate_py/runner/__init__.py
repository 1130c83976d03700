"""The bulk request runner: a JSONL file of requests through one backend,
with every feature of the client engaged, progress, resume and reports."""
