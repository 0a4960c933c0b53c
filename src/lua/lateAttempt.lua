--[[
  Records a provider call that finished (or was stopped) after its job had already ended, by a
  cancel or its deadline: the call happened, and may have been paid for, so it goes into the
  ledger and the totals like any other, while the job's status and result stay as they are.
  KEYS[1] job hash, KEYS[2] the attempt provider's usage totals (hash)
  ARGV[1] attempt (JSON), ARGV[2] prompt tokens, ARGV[3] completion tokens, ARGV[4] cost in
  1e-10 USD (each '' if none), ARGV[5] key prefix, ARGV[6] the month its spend counts against
  Returns 1 when recorded, 0 when the record is gone.
]]
--- @include "countAttempt"

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
countAttempt(KEYS[1], KEYS[2], ARGV[5], ARGV[6], ARGV[1], 'late', ARGV[2], ARGV[3], ARGV[4])
return 1
