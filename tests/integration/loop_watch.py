"""Run a service with a watch on its event loop: ``python -m tests.integration.loop_watch services.store``.

Once armed (SIGUSR1, sent when the service is ready: start-up reads its settings and keys once
before any traffic), every callback the loop runs (each step of each task, each I/O callback, each timer) is
watched, on the loop's thread only (work sent to a thread with ``asyncio.to_thread`` is not):

- **blocking calls**: an audit hook (PEP 578) sees the calls that wait on the outside world
  from inside a callback: ``open`` of a file (a synchronous file read or write), ``time.sleep``,
  starting a subprocess, a ``connect``/``getaddrinfo`` of a *blocking* socket (asyncio's own
  sockets are non-blocking and pass). Deterministic: a busy machine does not make one appear.
  Files under ``/proc`` and ``/sys`` pass (the kernel answers them from memory: the metrics'
  process collector reads them); so does importing a module (its file is read once per process).
- **CPU-heavy callbacks**: one that used more than ``LOOP_WATCH_CPU_MS`` (default 50) ms of the
  thread's CPU time (``time.thread_time``, which other processes on the machine do not inflate,
  unlike the wall-clock ``slow_callback_duration`` of asyncio's debug mode).

Each finding is one line ``LOOP_WATCH {json}`` on the service's stderr (its log): what, where (the
callback, or the chain of coroutines a task's step resumed, and the innermost frames of our
code), never an argument's value beyond a file path.
"""

from __future__ import annotations

import asyncio
import json
import os
import runpy
import signal
import socket
import sys
import threading
import time
from typing import Any

PREFIX = "LOOP_WATCH"
CPU_LIMIT = float(os.environ.get("LOOP_WATCH_CPU_MS", "50")) / 1000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OURS = tuple(os.path.join(ROOT, d) + os.sep for d in ("services", "shared", "conversations"))
ALLOWED_PREFIXES = ("/proc/", "/sys/")

_state = threading.local()
_write = threading.Lock()
# Armed by SIGUSR1 once the service is ready: start-up (settings, keys, imports, the first
# connections) happens once before any traffic and is not what the watch is about.
_armed = False
ARMED = "armed"


def _where() -> list[str]:
    """The innermost frames of our own code on the current stack (no source line is read)."""
    out = []
    frame: Any = sys._getframe(1)
    while frame is not None and len(out) < 4:
        if frame.f_code.co_filename.startswith(OURS):
            out.append(
                f"{os.path.relpath(frame.f_code.co_filename, ROOT)}:{frame.f_lineno} {frame.f_code.co_name}"
            )
        frame = frame.f_back
    return out


def _report(kind: str, detail: str, handle: str, where: list[str]) -> None:
    """One line on the service's stderr (its log), prefixed ``LOOP_WATCH``: writing to an
    open descriptor opens nothing, so the watch does not see itself."""
    line = json.dumps({"kind": kind, "detail": detail, "callback": handle[-400:], "where": where})
    with _write:
        os.write(2, f"{PREFIX} {line}\n".encode())


def _importing() -> bool:
    """True while a module is being imported (its source and bytecode files are read)."""
    frame: Any = sys._getframe(3)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    handle = getattr(_state, "handle", None)
    if handle is None or getattr(_state, "inside", False):
        return
    _state.inside = True  # what the watch itself does is not watched
    try:
        _check(event, args, handle)
    finally:
        _state.inside = False


def _check(event: str, args: tuple[Any, ...], handle: str) -> None:
    detail = ""
    if event == "open":
        path = args[0]
        if not isinstance(path, str) or path.startswith(ALLOWED_PREFIXES) or _importing():
            return
        detail = f"open {path}"
    elif event == "time.sleep":
        detail = f"time.sleep({args[0]})"
    elif event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.fork"):
        detail = event
    elif event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        sock = args[0] if event == "socket.connect" else None
        if isinstance(sock, socket.socket) and sock.gettimeout() == 0.0:
            return  # non-blocking: asyncio's own
        detail = event
    else:
        return
    _report("blocking call", detail, handle, _where())


def _describe(handle: asyncio.events.Handle) -> str:
    """The callback, and for a task's step the chain of coroutines it resumes, innermost last."""
    owner = getattr(getattr(handle, "_callback", None), "__self__", None)
    if not isinstance(owner, asyncio.Task):
        return repr(handle)
    chain = []
    coro: Any = owner.get_coro()
    while coro is not None and len(chain) < 12:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        name = getattr(coro, "__qualname__", type(coro).__name__)
        if frame is not None:
            name += f" ({os.path.relpath(frame.f_code.co_filename, ROOT)}:{frame.f_lineno})"
        chain.append(name)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return "task step: " + " -> ".join(chain)


def _install() -> None:
    original = asyncio.events.Handle._run

    def _run(self: asyncio.events.Handle) -> None:
        if not _armed or getattr(_state, "handle", None) is not None:  # nested: the outer one is watched
            original(self)
            return
        _state.handle = "?"
        try:
            _state.handle = _describe(self)
        except Exception:  # a repr that fails must not break the service
            _state.handle = type(self).__name__
        began = time.thread_time()
        try:
            original(self)
        finally:
            used = time.thread_time() - began
            handle = _state.handle
            _state.handle = None
            if used > CPU_LIMIT:
                _report("cpu-heavy callback", f"{used * 1000:.0f} ms of CPU", handle, [])

    def arm(*_: Any) -> None:
        global _armed
        _armed = True
        os.write(2, f"{PREFIX} {ARMED}\n".encode())

    asyncio.events.Handle._run = _run  # type: ignore[method-assign]
    sys.addaudithook(_audit)
    signal.signal(signal.SIGUSR1, arm)


if __name__ == "__main__":
    module = sys.argv.pop(1)
    _install()
    runpy.run_module(module, run_name="__main__", alter_sys=True)
