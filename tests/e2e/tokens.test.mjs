// Token lifecycle with the real SDK (issue 13, section 3): a token that
// expires mid-session never fails an app call, and a backend's server-side
// `revokeUserToken` / `revokeTokens` (sent straight to the upstream, as a
// backend talks to Stream) ends the sessions of revoked tokens, after which a
// token-provider app carries on with a new token.
//
// Run by its own Rust test (tests/it/sdk.rs, `stream_chat_sdk_token_lifecycle`)
// against its own gateway: the app-wide revocation would otherwise revoke the
// other files' tokens. That gateway reads `GET /app` every second.

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamChat } from 'stream-chat';

import {
  TEST_OPTS,
  WS_CLOSE_LOG,
  cfg,
  cleanup,
  connect,
  connectError,
  eventually,
  isMessage,
  mintToken,
  newClient,
  nowSeconds,
  requireEnv,
  uid,
  waitForEvent,
  waitForLog,
} from './lib.mjs';

before(() => requireEnv());
afterEach(cleanup);
after(cleanup);

/** The backend: a server-side client talking to the upstream directly. */
const backend = () => new StreamChat(cfg.apiKey, cfg.apiSecret, { baseURL: cfg.emulatorUrl, timeout: 6000 });

/** A provider whose first token is `first`, then fresh hour-long tokens (with `iat`). */
function provider(userId, first) {
  const p = async () => {
    p.calls += 1;
    return p.calls === 1 ? first : mintToken(userId, { iat: nowSeconds(), exp: nowSeconds() + 3600 });
  };
  p.calls = 0;
  return p;
}

/** Calls `fn` until `done()` holds (bounded); every call must succeed. */
async function keepCalling(fn, done, { limitMs = 15_000 } = {}) {
  const started = Date.now();
  let n = 0;
  while (!done()) {
    assert.ok(Date.now() - started < limitMs, `gave up after ${n} calls`);
    await fn(n); // a throw fails the test: no call may fail
    n += 1;
    // Pacing, not synchronisation: a call every ~20 ms keeps calls in flight
    // through the whole expiry and reconnect.
    await new Promise((r) => setTimeout(r, 20));
  }
  return n;
}

describe('token lifecycle', () => {
  test('a token that expires mid-session: watch() and sendMessage() never fail', TEST_OPTS, async () => {
    const userId = uid('exp');
    const peerId = uid('peer');
    const channelId = uid('expch');
    const tokens = provider(userId, mintToken(userId, { iat: nowSeconds(), exp: nowSeconds() + 2 }));
    const { client, response } = await connect(userId, { tokenProvider: tokens });
    const firstConnection = response.connection_id;
    const { client: peer } = await connect(peerId);
    const chan = client.channel('messaging', channelId, { members: [userId, peerId] });
    await chan.watch();
    const peerChan = peer.channel('messaging', channelId);
    await peerChan.watch();

    const closed = waitForLog(client, WS_CLOSE_LOG, 10_000);
    let afterReconnect = 0;
    const calls = await keepCalling(
      async (n) => {
        if (n % 4 === 3) await chan.watch();
        else await chan.sendMessage({ text: `m${n}` });
        if (client._getConnectionID() && client._getConnectionID() !== firstConnection) afterReconnect += 1;
      },
      () => afterReconnect >= 5,
    );
    const [, code] = await closed;
    assert.equal(code, '4040', 'the session ended at exp');
    assert.ok(tokens.calls >= 2, `the provider refreshed (called ${tokens.calls}x)`);
    assert.ok(calls > 20, `calls spanned the expiry (${calls})`);

    // Still watching on the new connection: the peer's message arrives.
    const text = `after expiry ${uid('m')}`;
    const got = waitForEvent(client, 'message.new', isMessage(chan.cid, { text }));
    await peerChan.sendMessage({ text });
    await got;
  });

  test('revokeUserToken ends the session; the provider app carries on with a new token', TEST_OPTS, async () => {
    const userId = uid('rvu');
    const peerId = uid('peer');
    const old = mintToken(userId, { iat: nowSeconds() - 60 });
    const tokens = provider(userId, old);
    const { client, response } = await connect(userId, { tokenProvider: tokens });
    const { client: peer } = await connect(peerId);
    const chan = client.channel('messaging', uid('rvch'), { members: [userId, peerId] });
    await chan.watch();

    const closed = waitForLog(client, WS_CLOSE_LOG, 10_000);
    // After recoverState has re-watched the channels on the new connection.
    const back = waitForEvent(client, 'connection.recovered', () => true, 10_000);
    await backend().revokeUserToken(userId, new Date(Date.now() - 30_000));
    const [, code] = await closed;
    assert.equal(code, '4040', 'the revoked session ends as an expired one');
    await back;
    assert.ok(tokens.calls >= 2, `the provider was asked for a new token (${tokens.calls}x)`);
    assert.notEqual(client._getConnectionID(), response.connection_id);

    // The new session works both ways.
    const text = `after revoke ${uid('m')}`;
    const got = waitForEvent(client, 'message.new', isMessage(chan.cid, { text }));
    await peer.channel('messaging', chan.id).sendMessage({ text });
    await got;
    await chan.sendMessage({ text: 'mine' });

    // The old token is refused outright, with Stream's code 40.
    const err = await newClient()
      .connectUser({ id: userId }, old)
      .then(
        () => assert.fail('a revoked token must not connect'),
        (e) => e,
      );
    assert.equal(connectError(err).code, 40, JSON.stringify(connectError(err)));
  });

  test('revokeTokens (app-wide) ends sessions of tokens without iat; undoing it restores them', TEST_OPTS, async () => {
    const userId = uid('rva');
    const keptId = uid('kept');
    const noIat = mintToken(userId); // what createToken(userId) makes
    const tokens = provider(userId, noIat);
    const { client } = await connect(userId, { tokenProvider: tokens });
    const { client: kept } = await connect(keptId, { token: mintToken(keptId, { iat: nowSeconds() }) });
    const revoker = backend();

    const closed = waitForLog(client, WS_CLOSE_LOG, 10_000);
    // After recoverState has re-watched the channels on the new connection.
    const back = waitForEvent(client, 'connection.recovered', () => true, 10_000);
    await revoker.revokeTokens(new Date(Date.now() - 5_000));
    try {
      // Learned from GET /app within the gateway's refresh interval (1 s here).
      const [, code] = await closed;
      assert.equal(code, '4040', 'a session whose token has no iat ends');
      await back;
      assert.ok(tokens.calls >= 2, `the provider was asked for a new token (${tokens.calls}x)`);
      const err = await newClient()
        .connectUser({ id: userId }, noIat)
        .then(
          () => assert.fail('a token without iat must not connect while the app is revoked'),
          (e) => e,
        );
      assert.equal(connectError(err).code, 40, JSON.stringify(connectError(err)));

      // A token issued after the cutoff is untouched.
      const chan = kept.channel('messaging', uid('rvach'), { members: [keptId] });
      await chan.watch();
      await chan.sendMessage({ text: 'still allowed' });
    } finally {
      await revoker.revokeTokens(null);
    }
    await eventually(
      async () =>
        newClient()
          .connectUser({ id: userId }, noIat)
          .then(
            () => true,
            () => false,
          ),
      { timeoutMs: 8000, what: 'revokeTokens(null) lifts the revocation' },
    );
  });
});
