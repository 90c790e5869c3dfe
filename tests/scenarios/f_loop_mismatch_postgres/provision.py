"""``provision.py up|down NAME``: create or drop the scenario's PostgreSQL test database.

Runs in its own plain Python process: creating the database is the CI job's
business, not part of the traced suite.
"""

import os
import sys

import psycopg

SERVER = f"postgresql://{os.environ['SCENARIO_PG']}"


def main(action: str, name: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if action == "up":
            conn.execute(f'CREATE DATABASE "{name}"')
    if action == "up":
        with psycopg.connect(f"{SERVER}/{name}") as conn:
            conn.execute("CREATE TABLE products (id SERIAL PRIMARY KEY, name VARCHAR NOT NULL)")


if __name__ == "__main__":
    main(*sys.argv[1:])
