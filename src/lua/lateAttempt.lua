--[[
  Records a provider call that finished (or was stopped) after its job had already ended, by a
  cancel or its deadline: the call happened, and may have been paid for, so it goes into the
  ledger and the totals like any other, while the job's status and result stay as they are.
  KEYS[1] job hash, KEYS[2] the attempt provider's usage totals (hash)
  ARGV[1] attempt (JSON), ARGV[2] prompt tokens, ARGV[3] completion tokens, ARGV[4] cost in
  1e-10 USD (each '' if none), ARGV[5] key prefix, ARGV[6] the month its spend counts against,
  ARGV[7] the hop's BullMQ job key ('' for none), ARGV[8] lines for its job log
  Returns the job's status when recorded, '' when the record is gone.
]]
--- @include "readRecord"
--- @include "countAttempt"
--- @include "hopLog"

local rec = readRecord(KEYS[1], {'status', unpack(COUNT_FIELDS)})
local status = rec.status
if not status then
  return ''
end
redis.call('HSET', KEYS[1], 'attempts', countAttempt(KEYS[2], ARGV[5], ARGV[6], ARGV[1], 'late', ARGV[2], ARGV[3], ARGV[4], rec))
hopLog(ARGV[7], ARGV[8])
return status
