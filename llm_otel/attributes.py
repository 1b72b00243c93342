"""Names of the span attributes and events this package writes (the span contract).

The GenAI names follow the OpenTelemetry GenAI semantic conventions; the ``llm_otel.*`` names are
our own. ``docs/contracts/spans.md`` documents each one: type, unit and when it is set. The store
(``exporter``) maps spans to rows from these names only, so a span from any process maps alike.
"""

# GenAI semantic conventions
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
OPENAI_API_TYPE = "openai.api.type"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_SEED = "gen_ai.request.seed"
REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
REQUEST_ENCODING_FORMATS = "gen_ai.request.encoding_formats"
EMBEDDINGS_DIMENSION_COUNT = "gen_ai.embeddings.dimension.count"
OUTPUT_TYPE = "gen_ai.output.type"
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
OPENAI_SERVICE_TIER = "openai.response.service_tier"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
HTTP_RESEND_COUNT = "http.request.resend_count"

# llm-otel's own
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
# Set on task spans (not on call spans): marks a span made by ``llm_otel.task()``.
TASK_KIND = "llm_otel.span.kind"
TASK_KIND_VALUE = "task"
# Set on task spans: each extra keyword of ``task(name, **attrs)`` as ``llm_otel.task.attr.<key>``.
TASK_ATTR_PREFIX = "llm_otel.task.attr."

# Span events
EVENT_DISPATCHED = "llm_otel.dispatched"
EVENT_FIRST_TOKEN = "llm_otel.first_token"
EVENT_RETRY = "llm_otel.retry"
# Attributes of the retry event
RETRY_ATTEMPT = "llm_otel.retry.attempt"
RETRY_STATUS_CODE = "http.response.status_code"
RETRY_ERROR = "error.type"
RETRY_BACKOFF = "llm_otel.retry.backoff"

# Values of llm_otel.status
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
