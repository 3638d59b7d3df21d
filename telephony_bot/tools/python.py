"""Integrator tools written in Python: an entry point `module:function`, sync or async.

The function receives the model's arguments as keyword arguments; a sync function runs in
a thread so it cannot stall the call.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from typing import Any

from telephony_bot.errors import ConfigError
from telephony_bot.providers.base import ToolSpec
from telephony_bot.tools.base import CallControl, FunctionTool


def load_entry_point(ref: str) -> Any:
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"python tool {ref!r}: expected 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"python tool {ref!r}: cannot import {module_name}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"python tool {ref!r}: {module_name} has no function {attr!r}")
    return fn


def python_tool(spec: ToolSpec, ref: str, timeout_s: float = 8.0) -> FunctionTool:
    fn = load_entry_point(ref)

    async def run(args: dict[str, Any], call: CallControl) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(**args)
        return await asyncio.to_thread(fn, **args)

    return FunctionTool(spec, run, timeout_s=timeout_s, meta={"python": ref})
