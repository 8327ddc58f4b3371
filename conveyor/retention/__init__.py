"""Retention: finished jobs past their retention leave the store for archive files.

`files` is the archive's format, `store` the SQL, `archive` the command's use case
(docs/architecture.md §8.4).
"""
