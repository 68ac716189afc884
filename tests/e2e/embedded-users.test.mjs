// The embedded upstream's user routes (issue 17), driven by the real stream-chat SDK through the
// gateway: the user lifecycle (deactivate, reactivate, delete), token revocation per user, devices,
// queryUsers filters and sorts, guests, and app settings. Server-side calls use a backend client
// (the app secret) through the gateway too. The Rust runner checks every upstream answer and event
// against Stream's OpenAPI spec; here each test reads state back and checks who got which event.

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamChat } from 'stream-chat';

import {
  TEST_OPTS,
  cfg,
  cleanup,
  connect,
  connectError,
  mintToken,
  nowSeconds,
  recorder,
  requireEnv,
  uid,
  waitForEvent,
} from './lib.mjs';

before(() => requireEnv());
afterEach(cleanup);
after(cleanup);

/** A backend (server-side) client through the gateway. */
function backend() {
  return new StreamChat(cfg.apiKey, cfg.apiSecret, { baseURL: cfg.gatewayUrl, timeout: 6000, enableInsights: false });
}

describe('embedded upstream: user lifecycle', () => {
  test('deactivate refuses the user and tells only their clients; reactivate lets them back; delete', TEST_OPTS, async () => {
    const aliceId = uid('life-alice');
    const bobId = uid('life-bob');
    const { client: alice } = await connect(aliceId);
    const { client: bob } = await connect(bobId);
    const channel = alice.channel('messaging', uid('life'), { members: [aliceId, bobId] });
    await channel.watch();
    const bobChan = bob.channel('messaging', channel.id);
    await bobChan.watch();
    const aliceSaw = recorder(alice, ['user.deactivated', 'user.reactivated', 'user.deleted']);
    const server = backend();

    const deactivated = waitForEvent(bob, 'user.deactivated');
    const res = await server.deactivateUser(bobId);
    assert.equal(res.user.id, bobId);
    assert.equal((await deactivated).user.id, bobId);
    const { users } = await server.queryUsers({ id: bobId });
    assert.ok(users[0].deactivated_at, 'queryUsers shows deactivated_at');
    await assert.rejects(bobChan.sendMessage({ text: 'still here?' }), 'a deactivated user is refused');

    const reactivated = waitForEvent(bob, 'user.reactivated');
    await server.reactivateUser(bobId);
    await reactivated;
    const back = waitForEvent(channel, 'message.new', (e) => e.message?.text === 'back again');
    await bobChan.sendMessage({ text: 'back again' });
    await back;

    const deleted = waitForEvent(bob, 'user.deleted');
    await server.deleteUser(bobId, { mark_messages_deleted: false });
    const ev = await deleted;
    assert.equal(ev.delete_user, 'soft');
    // Sentinel: alice's own message reaches her after anything sent to her before it.
    const sentinel = waitForEvent(channel, 'message.new', (e) => e.message?.text === 'sentinel');
    await channel.sendMessage({ text: 'sentinel' });
    await sentinel;
    assert.deepEqual(aliceSaw.events, [], 'lifecycle events go to the user’s own clients only');
  });

  test('revokeUserToken: the user object carries the cutoff; a token issued before it is refused, a later one is not', TEST_OPTS, async () => {
    const bobId = uid('revoke-bob');
    await backend().upsertUser({ id: bobId });
    const cutoff = new Date(Date.now() - 60_000);
    await backend().revokeUserToken(bobId, cutoff);
    const { users } = await backend().queryUsers({ id: bobId });
    assert.equal(new Date(users[0].revoke_tokens_issued_before).getTime(), cutoff.getTime());
    const old = mintToken(bobId, { iat: nowSeconds() - 3600, exp: nowSeconds() + 3600 });
    await assert.rejects(connect(bobId, { token: old }), (e) => connectError(e).code === 40);
    const fresh = mintToken(bobId, { iat: nowSeconds(), exp: nowSeconds() + 3600 });
    const { client: bob } = await connect(bobId, { token: fresh });
    assert.equal(bob.userID, bobId);
  });
});

describe('embedded upstream: devices', () => {
  test('addDevice, getDevices, removeDevice', TEST_OPTS, async () => {
    const { client: alice } = await connect(uid('dev-alice'));
    const token = uid('push-token');
    await alice.addDevice(token, 'firebase');
    const { devices } = await alice.getDevices();
    assert.deepEqual(devices.map((d) => [d.id, d.push_provider]), [[token, 'firebase']]);
    await alice.removeDevice(token);
    assert.deepEqual((await alice.getDevices()).devices, []);
  });
});

describe('embedded upstream: queryUsers', () => {
  test('custom fields, $autocomplete, $in, $and and sort by a custom field', TEST_OPTS, async () => {
    const team = uid('team');
    const ids = [uid('qu-zed'), uid('qu-amy'), uid('qu-bo')];
    await backend().upsertUsers([
      { id: ids[0], name: 'Zed Zimmer', squad: team, rank: 1 },
      { id: ids[1], name: 'Amy Adler', squad: team, rank: 3 },
      { id: ids[2], name: 'Bo Brook', squad: 'other', rank: 2 },
    ]);
    const { client } = await connect(uid('qu-viewer'));
    const bySquad = await client.queryUsers({ squad: team }, { rank: -1 });
    assert.deepEqual(bySquad.users.map((u) => u.id), [ids[1], ids[0]]);
    const auto = await client.queryUsers({ id: { $in: ids }, name: { $autocomplete: 'zim' } });
    assert.deepEqual(auto.users.map((u) => u.id), [ids[0]]);
    const both = await client.queryUsers({ $and: [{ id: { $in: ids } }, { rank: { $gte: 2 } }] }, { name: 1 });
    assert.deepEqual(both.users.map((u) => u.name), ['Amy Adler', 'Bo Brook']);
  });
});

describe('embedded upstream: guests and app settings', () => {
  test('setGuestUser connects a guest through the gateway', TEST_OPTS, async () => {
    const guest = new StreamChat(cfg.apiKey, { baseURL: cfg.gatewayUrl, enableInsights: false, allowServerSideConnect: true });
    const id = uid('guest');
    try {
      await guest.setGuestUser({ id, name: 'Visitor' });
      assert.equal(guest.userID, id);
      assert.equal(guest.user.role, 'guest');
      const { users } = await guest.queryUsers({ id });
      assert.equal(users[0].role, 'guest');
    } finally {
      await guest.disconnectUser();
    }
  });

  test('updateAppSettings reaches every client as app.updated and getAppSettings reads it back', TEST_OPTS, async () => {
    const { client: alice } = await connect(uid('app-alice'));
    const server = backend();
    const before = (await alice.getAppSettings()).app.auto_translation_enabled ?? false;
    try {
      const updated = waitForEvent(alice, 'app.updated');
      await server.updateAppSettings({ auto_translation_enabled: !before });
      assert.equal((await updated).app.auto_translation_enabled, !before);
      assert.equal((await alice.getAppSettings()).app.auto_translation_enabled, !before);
    } finally {
      await server.updateAppSettings({ auto_translation_enabled: before });
    }
  });
});
