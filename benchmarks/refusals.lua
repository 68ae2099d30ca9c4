-- wrk script for the load-shedding bench. Every connection POSTs a body made from a template, the marker @N@
-- replaced by a number no other request of the run uses (thread i counts up from FIRST + i * STRIDE: a fresh
-- symbol, so a cache miss), pauses DELAY_MS after each answer (N connections send about N / (DELAY_MS +
-- latency) requests per second), and times each answer itself, from the write of its request to its last byte,
-- apart by status: 200 (admitted) and 503 (refused); wrk's own histogram mixes both. Run one connection per
-- thread (--threads N --connections N): Lua sees no connection, so request() and response() must alternate
-- within a thread for the timing to pair them.
-- Usage: wrk -t N -c N -s refusals.lua URL -- BODY_TEMPLATE_FILE DELAY_MS FIRST STRIDE
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } tickserve_timespec;
int clock_gettime(int clock_id, tickserve_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local now = ffi.new("tickserve_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now)
  return tonumber(now.tv_sec) * 1e6 + tonumber(now.tv_nsec) / 1e3
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_index", #threads - 1)
end

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open body file " .. tostring(args[1]))
  local template = file:read("*a")
  file:close()
  head, tail = string.match(template, "^(.*)@N@(.*)$")
  assert(head, "the body template has no @N@ marker")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  pause_ms = tonumber(args[2])
  next_n = tonumber(args[3]) + thread_index * tonumber(args[4]) -- STRIDE numbers per thread: they never meet
  sent_us = 0
  admitted = {}
  refused = {}
  others = 0
end

function delay()
  return pause_ms
end

function request()
  local body = head .. next_n .. tail
  next_n = next_n + 1
  sent_us = now_us()
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  local elapsed = now_us() - sent_us
  if status == 200 then
    admitted[#admitted + 1] = elapsed
  elseif status == 503 then
    refused[#refused + 1] = elapsed
  else
    others = others + 1
  end
end

local function percentile(values, p)
  if #values == 0 then return -1 end
  return values[math.max(1, math.ceil(#values * p / 100))]
end

function done(summary, latency, requests)
  local all = { admitted = {}, refused = {} }
  local others_total = 0
  for _, thread in ipairs(threads) do
    for _, name in ipairs({ "admitted", "refused" }) do
      for _, value in ipairs(thread:get(name)) do all[name][#all[name] + 1] = value end
    end
    others_total = others_total + thread:get("others")
  end
  table.sort(all.admitted)
  table.sort(all.refused)
  local errors = summary.errors
  io.write(string.format(
    'REFUSALS_RESULT {"duration_us":%d,"requests":%d,"admitted":%d,"refused":%d,"others":%d,"socket_errors":%d,' ..
    '"admitted_p50_us":%.1f,"admitted_p99_us":%.1f,"refused_p50_us":%.1f,"refused_p99_us":%.1f,"refused_max_us":%.1f}\n',
    summary.duration, summary.requests, #all.admitted, #all.refused, others_total,
    errors.connect + errors.read + errors.write + errors.timeout,
    percentile(all.admitted, 50), percentile(all.admitted, 99), percentile(all.refused, 50),
    percentile(all.refused, 99), percentile(all.refused, 100)))
end
