"""Python's cyclic garbage collector on the GUI thread only, while a window is open.

Automatic collection runs in whichever thread happens to allocate. When a worker thread (a
model load, a pruning job) triggers it and the garbage holds a Qt object, that object is torn
down off the GUI thread: its destructor takes Qt's signal lock and waits for the GIL, while the
GUI thread holds the GIL and waits for that lock in a ``disconnect``. This deadlocked a GUI test
during ``torch.load`` (stacks in issue 7's note). pyqtgraph's ``GarbageCollector`` is the
standard remedy: automatic collection off, and a timer that collects on the GUI thread. The
windows share one collector; when the last one closes, automatic collection is restored.
"""

from __future__ import annotations

import gc

from pyqtgraph.util.garbage_collector import GarbageCollector

INTERVAL_S = 0.5

_users = 0
_collector: GarbageCollector | None = None
_was_enabled = True


def acquire() -> None:
    """A window opened: collect on the GUI thread's timer from now on (call on the GUI thread)."""
    global _users, _collector, _was_enabled
    if _users == 0:
        _was_enabled = gc.isenabled()
        _collector = GarbageCollector(interval=INTERVAL_S)  # disables automatic collection
    _users += 1


def release() -> None:
    """A window closed (its worker threads stopped): the last one restores automatic collection."""
    global _users, _collector
    if _users == 0:
        return
    _users -= 1
    if _users == 0 and _collector is not None:
        _collector.timer.stop()
        _collector = None
        if _was_enabled:
            gc.enable()
        gc.collect()


def active() -> bool:
    """True while collection is confined to the GUI thread."""
    return _users > 0
