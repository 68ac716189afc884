// WebSockets over HTTP/2 (RFC 8441, `http2.websockets`; issue 19) in headless Chromium. Run by
// tests/it/h2_ws.rs against a gateway that terminates TLS itself with `http2.tls` and
// `http2.websockets` on; not in the main SDK run (this directory is not scanned); without H2_WS
// the file skips.
//
// The real stream-chat SDK in a page of another origin connects over `wss:`. Chromium sends a
// WebSocket as an extended CONNECT only on an h2 connection it already has open in its
// credentialed pool; the SDK's REST calls are uncredentialed (`withCredentials: false`), so:
// * with one credentialed request first (the page's `warm=1`), the WebSocket goes over h2: the
//   gateway counts it (stream_edge_ws_h2_sessions_total), CDP shows a 200 handshake (an
//   HTTP/1.1 upgrade is a 101), and frames flow both ways on it: Bob's message arrives as an
//   event, and the SDK's own health.check ping, sent on the socket, is answered;
// * a bad token is refused as over HTTP/1.1: the handshake succeeds, then an error frame and close
//   1000, so the SDK rejects connectUser with code 43 at once and does not retry;
// * without it, the WebSocket goes over HTTP/1.1 (a 101) and the counter does not move: what an
//   app on another origin gets by default, recorded so the README stays true.
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { cfg, cleanup, connect, metric, longLivedToken, mintToken, requireEnv, uid } from '../lib.mjs';
import { startStaticServer } from '../tools/static-site.mjs';

const SUITE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const H2_SESSIONS = 'stream_edge_ws_h2_sessions_total';

let site;
let browser;
afterEach(cleanup);
after(async () => {
  if (browser) {
    for (const page of browser.contexts().flatMap((c) => c.pages())) {
      await page.evaluate(() => window.__client?.disconnectUser(2000)).catch(() => {});
    }
    await browser.close().catch(() => {});
  }
  await cleanup();
  await site?.close();
});

// A cold Chromium start on a loaded 2-core machine has taken over 15 s.
const OPTS = { timeout: 90_000 };

async function launch() {
  if (browser) return browser;
  site = await startStaticServer(SUITE_DIR);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 45_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      // The test CA is not in Chromium's store; the certificate is still checked by Node's side.
      '--ignore-certificate-errors'],
  });
  return browser;
}

/// One user's page in a fresh browser context (its own connection pools), connected over `wss:`;
/// Bob (Node, WebSocket) shares a channel with it. Returns the page, Bob's channel and the
/// handshake statuses CDP saw for the gateway's WebSockets.
async function openPage(warm, { token } = {}) {
  requireEnv();
  assert.equal(new URL(cfg.gatewayUrl).protocol, 'https:', 'the gateway terminates TLS (h2 needs ALPN)');
  const context = await (await launch()).newContext();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const handshakes = [];
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => handshakes.push(e.response.status));

  const user = uid('h2ws');
  const bobId = uid('h2ws-bob');
  const channelId = uid('h2ws');
  const { client: bob } = await connect(bobId);
  const bobChan = bob.channel('messaging', channelId, { members: [user, bobId] });
  await bobChan.watch();
  const params = new URLSearchParams({ baseURL: cfg.gatewayUrl, apiKey: cfg.apiKey, userId: user, token: token?.(user) ?? longLivedToken(user), channelId });
  if (warm) params.set('warm', '1');
  await page.goto(`${site.url}/browser/index.html?${params}`, { timeout: 30_000 });
  await page.waitForFunction(() => window.__state === 'ready' || window.__state === 'error', undefined, { timeout: 45_000, polling: 100 });
  const state = await page.evaluate(() => ({ state: window.__state, error: window.__error, transport: window.__transport() }));
  if (token) return { page, state, handshakes };
  assert.equal(state.state, 'ready', JSON.stringify(state));
  assert.ok(state.transport.wsHealthy && !state.transport.wsFallback, `the SDK is on its WebSocket: ${JSON.stringify(state)}`);
  return { page, bob, bobChan, handshakes };
}

describe('WebSockets over HTTP/2 in headless Chromium', { skip: !process.env.H2_WS && 'H2_WS is not set: run through `cargo test --test it -- h2_ws::`' }, () => {
  test('with an open credentialed h2 connection the SDK WebSocket goes over h2 and carries frames both ways', OPTS, async () => {
    const before = await metric(H2_SESSIONS);
    const { page, bob, bobChan, handshakes } = await openPage(true);
    assert.equal(await metric(H2_SESSIONS), before + 1, 'the gateway took the WebSocket as an h2 extended CONNECT');
    assert.deepEqual(handshakes, [200], 'Chromium saw a 200 (extended CONNECT), not a 101');

    // Gateway → browser: Bob's message arrives as an event on the socket.
    const sent = await bobChan.sendMessage({ text: `over h2 ${uid('m')}` });
    await page.waitForFunction(({ id }) => window.__events.some((e) => e.type === 'message.new' && e.message?.id === id), { id: sent.message.id }, { timeout: 15_000, polling: 50 });

    // Browser → gateway: the SDK's own ping, sent on its socket now, is answered on it.
    const pongs = await page.evaluate(() => window.__events.filter((e) => e.type === 'health.check').length);
    await page.evaluate(() => window.__client.wsConnection.ws.send(JSON.stringify([{ type: 'health.check', client_id: window.__client.clientID }])));
    await page.waitForFunction((n) => window.__events.filter((e) => e.type === 'health.check').length > n, pongs, { timeout: 15_000, polling: 50 });

    // And the page's message reaches Bob (REST, then Bob's WebSocket).
    const got = new Promise((resolve) => bob.on('message.new', (e) => e.message?.text === 'from the h2 page' && resolve(e)));
    await page.evaluate(() => window.__send('from the h2 page'));
    await Promise.race([got, new Promise((_, reject) => setTimeout(() => reject(new Error('Bob got no message in 15 s')), 15_000))]);
    console.log(`H2WS over h2: handshakes ${JSON.stringify(handshakes)}; ${H2_SESSIONS} +1`);
    await page.evaluate(() => window.__client.disconnectUser(2000));
  });

  test('a refused connect over h2 reaches the SDK as over HTTP/1.1: code 43, no retry', OPTS, async () => {
    const before = await metric(H2_SESSIONS);
    const bad = (user) => mintToken(user, { exp: Math.floor(Date.now() / 1000) + 3600, secret: 'definitely-not-the-app-secret' });
    const t0 = Date.now();
    const { page, state, handshakes } = await openPage(true, { token: bad });
    const elapsed = Date.now() - t0;
    assert.equal(state.state, 'error', JSON.stringify(state));
    assert.match(state.error, /code 43/, 'the Stream error code, from the error frame after the handshake');
    assert.match(state.error, /"isWSFailure":false/, 'an API error, not a network failure the SDK would retry');
    assert.deepEqual(handshakes, [200], 'one attempt, over h2: no retry');
    assert.equal(await metric(H2_SESSIONS), before + 1);
    console.log(`H2WS refused over h2 in ${elapsed} ms: ${state.error.split('\n')[0]}`);
    await page.close();
  });

  test('without one (an app on another origin, by default) Chromium opens the WebSocket over HTTP/1.1', OPTS, async () => {
    const before = await metric(H2_SESSIONS);
    const { page, handshakes } = await openPage(false);
    assert.deepEqual(handshakes, [101], 'an HTTP/1.1 upgrade');
    assert.equal(await metric(H2_SESSIONS), before, 'no h2 WebSocket');
    console.log(`H2WS without a credentialed connection: handshakes ${JSON.stringify(handshakes)}`);
    await page.evaluate(() => window.__client.disconnectUser(2000));
  });
});
