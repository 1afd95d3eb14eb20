-- wrk script: every request POSTs a distinct payment_failed event to the target URL.
--
-- Script arguments (after `--` on the wrk command line), all optional:
--   1. run token: prefix of every event_id, so separate runs never collide (default "run")
--   2. number of distinct users, user ids u_0 .. u_(N-1) (default 100000)
--   3. spread of event timestamps in seconds, ending now (default 259200 = 3 days)
--   4. reconnect every N requests of a thread: that request asks the server to close the
--      connection after answering, and wrk opens a new one (default 0 = never). With
--      several server processes on one listening socket, a connection stays with the
--      process that accepted it; reconnecting lets the accepts spread the load again.
-- event_id = token-thread-counter-random, so it is unique per request within a run.
-- Users' traits are a function of the user number, so one user always looks the same.

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

local countries = { "PT", "ES", "FR", "DE", "GB", "US", "BR" }
local segments = { "LOW", "MEDIUM", "HIGH" }
local reasons = { "INSUFFICIENT_FUNDS", "CARD_DECLINED" }

local template = '{"event_id":"%s-%d-%d-%d","user_id":"u_%d","event_type":"payment_failed",'
  .. '"event_timestamp":"%s","properties":{"amount":%.2f,"attempt_number":%d,'
  .. '"failure_reason":"%s"},"user_traits":{"email":"u_%d@example.com","country":"%s",'
  .. '"marketing_opt_in":%s,"risk_segment":"%s"}}'

local token, users, spread, reconnect_every, now
local counter = 0

function init(args)
  token = args[1] or "run"
  users = tonumber(args[2]) or 100000
  spread = tonumber(args[3]) or 259200
  reconnect_every = tonumber(args[4]) or 0
  now = os.time()
  math.randomseed(now * 1000 + (thread_id or 0))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local user = math.random(0, users - 1)
  local body = string.format(
    template,
    token, thread_id or 0, counter, math.random(0, 999999999),
    user,
    os.date("!%Y-%m-%dT%H:%M:%SZ", now - math.random(0, spread)),
    math.random(500, 200000) / 100,
    math.random(1, 4),
    reasons[counter % 2 + 1],
    user,
    countries[user % #countries + 1],
    tostring(user % 4 ~= 0),
    segments[user % 3 + 1]
  )
  if reconnect_every > 0 and counter % reconnect_every == 0 then
    -- wrk.format replaces wrk.headers with the table it is given, not adds to them.
    local headers = { ["Content-Type"] = "application/json", ["Connection"] = "close" }
    return wrk.format(nil, nil, headers, body)
  end
  return wrk.format(nil, nil, nil, body)
end
