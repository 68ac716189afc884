// Scenario generation for the differential multi-tab harness (`diff.test.mjs`): from a seed, a
// deterministic script of users, tabs, channels and operations interleaved across tabs. Pure: no
// SDK, no network, so `diffcheck.test.mjs` checks it without a server.
//
// The generator keeps a small model of each tab (open or closed, which channels its SDK client has
// instantiated, initialised or watches) only to pick operations that make sense (read a channel the
// tab has loaded, stop watching one it watches, reopen a closed tab). It never predicts events:
// the run with every tab on its own upstream connection is the oracle.

/** mulberry32: a tiny seeded PRNG, the same sequence on every machine and Node version. */
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    /** Integer in [lo, hi]. */
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (list) => list[Math.floor(next() * list.length)],
    chance: (p) => next() < p,
  };
}

/** Every operation the harness knows, with its relative weight when enabled. */
export const OP_WEIGHTS = {
  watch: 6,
  stopWatching: 3,
  queryChannels: 3,
  queryUsers: 1,
  send: 8,
  typing: 3,
  markRead: 3,
  close: 2,
  reopen: 3,
  drop: 1,
  // queryChannels while another member sends a burst of messages to one of its channels
  // (issue 15 point 2: events for a subscription in flight).
  raceQuery: 2,
  // One tab stops watching a channel while another tab of the same user starts watching it, both
  // in flight at once (issue 15 point 3: a stop must not overtake a later watch upstream).
  swapWatch: 2,
  // Need routes the embedded upstream may not have yet; `probeCaps` turns them on.
  hide: 2,
  show: 2,
  addMember: 1,
  removeMember: 1,
  // A reply in a thread of an earlier message (threads exist only when the emulator has them).
  reply: 3,
  queryThreads: 1,
  getThread: 1,
};

/** Operations that need an embedded-upstream route, with the probe that shows it exists. */
export const OPS_NEEDING_ROUTES = {
  hide: 'hide',
  show: 'show',
  addMember: 'members',
  removeMember: 'members',
  reply: 'threads',
  queryThreads: 'threads',
  getThread: 'threads',
};

/** Messages a `raceQuery` sends while the query is in flight. */
export const RACE_BURST = 6;

/**
 * The scenario of `seed`. `ops` is the set of operation names that may be generated; `length`
 * the number of operations.
 * Returns { seed, users: [{name, tabs}], channels: [{name, members: [user index]}], ops: [...] }
 * where each op is { op, user, tab, ...args } (user and tab are indexes, channels by index).
 */
export function generate(seed, { ops, length }) {
  const r = prng(seed);
  const nUsers = r.int(2, 3);
  const users = Array.from({ length: nUsers }, (_, u) => ({ name: `u${u}`, tabs: r.int(1, 4) }));
  const channels = Array.from({ length: r.int(2, 4) }, (_, c) => {
    const order = shuffle(r, users.map((_, u) => u));
    const members = order.slice(0, r.int(2, nUsers)).sort();
    return { name: `c${c}`, members };
  });
  const memberOf = (u) => channels.map((ch, c) => (ch.members.includes(u) ? c : -1)).filter((c) => c >= 0);

  // Per tab: open, instantiated (in the SDK's activeChannels), loaded (initialised by a query),
  // watching. Every tab starts open, watching only the barrier channel.
  const tabs = users.map((u) =>
    Array.from({ length: u.tabs }, () => ({ open: true, inst: new Set(), loaded: new Set(), watching: new Set() })),
  );
  // Membership as add/remove ops change it (channel choices for watch and send keep to the initial
  // members, so that they never depend on whether a member op was enabled).
  const membership = channels.map((ch) => new Set(ch.members));
  // Channels each user has hidden: queryChannels leaves them out, and a new message shows them.
  const hidden = users.map(() => new Set());
  // Steps whose op sent a top-level message, per channel: parents for replies and getThread.
  const sent = channels.map(() => []);
  // Parents that have at least one reply (getThread and queryThreads find a thread there).
  const threads = [];
  const weighted = Object.entries(OP_WEIGHTS).filter(([name]) => ops.has(name));
  const script = [];
  let guard = 0;
  while (script.length < length && guard++ < length * 50) {
    const [name] = pickWeighted(r, weighted);
    const u = r.int(0, nUsers - 1);
    const t = r.int(0, users[u].tabs - 1);
    const tab = tabs[u][t];
    const mine = memberOf(u);
    const op = makeOp(r, name, { u, t, tab, tabs, mine, channels, users, membership, ops, hidden, sent, threads, step: script.length });
    if (op) script.push(op);
  }
  return { seed, users, channels, ops: script };
}

function makeOp(r, name, { u, t, tab, tabs, mine, channels, users, membership, ops, hidden, sent, threads, step }) {
  const shown = (c) => hidden.forEach((set) => set.delete(c));
  const base = { op: name, user: u, tab: t };
  const openTabsOf = (v) => tabs[v].map((x, i) => (x.open ? i : -1)).filter((i) => i >= 0);
  if (name === 'reopen') {
    if (tab.open) return null;
    tab.open = true;
    return base;
  }
  if (!tab.open) return null;
  switch (name) {
    case 'watch': {
      if (!mine.length) return null;
      const c = r.pick(mine);
      tab.inst.add(c);
      tab.loaded.add(c);
      tab.watching.add(c);
      return { ...base, channel: c };
    }
    case 'stopWatching': {
      const watching = [...tab.watching];
      if (!watching.length) return null;
      const c = r.pick(watching);
      tab.watching.delete(c);
      return { ...base, channel: c };
    }
    case 'queryChannels': {
      for (const c of mine) if (!hidden[u].has(c)) [tab.inst, tab.loaded, tab.watching].forEach((s) => s.add(c));
      return { ...base, presence: r.chance(0.5) };
    }
    case 'queryUsers':
      return { ...base, presence: r.chance(0.7) };
    case 'send': {
      if (!mine.length) return null;
      const c = r.pick(mine);
      tab.inst.add(c);
      shown(c);
      sent[c].push(step);
      return { ...base, channel: c };
    }
    case 'typing': {
      // The SDK sends typing only on a channel it has loaded.
      const loaded = [...tab.loaded];
      if (!loaded.length) return null;
      return { ...base, channel: r.pick(loaded), start: r.chance(0.6) };
    }
    case 'markRead': {
      const loaded = [...tab.loaded];
      if (!loaded.length) return null;
      return { ...base, channel: r.pick(loaded) };
    }
    case 'close': {
      // Without reopen, keep two tabs open somewhere, or the script runs out of operations.
      const open = tabs.flat().filter((x) => x.open).length;
      if (!ops.has('reopen') && open <= 2) return null;
      Object.assign(tab, { open: false, inst: new Set(), loaded: new Set(), watching: new Set() });
      return base;
    }
    case 'drop':
      // recoverState re-queries (and so watches) every channel in activeChannels.
      tab.loaded = new Set(tab.inst);
      tab.watching = new Set(tab.inst);
      return base;
    case 'raceQuery': {
      // A sender: an open tab of another member of one of this user's channels.
      const options = [];
      for (const c of mine) {
        for (const v of channels[c].members) {
          if (v === u) continue;
          for (const s of openTabsOf(v)) options.push({ c, v, s });
        }
      }
      if (!options.length) return null;
      // Not on a channel this user hid: the burst shows it again, so whether the query returns it
      // would depend on timing even on the oracle.
      // Both still members (a removed member's query does not return the channel).
      const visible = options.filter(
        (o) => !hidden[u].has(o.c) && membership[o.c].has(u) && membership[o.c].has(o.v),
      );
      if (!visible.length) return null;
      const { c, v, s } = r.pick(visible);
      tabs[v][s].inst.add(c);
      for (const m of mine) if (!hidden[u].has(m)) [tab.inst, tab.loaded, tab.watching].forEach((set) => set.add(m));
      shown(c);
      return { ...base, channel: c, sender: { user: v, tab: s }, burst: RACE_BURST };
    }
    case 'swapWatch': {
      const watching = [...tab.watching];
      if (!watching.length) return null;
      const c = r.pick(watching);
      const others = openTabsOf(u).filter((i) => i !== t && !tabs[u][i].watching.has(c));
      if (!others.length) return null;
      const other = r.pick(others);
      tab.watching.delete(c);
      for (const set of ['inst', 'loaded', 'watching']) tabs[u][other][set].add(c);
      return { ...base, channel: c, other };
    }
    case 'hide':
    case 'show': {
      const loaded = [...tab.loaded];
      if (!loaded.length) return null;
      const c = r.pick(loaded);
      if (name === 'hide') hidden[u].add(c);
      else hidden[u].delete(c);
      return { ...base, channel: c };
    }
    case 'addMember':
    case 'removeMember': {
      const loaded = [...tab.loaded];
      if (!loaded.length) return null;
      const c = r.pick(loaded);
      const members = membership[c];
      const candidates = users
        .map((_, v) => v)
        .filter((v) => v !== u && (name === 'addMember') !== members.has(v));
      if (!candidates.length) return null;
      const target = r.pick(candidates);
      if (name === 'addMember') members.add(target);
      else members.delete(target);
      return { ...base, channel: c, target };
    }
    case 'reply': {
      const options = mine.filter((c) => sent[c].length);
      if (!options.length) return null;
      const c = r.pick(options);
      const parent = r.pick(sent[c]);
      tab.inst.add(c);
      if (!threads.includes(parent)) threads.push(parent);
      return { ...base, channel: c, parent };
    }
    case 'getThread': {
      if (!threads.length) return null;
      return { ...base, parent: r.pick(threads) };
    }
    case 'queryThreads':
      return base;
    default:
      return null;
  }
}

function pickWeighted(r, weighted) {
  const total = weighted.reduce((acc, [, w]) => acc + w, 0);
  let x = r.next() * total;
  for (const entry of weighted) {
    x -= entry[1];
    if (x < 0) return entry;
  }
  return weighted[weighted.length - 1];
}

function shuffle(r, list) {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = r.int(0, i);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** One line per op, for a failure message. */
export function describeOp(op, i) {
  const tab = `u${op.user}/t${op.tab}`;
  const parts = [`#${i} ${op.op} ${tab}`];
  if (op.channel !== undefined) parts.push(`c${op.channel}`);
  if (op.sender) parts.push(`sender u${op.sender.user}/t${op.sender.tab} x${op.burst}`);
  if (op.target !== undefined) parts.push(`target u${op.target}`);
  if (op.parent !== undefined) parts.push(`parent m${op.parent}`);
  if (op.other !== undefined) parts.push(`while u${op.user}/t${op.other} watches`);
  if (op.presence !== undefined) parts.push(`presence=${op.presence}`);
  if (op.start !== undefined) parts.push(op.start ? 'start' : 'stop');
  return parts.join(' ');
}
