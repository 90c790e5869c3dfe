"""Engine, session factory and the get_db dependency, as in the FastAPI SQL tutorial."""

import os
import zlib
from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Scenario plumbing: the suite may run several times at once against one server,
# so each run gets its own databases (depstrace_scn_prod_<run>, depstrace_scn_test_<run>).
RUN = f"{zlib.crc32(os.environ['SCENARIO_DATA'].encode()):08x}"

SQLALCHEMY_DATABASE_URL = (
    f"postgresql+psycopg://{os.environ['SCENARIO_PG']}/depstrace_scn_prod_{RUN}"
)

engine = create_engine(SQLALCHEMY_DATABASE_URL)
SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)


class Base(DeclarativeBase):
    pass


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()
