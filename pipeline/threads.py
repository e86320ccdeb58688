"""Threads joined by bounded queues that stop cleanly: a producer thread fills a queue from a
generator, a consumer thread calls a function on every item, and one `threading.Event`
stops both (every put and get waits in 0.1 s steps and gives up once it is set). A producer's
exception travels down the queue as a `Failure` for the consumer's side to raise; the end of
the items is `END`. Used by the tokenize step (reader -> encoder -> writer).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

END = object()  # the last item of a queue (also what `queue_get` returns once stopped)


class Failure:
    """An exception raised in a producer thread, handed down its queue."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def queue_put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put into a bounded queue unless the pipeline is stopping (False then)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def queue_get(q: queue.Queue, stop: threading.Event) -> Any:
    """The next item, or END once the pipeline is stopping and the queue is empty."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return END


def producer(gen: Callable[[], Iterator[Any]], q: queue.Queue, stop: threading.Event) -> None:
    """Thread body: put every item of `gen()` into `q`, then END (or a Failure)."""
    try:
        for item in gen():
            if not queue_put(q, item, stop):
                return
        queue_put(q, END, stop)
    except BaseException as e:  # noqa: BLE001 (handed to the consumer, raised there)
        queue_put(q, Failure(e), stop)


def consumer(fn: Callable[..., Any], q: queue.Queue, stop: threading.Event, errors: list) -> None:
    """Thread body: call `fn(*item)` on every item of `q` until END; an exception is appended to
    `errors` and stops the pipeline (the caller's thread raises it)."""
    try:
        while True:
            job = queue_get(q, stop)
            if job is END:
                return
            fn(*job)
    except BaseException as e:  # noqa: BLE001 (raised by the task's thread)
        errors.append(e)
        stop.set()
