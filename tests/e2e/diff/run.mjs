// Runs one differential scenario (see scenario.mjs) against one base URL: the gateway, or the
// embedded upstream itself (every tab then has its own upstream connection). Records, per tab,
// every event it received (with the step it arrived in) and the SDK state it ended with.
//
// Synchronisation, without sleeps: after every operation
//   1. the upstream's subscriptions must have settled: on the direct run, until every user has
//      exactly as many upstream connections as open tabs (a closed or dropped tab's connection is
//      gone); on the gateway run, until the upstream's watchers (`/_emulator/watchers`) equal the
//      direct run's at the same step (bounded; a timeout is itself a reported difference);
//   2. a barrier: a conductor user sends a message to a barrier channel every tab watches, and the
//      step ends when every open tab has received it. Events travel in order on each connection, so
//      every event the operation caused has arrived by then. Barrier traffic is left out of the
//      comparison.

import { randomBytes } from 'node:crypto';

import { cfg, eventually, longLivedToken, newClient, waitForEvent } from '../lib.mjs';

/** Longest wait for the upstream's watchers to match the oracle's after one step. */
export const WATCH_SETTLE_MS = 3000;
/** After a first mismatch the run is already failed; later steps wait only this long. */
export const WATCH_SETTLE_AFTER_MISMATCH_MS = 300;
/** Longest wait for one barrier message to reach every tab, or for a dropped tab to recover. */
export const STEP_TIMEOUT_MS = 10_000;

/** Events the SDK makes itself, and the heartbeat: never compared. */
export const LOCAL_EVENTS = new Set([
  'health.check',
  'connection.changed',
  'connection.recovered',
  'transport.changed',
  'capabilities.changed',
  'channels.queried',
  'message.read_locally',
]);

/** `Error`s of an operation that the run records instead of throwing (both runs must agree). */
const errorText = (e) => {
  const text = String(e?.message ?? e);
  const m = /StreamChat error code (\d+)/.exec(text);
  return m ? `error ${m[1]}` : `error: ${text.slice(0, 120)}`;
};

export function runTag() {
  return `d${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/**
 * Run scenario `sc` with every client on `baseURL`.
 * opts.tag          suffix of every id of this run (fresh users and channels)
 * opts.expectWatch  the direct run's `watch` list: the gateway run waits for (and compares to) it
 * opts.log          optional progress callback
 * Resolves with { tag, tabs: {key: {events, state, errors}}, watch: [snapshot per step], mismatches }.
 */
export async function runScenario(sc, { baseURL, tag, expectWatch, log = () => {} }) {
  const ids = {
    user: (u) => `${sc.users[u].name}-${tag}`,
    channelId: (c) => `${sc.channels[c].name}-${tag}`,
    conductor: `bar-${tag}`,
    barrierId: `barrier-${tag}`,
  };
  const run = { step: -1, tag, tabs: new Map(), watch: [], mismatches: [], settleMs: WATCH_SETTLE_MS };
  const direct = expectWatch === undefined;

  // Conductor and tabs, then the channels (created by a member, so the creator is a member).
  const conductor = newClient({ baseURL });
  await conductor.connectUser({ id: ids.conductor }, longLivedToken(ids.conductor));
  for (let u = 0; u < sc.users.length; u++) {
    for (let t = 0; t < sc.users[u].tabs; t++) await openTab(run, ids, baseURL, u, t, { watchBarrier: false });
  }
  const barrier = conductor.channel('messaging', ids.barrierId, {
    members: [ids.conductor, ...sc.users.map((_, u) => ids.user(u))],
  });
  await barrier.create();
  for (let c = 0; c < sc.channels.length; c++) {
    const members = sc.channels[c].members.map(ids.user);
    const creator = tabOf(run, sc.channels[c].members[0], 0);
    await creator.client.channel('messaging', ids.channelId(c), { members }).create();
  }
  for (const tab of run.tabs.values()) await tab.client.channel('messaging', ids.barrierId).watch();
  run.barrier = { channel: barrier, n: 0, cid: barrier.cid };
  await settle(run, ids, sc, direct, expectWatch, 'setup');
  await barrierStep(run);

  for (let i = 0; i < sc.ops.length; i++) {
    run.step = i;
    const op = sc.ops[i];
    await perform(run, ids, baseURL, op, i);
    await settle(run, ids, sc, direct, expectWatch, i);
    await barrierStep(run);
    if (run.race) await finishRace(run, ids);
    log(i);
  }

  const tabs = {};
  for (const [key, tab] of run.tabs) {
    tabs[key] = {
      events: tab.events,
      errors: tab.errors,
      facts: tab.facts,
      state: tab.client ? snapshot(tab.client, run.barrier.cid) : null,
    };
  }
  return { tag, tabs, watch: run.watch, mismatches: run.mismatches };
}

function tabOf(run, u, t) {
  return run.tabs.get(`u${u}/t${t}`);
}

async function openTab(run, ids, baseURL, u, t, { watchBarrier }) {
  const key = `u${u}/t${t}`;
  const tab = run.tabs.get(key) ?? { key, user: u, events: [], errors: [], facts: [] };
  run.tabs.set(key, tab);
  const client = newClient({ baseURL });
  // The SDK reports deliveries (message.delivered) on a throttling timer of its own, so when they
  // go out depends on timing, not on the script: both runs leave them out.
  client.messageDeliveryReporter.announceDelivery = () => {};
  client.messageDeliveryReporter.announceDeliveryBuffered = () => {};
  const userId = ids.user(u);
  await client.connectUser({ id: userId, name: userId }, longLivedToken(userId));
  client.on((e) => {
    if (LOCAL_EVENTS.has(e.type)) return;
    // The SDK's own typing.stop for a typing.start older than 7 s (ChannelState#clean, on a
    // timer) carries no created_at; a server's does.
    if (e.type === 'typing.stop' && !e.created_at) return;
    tab.events.push({
      step: run.step,
      type: e.type,
      cid: e.cid,
      mid: e.message?.id ?? e.message_id,
      user: e.user?.id,
      member: e.member?.user_id ?? e.member?.user?.id,
    });
  });
  tab.client = client;
  if (watchBarrier) await client.channel('messaging', ids.barrierId).watch();
  return tab;
}

function channelOf(tab, ids, c) {
  return tab.client.channel('messaging', ids.channelId(c));
}

async function perform(run, ids, baseURL, op, i) {
  const tab = tabOf(run, op.user, op.tab);
  const record = (e) => tab.errors.push({ step: i, op: op.op, error: errorText(e) });
  try {
    switch (op.op) {
      case 'watch':
        await channelOf(tab, ids, op.channel).watch();
        break;
      case 'stopWatching':
        await channelOf(tab, ids, op.channel).stopWatching();
        break;
      case 'queryChannels':
        await queryMine(tab, ids, op.presence);
        break;
      case 'queryUsers': {
        const all = [...new Set([...run.tabs.values()].map((x) => ids.user(x.user)))];
        await tab.client.queryUsers({ id: { $in: all } }, { id: 1 }, { presence: op.presence });
        break;
      }
      case 'send':
        await channelOf(tab, ids, op.channel).sendMessage({ id: `m${i}-${run.tag}`, text: `step ${i}` });
        break;
      case 'typing':
        // sendEvent, not keystroke(): keystroke() throttles on wall-clock time, which would make
        // the two runs differ by timing alone.
        await channelOf(tab, ids, op.channel).sendEvent({ type: op.start ? 'typing.start' : 'typing.stop' });
        break;
      case 'markRead':
        await channelOf(tab, ids, op.channel).markRead();
        break;
      case 'close':
        await tab.client.disconnectUser(2000);
        tab.client = null;
        break;
      case 'reopen':
        await openTab(run, ids, baseURL, op.user, op.tab, { watchBarrier: true });
        break;
      case 'drop': {
        const recovered = waitForEvent(tab.client, 'connection.recovered', () => true, STEP_TIMEOUT_MS);
        // An abrupt loss (no close frame): the SDK reconnects and runs recoverState.
        tab.client.wsConnection.ws.terminate();
        await recovered;
        break;
      }
      case 'raceQuery': {
        const sender = tabOf(run, op.sender.user, op.sender.tab);
        const ch = channelOf(sender, ids, op.channel);
        const burstIds = Array.from({ length: op.burst }, (_, k) => `r${i}x${k}-${run.tag}`);
        const burst = (async () => {
          for (const id of burstIds) await ch.sendMessage({ id, text: 'race' });
        })();
        const cid = `messaging:${ids.channelId(op.channel)}`;
        const seen = new Set();
        const query = queryMine(tab, ids, false).then(() => {
          for (const m of tab.client.activeChannels[cid]?.state.messages ?? []) seen.add(m.id);
        });
        await Promise.all([query, burst]);
        run.race = { tab, step: i, burstIds, seen, channel: op.channel };
        break;
      }
      case 'swapWatch': {
        const other = tabOf(run, op.user, op.other);
        const results = await Promise.allSettled([
          channelOf(tab, ids, op.channel).stopWatching(),
          channelOf(other, ids, op.channel).watch(),
        ]);
        for (const r of results) if (r.status === 'rejected') record(r.reason);
        break;
      }
      case 'hide':
        await channelOf(tab, ids, op.channel).hide();
        break;
      case 'show':
        await channelOf(tab, ids, op.channel).show();
        break;
      case 'addMember':
        await channelOf(tab, ids, op.channel).addMembers([ids.user(op.target)]);
        break;
      case 'removeMember':
        await channelOf(tab, ids, op.channel).removeMembers([ids.user(op.target)]);
        break;
      case 'reply':
        await channelOf(tab, ids, op.channel).sendMessage({
          id: `m${i}-${run.tag}`,
          text: `reply ${i}`,
          parent_id: `m${op.parent}-${run.tag}`,
        });
        break;
      case 'queryThreads':
        await tab.client.queryThreads({ watch: true });
        break;
      case 'getThread':
        await tab.client.getThread(`m${op.parent}-${run.tag}`, { watch: true });
        break;
      default:
        throw new Error(`unknown op ${op.op}`);
    }
  } catch (e) {
    record(e);
  }
}

/**
 * After a racing query's step (its barrier passed, so every event it caused has arrived): every
 * burst message must have reached the querying tab, in the query's response or as an event (the
 * SDK itself drops an event that arrives before it has built the channel, so the events the tab
 * received count, not the SDK's message list). Then the channel is reloaded, so that the SDK's own
 * race leaves no trace in the final state.
 */
async function finishRace(run, ids) {
  const { tab, step, burstIds, seen, channel } = run.race;
  run.race = undefined;
  for (const e of tab.events) if (e.step === step && e.mid) seen.add(e.mid);
  tab.facts.push({ step, race_missing: burstIds.filter((id) => !seen.has(id)) });
  try {
    await channelOf(tab, ids, channel).watch();
  } catch (e) {
    tab.errors.push({ step, op: 'raceQuery reload', error: errorText(e) });
  }
  // The reload may itself cause events (a watch of a channel the query did not return).
  await barrierStep(run);
}

/** queryChannels over this user's scenario channels (not the barrier), watching them all. */
async function queryMine(tab, ids, presence) {
  await tab.client.queryChannels(
    { type: 'messaging', members: { $in: [tab.client.userID] }, id: { $ne: ids.barrierId } },
    { created_at: 1 },
    { watch: true, presence, limit: 10 },
  );
}

/** Barrier: a message on the barrier channel, awaited at every open tab. */
async function barrierStep(run) {
  const id = `bar${run.barrier.n++}-${run.tag}`;
  const open = [...run.tabs.values()].filter((t) => t.client);
  const waits = open.map((t) =>
    waitForEvent(t.client, 'message.new', (e) => e.message?.id === id, STEP_TIMEOUT_MS).catch((e) => {
      throw new Error(`step ${run.step}: barrier ${id} never reached tab ${t.key}: ${e.message}`);
    }),
  );
  await run.barrier.channel.sendMessage({ id, text: 'barrier' });
  await Promise.all(waits);
}

async function emulatorJson(path) {
  const res = await fetch(`${cfg.emulatorUrl}${path}`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`GET ${path} -> HTTP ${res.status}: ${await res.text()}`);
  return res.json();
}

/** The upstream's watchers of this run's channels: {cid: [user ids]} (barrier, conductor left out). */
async function watchers(run, ids) {
  const q = new URLSearchParams({ api_key: cfg.apiKey, cid_contains: run.tag });
  const body = await emulatorJson(`/_emulator/watchers?${q}`);
  const out = {};
  for (const [cid, users] of Object.entries(body.channels ?? {})) {
    if (cid.endsWith(`:${ids.barrierId}`)) continue;
    const list = Object.keys(users).filter((u) => u !== ids.conductor).sort();
    if (list.length) out[cid] = list;
  }
  return out;
}

const norm = (tag, value) => JSON.parse(JSON.stringify(value).split(tag).join('*'));

async function settle(run, ids, sc, direct, expectWatch, step) {
  if (direct) {
    // Each open tab is one upstream connection; a closed or dropped one must be gone.
    const want = {};
    for (const tab of run.tabs.values()) {
      if (tab.client) want[`${cfg.apiKey}/${ids.user(tab.user)}`] = (want[`${cfg.apiKey}/${ids.user(tab.user)}`] ?? 0) + 1;
    }
    await eventually(
      async () => {
        const body = await emulatorJson('/_emulator/connections');
        for (let u = 0; u < sc.users.length; u++) {
          const k = `${cfg.apiKey}/${ids.user(u)}`;
          if ((body.users?.[k] ?? 0) !== (want[k] ?? 0)) return false;
        }
        return true;
      },
      { timeoutMs: STEP_TIMEOUT_MS, intervalMs: 20, what: `step ${step}: upstream connections == open tabs` },
    );
    run.watch.push(norm(run.tag, await watchers(run, ids)));
    return;
  }
  const expected = expectWatch[run.watch.length];
  const want = JSON.stringify(expected);
  // A user has an upstream connection exactly while one of their tabs is open: waiting for a
  // closed last tab's connection to go (the gateway's linger) lets the upstream's own effects of
  // that close (presence, watching) arrive before the barrier, as they do on the oracle.
  const online = new Set([...run.tabs.values()].filter((t) => t.client).map((t) => ids.user(t.user)));
  let last;
  try {
    await eventually(
      async () => {
        last = norm(run.tag, await watchers(run, ids));
        if (JSON.stringify(last) !== want) return false;
        const body = await emulatorJson('/_emulator/connections');
        return sc.users.every((_, u) => ((body.users?.[`${cfg.apiKey}/${ids.user(u)}`] ?? 0) > 0) === online.has(ids.user(u)));
      },
      { timeoutMs: run.settleMs, intervalMs: 20, what: 'watchers' },
    );
  } catch {
    run.mismatches.push({ step, expected, actual: last });
    run.settleMs = WATCH_SETTLE_AFTER_MISMATCH_MS;
  }
  run.watch.push(last);
}

/** The SDK state a tab ended with, in comparable form. */
export function snapshot(client, barrierCid) {
  const channels = {};
  for (const cid of Object.keys(client.activeChannels).sort()) {
    if (cid === barrierCid) continue;
    const ch = client.activeChannels[cid];
    const read = {};
    for (const [user, r] of Object.entries(ch.state.read ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
      read[user] = { last_read_message_id: r.last_read_message_id ?? null, unread_messages: r.unread_messages ?? null };
    }
    channels[cid] = {
      initialized: Boolean(ch.initialized),
      messages: (ch.state.messages ?? []).map((m) => m.id),
      read,
      // A channel the tab never queried (known from a thread, a send) counts watchers only from
      // events, and whether its first event came before the SDK built the channel is timing:
      // compared for loaded channels only.
      watcher_count: ch.initialized ? (ch.state.watcher_count ?? null) : null,
      members: Object.keys(ch.state.members ?? {}).sort(),
      hidden: ch.data?.hidden ?? null,
    };
  }
  const me = client.user ?? {};
  return {
    channels,
    me: {
      total_unread_count: me.total_unread_count ?? null,
      unread_channels: me.unread_channels ?? null,
      mutes: (me.mutes ?? []).map((m) => m.target?.id ?? null),
      channel_mutes: (me.channel_mutes ?? []).map((m) => m.channel?.cid ?? null),
      blocked_user_ids: me.blocked_user_ids ?? [],
      devices: (me.devices ?? []).map((d) => d.id),
      privacy_settings: me.privacy_settings ?? null,
    },
  };
}
