"""Settings, read from the environment once, when the module is imported."""

import os

DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{os.environ['SCENARIO_DATA']}/dev.db")
