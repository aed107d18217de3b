"""Slow cells for the interruption tests (importable by a child process)."""
import time


def square(i: int, delay: float = 0.4) -> int:
    time.sleep(delay)
    return i * i
