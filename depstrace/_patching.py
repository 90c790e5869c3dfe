"""One registry of everything depstrace changes in other libraries, undone LIFO.

Every patch and event listener goes through :class:`PatchRegistry`, which
remembers exactly what it replaced or added, so :meth:`PatchRegistry.restore`
puts back the very objects that were there (``is``-identical) and removes only
the listeners it added.  This is what lets "disabled" mean "nothing patched".
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _AttributePatch:
    owner: Any
    name: str
    original: Any
    replacement: Any
    had_own: bool  # the attribute lived in owner.__dict__ (not inherited)

    def undo(self) -> None:
        # Only undo what is still ours: if someone patched over us, leave theirs.
        if getattr(self.owner, self.name, None) is not self.replacement:
            return
        if self.had_own:
            setattr(self.owner, self.name, self.original)
        else:
            delattr(self.owner, self.name)


@dataclass
class _Listener:
    target: weakref.ref[Any]
    event: str
    fn: Callable[..., Any]
    remove: Callable[[Any, str, Callable[..., Any]], None]

    def undo(self) -> None:
        target = self.target()
        if target is not None:
            self.remove(target, self.event, self.fn)


class PatchRegistry:
    """Applies attribute patches and event listeners and restores them in reverse."""

    def __init__(self) -> None:
        self._undo: list[_AttributePatch | _Listener] = []

    def __len__(self) -> int:
        return len(self._undo)

    def patch(self, owner: Any, name: str, replacement: Any) -> Any:
        """Set ``owner.name = replacement`` and return the original value."""
        original = getattr(owner, name)
        had_own = name in vars(owner)
        setattr(owner, name, replacement)
        self._undo.append(_AttributePatch(owner, name, original, replacement, had_own))
        return original

    def rebind_everywhere(self, original: Any, replacement: Any) -> int:
        """Rebind every module-level name that *is* ``original`` to ``replacement``.

        FastAPI's ``fastapi.routing`` (and third-party packages) import
        ``solve_dependencies`` by name; patching only the defining module would
        miss those bindings.  Returns how many bindings were changed.
        """
        count = 0
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for name, value in list(namespace.items()):
                if value is original:
                    self.patch(module, name, replacement)
                    count += 1
        return count

    def listen(
        self,
        target: Any,
        event: str,
        fn: Callable[..., Any],
        *,
        add: Callable[[Any, str, Callable[..., Any]], None],
        remove: Callable[[Any, str, Callable[..., Any]], None],
    ) -> None:
        """Register ``fn`` for ``event`` on ``target`` and remember how to remove it."""
        add(target, event, fn)
        self._undo.append(_Listener(weakref.ref(target), event, fn, remove))

    def restore(self) -> None:
        """Undo everything, newest first."""
        while self._undo:
            self._undo.pop().undo()
