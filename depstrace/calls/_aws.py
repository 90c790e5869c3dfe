"""AWS API calls through botocore (boto3 clients and resources).

Every operation a client performs goes through ``BaseClient._make_api_call``
with the operation name and its parameters; depstrace reads the service name,
the endpoint URL's host and port, and the ``Bucket`` parameter, nothing else.
moto intercepts botocore in process (a ``before-send`` handler it adds to
botocore's built-in handlers and switches on while a mock is active): a call
made while that handler is on is recorded as the fake ``moto``.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from depstrace._failopen import report_internal_error
from depstrace.calls import DEFAULT_PORTS, CallUse, Target, done, note

if TYPE_CHECKING:
    from depstrace._patching import PatchRegistry


def patch_botocore(patches: PatchRegistry) -> None:
    """Patch ``botocore.client.BaseClient._make_api_call``."""
    from botocore import client

    original = client.BaseClient._make_api_call

    @functools.wraps(original)
    def _make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
        use = _note(self, operation_name, api_params)
        try:
            return original(self, operation_name, api_params)
        finally:
            done(use)

    patches.patch(client.BaseClient, "_make_api_call", _make_api_call)


def _note(client: Any, operation: str, params: Any) -> CallUse | None:
    try:
        meta = client.meta
        parts = urlsplit(meta.endpoint_url or "")
        scheme = parts.scheme.lower() or "https"
        bucket = params.get("Bucket") if isinstance(params, dict) else None
        target = Target(
            "aws",
            "botocore",
            parts.hostname,
            parts.port or DEFAULT_PORTS.get(scheme),
            scheme=scheme,
            service=meta.service_model.service_name,
            bucket=bucket if isinstance(bucket, str) else None,
            fake="moto" if moto_active() else None,
        )
        return note(target, str(operation))
    except Exception:  # the tracer never breaks the call it observes
        report_internal_error("botocore probe")
        return None


def moto_active() -> bool:
    """Whether a moto mock is on: its botocore stubber answers instead of AWS."""
    models = sys.modules.get("moto.core.models")
    stubber = getattr(models, "botocore_stubber", None)
    return bool(getattr(stubber, "enabled", False))
