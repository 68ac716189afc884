// Comparison of two differential runs (see run.mjs): the oracle (every tab on its own upstream
// connection) and the gateway. Pure functions over plain data, so `diffcheck.test.mjs` can show
// without a server that a crafted difference is caught and printed.
//
// Per tab it compares the events received, grouped per channel (events without a cid form one
// "user" stream), each as `s<step> <type> [m=<message>] [u=<user>] [t=<member>]` in arrival
// order (a racing step's events as a set), and the SDK state the tab ended with. Ids are made comparable by replacing each run's
// tag with `*`. Barrier traffic and events of a racing burst at the querying user's tabs (their
// arrival, event or query response, depends on timing even on the oracle) are left out.

/** Replace `tag` in every string of `value` (deeply) with `*`. */
export function normalize(value, tag) {
  return JSON.parse(JSON.stringify(value ?? null).split(tag).join('*'));
}

/** A race burst's message ids look like `r<step>x<k>-<tag>`. */
const RACE_ID = /^r(\d+)x\d+-/;

/**
 * The comparable streams of one tab: {streamName: [line]}.
 * `raceUsers` maps a step to the user index whose tabs ran the racing query at that step.
 */
export function eventStreams(tab, { barrierCid, raceUsers = new Map(), userIndex, skip = () => false }) {
  const streams = {};
  for (const e of tab.events) {
    if (skip(e)) continue;
    if (e.cid === barrierCid) continue;
    if (typeof e.mid === 'string' && e.mid.startsWith('bar')) continue;
    const race = typeof e.mid === 'string' ? RACE_ID.exec(e.mid) : null;
    if (race && raceUsers.get(Number(race[1])) === userIndex) continue;
    const name = e.cid ?? 'user';
    const parts = [`s${e.step}`, e.type];
    if (e.mid) parts.push(`m=${e.mid}`);
    // A notification is compared by what it is about (type, channel, message, member): which
    // optional fields it carries (a synthesised one's `user`) is the schema tests' business.
    if (e.user && !e.type.startsWith('notification.')) parts.push(`u=${e.user}`);
    if (e.member) parts.push(`t=${e.member}`);
    (streams[name] ??= []).push({ step: e.step, line: parts.join(' ') });
  }
  // Within a racing step, the order of the burst and the querying tab's `user.watching.start` at
  // other users' tabs depends on timing even on the oracle: compare that step's events as a set.
  const out = {};
  for (const [name, list] of Object.entries(streams)) {
    const keyed = list.map((x, i) => ({ ...x, i }));
    keyed.sort((a, b) => a.step - b.step || (raceUsers.has(a.step) ? a.line.localeCompare(b.line) : a.i - b.i));
    out[name] = keyed.map((x) => x.line);
  }
  return out;
}

/** Paths where two JSON-like values differ: [{path, a, b}] (at most `max`). */
export function jsonDiff(a, b, path = '', out = [], max = 5) {
  if (out.length >= max) return out;
  const isObj = (v) => v !== null && typeof v === 'object';
  if (isObj(a) && isObj(b) && Array.isArray(a) === Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) jsonDiff(a[k], b[k], path ? `${path}.${k}` : k, out, max);
    return out;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path: path || '(root)', a, b });
  return out;
}

/**
 * Differences between the oracle run and the gateway run of one scenario:
 * [{tab, kind: 'events'|'state'|'errors'|'watch', ...}]. `oracle` and `gateway` are what
 * runScenario resolved with; `scenario` is the script both ran.
 */
export function compareRuns(scenario, oracle, gateway) {
  const raceUsers = new Map();
  scenario.ops.forEach((op, i) => op.op === 'raceQuery' && raceUsers.set(i, op.user));
  // In a swapWatch step the user's own user.watching.stop/start pair on that channel exists on the
  // oracle only if the stop reached it first: timing, not multiplexing. The upstream's watchers
  // after the step and everything later are still compared.
  const swaps = new Map();
  scenario.ops.forEach((op, i) => op.op === 'swapWatch' && swaps.set(i, op));
  // A dropped tab that was its user's only one: on the oracle its presence subscribers see the user
  // go offline and online; through the gateway the user's upstream connection outlives the drop
  // (the linger), so they see nothing. A documented choice (README, "Presence across a
  // reconnect"): exactly these presence changes are not compared.
  const drops = new Map();
  scenario.ops.forEach((op, i) => op.op === 'drop' && drops.set(i, op));
  const skipFor = (tag) => (e) => {
    const drop = drops.get(e.step);
    if (drop !== undefined && e.type === 'user.presence.changed' && e.user === `u${drop.user}-${tag}`) {
      return true;
    }
    const op = swaps.get(e.step);
    return (
      op !== undefined &&
      e.type.startsWith('user.watching.') &&
      e.user === `u${op.user}-${tag}` &&
      e.cid === `messaging:c${op.channel}-${tag}`
    );
  };
  const diffs = [];
  // The first step whose upstream watchers differ (later steps usually inherit it).
  const [first, ...later] = gateway.mismatches ?? [];
  if (first) {
    diffs.push({ tab: '(upstream)', kind: 'watch', step: first.step, expected: first.expected, actual: first.actual, later: later.length });
  }
  const keys = [...new Set([...Object.keys(oracle.tabs), ...Object.keys(gateway.tabs)])].sort();
  for (const key of keys) {
    const userIndex = Number(/^u(\d+)/.exec(key)?.[1]);
    const side = (run) => {
      const tab = run.tabs[key] ?? { events: [], errors: [], facts: [], state: null };
      const barrierCid = `messaging:barrier-${run.tag}`;
      return normalize(
        {
          streams: eventStreams(tab, { barrierCid, raceUsers, userIndex, skip: skipFor(run.tag) }),
          state: tab.state,
          errors: tab.errors ?? [],
          facts: tab.facts ?? [],
        },
        run.tag,
      );
    };
    const a = side(oracle);
    const b = side(gateway);
    const names = [...new Set([...Object.keys(a.streams), ...Object.keys(b.streams)])].sort();
    for (const name of names) {
      const ea = a.streams[name] ?? [];
      const eb = b.streams[name] ?? [];
      const n = Math.max(ea.length, eb.length);
      for (let i = 0; i < n; i++) {
        if (ea[i] !== eb[i]) {
          diffs.push({ tab: key, kind: 'events', stream: name, index: i, oracle: ea[i] ?? '(none)', gateway: eb[i] ?? '(none)', oracleCount: ea.length, gatewayCount: eb.length });
          break;
        }
      }
    }
    for (const d of jsonDiff(a.state, b.state)) diffs.push({ tab: key, kind: 'state', ...d });
    for (const d of jsonDiff(a.errors, b.errors)) diffs.push({ tab: key, kind: 'errors', ...d });
    for (const d of jsonDiff(a.facts, b.facts)) diffs.push({ tab: key, kind: 'facts', ...d });
  }
  return diffs;
}

/** A short readable report: the seed, how to rerun it, and the first differences. */
export function formatDiffs(seed, diffs, { max = 12, describeStep } = {}) {
  const lines = [`differential run of seed ${seed}: ${diffs.length} difference(s) (rerun: DIFF_SEED=${seed})`];
  for (const d of diffs.slice(0, max)) {
    const step = (s) => (describeStep && Number.isInteger(s) ? ` [${describeStep(s)}]` : '');
    if (d.kind === 'events') {
      const s = Number(/^s(\d+)/.exec(d.oracle === '(none)' ? d.gateway : d.oracle)?.[1]);
      lines.push(
        `  tab ${d.tab} ${d.stream} event #${d.index}${step(s)}: oracle "${d.oracle}" | gateway "${d.gateway}" (${d.oracleCount} vs ${d.gatewayCount} events)`,
      );
    } else if (d.kind === 'watch') {
      const cids = [...new Set([...Object.keys(d.expected ?? {}), ...Object.keys(d.actual ?? {})])].sort();
      const differing = cids
        .filter((c) => JSON.stringify(d.expected?.[c] ?? []) !== JSON.stringify(d.actual?.[c] ?? []))
        .map((c) => `${c} oracle [${(d.expected?.[c] ?? []).join(',')}] gateway [${(d.actual?.[c] ?? []).join(',')}]`);
      const more = d.later ? ` (and ${d.later} later step(s))` : '';
      lines.push(`  upstream watchers after step ${d.step}${step(d.step)}: ${differing.join('; ') || 'unknown'}${more}`);
    } else {
      lines.push(`  tab ${d.tab} ${d.kind} ${d.path}: oracle ${JSON.stringify(d.a)} | gateway ${JSON.stringify(d.b)}`);
    }
  }
  if (diffs.length > max) lines.push(`  … and ${diffs.length - max} more`);
  return lines.join('\n');
}
