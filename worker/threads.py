"""Raise an exception inside another thread: how timeouts reach a thread Python cannot kill.

Used by the native pools (``JobTimeout``) and by the Celery adapter's time limits
(``SoftTimeLimitExceeded``, ``TimeLimitExceeded``).
"""

from __future__ import annotations


def raise_in_thread(ident: int | None, exc_type: type[BaseException]) -> bool:
    """Schedule ``exc_type`` to be raised in thread ``ident`` (CPython's async exception).

    The exception is raised at the thread's next bytecode boundary: Python code stops
    there; a thread blocked in C (sleep, a socket read, a C extension) gets it only when
    that call returns. Returns whether exactly one thread was hit.
    """
    if ident is None:
        return False
    import ctypes  # only when a timeout fires: keeps idle RSS down

    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    n = set_async_exc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
    if n > 1:  # cannot happen for a valid id; undo as the C API documentation asks
        set_async_exc(ctypes.c_ulong(ident), None)
        return False
    return bool(n == 1)
