"""Every span attribute, event and log key depstrace emits, in one place.

Dashboards, docs and Jaeger searches refer to these names; the tests check
that each name they query is one depstrace really emits.  Standard OpenTelemetry
names (semantic conventions) are used where one exists; the rest live under
``depstrace.``.
"""

from __future__ import annotations

# -- standard names (OpenTelemetry semantic conventions) --------------------------
CODE_FUNCTION_NAME = "code.function.name"
CODE_FILE_PATH = "code.file.path"
CODE_LINE_NUMBER = "code.line.number"
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_PATH = "url.path"
DB_SYSTEM_NAME = "db.system.name"
DB_NAMESPACE = "db.namespace"
DB_OPERATION_NAME = "db.operation.name"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
URL_SCHEME = "url.scheme"
DB_SYSTEM = "db.system"  # the older name of db.system.name, still what many backends index
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
AWS_S3_BUCKET = "aws.s3.bucket"

# -- test span ------------------------------------------------------------------------
TEST_ID = "depstrace.test"  # pytest node id; also on every request span of the test
TEST_OUTCOME = "depstrace.test.outcome"
TEST_REQUESTS = "depstrace.test.requests"
TEST_WRONG_DB_REQUESTS = "depstrace.test.wrong_db_requests"

# -- request span ---------------------------------------------------------------------
REQUEST_ID = "depstrace.request.id"
APP_ID = "depstrace.app.id"
APP_TITLE = "depstrace.app.title"
PROVIDER_ID = "depstrace.provider.id"
FINDINGS = "depstrace.findings"  # list of finding codes
WRONG_DB = "depstrace.wrong_db"  # bool: any statement on a non-test database

# -- dependency span --------------------------------------------------------------------
DEPENDENCY_NAME = "depstrace.dependency.name"
DEPENDENCY_ORIGINAL = "depstrace.dependency.original"
DEPENDENCY_RESOLVED = "depstrace.dependency.resolved"
DEPENDENCY_OVERRIDDEN = "depstrace.dependency.overridden"
DEPENDENCY_CACHED = "depstrace.dependency.cached"
DEPENDENCY_KIND = "depstrace.dependency.kind"
DEPENDENCY_PROVIDER = "depstrace.dependency.provider"  # app id of the overrides provider
DEPENDENCY_SCOPE = "depstrace.dependency.scope"  # FastAPI's "function" / "request" (>= 0.121)
DEPENDENCY_VALUE_TYPE = "depstrace.dependency.value_type"  # module:qualname of the value's type
DEPENDENCY_ENGINE_ID = "depstrace.dependency.engine_id"  # engine the value is bound to
DEPENDENCY_ERROR = "depstrace.dependency.error"  # redacted "Type: message", or why not called

# -- database use ----------------------------------------------------------------------
DB_ENGINE_ID = "depstrace.db.engine_id"
DB_IS_TEST = "depstrace.db.is_test"
DB_VIA = "depstrace.db.via"
DB_URL = "depstrace.db.url"  # redacted
DB_STATEMENTS = "depstrace.db.statements"
DB_OPERATIONS = "depstrace.db.operations"  # list of "SELECT=3"-style counts

# -- outbound call (one CLIENT span per target a request called: depstrace.calls) ----------
CALL_LIBRARY = "depstrace.call.library"  # httpx, requests, redis, botocore, mongomock
CALL_TARGET = "depstrace.call.target"  # "https://api.example.com:443", "redis://h:6379/0"
CALL_FAKE = "depstrace.call.fake"  # the fake or test transport that answered, when one did
CALL_ALLOWED = "depstrace.call.allowed"  # bool: false makes EXTERNAL_CALL
CALL_COUNT = "depstrace.call.count"
CALL_OPERATIONS = "depstrace.call.operations"  # list of "GET=2"-style counts

# -- finding events ----------------------------------------------------------------------
FINDING_EVENT = "depstrace.finding"
FINDING_CODE = "depstrace.finding.code"
FINDING_SEVERITY = "depstrace.finding.severity"
FINDING_MESSAGE = "depstrace.finding.message"
FINDING_HINT = "depstrace.finding.hint"
FINDING_ENGINE_ID = "depstrace.finding.engine_id"

# -- span names that are not a route or a callable -------------------------------------
RUN_SPAN = "depstrace.run"  # findings tied to no test
