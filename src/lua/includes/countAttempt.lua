--[[
  Appends one attempt to a job's ledger and counts what it used into the provider's and the
  tenant's totals (and, for a job routed by an alias with a budget, the alias's spend), in the
  same step, so the totals never drift from the ledger. Used by the hop that settles a job and by
  a call that finished after its job had ended (lateAttempt).
  `usageKey` is the provider's totals hash; `prompt`, `completion` and `costE10` are '' when unknown.
  `rec` holds the record's COUNT_FIELDS, read by the caller (readRecord). Returns the ledger with
  the attempt appended, for the caller to write with whatever else it writes to the record.
]]
local COUNT_FIELDS = {'attempts', 'tenant', 'budget_alias'}

local function countAttempt(usageKey, prefix, month, attempt, outcome, prompt, completion, costE10, rec)
  local attempts = rec.attempts
  if not attempts or attempts == '[]' then
    attempts = '[' .. attempt .. ']'
  else
    attempts = string.sub(attempts, 1, -2) .. ',' .. attempt .. ']'
  end
  local tenantKey = prefix .. ':tenant:' .. (rec.tenant or '')
  -- Increments go as strings here and in every script a job runs: Redis formats a Lua number
  -- argument with snprintf ("%.17g"), a few thousand instructions each.
  redis.call('HINCRBY', usageKey, 'attempts', '1')
  if outcome == 'succeeded' then
    redis.call('HINCRBY', usageKey, 'succeeded', '1')
  end
  if prompt ~= '' then
    redis.call('HINCRBY', usageKey, 'prompt_tokens', prompt)
    redis.call('HINCRBY', usageKey, 'completion_tokens', completion)
    redis.call('HINCRBY', tenantKey, 'prompt_tokens', prompt)
    redis.call('HINCRBY', tenantKey, 'completion_tokens', completion)
  end
  -- A free call (the mock's models) adds nothing: its three or four writes are skipped.
  if costE10 ~= '' and costE10 ~= '0' then
    redis.call('HINCRBY', usageKey, 'cost_e10', costE10)
    redis.call('HINCRBY', tenantKey, 'cost_e10', costE10)
    redis.call('HINCRBY', tenantKey, 'spend_e10:' .. month, costE10)
    if rec.budget_alias then
      redis.call('HINCRBY', prefix .. ':alias:' .. rec.budget_alias, 'spend_e10:' .. month, costE10)
    end
  end
  return attempts
end
