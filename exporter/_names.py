"""The span contract names the store reads, as literal strings.

The store depends on the OpenTelemetry SDK only, never on ``llm_otel``, so it spells the names of
``llm_otel.attributes`` and the notice kinds of ``llm_otel.lifecycle`` out again here;
``tests/exporter/test_names.py`` keeps both spellings equal.
"""

# Call span attributes (GenAI semantic conventions)
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
OPENAI_API_TYPE = "openai.api.type"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
SERVER_ADDRESS = "server.address"
ERROR_TYPE = "error.type"
HTTP_RESEND_COUNT = "http.request.resend_count"

# Call span attributes (llm-otel's own)
CALL_ID = "llm_otel.call.id"
SOURCE = "llm_otel.source"
REQUESTED_BY = "llm_otel.requested_by"
TASK_ID = "llm_otel.task.id"
TASK_NAME = "llm_otel.task.name"
QUEUE_WAIT = "llm_otel.queue.wait"
STATUS = "llm_otel.status"
ERROR_MESSAGE = "llm_otel.error.message"
REQUEST_PARAMS = "llm_otel.request.params"
PROCESS = "llm_otel.process"

# Task spans: TASK_KIND == TASK_KIND_VALUE marks them; their own attributes carry TASK_ATTR_PREFIX.
TASK_KIND = "llm_otel.span.kind"
TASK_KIND_VALUE = "task"
TASK_ATTR_PREFIX = "llm_otel.task.attr."

# Span events and their attributes
EVENT_DISPATCHED = "llm_otel.dispatched"
EVENT_FIRST_TOKEN = "llm_otel.first_token"
EVENT_RETRY = "llm_otel.retry"
RETRY_ATTEMPT = "llm_otel.retry.attempt"
RETRY_STATUS_CODE = "http.response.status_code"
RETRY_ERROR = "error.type"
RETRY_BACKOFF = "llm_otel.retry.backoff"
EXCEPTION_EVENT = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"

# Values of STATUS
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

# Kinds of the live call notices (llm_otel.lifecycle)
QUEUED = "queued"
DISPATCHED = "dispatched"
FIRST_TOKEN = "first_token"
RETRY = "retry"
