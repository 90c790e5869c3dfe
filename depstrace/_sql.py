"""What a SQL statement does, from its first words: the operation every store's
statements are counted and judged by (``SELECT``, ``INSERT``, ``CREATE DATABASE``,
transaction control).  Never the parameters, never more than the leading keywords."""

from __future__ import annotations

import re

_OPERATION = re.compile(r"\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(\w+)", re.DOTALL)


def operation(statement: str) -> str:
    """The statement's first keyword, upper case; ``CREATE DATABASE`` and the like
    (server administration, not application data) keep their object word, and so
    does ``START TRANSACTION``; ``BEGIN`` that opens a code block (Oracle, T-SQL)
    rather than a transaction is ``BLOCK``.  Transaction control followed by more
    statements in one string (``BEGIN; INSERT ...; COMMIT``) is named by what follows."""
    match = _OPERATION.match(statement)
    if match is None:
        return "?"
    keyword = match.group(1).upper()
    if keyword == "SELECT" and "pg_database" in statement:
        return "SELECT pg_database"  # does that database exist? (before CREATE DATABASE)
    if keyword in _DDL:
        admin = _DATABASE_DDL.match(statement, match.end())
        return keyword if admin is None else f"{keyword} {admin.group(1).upper()}"
    if keyword == "BEGIN" and not _BEGIN_TRANSACTION.match(statement, match.end()):
        return "BLOCK"
    if keyword == "START" and _TRANSACTION_WORD.match(statement, match.end()):
        keyword = "START TRANSACTION"
    if keyword in TRANSACTION_CONTROL:
        end = statement.find(";", match.end())
        if end >= 0 and statement[end + 1 :].strip():
            following = operation(statement[end + 1 :])
            return keyword if following == "?" else following
    return keyword


_DDL = frozenset({"CREATE", "DROP", "ALTER"})
_DATABASE_DDL = re.compile(r"\s+(DATABASE|ROLE|USER|EXTENSION)\b", re.IGNORECASE)
# Operations that administer the server rather than read or write application
# data: a fixture creating per-test databases on the maintenance database is fine.
ADMIN_OPERATIONS = frozenset(
    [f"{verb} {noun}" for verb in _DDL for noun in ("DATABASE", "ROLE", "USER", "EXTENSION")]
    + ["SELECT pg_database"]
)
# What follows BEGIN when it starts a transaction (PostgreSQL, MySQL, SQLite, T-SQL)
# rather than a block of code such as Oracle's "BEGIN proc(); END;".
_BEGIN_TRANSACTION = re.compile(
    r"\s*(?:;|$|(?:TRANSACTION|WORK|TRAN|ISOLATION|READ|DEFERRABLE|NOT|DEFERRED|IMMEDIATE"
    r"|EXCLUSIVE|DISTRIBUTED)\b)",
    re.IGNORECASE,
)
_TRANSACTION_WORD = re.compile(r"\s+TRANSACTION\b", re.IGNORECASE)
# Transaction control reads and writes no data: it is never counted as a statement, so
# on its own it never makes a finding (a fixture's bare COMMIT before DROP DATABASE).
TRANSACTION_CONTROL = frozenset(
    {"BEGIN", "START TRANSACTION", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"}
)


# Statement string -> operation: an application runs the same few hundred statement
# strings over and over (SQLAlchemy caches their compilation), so each is classified once.
_operations: dict[str, str] = {}
_OPERATIONS_LIMIT = 4096


def operation_of(statement: str) -> str:
    """:func:`operation`, cached per statement string."""
    found = _operations.get(statement)
    if found is None:
        found = operation(statement)
        if len(_operations) >= _OPERATIONS_LIMIT:
            _operations.clear()
        _operations[statement] = found
    return found
