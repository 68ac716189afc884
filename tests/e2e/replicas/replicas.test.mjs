// Many replicas behind a real load balancer (issue 18, "How it is shown"): Debian's HAProxy with
// the shipped deploy/haproxy/haproxy.cfg in front of stream-edge replicas and one embedded
// upstream, driven by the real SDK with no wsUrlParams. Started by tests/it/replicas.rs (the
// generic runner in tests/it/sdk.rs reads only tests/e2e/*.test.mjs), which passes STREAM_EDGE_BIN, HAPROXY_BIN,
// STREAM_API_KEY and STREAM_API_SECRET; harness.mjs starts and kills every process.
//
// (a) and (d) need nothing but the load balancer. (b), (c) and (e) need the gateway's cluster
// code (`[cluster]`: forwarding to the owner, convergence, signed connection ids); without it
// they fail on their forwarding assertions, whose messages say so.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';

import { StreamChat } from 'stream-chat';

import {
  cleanup,
  eventually,
  isMessage,
  longLivedToken,
  newClient,
  startWsBlockingProxy,
  uid,
  upstreamCount,
  waitForEvent,
} from '../lib.mjs';
import {
  alive,
  disableFourth,
  enableFourth,
  replicaMetric,
  serverStates,
  startCluster,
  stopCluster,
  upstreamByReplica,
} from './harness.mjs';

const NEEDS_CLUSTER = 'needs the gateway cluster code ([cluster], issue 18)';
/** Per-scenario budget: replica loss and convergence take a few seconds each. */
const OPTS = { timeout: 90_000 };

let c;
let proxy;

before(async () => {
  c = await startCluster();
  // lib.mjs reads these lazily: clients go through HAProxy, metrics helpers to replica 1.
  process.env.GATEWAY_URL = c.url;
  process.env.EMULATOR_URL = c.emulatorUrl;
  process.env.ADMIN_URL = c.replicas[0].admin;
  // Long-poll tabs: a WebSocket-refusing proxy in front of HAProxy, as in longpoll.test.mjs.
  proxy = await startWsBlockingProxy(c.url);
});
afterEach(cleanup);
after(async () => {
  await cleanup();
  await proxy?.close();
  stopCluster(c);
});

// ---------------------------------------------------------------------------
// Helpers

const backend = () =>
  new StreamChat(process.env.STREAM_API_KEY, process.env.STREAM_API_SECRET, {
    baseURL: c.emulatorUrl,
    timeout: 6000,
    enableInsights: false,
  });

async function wsTab(userId) {
  const client = newClient({ baseURL: c.url });
  await client.connectUser({ id: userId, name: userId }, longLivedToken(userId));
  assert.equal(client.wsConnection?.isHealthy, true, `${userId}: WebSocket tab`);
  return { client, kind: 'ws', userId };
}

async function lpTab(userId) {
  const all = [];
  const client = newClient({
    baseURL: proxy.url,
    enableWSFallback: true,
    logger: (level, msg, extra) => all.push(`${level} ${msg} ${extra?.status ?? ""} ${typeof extra?.response?.data === "string" ? extra.response.data.slice(0, 80) : ""}`),
  });
  client.allLog = all;
  const changed = waitForEvent(client, 'transport.changed', () => true, 15_000);
  await client.connectUser({ id: userId, name: userId }, longLivedToken(userId));
  assert.equal((await changed).mode, 'longpoll', `${userId}: long-poll tab`);
  return { client, kind: 'lp', userId };
}

/** The SDK's queryChannels body for the user's own channels. */
const QUERY_OWN_CHANNELS = (userId) => ({ filter_conditions: { members: { $in: [userId] } }, state: true, limit: 1 });

const connectionId = (tab) => (tab.kind === 'lp' ? tab.client.wsFallback?.connectionID : tab.client.wsConnection?.connectionID);

/** No upstream connection left anywhere (the previous test's users lingered 1 s). */
async function quiet() {
  await eventually(async () => Object.values(await upstreamByReplica(c)).every((n) => n === 0), {
    timeoutMs: 15_000,
    what: 'no upstream connection on any replica',
  });
}

/**
 * Open `userId`'s tabs with `open` and return which replica now holds the user: the one replica
 * whose upstream connection count rose by one (tabs of one user share one upstream connection).
 */
async function place(userId, open) {
  const before = await upstreamByReplica(c);
  const tabs = await open(userId);
  let owner;
  await eventually(
    async () => {
      const now = await upstreamByReplica(c);
      const grew = Object.keys(now).filter((k) => now[k] === (before[k] ?? 0) + 1);
      const total = (o) => Object.values(o).reduce((a, b) => a + b, 0);
      if (grew.length === 1 && total(now) === total(before) + 1) owner = grew[0];
      return owner ? true : { before, now };
    },
    { what: `${userId}: exactly one replica opened an upstream connection` },
  );
  return { id: userId, owner, tabs };
}

const threeTabs = async (u) => [await wsTab(u), await wsTab(u), await lpTab(u)];
const replicaByName = (name) => c.replicas.find((r) => r.name === name);

/** A channel `cid` with `members`, watched by every tab in `tabs`; returns the tabs' channels. */
async function watchAll(channelId, members, tabs) {
  const chans = [];
  for (const t of tabs) {
    const ch = t.client.channel('messaging', channelId, { members });
    await ch.watch();
    chans.push(ch);
  }
  return chans;
}

/** Every channel in `chans` receives the message `id` as message.new. */
async function allReceive(chans, send, what) {
  const id = uid('m');
  const waits = chans.map((ch) => waitForEvent(ch, 'message.new', isMessage(ch.cid, { id }), 20_000));
  await send(id);
  await Promise.all(waits).catch((e) => {
    throw new Error(`${what}: ${e.message}`);
  });
  return id;
}

async function sumOver(replicas, name, labels) {
  let s = 0;
  for (const r of replicas) s += await replicaMetric(r, name, labels);
  return s;
}

/** A Stream REST call as the SDK makes it, sent to `base` (a replica directly, or HAProxy). */
async function rawRest(base, method, path, userId, params = {}, body) {
  const q = new URLSearchParams({ api_key: process.env.STREAM_API_KEY, user_id: userId, ...params });
  const res = await fetch(`${base}${path}?${q}`, {
    method,
    headers: {
      authorization: longLivedToken(userId),
      'stream-auth-type': 'jwt',
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(28_000),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: res.status, json };
}

// ---------------------------------------------------------------------------

describe('replicas behind HAProxy (shipped haproxy.cfg)', () => {
  test('(a) every user\'s tabs land on one replica; upstream connections per replica = its users', OPTS, async () => {
    await quiet();
    const users = [];
    for (let i = 0; i < 6; i++) users.push(await place(uid(`pl${i}`), threeTabs));

    for (const u of users) assert.equal(await upstreamCount(u.id), 1, `${u.id}: one upstream connection at the emulator`);
    const byReplica = await upstreamByReplica(c);
    for (const r of alive(c)) {
      const mine = users.filter((u) => u.owner === r.name).length;
      assert.equal(byReplica[r.name], mine, `${r.name}: upstream connections = its users`);
    }
    const sessions = await sumOver(alive(c), 'stream_edge_sessions_open');
    assert.equal(sessions, 18, 'three sessions per user, all open');
    for (const u of users) {
      const owner = replicaByName(u.owner);
      // The user's three sessions are all on its owner (sessions on other replicas would have
      // opened upstream connections there).
      assert.ok(owner, `${u.id}: owner known`);
    }

    // Messages flow between two users held by different replicas, to every tab of each.
    const a = users[0];
    const b = users.find((u) => u.owner !== a.owner);
    assert.ok(b, `users spread over replicas: ${JSON.stringify(users.map((u) => u.owner))}`);
    const channelId = uid('x');
    const members = [a.id, b.id];
    const aChans = await watchAll(channelId, members, a.tabs);
    const bChans = await watchAll(channelId, members, b.tabs);
    await allReceive([...aChans, ...bChans], (id) => aChans[0].sendMessage({ id, text: 'from a' }), 'a → b');
    await allReceive([...aChans, ...bChans], (id) => bChans[2].sendMessage({ id, text: 'from b (long-poll)' }), 'b → a');
  });

  test('(b) a REST call and a poll sent straight to a non-owner replica succeed through forwarding', OPTS, async () => {
    await quiet();
    const u = await place(uid('fw'), async (id) => [await wsTab(id), await lpTab(id)]);
    const owner = replicaByName(u.owner);
    const other = alive(c).find((r) => r.name !== u.owner && r.name !== 'edge4');
    const channelId = uid('fwc');
    const [wsChan] = await watchAll(channelId, [u.id], u.tabs);
    const okBefore = await replicaMetric(other, 'stream_edge_forwarded_requests_total', { result: 'ok' });
    const recvBefore = await replicaMetric(owner, 'stream_edge_forwarded_received_total');

    const rest = await rawRest(other.url, 'POST', `/channels/messaging/${channelId}/query`, u.id, { connection_id: connectionId(u.tabs[0]) }, { state: true });
    assert.ok(rest.status < 300, `REST with another replica's connection_id: ${rest.status} ${JSON.stringify(rest.json)} (${NEEDS_CLUSTER})`);
    assert.equal(rest.json.channel?.id, channelId);

    // The poll. The SDK's own next poll is held in the WebSocket-refusing proxy meanwhile, so
    // ours is the only poll of that session: a first message ends the SDK's current poll, and
    // the second must come back in the answer to ours.
    const lpId = connectionId(u.tabs[1]);
    const hold = proxy.holdPollAfter((e) => e.kind === 'poll' && e.query.connection_id === lpId);
    await wsChan.sendMessage({ text: 'end the current poll' });
    await hold.held;
    try {
      const poll = rawRest(other.url, 'GET', '/longpoll', u.id, { connection_id: lpId });
      const id = uid('pm');
      await wsChan.sendMessage({ id, text: 'in the forwarded poll' });
      const p = await poll;
      assert.equal(p.status, 200, `poll on a non-owner: ${JSON.stringify(p.json)} (${NEEDS_CLUSTER})`);
      assert.ok(
        (p.json.events ?? []).some((e) => e.type === 'message.new' && e.message?.id === id),
        `the owner's events come back through the forwarded poll: ${JSON.stringify(p.json).slice(0, 300)}`,
      );
    } finally {
      hold.release();
    }

    assert.equal(await replicaMetric(other, 'stream_edge_forwarded_requests_total', { result: 'ok' }), okBefore + 2, 'two calls forwarded');
    assert.equal(await replicaMetric(owner, 'stream_edge_forwarded_received_total'), recvBefore + 2, 'the owner served both');
    assert.equal(await upstreamCount(u.id), 1, 'forwarding opened no second upstream connection');
  });

  test('(e) a forged or tampered connection_id is refused without forwarding', OPTS, async () => {
    await quiet();
    const u = await place(uid('forge'), async (id) => [await wsTab(id)]);
    const other = alive(c).find((r) => r.name !== u.owner && r.name !== 'edge4');
    const live = connectionId(u.tabs[0]);
    const flip = (s, i) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const forged = `e1${randomBytes(22).toString('base64url')}`.slice(0, live.length);
    const fwdBefore = await sumOver(alive(c), 'stream_edge_forwarded_requests_total');
    const recvBefore = await sumOver(alive(c), 'stream_edge_forwarded_received_total');
    const refusedBefore = await replicaMetric(other, 'stream_edge_connection_id_refused_total');

    for (const bad of [flip(live, live.length - 1), flip(live, 4), forged]) {
      const r = await rawRest(other.url, 'POST', '/channels', u.id, { connection_id: bad }, QUERY_OWN_CHANNELS(u.id));
      assert.ok(r.status >= 400 && r.status < 500, `refused: ${r.status} ${JSON.stringify(r.json)}`);
      assert.equal(typeof r.json.code, 'number', `a Stream error: ${JSON.stringify(r.json)}`);
    }
    assert.equal(await replicaMetric(other, 'stream_edge_connection_id_refused_total'), refusedBefore + 3, `three ids refused (${NEEDS_CLUSTER})`);
    assert.equal(await sumOver(alive(c), 'stream_edge_forwarded_requests_total'), fwdBefore, 'nothing forwarded');
    assert.equal(await sumOver(alive(c), 'stream_edge_forwarded_received_total'), recvBefore, 'nothing received');
    // The real id still works.
    const ok = await rawRest(other.url, 'POST', '/channels', u.id, { connection_id: live }, QUERY_OWN_CHANNELS(u.id));
    assert.ok(ok.status < 300, `the untampered id is forwarded: ${ok.status} (${NEEDS_CLUSTER})`);
  });

  test('(c) scale-up: moved users keep working, then converge on one upstream connection each', OPTS, async () => {
    await quiet();
    const edge4 = replicaByName('edge4');
    const users = [];
    let moved = [];
    // Consistent hashing moves ~1/4 of the users to edge4; which ones depends on their ids, so
    // add users until at least one moved (each round fails to move any with p ≈ 0.75^12).
    for (let round = 0; round < 3 && moved.length === 0; round++) {
      for (let i = 0; i < 12; i++) users.push(await place(uid(`su${round}-${i}`), async (id) => [await wsTab(id)]));
      await enableFourth(c);
      moved = [];
      for (const u of users) {
        // A call without connection_id lands where HAProxy now routes the user.
        const before = await replicaMetric(edge4, 'stream_edge_rest_requests_total');
        const r = await rawRest(c.url, 'GET', '/users', u.id, { payload: JSON.stringify({ filter_conditions: { id: u.id } }) });
        assert.equal(r.status, 200, JSON.stringify(r.json));
        if ((await replicaMetric(edge4, 'stream_edge_rest_requests_total')) > before) moved.push(u);
      }
      if (moved.length === 0) {
        await disableFourth(c);
        await eventually(async () => (await serverStates(c.socket)).edge4 === 'MAINT', { what: 'edge4 back in maintenance' });
      }
    }
    assert.ok(moved.length > 0, 'at least one user moved to edge4');

    // Moved users keep working: their open tabs' REST calls (with their connection_id) now reach
    // edge4 and are forwarded to the replica that holds the session.
    const chans = new Map();
    for (const u of moved) {
      try {
        const [ch] = await watchAll(uid('mv'), [u.id], u.tabs);
        chans.set(u.id, ch);
        await allReceive([ch], (mid) => ch.sendMessage({ id: mid, text: 'after scale-up' }), 'own message');
      } catch (e) {
        throw new Error(`${u.id}, moved to edge4, calls with its open session: ${e.message} (${NEEDS_CLUSTER})`);
      }
    }

    // Convergence: the old owner sees forwarded calls for the user, closes its sessions after
    // the (short, test) delay, the SDK reconnects through HAProxy to edge4, and the old upstream
    // connection lingers out. Keep the moved users' tabs making calls meanwhile, as apps do.
    await eventually(
      async () => {
        for (const u of moved) await chans.get(u.id).query({ state: false }).catch(() => {});
        // `eventually` stops on any truthy value: a state still waited for is thrown (and shown).
        for (const u of moved) if ((await upstreamCount(u.id)) !== 1) throw new Error(JSON.stringify({ waiting: u.id, n: await upstreamCount(u.id) }));
        const e4 = await replicaMetric(edge4, 'stream_edge_upstream_connections_open');
        if (e4 !== moved.length) throw new Error(JSON.stringify({ edge4: e4, moved: moved.length }));
        return true;
      },
      { timeoutMs: 40_000, intervalMs: 500, what: `moved users converge on edge4, one upstream each (${NEEDS_CLUSTER})` },
    );
    assert.ok((await replicaMetric(edge4, 'stream_edge_convergence_closes_total')) === 0, 'the new owner closed nothing');
    const closes = await sumOver(alive(c).filter((r) => r !== edge4), 'stream_edge_convergence_closes_total');
    const detail = {};
    for (const r of alive(c)) {
      detail[r.name] = {
        closes: await replicaMetric(r, 'stream_edge_convergence_closes_total'),
        fwd: await replicaMetric(r, 'stream_edge_forwarded_requests_total'),
        recv: await replicaMetric(r, 'stream_edge_forwarded_received_total'),
        miss: await replicaMetric(r, 'stream_edge_owner_misses_total'),
        pending: await replicaMetric(r, 'stream_edge_convergence_pending'),
        up: await replicaMetric(r, 'stream_edge_upstream_connections_open'),
      };
    }
    assert.ok(closes >= moved.length, `old owners closed the moved users' sessions (${closes}): ${JSON.stringify(detail)} moved ${moved.map((u) => u.id + '@' + u.owner)}`);
    for (const u of users) assert.equal(await upstreamCount(u.id), 1, `${u.id}: exactly one upstream connection`);

    // No moved tab is deaf after its reconnect.
    const srv = backend();
    for (const u of moved) {
      const ch = chans.get(u.id);
      await allReceive([ch], (id) => srv.channel('messaging', ch.id).sendMessage({ id, text: 'after convergence', user_id: u.id }), `${u.id} after convergence`);
    }
    await cleanup();
    await disableFourth(c);
  });

  test('(d) replica loss: every client recovers, missed messages come back, no tab is deaf', OPTS, async () => {
    await quiet();
    const users = [];
    for (let i = 0; i < 6; i++) users.push(await place(uid(`kl${i}`), threeTabs));
    const sender = uid('sender');
    const srv = backend();
    await srv.upsertUser({ id: sender });
    const chans = new Map();
    for (const u of users) chans.set(u.id, await watchAll(uid('kc'), [u.id, sender], u.tabs));

    const counts = {};
    for (const u of users) counts[u.owner] = (counts[u.owner] ?? 0) + 1;
    const victimName = Object.keys(counts).sort((x, y) => counts[y] - counts[x])[0];
    const victim = replicaByName(victimName);
    const hit = users.filter((u) => u.owner === victimName);
    assert.ok(hit.length > 0);

    const recovered = hit.flatMap((u) =>
      u.tabs.map((t) =>
        waitForEvent(t.client, 'connection.recovered', () => true, 45_000).then(
          () => {},
          (e) => {
            throw new Error(`${t.kind} tab of ${u.id}: ${e.message}\n${(t.client.allLog ?? t.client.sdkLog.lines).slice(-25).join('\n')}`);
          },
        ),
      ),
    );
    victim.child.kill('SIGKILL');
    // Sent while the victim's users are between their dead sessions and their new ones.
    const during = new Map();
    for (const u of hit) {
      const id = uid('dm');
      await srv.channel('messaging', chans.get(u.id)[0].id).sendMessage({ id, text: 'during the move', user_id: sender });
      during.set(u.id, id);
    }
    await Promise.all(recovered);
    for (const u of hit) {
      for (const ch of chans.get(u.id)) {
        assert.ok(
          ch.state.messages.some((m) => m.id === during.get(u.id)),
          `${u.id}: the message sent during the move is in the recovered state`,
        );
      }
    }
    // No tab is left deaf: every tab of every user receives a message sent now.
    for (const u of users) {
      const uc = chans.get(u.id);
      await allReceive(uc, (id) => srv.channel('messaging', uc[0].id).sendMessage({ id, text: 'after recovery', user_id: sender }), `${u.id} after recovery`);
    }
    // Every user ends on exactly one replica again. This holds because haproxy.cfg marks a
    // server down on its first refused connect (`observe layer4 … on-error mark-down`): without
    // it, a tab reconnecting before the health check noticed the loss was redispatched to the
    // dead server's nearest ring neighbour, not always where the ring then put its user, and a
    // user could span two replicas (seen in 2 of 6 runs before that setting).
    for (const u of users) {
      await eventually(
        async () => {
          const n = await upstreamCount(u.id);
          return n === 1 || { n, replicas: await upstreamByReplica(c) };
        },
        { timeoutMs: 10_000, what: `${u.id}: one upstream connection after the loss` },
      );
    }
    assert.equal(victim.child.signalCode, 'SIGKILL');
  });
});
