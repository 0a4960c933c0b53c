--[[
  Appends lines to a hop's BullMQ job log, for a sharded layout (redis.shards), where the job
  record's scripts cannot reach the queue's slot; unsharded, those scripts write the lines themselves.
  KEYS[1] the hop's BullMQ job key
  ARGV[1] lines (newline-separated)
]]
--- @include "hopLog"

hopLog(KEYS[1], ARGV[1])
return 1
