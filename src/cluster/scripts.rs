//! The Lua scripts of the shared cluster state (one `EVAL` each, so every check-and-write is
//! atomic). Key layout in `mod.rs`. Numbers are formatted with `%d`: Lua would print large ones
//! in exponent notation.

/// Shared helpers: `live` lists a presence hash's live fields as `{field, node, count}` and deletes
/// the dead ones (a node with no registration, or registered under another incarnation; and any
/// field of this node other than its current one); `put` stores `"count:version"` unless the
/// stored version is newer, and keeps the hash alive for `ttl` ms.
macro_rules! presence_helpers {
    () => {
        r#"
local function live(hash, prefix, mine)
  local mine_node = string.match(mine, '^(.+)/[^/]+$')
  local all = redis.call('HGETALL', hash)
  local out, incarnations = {}, {}
  for i = 1, #all, 2 do
    local field, value = all[i], all[i + 1]
    local node, incarnation = string.match(field, '^(.+)/([^/]+)$')
    local alive = field == mine
    if not alive and node and node ~= mine_node then
      if incarnations[node] == nil then
        incarnations[node] = false
        local info = redis.call('GET', prefix .. ':node:' .. node)
        if info then
          local ok, decoded = pcall(cjson.decode, info)
          if ok and type(decoded) == 'table' and type(decoded.incarnation) == 'string' then
            incarnations[node] = decoded.incarnation
          end
        end
      end
      alive = incarnations[node] == incarnation
    end
    if alive then
      table.insert(out, {field, node, tonumber(string.match(value, '^(%d+):') or '0')})
    else
      redis.call('HDEL', hash, field)
    end
  end
  return out
end
local function put(hash, field, count, version, ttl)
  local old = redis.call('HGET', hash, field)
  if old and tonumber(string.match(old, ':(%d+)$') or '0') > version then return 0 end
  redis.call('HSET', hash, field, string.format('%d:%d', count, version))
  redis.call('PEXPIRE', hash, ttl)
  return 1
end
"#
    };
}

/// KEYS presence hash; ARGV prefix, this node's field, count, version, cap, hash TTL (ms).
/// Returns `{1, others}` when stored within the cap, `{0, others}` (nothing written) when not.
pub(super) const ACQUIRE: &str = concat!(
    presence_helpers!(),
    r#"
local mine = ARGV[2]
local others = 0
for _, entry in ipairs(live(KEYS[1], ARGV[1], mine)) do
  if entry[1] ~= mine then others = others + entry[3] end
end
if others + tonumber(ARGV[3]) > tonumber(ARGV[5]) then return {0, others} end
put(KEYS[1], mine, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[6])
return {1, others}
"#
);

/// KEYS presence hashes; ARGV this node's field, hash TTL (ms), then count and version for each
/// key in order. Returns how many were stored.
pub(super) const PUT: &str = concat!(
    presence_helpers!(),
    r#"
local stored = 0
for i, hash in ipairs(KEYS) do
  stored = stored + put(hash, ARGV[1], tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i]), ARGV[2])
end
return stored
"#
);

/// KEYS presence hash; ARGV prefix. Returns `{node, count, …}` for live nodes holding sockets.
pub(super) const PRESENCE: &str = concat!(
    presence_helpers!(),
    r#"
local out = {}
for _, entry in ipairs(live(KEYS[1], ARGV[1], '')) do
  if entry[3] > 0 then
    table.insert(out, entry[2])
    table.insert(out, tostring(entry[3]))
  end
end
return out
"#
);

/// KEYS presence hash; ARGV prefix, this node's field, message. Publishes the message on the
/// channel of every other live node holding sockets of the user; returns how many.
pub(super) const PUSH: &str = concat!(
    presence_helpers!(),
    r#"
local sent = 0
for _, entry in ipairs(live(KEYS[1], ARGV[1], ARGV[2])) do
  if entry[1] ~= ARGV[2] and entry[3] > 0 then
    redis.call('PUBLISH', ARGV[1] .. ':node:' .. entry[2] .. ':push', ARGV[3])
    sent = sent + 1
  end
end
return sent
"#
);

/// KEYS node key, node index; ARGV node JSON, incarnation, TTL (ms), node id. Registers the node
/// until now + TTL; returns 1 when the key held this incarnation already (nothing was lost).
pub(super) const HEARTBEAT: &str = r#"
local old = redis.call('GET', KEYS[1])
local ours = 0
if old then
  local ok, decoded = pcall(cjson.decode, old)
  if ok and type(decoded) == 'table' and decoded.incarnation == ARGV[2] then ours = 1 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[2], string.format('%d', ms + tonumber(ARGV[3])), ARGV[4])
return ours
"#;

/// KEYS node key, node index; ARGV incarnation, node id. Removes the registration if it is still
/// this incarnation's (a restarted node with the same id keeps its own).
pub(super) const DEREGISTER: &str = r#"
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local ok, decoded = pcall(cjson.decode, old)
if not (ok and type(decoded) == 'table' and decoded.incarnation == ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"#;

/// KEYS node index; ARGV prefix. Forgets expired entries; returns the JSON of every live node.
pub(super) const NODES: &str = r#"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', ms))
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local info = redis.call('GET', ARGV[1] .. ':node:' .. id)
  if info then table.insert(out, info) end
end
return out
"#;

/// GCRA (see `pam_actors::Gcra`). KEYS the user's arrival-time key; ARGV interval and
/// tolerance in µs. Returns 1 when the chat is allowed (and takes it), 0 when not.
pub(super) const RATE: &str = r#"
local now = redis.call('TIME')
local us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < us then tat = us end
if tat - us > tonumber(ARGV[2]) then return 0 end
local next = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', string.format('%d', math.ceil((next - us) / 1000) + 1))
return 1
"#;

/// KEYS an idempotency key; ARGV the running marker this request set, the lease (ms). Extends the
/// marker's expiry to the lease while the key still holds that marker; 1 if it did.
pub(super) const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// KEYS an idempotency key; ARGV the running marker this request set, the value to store, TTL
/// (ms; 0 deletes). Replaces (or deletes) the value only while it is still that marker.
pub(super) const SETTLE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"#;

/// A batch of v2 stream writes (see `streams.rs`), one script call for many streams. KEYS: per
/// stream its meta hash and frames stream, in pairs. ARGV: node, max frames, TTL (ms), prefix,
/// the node's boot id (with the node id, the incarnation that holds what it opens);
/// then per stream (in KEYS order): id, writing object `inst`, user, epoch, open ('1' when the
/// batch starts with the stream's first frame), the batch's first seq, its last seq, the prev of
/// its first replayable frame, the replayable frames' seqs (comma-separated, '' for none) and
/// texts ('\n'-separated: compact JSON has no raw newline), the count of writes, of turns opened
/// and of turns closed, then those turn ids. The holder appends the replayable frames as ONE
/// entry (id: the last seq; fields `p`, `s`, `f`; entries more than max frames seqs back are
/// trimmed) and writes `last`/`lastr`/turns/expiry once;
/// any other object's frames are published one by one to the holder's node instead, in the same
/// step, so no frame falls between a hand-over and its forwarding. Returns `{written, forwarded}`.
pub(super) const STREAM_APPEND_BATCH: &str = r#"
local node, maxlen, ttl, prefix, boot = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local a = 6
local written, forwarded = 0, 0
for k = 1, #KEYS, 2 do
  local meta, frames = KEYS[k], KEYS[k + 1]
  local stream, inst, user, epoch, open = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local first, last, prev, seqs, texts = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9]
  local writes, opens, closes = tonumber(ARGV[a + 10]), tonumber(ARGV[a + 11]), tonumber(ARGV[a + 12])
  local turns = a + 13
  a = turns + opens + closes
  local holder = redis.call('HMGET', meta, 'node', 'inst', 'last')
  if open == '1' or not holder[1] then
    if open ~= '1' then
      -- Lost (expired or flushed) under a live writer: what is kept from here on is another epoch.
      epoch = epoch .. '-' .. first
      redis.call('DEL', frames)
    end
    redis.call('HSET', meta, 'user', user, 'epoch', epoch, 'node', node, 'boot', boot, 'inst', inst, 'last', '0', 'lastr', '0')
    holder = {node, inst, '0'}
  end
  if holder[1] ~= node or holder[2] ~= inst then
    if seqs ~= '' then
      local channel = prefix .. ':node:' .. holder[1] .. ':push'
      local text = string.gmatch(texts, '[^\n]+')
      local before = tonumber(prev)
      for seq in string.gmatch(seqs, '[^,]+') do
        redis.call('PUBLISH', channel, cjson.encode({stream = stream, from = inst, seq = tonumber(seq), prev = before, frame = text()}))
        before = tonumber(seq)
      end
    end
    -- The turns it ends are ended in the store too: a holder whose copy of the end was lost sees it.
    for i = turns + opens, turns + opens + closes - 1 do
      redis.call('HDEL', meta, 't:' .. ARGV[i])
    end
    forwarded = forwarded + writes
  else
    local newest = math.max(tonumber(last), tonumber(holder[3] or '0'))
    if seqs ~= '' then
      local lastr = string.match(seqs, '([^,]+)$')
      -- Entries of frames more than `maxlen` seqs back go: the ring keeps no more either.
      local keep = string.format('%d', math.max(0, tonumber(lastr) - tonumber(maxlen)))
      redis.pcall('XADD', frames, 'MINID', '~', keep, lastr .. '-1', 'p', prev, 's', seqs, 'f', texts)
      redis.call('PEXPIRE', frames, ttl)
      redis.call('HSET', meta, 'lastr', lastr, 'last', string.format('%d', newest))
    else
      redis.call('HSET', meta, 'last', string.format('%d', newest))
    end
    for i = turns, turns + opens - 1 do
      redis.call('HSET', meta, 't:' .. ARGV[i], '1')
    end
    for i = turns + opens, turns + opens + closes - 1 do
      redis.call('HDEL', meta, 't:' .. ARGV[i])
    end
    redis.call('PEXPIRE', meta, ttl)
    written = written + writes
  end
end
return {written, forwarded}
"#;

/// KEYS meta hash, frames stream; ARGV user, epoch ('' for none), last_seq, node, inst, prefix,
/// TTL (ms), stream id, boot. The previous holder is alive while its node is registered under the
/// boot id it held the stream with (a node restarted under the same id is another incarnation);
/// a client past the stored `last` is `ahead` only while that holder lives (a dead holder may have
/// sent frames it never stored: the claim goes on, and numbering continues after the client's). Hands the stream to this node's object `inst` when it is the user's, of
/// that epoch and not behind last_seq (telling a previous holder that still lives, on its node's
/// channel: `{"taken": id, "inst": its object}`), and reads it: `{'ok', epoch, last, last replayable, previous node,
/// previous alive ('1'/'0'), {open turn ids}, {seq, prev, text, …}}`; else `{'unknown'}`,
/// `{'epoch_changed'}` or `{'ahead', alive}`.
pub(super) const STREAM_CLAIM: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'user', 'epoch', 'node', 'last', 'lastr', 'inst', 'boot')
if not m[1] or m[1] ~= ARGV[1] then return {'unknown'} end
if ARGV[2] ~= '' and ARGV[2] ~= m[2] then return {'epoch_changed'} end
local alive = '0'
if m[3] then
  local registration = redis.call('GET', ARGV[6] .. ':node:' .. m[3])
  if registration then
    alive = '1'
    local ok, info = pcall(cjson.decode, registration)
    if m[7] and ok and type(info) == 'table' and type(info.boot) == 'string' and info.boot ~= '' and info.boot ~= m[7] then
      alive = '0'
    end
  end
end
if tonumber(ARGV[3]) > tonumber(m[4] or '0') and alive == '1' then return {'ahead', alive} end
redis.call('HSET', KEYS[1], 'node', ARGV[4], 'inst', ARGV[5], 'boot', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if alive == '1' and m[6] and (m[3] ~= ARGV[4] or m[6] ~= ARGV[5]) then
  -- The previous holder still lives: its socket on the stream, if any, is told it was taken over.
  redis.call('PUBLISH', ARGV[6] .. ':node:' .. m[3] .. ':push', cjson.encode({taken = ARGV[8], inst = m[6]}))
end
local turns = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 't:' then table.insert(turns, string.sub(field, 3)) end
end
local out, after = {}, tonumber(ARGV[3])
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], string.format('%d', after + 1), '+')) do
  local fields, prev, seqs, texts = entry[2], '0', nil, ''
  for i = 1, #fields, 2 do
    if fields[i] == 'p' then prev = fields[i + 1] elseif fields[i] == 's' then seqs = fields[i + 1] elseif fields[i] == 'f' then texts = fields[i + 1] end
  end
  -- One entry holds a batch's frames of the stream (`s` their seqs; an entry without `s` is one
  -- frame, its seq the entry id's); each frame's prev is the one before it in the entry.
  seqs = seqs or string.match(entry[1], '^(%d+)')
  local text = string.gmatch(texts, '[^\n]+')
  for seq in string.gmatch(seqs, '[^,]+') do
    local frame = text()
    if tonumber(seq) > after then
      table.insert(out, seq)
      table.insert(out, prev)
      table.insert(out, frame)
    end
    prev = seq
  end
end
return {'ok', m[2], m[4] or '0', m[5] or '0', m[3] or '', alive, turns, out, m[7] or ''}
"#;

/// KEYS meta hash; ARGV prefix, node, boot. Returns `{alive, {open turn ids}}`: whether node is
/// registered under that boot id ('1'/'0'), and the stream's turns still open.
pub(super) const STREAM_ORPHANS: &str = r#"
local alive = '0'
local registration = redis.call('GET', ARGV[1] .. ':node:' .. ARGV[2])
if registration then
  alive = '1'
  local ok, info = pcall(cjson.decode, registration)
  if ARGV[3] ~= '' and ok and type(info) == 'table' and type(info.boot) == 'string' and info.boot ~= '' and info.boot ~= ARGV[3] then
    alive = '0'
  end
end
local turns = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 't:' then table.insert(turns, string.sub(field, 3)) end
end
return {alive, turns}
"#;

/// KEYS meta hash. Returns `{node, inst}` of the stream's holder (nils when unknown).
pub(super) const STREAM_HOLDER: &str = r#"
return redis.call('HMGET', KEYS[1], 'node', 'inst')
"#;
