// Server-less self-check of the differential harness (diff.test.mjs): scenarios are a pure
// function of their seed, and the comparison catches and prints a crafted difference. Needs no
// environment variables and no gateway. (This file reads no gateway metrics.)

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { OP_WEIGHTS, describeOp, generate, prng } from './diff/scenario.mjs';
import { compareRuns, eventStreams, formatDiffs, jsonDiff, normalize } from './diff/compare.mjs';

const ALL = new Set(Object.keys(OP_WEIGHTS));

test('a scenario is a pure function of its seed, within the documented bounds', () => {
  assert.deepEqual(generate(42, { ops: ALL, length: 40 }), generate(42, { ops: ALL, length: 40 }));
  assert.notDeepEqual(generate(42, { ops: ALL, length: 40 }).ops, generate(43, { ops: ALL, length: 40 }).ops);
  for (let seed = 1; seed <= 200; seed++) {
    const sc = generate(seed, { ops: ALL, length: 30 });
    assert.ok(sc.users.length >= 2 && sc.users.length <= 3, `seed ${seed}: 2–3 users`);
    assert.ok(sc.users.every((u) => u.tabs >= 1 && u.tabs <= 4), `seed ${seed}: 1–4 tabs each`);
    assert.ok(sc.channels.length >= 2 && sc.channels.length <= 4, `seed ${seed}: 2–4 channels`);
    assert.ok(sc.channels.every((c) => c.members.length >= 2), `seed ${seed}: channels have 2+ members`);
    assert.equal(sc.ops.length, 30, `seed ${seed}: 30 ops`);
    // A tab is never used while closed, and only a closed tab is reopened.
    const open = sc.users.map((u) => Array(u.tabs).fill(true));
    for (const op of sc.ops) {
      if (op.op === 'reopen') assert.equal(open[op.user][op.tab], false, `seed ${seed}: reopen of an open tab`);
      else assert.equal(open[op.user][op.tab], true, `seed ${seed}: ${describeOp(op, 0)} on a closed tab`);
      if (op.op === 'close') open[op.user][op.tab] = false;
      if (op.op === 'reopen') open[op.user][op.tab] = true;
      if (op.channel !== undefined) {
        assert.ok(Number.isInteger(op.channel) && op.channel < sc.channels.length, `seed ${seed}: bad channel`);
      }
      if (op.sender) assert.equal(open[op.sender.user][op.sender.tab], true, `seed ${seed}: closed race sender`);
    }
  }
  // Without reopen, closes stop short of exhausting the tabs: every script is full length.
  const noReopen = new Set([...ALL].filter((op) => op !== 'reopen'));
  for (let seed = 1; seed <= 50; seed++) assert.equal(generate(seed, { ops: noReopen, length: 30 }).ops.length, 30);
  // Disabled operations are never generated.
  const few = new Set(['watch', 'send']);
  assert.ok(generate(7, { ops: few, length: 20 }).ops.every((op) => few.has(op.op)));
  assert.equal(prng(1).next(), prng(1).next());
});

/** A minimal pair of runs as runScenario would return them. */
function runs() {
  const tab = (tag, extra = []) => ({
    events: [
      { step: 0, type: 'user.watching.start', cid: `messaging:c0-${tag}`, user: `u0-${tag}` },
      { step: 0, type: 'message.new', cid: `messaging:barrier-${tag}`, mid: `bar0-${tag}` },
      { step: 1, type: 'message.new', cid: `messaging:c0-${tag}`, mid: `m1-${tag}`, user: `u1-${tag}` },
      ...extra,
    ],
    errors: [],
    state: { channels: { [`messaging:c0-${tag}`]: { messages: [`m1-${tag}`], watcher_count: 2 } }, me: { total_unread_count: 1 } },
  });
  return {
    scenario: { ops: [{ op: 'watch', user: 0, tab: 0, channel: 0 }, { op: 'send', user: 1, tab: 0, channel: 0 }] },
    oracle: { tag: 'AAA', tabs: { 'u0/t0': tab('AAA') }, mismatches: [] },
    gateway: { tag: 'BBB', tabs: { 'u0/t0': tab('BBB') }, mismatches: [] },
  };
}

test('identical runs under different tags compare equal; barrier traffic is ignored', () => {
  const { scenario, oracle, gateway } = runs();
  gateway.tabs['u0/t0'].events.push({ step: 1, type: 'message.new', cid: 'messaging:barrier-BBB', mid: 'bar1-BBB' });
  assert.deepEqual(compareRuns(scenario, oracle, gateway), []);
});

test('a lost event is caught, and the report names the seed, the tab and the first differing event', () => {
  const { scenario, oracle, gateway } = runs();
  gateway.tabs['u0/t0'].events.splice(0, 1); // the tab's own user.watching.start is lost
  const diffs = compareRuns(scenario, oracle, gateway);
  assert.equal(diffs.length, 1);
  assert.equal(diffs[0].kind, 'events');
  assert.equal(diffs[0].tab, 'u0/t0');
  const report = formatDiffs(99, diffs, { describeStep: (s) => describeOp(scenario.ops[s], s) });
  assert.match(report, /seed 99/);
  assert.match(report, /DIFF_SEED=99/);
  assert.match(report, /tab u0\/t0 messaging:c0-\* event #0 \[#0 watch u0\/t0 c0\]/);
  assert.match(report, /oracle "s0 user\.watching\.start u=u0-\*" \| gateway "s1 message\.new m=m1-\* u=u1-\*"/);
});

test('an extra event, a state difference and an upstream watch mismatch are each caught', () => {
  {
    const { scenario, oracle, gateway } = runs();
    gateway.tabs['u0/t0'].events.push({ step: 1, type: 'notification.message_new', cid: 'messaging:c0-BBB', mid: 'm1-BBB' });
    const [d] = compareRuns(scenario, oracle, gateway);
    assert.equal(d.gateway, 's1 notification.message_new m=m1-*');
    assert.equal(d.oracle, '(none)');
  }
  {
    const { scenario, oracle, gateway } = runs();
    gateway.tabs['u0/t0'].state.me.total_unread_count = 0; // a stale `me`
    const [d] = compareRuns(scenario, oracle, gateway);
    assert.deepEqual([d.kind, d.path, d.a, d.b], ['state', 'me.total_unread_count', 1, 0]);
  }
  {
    const { scenario, oracle, gateway } = runs();
    const stale = { expected: {}, actual: { 'messaging:c0-*': ['u0-*'] } };
    gateway.mismatches.push({ step: 1, ...stale }, { step: 2, ...stale });
    const diffs = compareRuns(scenario, oracle, gateway);
    assert.equal(diffs.length, 1, 'one entry for the first step whose watchers differ');
    assert.equal(diffs[0].kind, 'watch');
    assert.match(
      formatDiffs(5, diffs),
      /upstream watchers after step 1: messaging:c0-\* oracle \[\] gateway \[u0-\*\] \(and 1 later step\(s\)\)/,
    );
  }
});

test("in a swapWatch step the user's own watching pair on that channel is ignored, and only that", () => {
  const scenario = { ops: [{ op: 'swapWatch', user: 0, tab: 0, other: 1, channel: 2 }] };
  const run = (tag, events) => ({ tag, tabs: { 'u1/t0': { events, errors: [], facts: [], state: null } }, mismatches: [] });
  const stop = (tag, user = 'u0') => ({ step: 0, type: 'user.watching.stop', cid: `messaging:c2-${tag}`, user: `${user}-${tag}` });
  const start = (tag) => ({ step: 0, type: 'user.watching.start', cid: `messaging:c2-${tag}`, user: `u0-${tag}` });
  assert.deepEqual(compareRuns(scenario, run('A', [stop('A'), start('A')]), run('B', [])), []);
  assert.equal(compareRuns(scenario, run('A', [stop('A', 'u2')]), run('B', [])).length, 1, "another user's stop counts");
});

test('events of a racing burst are ignored at the querying user only; helpers', () => {
  const tab = { events: [{ step: 3, type: 'message.new', cid: 'c', mid: 'r3x0-T' }] };
  const raceUsers = new Map([[3, 0]]);
  assert.deepEqual(eventStreams(tab, { barrierCid: 'b', raceUsers, userIndex: 0 }), {});
  assert.deepEqual(eventStreams(tab, { barrierCid: 'b', raceUsers, userIndex: 1 }), { c: ['s3 message.new m=r3x0-T'] });
  // At other users' tabs a racing step's events are compared in a canonical order.
  const other = {
    events: [
      { step: 3, type: 'message.new', cid: 'c', mid: 'r3x0-T' },
      { step: 3, type: 'user.watching.start', cid: 'c', user: 'u0-T' },
      { step: 4, type: 'typing.start', cid: 'c', user: 'u0-T' },
      { step: 4, type: 'typing.stop', cid: 'c', user: 'u0-T' },
    ],
  };
  const swapped = { events: [other.events[1], other.events[0], ...other.events.slice(2)] };
  const opts = { barrierCid: 'b', raceUsers, userIndex: 1 };
  assert.deepEqual(eventStreams(other, opts), eventStreams(swapped, opts));
  const late = { events: [other.events[0], other.events[1], other.events[3], other.events[2]] };
  assert.notDeepEqual(eventStreams(other, opts), eventStreams(late, opts), 'other steps keep their order');
  assert.deepEqual(normalize({ a: ['x-T', 'T'] }, 'T'), { a: ['x-*', '*'] });
  assert.deepEqual(jsonDiff({ a: 1, b: [1, 2] }, { a: 1, b: [1, 3] }), [{ path: 'b.1', a: 2, b: 3 }]);
});
