"""peewee models of the span store (DESIGN §5; every column is documented in docs/contracts/db.md).

Timestamps are integer epoch milliseconds; durations integer milliseconds. The rows that lists and
counts scan (``llm_calls``) stay small: the large text of a call (messages, request parameters, the
rest of the span's attributes) lives in ``llm_call_bodies``, keyed by ``call_id``.

The database is chosen late (``db.initialize(...)``, see ``exporter.database``).

The rollup tables of migration 9 have no model: triggers on ``llm_calls`` write them and
``exporter.rollups`` declares and reads them.
"""

from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    BooleanField,
    CompositeKey,
    DatabaseProxy,
    Field,
    FloatField,
    IntegerField,
    Model,
    ModelIndex,
    TextField,
)

db = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class LLMCall(BaseModel):
    """One row per LLM call, written when queued and updated as the call progresses."""

    call_id = TextField(primary_key=True)
    trace_id = TextField(null=True)
    span_id = TextField(null=True)
    parent_span_id = TextField(null=True)
    parent_task_id = TextField(null=True)
    parent_task_name = TextField(null=True)
    status = TextField()  # queued | running | succeeded | failed | cancelled
    operation = TextField(null=True)
    provider = TextField(null=True)
    api_type = TextField(null=True)
    model = TextField(null=True)
    response_model = TextField(null=True)
    response_id = TextField(null=True)
    source = TextField(null=True)
    requested_by = TextField(null=True)
    stream = BooleanField(default=False)
    enqueued_at = IntegerField()
    started_at = IntegerField(null=True)
    first_token_at = IntegerField(null=True)
    ended_at = IntegerField(null=True)
    wait_ms = IntegerField(null=True)
    first_token_ms = IntegerField(null=True)
    duration_ms = IntegerField(null=True)
    retry_count = IntegerField(default=0)
    input_tokens = IntegerField(null=True)
    output_tokens = IntegerField(null=True)
    cached_tokens = IntegerField(null=True)
    reasoning_tokens = IntegerField(null=True)
    finish_reasons = TextField(null=True)  # JSON list
    error_type = TextField(null=True)
    error_message = TextField(null=True)
    prompt_preview = TextField(null=True)
    response_preview = TextField(null=True)
    server_address = TextField(null=True)
    process = TextField(null=True)  # host:pid
    updated_at = IntegerField()

    class Meta:
        table_name = "llm_calls"
        # docs/contracts/db.md says why each index exists; they are declared below the class.


# The indexes of llm_calls as migrations 1, 3 and 11 made them (exporter.migrations writes them out;
# tests/exporter/test_migrations.py checks they match). In short: each equality filter of the list
# API has (column, status, enqueued_at, wait_ms, first_token_ms, duration_ms), so that filter alone
# (one ordered walk per status, merged), or with statuses, a time range and timing minimums, reads a
# page in order and counts its total from the index alone; (status, <timing>, enqueued_at) serves
# the slowest-first sorts and the timing minimums; the window index serves the unfiltered order,
# the time range and every aggregate of the status view without reading a row.
# Since migration 12 each label index then holds the summary's other labels (model, source,
# error_type, requested_by): a summary read through it reads no row.
_TIMINGS = (LLMCall.wait_ms, LLMCall.first_token_ms, LLMCall.duration_ms)
_FACET_LABELS = (LLMCall.model, LLMCall.source, LLMCall.error_type, LLMCall.requested_by)


def _label_index(label: Field) -> ModelIndex:
    others = (field for field in _FACET_LABELS if field is not label)
    name = f"llm_calls_{label.name}_status_enqueued_at"
    return LLMCall.index(label, LLMCall.status, LLMCall.enqueued_at, *_TIMINGS, *others, name=name)


for _index in (
    LLMCall.index(LLMCall.status, LLMCall.enqueued_at, name="llm_calls_status_enqueued_at"),
    *(
        _label_index(label)
        for label in (
            LLMCall.source,
            LLMCall.requested_by,
            LLMCall.model,
            LLMCall.parent_task_id,
            LLMCall.error_type,
        )
    ),
    LLMCall.index(LLMCall.status, LLMCall.wait_ms, LLMCall.enqueued_at, name="llm_calls_status_wait_ms"),
    LLMCall.index(
        LLMCall.status, LLMCall.first_token_ms, LLMCall.enqueued_at, name="llm_calls_status_first_token_ms"
    ),
    LLMCall.index(
        LLMCall.status, LLMCall.duration_ms, LLMCall.enqueued_at, name="llm_calls_status_duration_ms"
    ),
    LLMCall.index(
        LLMCall.enqueued_at,
        LLMCall.status,
        *_TIMINGS,
        LLMCall.retry_count,
        LLMCall.input_tokens,
        LLMCall.output_tokens,
        LLMCall.cached_tokens,
        LLMCall.reasoning_tokens,
        name="llm_calls_window",
    ),
):
    LLMCall.add_index(_index)


class LLMCallBody(BaseModel):
    """The large text of a call, apart from the row lists scan."""

    call_id = TextField(primary_key=True)
    request_params = TextField(null=True)  # JSON object
    system_instructions = TextField(null=True)  # JSON list of parts
    input_messages = TextField(null=True)  # JSON list of semconv messages
    output_messages = TextField(null=True)  # JSON list of semconv messages
    attributes = TextField(null=True)  # JSON object: the span's other attributes

    class Meta:
        table_name = "llm_call_bodies"


class LLMCallEvent(BaseModel):
    """Append-only feed of call changes; ``id`` is monotonic so a client can resume after it."""

    id = AutoField()
    call_id = TextField()
    kind = TextField()  # queued | dispatched | first_token | retry | succeeded | failed | cancelled
    at = IntegerField()
    data = TextField(null=True)  # JSON object

    class Meta:
        table_name = "llm_call_events"
        indexes = (
            (("call_id", "id"), False),
            (("at",), False),
        )


class LLMTask(BaseModel):
    """A task span made by ``llm_otel.task()``: what the calls inside it link to."""

    task_id = TextField(primary_key=True)
    name = TextField()
    trace_id = TextField(null=True)
    span_id = TextField(null=True)
    status = TextField()  # running | succeeded | failed
    started_at = IntegerField()
    ended_at = IntegerField(null=True)
    duration_ms = IntegerField(null=True)
    attributes = TextField(null=True)  # JSON object
    process = TextField(null=True)

    class Meta:
        table_name = "llm_tasks"
        indexes = (
            (("started_at",), False),  # retention's cut-off
            (("status", "started_at"), False),  # the task list's status filter, newest first
            (("name", "started_at"), False),  # its name filter
        )


class SchedulerSnapshot(BaseModel):
    """The latest state of one scheduler in one process, refreshed as a heartbeat."""

    process = TextField()  # host:pid
    scheduler = TextField()
    queue_depth = IntegerField(default=0)
    in_flight = IntegerField(default=0)
    max_concurrency = IntegerField(null=True)
    min_interval = FloatField(default=0.0)  # seconds
    max_queue = IntegerField(null=True)
    dispatched_total = IntegerField(default=0)
    last_dispatch_at = IntegerField(null=True)
    oldest_wait_ms = IntegerField(null=True)
    waiting = TextField(null=True)  # JSON list of {call_id, source, since}
    store_dropped = IntegerField(default=0)
    store_last_error = TextField(null=True)
    heartbeat_at = IntegerField()

    class Meta:
        table_name = "llm_scheduler_snapshots"
        primary_key = CompositeKey("process", "scheduler")


class StoreLoss(BaseModel):
    """What one writer lost, and why: records it dropped (``kind="dropped"``, one row per episode,
    updated while it lasts) or a store file replaced under it (``kind="file_replaced"``: ``records``
    and ``calls`` are what it had written into the file that went)."""

    id = AutoField()
    process = TextField()  # host:pid
    kind = TextField()
    started_at = IntegerField()
    ended_at = IntegerField(index=True)
    records = IntegerField()
    calls = IntegerField()
    reason = TextField(null=True)

    class Meta:
        table_name = "llm_store_losses"
        indexes = ((("process", "kind", "started_at"), True),)


class SchemaVersion(BaseModel):
    """Forward-only migrations applied to this store, one row each."""

    version = IntegerField(primary_key=True)
    applied_at = IntegerField(constraints=[SQL("DEFAULT 0")])

    class Meta:
        table_name = "llm_otel_schema"


ALL_MODELS = (LLMCall, LLMCallBody, LLMCallEvent, LLMTask, SchedulerSnapshot, StoreLoss, SchemaVersion)
