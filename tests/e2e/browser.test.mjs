// Long-poll fallback in a real browser (issue 4): headless Chromium, driven by
// playwright-core with the system /usr/bin/chromium (Debian package
// `chromium`; playwright never downloads a browser here), loads
// browser/index.html from a static server on ANOTHER origin than the gateway.
// The page imports the SDK's browser ESM build from node_modules (import map)
// and connects with `enableWSFallback` through a proxy that refuses WebSocket
// upgrades. Every REST and /longpoll call is then a preflighted cross-origin
// XHR: this proves CORS and the fallback in a browser.

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import {
  TEST_OPTS,
  cfg,
  cleanup,
  connect,
  isMessage,
  longLivedToken,
  requireEnv,
  startWsBlockingProxy,
  uid,
  waitForEvent,
} from './lib.mjs';
import { startStaticServer } from './tools/static-site.mjs';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const SUITE_DIR = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------

let proxy;
let site;
let browser;

before(async () => {
  requireEnv();
  proxy = await startWsBlockingProxy();
  site = await startStaticServer(SUITE_DIR);
});
afterEach(cleanup);
after(async () => {
  if (browser) {
    // A failed test: still try to end the page's long-poll session cleanly.
    for (const page of browser.contexts().flatMap((c) => c.pages())) {
      await page.evaluate(() => window.__disconnect?.()).catch(() => {});
    }
    await browser.close().catch(() => {});
  }
  await cleanup();
  await proxy?.close();
  await site?.close();
});

// A cold Chromium start on a loaded 2-core machine has taken over 15 s: the launch gets 45 s and
// the test as a whole 90 s (still bounded).
const BROWSER_TEST_OPTS = { ...TEST_OPTS, timeout: 90_000 };

describe('browser: long-poll fallback, cross-origin', () => {
  test('headless Chromium falls back to long-poll through a WS-refusing proxy and chats with a WS user', BROWSER_TEST_OPTS, async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: install the Debian package (apt-get update && apt-get install -y chromium); tests/run does it`,
    );
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 45_000 });
    const page = await browser.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));

    const browserUser = uid('browser');
    const bobId = uid('bob-ws');
    const channelId = uid('browser');

    // Bob (Node, WebSocket, direct) creates the channel with both members.
    const { client: bob } = await connect(bobId);
    const bobChan = bob.channel('messaging', channelId, { members: [browserUser, bobId] });
    await bobChan.watch();
    const cid = bobChan.cid;

    const diagnostics = async () => {
      const state = await page
        .evaluate(() => ({ state: window.__state, error: window.__error, events: window.__events?.map((e) => e.type) }))
        .catch((e) => ({ evaluateFailed: String(e) }));
      const traffic = proxy.log.map((e) => `${e.method} ${e.path} ${e.kind} -> ${e.status ?? (e.aborted ? 'aborted' : 'pending')}`);
      return `page: ${JSON.stringify(state)}\nconsole:\n  ${consoleLines.slice(-20).join('\n  ')}\nproxy:\n  ${traffic.slice(-30).join('\n  ')}`;
    };
    const waitInPage = async (fn, arg, what, timeout = 15_000) => {
      try {
        await page.waitForFunction(fn, arg, { timeout, polling: 50 });
      } catch (err) {
        throw new Error(`${what}: ${err.message}\n${await diagnostics()}`);
      }
    };

    const params = new URLSearchParams({
      baseURL: proxy.url,
      apiKey: cfg.apiKey,
      userId: browserUser,
      token: longLivedToken(browserUser),
      channelId,
    });
    const pageUrl = `${site.url}/browser/index.html?${params}`;
    assert.notEqual(new URL(pageUrl).origin, new URL(proxy.url).origin, 'the page must be cross-origin');
    await page.goto(pageUrl, { timeout: 10_000 });

    // connectUser resolved (after the fallback) and the channel is watched.
    await waitInPage(() => window.__state === 'ready' || window.__state === 'error', undefined, 'page connects and watches', 20_000);
    const state = await page.evaluate(() => ({
      state: window.__state,
      error: window.__error,
      connect: window.__connect,
      transport: window.__transport(),
      transportEvents: window.__events.filter((e) => e.type === 'transport.changed'),
    }));
    assert.equal(state.state, 'ready', `page failed: ${state.error}\n${await diagnostics()}`);
    assert.equal(state.connect.me_id, browserUser, 'connectUser resolved with me');
    assert.deepEqual(
      state.transportEvents.map((e) => e.mode),
      ['longpoll'],
      'the SDK dispatched transport.changed → longpoll once',
    );
    assert.equal(state.transport.wsFallback, true, 'client.wsFallback in use');
    assert.equal(state.transport.fallbackHealthy, true);
    assert.equal(state.transport.wsHealthy, false);
    assert.equal(state.transport.fallbackConnectionId, state.connect.connection_id);
    assert.ok(proxy.upgrades.length >= 1, 'the browser tried a WebSocket first and was refused');

    // CORS: the browser preflighted /longpoll and got allow-origin on the real request.
    const preflight = proxy.log.find((e) => e.kind === 'preflight' && e.path.endsWith('/longpoll'));
    assert.ok(preflight, `a preflight for /longpoll went through the proxy\n${await diagnostics()}`);
    assert.ok(preflight.status >= 200 && preflight.status < 300, `preflight answered ${preflight.status}`);
    assert.ok(preflight.headers['access-control-allow-origin'], 'preflight carries access-control-allow-origin');
    assert.ok(
      proxy.log.some((e) => e.kind === 'preflight' && e.path.startsWith('/channels/') && e.status === 204),
      'REST calls (channel query) were preflighted too',
    );
    const lpConnect = proxy.log.find((e) => e.kind === 'longpoll-connect' && e.query.user_id === browserUser);
    assert.ok(lpConnect, 'the long-poll connect went through the proxy');
    assert.equal(lpConnect.origin, site.url, 'the long-poll connect is a cross-origin request');
    assert.equal(lpConnect.status, 200);
    assert.ok(lpConnect.headers['access-control-allow-origin'], 'long-poll response carries access-control-allow-origin');

    // bob (WS) -> page (long-poll): message.new.
    const text = `from bob ${uid('m')}`;
    const sent = await bobChan.sendMessage({ text });
    await waitInPage(
      ({ id }) => window.__events.some((e) => e.type === 'message.new' && e.message?.id === id),
      { id: sent.message.id },
      'the page receives bob message.new over long-poll',
    );

    // page (REST, cross-origin) -> bob (WS): message.new.
    const reply = `from the browser ${uid('m')}`;
    const bobGot = waitForEvent(bob, 'message.new', isMessage(cid, { text: reply }));
    let replyId;
    try {
      replyId = await page.evaluate((t) => window.__send(t), reply);
    } catch (err) {
      throw new Error(`page sendMessage failed: ${err.message}\n${await diagnostics()}`);
    }
    const got = await bobGot;
    assert.equal(got.message.id, replyId);
    assert.equal(got.user?.id, browserUser);

    // Close the long-poll session cleanly (close=true), so it does not linger
    // until it expires while later files compare gateway-wide gauges.
    const closed = proxy.waitForResponse((e) => e.kind === 'longpoll-close', { what: 'the long-poll close' });
    await page.evaluate(() => window.__disconnect());
    assert.equal((await closed).status, 200);
    await browser.close();
    browser = undefined;
  });
});
