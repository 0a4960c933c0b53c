--[[
  Folds what one worker process saw in its last second of calls into the routing state every
  process reads, in one step:
  - each target's decaying latency per output token (each sample weighs SAMPLE_WEIGHT against the
    average so far), and its attempts and fallbacks;
  - each alias's jobs and fallbacks;
  - each provider's health window: calls, failures and a histogram of latency per output token,
    in slices of a tenth of its window that expire on their own; then its judgement over the
    window: degraded when the failure rate passes max_error_rate, or the p95 passes
    latency_factor times the provider's own baseline (a time-weighted average of its p95 that
    moves with a time constant of baseline_window_ms). A degraded provider is judged again on a
    quarter of min_requests, since traffic has mostly left it.
  KEYS[1] latency hash, KEYS[2] target counts hash, KEYS[3] alias counts hash
  ARGV[1] now (ms), ARGV[2] key prefix, ARGV[3] the observations (JSON: see workers/target-stats.ts)
  Returns each provider whose state changed: {provider, state, reason, requests, error rate, p95, baseline}.
]]
local SAMPLE_WEIGHT = 0.2
-- Histogram bucket b holds latencies per token in [BASE * GROWTH^b, BASE * GROWTH^(b+1)) ms.
local BUCKET_BASE = 0.01
local BUCKET_GROWTH = 1.25
local SLICES = 10

local now = tonumber(ARGV[1])
local prefix = ARGV[2]
local obs = cjson.decode(ARGV[3])

local function add(key, field, n)
  if n > 0 then
    redis.call('HINCRBY', key, field, n)
  end
end

for target, t in pairs(obs.targets) do
  if t.ok > 0 then
    local mean = t.lat / t.ok
    local prev = tonumber(redis.call('HGET', KEYS[1], target))
    local value = mean
    if prev then
      value = prev + (1 - (1 - SAMPLE_WEIGHT) ^ t.ok) * (mean - prev)
    end
    redis.call('HSET', KEYS[1], target, tostring(value), target .. ':at', ARGV[1])
  end
  add(KEYS[2], target .. ':attempts', t.att)
  add(KEYS[2], target .. ':fallbacks', t.fb)
end

for alias, a in pairs(obs.aliases) do
  add(KEYS[3], alias .. ':jobs', a.jobs)
  add(KEYS[3], alias .. ':fallbacks', a.fb)
end

local function p95Of(hist, total)
  local buckets = {}
  for b in pairs(hist) do
    buckets[#buckets + 1] = b
  end
  table.sort(buckets)
  local rank, seen = math.ceil(total * 0.95), 0
  for _, b in ipairs(buckets) do
    seen = seen + hist[b]
    if seen >= rank then
      return BUCKET_BASE * BUCKET_GROWTH ^ (b + 0.5)
    end
  end
  return nil
end

local changes = {}
for provider, p in pairs(obs.providers) do
  local windowMs, minRequests, maxErrorRate, latencyFactor, baselineMs = p.cfg[1], p.cfg[2], p.cfg[3], p.cfg[4], p.cfg[5]
  local sliceMs = math.max(1, math.floor(windowMs / SLICES))
  local slice = math.floor(now / sliceMs)
  local base = prefix .. ':health:' .. provider
  if p.n > 0 then
    local sliceKey = base .. ':' .. slice
    redis.call('HINCRBY', sliceKey, 'n', p.n)
    if p.err > 0 then
      redis.call('HINCRBY', sliceKey, 'err', p.err)
    end
    for b, c in pairs(p.h) do
      redis.call('HINCRBY', sliceKey, 'h' .. b, c)
    end
    redis.call('PEXPIRE', sliceKey, windowMs * 2)
  end
  local n, err, timed, hist = 0, 0, 0, {}
  for s = slice - SLICES + 1, slice do
    local v = redis.call('HGETALL', base .. ':' .. s)
    for i = 1, #v, 2 do
      local k, c = v[i], tonumber(v[i + 1])
      if k == 'n' then
        n = n + c
      elseif k == 'err' then
        err = err + c
      else
        local b = tonumber(string.sub(k, 2))
        hist[b] = (hist[b] or 0) + c
        timed = timed + c
      end
    end
  end
  local h = redis.call('HMGET', base, 'state', 'baseline', 'baseline_at')
  local state = h[1] or 'healthy'
  local needed = minRequests
  if state == 'degraded' then
    needed = math.max(3, math.ceil(minRequests / 4))
  end
  if n >= needed then
    local p95 = nil
    if timed > 0 then
      p95 = p95Of(hist, timed)
    end
    local baseline = tonumber(h[2])
    if p95 then
      if not baseline then
        baseline = p95
      else
        local dt = math.max(0, now - tonumber(h[3] or now))
        baseline = baseline + (1 - math.exp(-dt / baselineMs)) * (p95 - baseline)
      end
    end
    local rate = err / n
    local verdict, reason = 'healthy', ''
    if rate > maxErrorRate then
      verdict, reason = 'degraded', 'error_rate'
    elseif p95 and baseline and p95 > latencyFactor * baseline then
      verdict, reason = 'degraded', 'latency'
    end
    redis.call('HSET', base, 'state', verdict, 'reason', reason, 'requests', n, 'error_rate', tostring(rate),
      'p95', p95 and tostring(p95) or '', 'judged_at', ARGV[1])
    if baseline then
      redis.call('HSET', base, 'baseline', tostring(baseline), 'baseline_at', ARGV[1])
    end
    if verdict ~= state then
      redis.call('HSET', base, 'since', ARGV[1])
      changes[#changes + 1] = {provider, verdict, reason, n, tostring(rate), p95 and tostring(p95) or '', baseline and tostring(baseline) or ''}
    end
  end
end
return changes
