// Behind a real corporate proxy (issue 19): headless Chromium reaches the gateway only through
// Debian's Squid, which the Rust runner (tests/it/proxies.rs) starts with a generated config and
// passes in SQUID_URL and SQUID_ACCESS_LOG. Not in the main SDK run (this directory is not
// scanned); without SQUID_URL the file skips.
//
// PROXY_MODE=block: Squid denies CONNECT to ports other than 443 (Chromium tunnels ws:// through
// CONNECT) and refuses any request carrying `Upgrade: websocket`. The SDK with enableWSFallback
// falls back to long-poll through Squid and chats both ways with a WebSocket user: messages,
// typing and read. Squid's access log shows the refused tunnel and the /longpoll requests.
//
// PROXY_MODE=tunnel: Squid lets CONNECT through to any port: the SDK stays on WebSocket.
//
// PROXY_MODE=bump: Squid intercepts TLS (ssl-bump) in front of a TLS-terminating gateway, sees the
// wss:// upgrade inside the tunnel and refuses it: the SDK falls back to long-poll over the
// intercepted HTTPS. Chromium accepts Squid's minted certificates; Node trusts the gateway's CA
// (NODE_EXTRA_CA_CERTS).
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { cfg, cleanup, connect, eventually, isMessage, longLivedToken, requireEnv, uid, waitForEvent } from '../lib.mjs';
import { startStaticServer } from '../tools/static-site.mjs';

const SUITE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = '/usr/bin/chromium';
const { SQUID_URL, SQUID_ACCESS_LOG, PROXY_MODE = 'block' } = process.env;

let site;
let browser;

afterEach(cleanup);
after(async () => {
  if (browser) {
    for (const page of browser.contexts().flatMap((c) => c.pages())) {
      await page.evaluate(() => window.__disconnect?.()).catch(() => {});
    }
    await browser.close().catch(() => {});
  }
  await cleanup();
  await site?.close();
});

const accessLog = () => {
  try {
    return readFileSync(SQUID_ACCESS_LOG, 'utf8');
  } catch {
    return '';
  }
};

// A cold Chromium start on a loaded 2-core machine has taken over 15 s (browser.test.mjs).
const OPTS = { timeout: 120_000 };

describe(`browser behind Squid (${PROXY_MODE})`, { skip: !SQUID_URL && 'SQUID_URL is not set: run through `cargo test --test it -- proxies::`' }, () => {
  test('the SDK reaches the gateway through Squid and chats with a WebSocket user', OPTS, async () => {
    requireEnv();
    site = await startStaticServer(SUITE_DIR);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 45_000,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--proxy-server=${SQUID_URL}`,
        // Loopback bypasses any proxy since M72 unless told otherwise.
        '--proxy-bypass-list=<-loopback>',
        ...(PROXY_MODE === 'bump' ? ['--ignore-certificate-errors'] : []),
      ],
    });
    const page = await browser.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    const diagnostics = async () => {
      const state = await page
        .evaluate(() => ({ state: window.__state, error: window.__error, events: window.__events?.map((e) => e.type) }))
        .catch((e) => ({ evaluateFailed: String(e) }));
      return `page: ${JSON.stringify(state)}\nconsole:\n  ${consoleLines.slice(-20).join('\n  ')}\nsquid:\n  ${accessLog().trim().split('\n').slice(-30).join('\n  ')}`;
    };
    const waitInPage = async (fn, arg, what, timeout = 15_000) => {
      try {
        await page.waitForFunction(fn, arg, { timeout, polling: 50 });
      } catch (err) {
        throw new Error(`${what}: ${err.message}\n${await diagnostics()}`);
      }
    };
    const inPage = async (fn, arg, what) => {
      try {
        return await page.evaluate(fn, arg);
      } catch (err) {
        throw new Error(`${what}: ${err.message}\n${await diagnostics()}`);
      }
    };

    const browserUser = uid('squid-browser');
    const bobId = uid('squid-bob');
    const channelId = uid('squid');
    // Bob (Node, WebSocket, no proxy) creates the channel with both members.
    const { client: bob } = await connect(bobId);
    const bobChan = bob.channel('messaging', channelId, { members: [browserUser, bobId] });
    await bobChan.watch();
    const cid = bobChan.cid;

    const params = new URLSearchParams({
      baseURL: cfg.gatewayUrl,
      apiKey: cfg.apiKey,
      userId: browserUser,
      token: longLivedToken(browserUser),
      channelId,
    });
    await page.goto(`${site.url}/browser/index.html?${params}`, { timeout: 20_000 });
    await waitInPage(() => window.__state === 'ready' || window.__state === 'error', undefined, 'page connects and watches', 30_000);
    const state = await inPage(
      () => ({
        state: window.__state,
        error: window.__error,
        transport: window.__transport(),
        modes: window.__events.filter((e) => e.type === 'transport.changed').map((e) => e.mode),
      }),
      undefined,
      'page state',
    );
    assert.equal(state.state, 'ready', `page failed: ${state.error}\n${await diagnostics()}`);
    const gw = new URL(cfg.gatewayUrl).host;
    const scheme = new URL(cfg.gatewayUrl).protocol.replace(':', '');

    if (PROXY_MODE === 'tunnel') {
      assert.deepEqual(state.modes, [], 'no transport change: the SDK stays on WebSocket');
      assert.equal(state.transport.wsHealthy, true, `WebSocket through the tunnel\n${await diagnostics()}`);
      assert.equal(state.transport.wsFallback, false);
    } else {
      assert.deepEqual(state.modes, ['longpoll'], `the SDK fell back to long-poll once\n${await diagnostics()}`);
      assert.equal(state.transport.fallbackHealthy, true);
      assert.equal(state.transport.wsHealthy, false);
    }

    // bob (WS) -> page: message.new.
    const sent = await bobChan.sendMessage({ text: `from bob ${uid('m')}` });
    await waitInPage(
      ({ id }) => window.__events.some((e) => e.type === 'message.new' && e.message?.id === id),
      { id: sent.message.id },
      'the page receives bob message.new',
    );
    // page -> bob: message.new.
    const reply = `from the browser ${uid('m')}`;
    const bobGot = waitForEvent(bob, 'message.new', isMessage(cid, { text: reply }));
    const replyId = await inPage((t) => window.__send(t), reply, 'page sendMessage');
    assert.equal((await bobGot).message.id, replyId);

    // Typing, both ways. In long-poll mode the SDK's keystroke() sends nothing (it needs a healthy
    // WebSocket), so the page sends the typing event itself, as an app can.
    await bobChan.keystroke();
    await waitInPage(
      ({ user }) => window.__events.some((e) => e.type === 'typing.start' && e.user_id === user),
      { user: bobId },
      'the page receives bob typing.start',
    );
    const bobSeesTyping = waitForEvent(bob, 'typing.start', (e) => e.cid === cid && e.user?.id === browserUser);
    await inPage(() => window.__channel.sendEvent({ type: 'typing.start' }), undefined, 'page sends typing.start');
    await bobSeesTyping;

    // Read, both ways.
    await bobChan.markRead();
    await waitInPage(
      ({ user }) => window.__events.some((e) => e.type === 'message.read' && e.user_id === user),
      { user: bobId },
      'the page receives bob message.read',
    );
    const bobSeesRead = waitForEvent(bob, 'message.read', (e) => e.cid === cid && e.user?.id === browserUser);
    const read = await inPage(() => window.__channel.markRead().then((r) => Boolean(r)), undefined, 'page markRead');
    assert.ok(read, 'the page sent markRead');
    await bobSeesRead;

    if (PROXY_MODE !== 'tunnel') {
      // What Squid saw: the WebSocket tunnel refused, the long-polls forwarded (Squid logs each
      // request when it completes, so a held poll shows up once answered).
      await eventually(
        () => {
          const log = accessLog();
          // Plain: the ws:// tunnel is refused. Intercepted: the upgrade inside the tunnel is.
          const refused =
            PROXY_MODE === 'bump'
              ? new RegExp(`TCP_DENIED/403 \\d+ GET https://${gw}/connect\\?`)
              : new RegExp(`TCP_DENIED/403 \\d+ CONNECT ${gw} `);
          return refused.test(log) && new RegExp(`/200 \\d+ GET ${scheme}://${gw}/longpoll\\?`).test(log);
        },
        { what: 'Squid logs the refused tunnel and the long-polls', timeoutMs: 10_000 },
      ).catch(async (e) => {
        throw new Error(`${e.message}\n${await diagnostics()}`);
      });
      const polls = accessLog().split('\n').filter((l) => l.includes(`GET ${scheme}://${gw}/longpoll?`));
      assert.ok(polls.length >= 2, `a connect and at least one poll through Squid: ${polls.length}`);
    }

    await inPage(() => window.__disconnect(), undefined, 'disconnect');
    await browser.close();
    browser = undefined;
    if (PROXY_MODE === 'tunnel') {
      // Squid logs a tunnel when it closes: the WebSocket went through CONNECT.
      await eventually(() => new RegExp(`TCP_TUNNEL/200 \\d+ CONNECT ${gw} `).test(accessLog()), {
        what: 'Squid logs the WebSocket tunnel',
        timeoutMs: 10_000,
      });
    }
  });
});
