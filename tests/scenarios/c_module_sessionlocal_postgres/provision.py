"""``provision.py up|down PROD_DB TEST_DB``: create or drop the scenario's databases.

The production database with its one row stands in for a server that exists before
the suite runs, so this runs in its own plain Python process, outside the traced one.
"""

import os
import sys

import psycopg

SERVER = f"postgresql://{os.environ['SCENARIO_PG']}"


def main(action: str, prod: str, test: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        for name in (prod, test):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if action == "up":
                conn.execute(f'CREATE DATABASE "{name}"')
    if action == "up":
        with psycopg.connect(f"{SERVER}/{prod}") as conn:
            conn.execute("CREATE TABLE items (id SERIAL PRIMARY KEY, name VARCHAR NOT NULL)")
            conn.execute("INSERT INTO items (name) VALUES ('production item')")


if __name__ == "__main__":
    main(*sys.argv[1:])
