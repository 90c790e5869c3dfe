"""Timing for dependencies that hold a resource for the whole request."""

import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger("app.timing")


def timed(func: Callable[[], Iterator[T]]) -> Callable[[], Iterator[T]]:
    """Log how long the resource from the generator dependency ``func`` was held."""

    @functools.wraps(func)
    def wrapper() -> Iterator[T]:
        start = time.perf_counter()
        try:
            yield from func()
        finally:
            logger.debug("%s held for %.1f ms", func.__name__, (time.perf_counter() - start) * 1e3)

    return wrapper
