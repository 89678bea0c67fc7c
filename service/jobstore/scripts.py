"""The Lua scripts that change job records: one script per transition.

Each transition checks the state it starts from and changes the record, its indexes, its
artifacts and the stats together, and publishes the change on the job's event channel (which
is what keeps every API process's cache coherent: see reader.py). Two parties racing (a worker
finishing, the reaper declaring it lost, a client canceling or deleting) cannot corrupt
anything: the loser is told what the record had become.
"""

from __future__ import annotations

from service.jobstore.lua import LuaScript

# Moves the tenant's waiting jobs (oldest first) to its active set while it is under its limit
# (0: no limit), and hands each to RQ: its RQ job hash, written by its create under
# `pending_prefix .. id`, becomes RQ's own (`rq_job_prefix .. id`) and its id is queued, as RQ's
# `Queue.enqueue_call` would. Returns the admitted jobs that have no such hash (created by a
# version before it): the caller queues those on RQ. Shared by every script that frees or
# takes a place (CREATE, FINISH, ADMIT), so that a job is never admitted without being queued.
_ADMIT_WAITING = """
local function admit_waiting(waiting, active, tenants_waiting, limit, job_prefix, tenant,
                             pending_prefix, rq_job_prefix, rq_queue, rq_queues)
  local max_active = tonumber(limit)
  local unqueued = {}
  while max_active == 0 or redis.call('SCARD', active) < max_active do
    local id = redis.call('LPOP', waiting)
    if not id then break end
    if redis.call('HGET', job_prefix .. id, 'status') == 'queued' then
      redis.call('SADD', active, id)
      if redis.call('EXISTS', pending_prefix .. id) == 1 then
        redis.call('RENAME', pending_prefix .. id, rq_job_prefix .. id)
        redis.call('SADD', rq_queues, rq_queue)
        redis.call('RPUSH', rq_queue, id)
      else
        table.insert(unqueued, id)
      end
    else
      redis.call('DEL', pending_prefix .. id)
    end
  end
  if redis.call('LLEN', waiting) == 0 then
    redis.call('SREM', tenants_waiting, tenant)
  end
  return unqueued
end
"""

# The arguments of admit_waiting that every script calling it takes.
_ADMISSION_ARGS = ("limit", "job_prefix", "tenant", "pending_prefix", "rq_job_prefix", "rq_queue", "rq_queues")
_ADMIT_CALL = (
    "admit_waiting(waiting, active, tenants_waiting, limit, job_prefix, tenant, "
    "pending_prefix, rq_job_prefix, rq_queue, rq_queues)"
)


def _returns_with_admitted(reply: str) -> str:
    """Lua that admits the tenant's waiting jobs and returns the table `reply` followed by the
    admitted jobs the caller must queue itself (admit_waiting's return)."""
    return f"local reply = {reply}\nfor _, id in ipairs({_ADMIT_CALL}) do table.insert(reply, id) end\nreturn reply\n"


# A new job, in one round trip: the idempotency key, the record and its indexes, RQ's job hash,
# and admission, which queues the job on RQ at once when the tenant is under its limit. Record
# and RQ job exist together or not at all: nothing is left to repair for a create that died
# half-way.
#
# `fields` holds, in order: `checks` pairs (catalog record id, sha1 of the record the API planned
# the job against; `catalog_keys` holds the tenant's and the built-in catalog of each), then the
# record's `record_length` fields, then RQ's job hash (written under `rq_pending` until the job
# is admitted). A checked record that changed (or went) since the API read it makes the create
# 'stale', with nothing written: the API reads it again.
#
# Returns {'created' | 'existing' | 'stale', id, fingerprint, admitted jobs without an RQ hash}.
# The same create sent again (its reply lost to a broken connection, and retried) finds its
# record and does nothing.
CREATE = LuaScript(
    "create",
    keys=(
        "job_key",
        "rq_pending",
        "tenant_jobs",
        "waiting",
        "tenants_waiting",
        "active",
        "idem_key",
        "stats",
        "tenants",
    ),
    args=("job_id", "has_idem", "fingerprint", "idem_ttl", "stat_field", "checks", "record_length", *_ADMISSION_ARGS),
    rest_keys="catalog_keys",
    rest_args="fields",
    body=_ADMIT_WAITING
    + """
if redis.call('EXISTS', job_key) == 1 then
  return {'created', job_id, fingerprint}
end
if has_idem == '1' then
  local existing = redis.call('GET', idem_key)
  if existing then
    local record = cjson.decode(existing)
    if redis.call('EXISTS', job_prefix .. record.id) == 1 then
      return {'existing', record.id, record.fingerprint}
    end
  end
end
local checked = tonumber(checks)
for i = 1, checked do
  local record_id = fields[2 * i - 1]
  local raw = redis.call('HGET', catalog_keys[2 * i - 1], record_id)
  if not raw then raw = redis.call('HGET', catalog_keys[2 * i], record_id) end
  if not raw or redis.sha1hex(raw) ~= fields[2 * i] then
    return {'stale', job_id, fingerprint}
  end
end
if has_idem == '1' then
  redis.call('SET', idem_key, cjson.encode({id = job_id, fingerprint = fingerprint}), 'EX', idem_ttl)
end
local record_end = 2 * checked + tonumber(record_length)
redis.call('HSET', job_key, unpack(fields, 2 * checked + 1, record_end))
redis.call('HSET', rq_pending, unpack(fields, record_end + 1, #fields))
redis.call('ZADD', tenant_jobs, 0, job_id)
redis.call('SADD', tenants, tenant)
redis.call('HINCRBY', stats, stat_field, 1)
redis.call('RPUSH', waiting, job_id)
redis.call('SADD', tenants_waiting, tenant)
"""
    + _returns_with_admitted("{'created', job_id, fingerprint}"),
)

ADMIT = LuaScript(
    "admit",
    keys=("waiting", "active", "tenants_waiting"),
    args=_ADMISSION_ARGS,
    body=_ADMIT_WAITING + "return " + _ADMIT_CALL + "\n",
)

# Claims a queued job for `worker`: {'started', the record's fields and values as they now are},
# or {the status that prevents it ('missing' when there is no record)}.
START = LuaScript(
    "start",
    keys=("job_key", "running"),
    args=("job_id", "worker", "now", "channel"),
    body="""
local status = redis.call('HGET', job_key, 'status')
if status ~= 'queued' then return {status or 'missing'} end
redis.call('HSET', job_key, 'status', 'running', 'started_at', now, 'worker', worker,
           'fraction', '0', 'message', 'started')
redis.call('HINCRBY', job_key, 'attempts', 1)
redis.call('ZADD', running, now, job_id)
redis.call('PUBLISH', channel, cjson.encode({type = 'status', status = 'running'}))
local reply = redis.call('HGETALL', job_key)
table.insert(reply, 1, 'started')
return reply
""",
)

# Returns -1 when the job is no longer this worker's, 1 when a cancel was asked for, else 0.
PROGRESS = LuaScript(
    "progress",
    keys=("job_key",),
    args=("worker", "fraction", "message", "channel"),
    body="""
local state = redis.call('HMGET', job_key, 'status', 'worker', 'cancel_requested')
if state[1] ~= 'running' or state[2] ~= worker then return -1 end
redis.call('HSET', job_key, 'fraction', fraction, 'message', message)
redis.call('PUBLISH', channel, cjson.encode({type = 'progress', fraction = tonumber(fraction), message = message}))
if state[3] == '1' then return 1 end
return 0
""",
)

# Ends a running job. Its artifacts are already in the blob store under `artifacts_prefix`
# (held by a lease while they were written): publishing the job moves that lease to the job's
# expiry, in the same step, so the blobs live exactly as long as the record that lists them.
# `worker` '' means whoever runs it (the reaper settles jobs of dead workers). The place the job
# held is given to the tenant's next waiting job (admission, as in CREATE), and its run time is
# counted in `durations` (`duration_fields` are the buckets it falls in, `seconds_run` is added to
# `duration_sum`; none for a job that never started). Returns {'finished', admitted jobs without
# an RQ hash} or {'not-owner'}.
FINISH = LuaScript(
    "finish",
    keys=("job_key", "running", "active", "stats", "leases", "fanouts", "waiting", "tenants_waiting", "durations"),
    args=(
        "job_id",
        "worker",
        "status",
        "now",
        "ttl",
        "error_json",
        "result_json",
        "channel",
        "artifacts_prefix",
        "seconds_run",
        "duration_sum",
        *_ADMISSION_ARGS,
    ),
    rest_args="duration_fields",
    body=_ADMIT_WAITING
    + """
local state = redis.call('HMGET', job_key, 'status', 'worker', 'kind')
if state[1] ~= 'running' or (worker ~= '' and state[2] ~= worker) then return {'not-owner'} end
local seconds = tonumber(ttl)
redis.call('ZREM', running, job_id)
redis.call('ZREM', fanouts, job_id)
local fields = {'status', status, 'finished_at', now, 'expires_at', tostring(tonumber(now) + seconds)}
if status == 'succeeded' then
  table.insert(fields, 'fraction'); table.insert(fields, '1')
  table.insert(fields, 'message'); table.insert(fields, 'done')
end
if error_json ~= '' then table.insert(fields, 'error'); table.insert(fields, error_json) end
if result_json ~= '' then table.insert(fields, 'result'); table.insert(fields, result_json) end
if artifacts_prefix ~= '' then
  table.insert(fields, 'artifacts_prefix'); table.insert(fields, artifacts_prefix)
  redis.call('ZADD', leases, tonumber(now) + seconds, artifacts_prefix)
end
redis.call('HSET', job_key, unpack(fields))
redis.call('EXPIRE', job_key, seconds)
redis.call('SREM', active, job_id)
redis.call('HINCRBY', stats, state[3] .. '|' .. status, 1)
for i = 1, #duration_fields do redis.call('HINCRBY', durations, duration_fields[i], 1) end
if duration_sum ~= '' then redis.call('HINCRBYFLOAT', durations, duration_sum, seconds_run) end
redis.call('PUBLISH', channel, cjson.encode({type = 'status', status = status}))
"""
    + _returns_with_admitted("{'finished'}"),
)

# Puts a running job back in the queue: after its worker was lost (while it has tries left:
# `max_attempts` 0 means always), or because its worker is shutting down or lost Redis
# (`refund` '1': this try does not count). 'exhausted' when no try is left.
REQUEUE = LuaScript(
    "requeue",
    keys=("job_key", "running"),
    args=("job_id", "worker", "max_attempts", "refund", "reason", "channel"),
    body="""
local state = redis.call('HMGET', job_key, 'status', 'worker', 'attempts')
if state[1] ~= 'running' or (worker ~= '' and state[2] ~= worker) then return 'not-owner' end
local limit = tonumber(max_attempts)
if limit > 0 and tonumber(state[3] or '0') >= limit then return 'exhausted' end
redis.call('ZREM', running, job_id)
redis.call('HSET', job_key, 'status', 'queued', 'worker', '', 'started_at', '',
           'fraction', '0', 'message', 'queued again: ' .. reason)
if refund == '1' then redis.call('HINCRBY', job_key, 'attempts', -1) end
redis.call('PUBLISH', channel, cjson.encode({type = 'status', status = 'queued'}))
return 'requeued'
""",
)

# A queued job is canceled at once; a running one is asked to stop (its worker sees the flag).
# Returns 'canceled', 'requested', 'missing' or the finished status that prevents it.
CANCEL = LuaScript(
    "cancel",
    keys=("job_key", "waiting", "active", "stats", "rq_pending"),
    args=("job_id", "now", "ttl", "channel"),
    body="""
local state = redis.call('HMGET', job_key, 'status', 'kind')
local status = state[1]
if not status then return 'missing' end
if status == 'queued' then
  redis.call('HSET', job_key, 'status', 'canceled', 'finished_at', now,
             'expires_at', tostring(tonumber(now) + tonumber(ttl)), 'message', 'canceled while queued')
  redis.call('EXPIRE', job_key, tonumber(ttl))
  redis.call('LREM', waiting, 0, job_id)
  redis.call('SREM', active, job_id)
  redis.call('DEL', rq_pending)
  redis.call('HINCRBY', stats, state[2] .. '|canceled', 1)
  redis.call('PUBLISH', channel, cjson.encode({type = 'status', status = 'canceled'}))
  return 'canceled'
end
if status == 'running' then
  redis.call('HSET', job_key, 'cancel_requested', '1')
  redis.call('PUBLISH', channel, cjson.encode({type = 'cancel_requested'}))
  return 'requested'
end
return status
""",
)

# Forgets a finished job and its artifacts (their blobs are deleted at the next sweep; artifacts
# of before the blob store are Redis keys, `artifact_keys`); 'missing', or the unfinished status
# that prevents it.
DELETE = LuaScript(
    "delete",
    keys=("job_key", "tenant_jobs", "leases"),
    args=("job_id", "channel"),
    rest_keys="artifact_keys",
    body="""
local state = redis.call('HMGET', job_key, 'status', 'artifacts_prefix')
local status = state[1]
if not status then return 'missing' end
if status == 'queued' or status == 'running' then return status end
if state[2] and state[2] ~= '' then redis.call('ZADD', leases, 0, state[2]) end
redis.call('DEL', job_key)
for i = 1, #artifact_keys do redis.call('DEL', artifact_keys[i]) end
redis.call('ZREM', tenant_jobs, job_id)
redis.call('PUBLISH', channel, cjson.encode({type = 'deleted'}))
return 'deleted'
""",
)

# A running job hands itself over to its fan-out: its steps (created just before) now do the
# work on any worker, and a merge step finishes it. The job leaves the heartbeat reaper's watch
# (`running`) for the fan-out's (`fanouts`, by deadline): no worker owns it any more.
HAND_OVER = LuaScript(
    "hand_over",
    keys=("job_key", "running", "fanouts"),
    args=("job_id", "worker", "owner", "deadline", "fanout_json", "message", "channel"),
    body="""
local state = redis.call('HMGET', job_key, 'status', 'worker')
if state[1] ~= 'running' or state[2] ~= worker then return 'not-owner' end
redis.call('HSET', job_key, 'worker', owner, 'fanout', fanout_json, 'steps_done', '0', 'message', message)
redis.call('ZREM', running, job_id)
redis.call('ZADD', fanouts, tonumber(deadline), job_id)
redis.call('PUBLISH', channel, cjson.encode({type = 'progress', fraction = tonumber(redis.call('HGET', job_key, 'fraction') or '0'), message = message}))
return 'handed-over'
""",
)

# One step of a fan-out is done: the parent's progress moves (its share of `span`, after `base`).
STEP_DONE = LuaScript(
    "step_done",
    keys=("job_key",),
    args=("owner", "steps", "base", "span", "channel"),
    body="""
local state = redis.call('HMGET', job_key, 'status', 'worker')
if state[1] ~= 'running' or state[2] ~= owner then return -1 end
local done = redis.call('HINCRBY', job_key, 'steps_done', 1)
local fraction = tonumber(base) + tonumber(span) * done / tonumber(steps)
local message = done .. ' of ' .. steps .. ' steps done'
redis.call('HSET', job_key, 'fraction', tostring(fraction), 'message', message)
redis.call('PUBLISH', channel, cjson.encode({type = 'progress', fraction = fraction, message = message}))
return done
""",
)
