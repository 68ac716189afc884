// Shared helpers for the stream-edge end-to-end suite.
//
// The suite drives the real `stream-chat` JS SDK against the gateway. Every
// test creates its own users and channels (random suffix), registers every
// client it makes through `newClient`/`connect`, and calls `cleanup()` in an
// `after`/`afterEach` hook so no socket outlives its test.
//
// Synchronisation rule: never sleep. Wait for an event (`waitForEvent`), or
// poll an observable with a bounded loop (`eventually`). To show that
// something does NOT arrive, send a later event on the same path (a
// "sentinel") and check the recorder once the sentinel has arrived.

import { createHmac, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { StreamChat } from 'stream-chat';

// ---------------------------------------------------------------------------
// Environment

const ENV_HELP =
  'The e2e suite is launched by the Rust integration test, which starts the gateway ' +
  'and passes GATEWAY_URL, STREAM_API_KEY, STREAM_API_SECRET, ADMIN_URL and EMULATOR_URL. ' +
  'See tests/e2e/README.md.';

export function env(name) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`missing environment variable ${name}. ${ENV_HELP}`);
  }
  return value;
}

/** Base URL without a trailing slash (the SDK would otherwise build `//connect`). */
function url(name) {
  return env(name).replace(/\/+$/, '');
}

export const cfg = {
  get gatewayUrl() {
    return url('GATEWAY_URL');
  },
  get apiKey() {
    return env('STREAM_API_KEY');
  },
  get apiSecret() {
    return env('STREAM_API_SECRET');
  },
  get adminUrl() {
    return url('ADMIN_URL');
  },
  get emulatorUrl() {
    return url('EMULATOR_URL');
  },
};

/** Fail fast, with one clear message, if any variable is missing. */
export function requireEnv() {
  for (const name of [
    'GATEWAY_URL',
    'STREAM_API_KEY',
    'STREAM_API_SECRET',
    'ADMIN_URL',
    'EMULATOR_URL',
  ]) {
    env(name);
  }
}

/** Per-test timeout used by every test in the suite. */
export const TEST_OPTS = { timeout: 30_000 };

// ---------------------------------------------------------------------------
// Ids and tokens

/** Unique id safe for Stream user ids and channel ids (`[a-z0-9-]`). */
export function uid(prefix) {
  return `${prefix}-${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/**
 * HS256 user token, same shape as `StreamChat#createToken`:
 * header {"alg":"HS256","typ":"JWT"}, payload {"user_id", exp?, iat?}.
 * `exp`/`iat` are absolute unix seconds; omit them for a token without them
 * (the SDK's default). `secret` defaults to the app secret.
 */
export function mintToken(userId, { exp, iat, secret } = {}) {
  const header = { alg: 'HS256', typ: 'JWT' };
  const payload = { user_id: userId };
  if (exp !== undefined) payload.exp = exp;
  if (iat !== undefined) payload.iat = iat;
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const sig = createHmac('sha256', secret ?? cfg.apiSecret).update(signingInput).digest();
  return `${signingInput}.${b64url(sig)}`;
}

/** Valid for an hour. */
export const longLivedToken = (userId) => mintToken(userId, { exp: nowSeconds() + 3600 });

// ---------------------------------------------------------------------------
// Clients

const clients = new Set();
const pendingWaits = new Set();

/**
 * A fresh (non-singleton) client pointed at the gateway.
 *
 * The SDK's own `connection:` log lines are kept in `client.sdkLog` (see
 * `waitForLog`), and `client.connectLog` gets one entry per WebSocket connect
 * attempt (`connection:_connect() - Connecting to <url>`), so a test can count
 * attempts and see socket closes without touching the gateway.
 */
export function newClient(clientOptions = {}) {
  const connectLog = [];
  const sdkLog = { lines: [], emitter: new EventEmitter() };
  const client = new StreamChat(cfg.apiKey, {
    baseURL: cfg.gatewayUrl,
    timeout: 6000,
    allowServerSideConnect: true, // Node is "server side" to the SDK; silences the warning
    enableInsights: false, // would POST to chat-insights.getstream.io, bypassing the gateway
    logger: (level, message) => {
      if (typeof message !== 'string' || !message.startsWith('connection:')) return;
      if (message.startsWith('connection:_connect() - Connecting to')) connectLog.push({ at: Date.now() });
      sdkLog.lines.push(message);
      sdkLog.emitter.emit('line', message);
    },
    ...clientOptions,
  });
  client.connectLog = connectLog;
  client.sdkLog = sdkLog;
  clients.add(client);
  return client;
}

/**
 * Resolve with the regex match of the first SDK `connection:` log line (from
 * now on, or already logged if `includePast`) matching `re`.
 * E.g. socket closes: /^connection:onclose\(\) - onclose callback - (\d+)/
 */
export function waitForLog(client, re, timeoutMs = 10_000, { includePast = false } = {}) {
  if (includePast) {
    for (const line of client.sdkLog.lines) {
      const m = re.exec(line);
      if (m) return Promise.resolve(m);
    }
  }
  let timer;
  let onLine;
  const promise = new Promise((resolve, reject) => {
    const entry = { cancel: () => done(new Error(`waitForLog(${re}) cancelled by cleanup`)) };
    const done = (err, value) => {
      if (!pendingWaits.has(entry)) return;
      pendingWaits.delete(entry);
      clearTimeout(timer);
      client.sdkLog.emitter.off('line', onLine);
      if (err) reject(err);
      else resolve(value);
    };
    pendingWaits.add(entry);
    onLine = (line) => {
      const m = re.exec(line);
      if (m) done(null, m);
    };
    client.sdkLog.emitter.on('line', onLine);
    timer = setTimeout(
      () => done(new Error(`timed out after ${timeoutMs} ms waiting for SDK log ${re} (${describe(client)})`)),
      timeoutMs,
    );
  });
  promise.catch(() => {});
  return promise;
}

/** Matches the SDK's log line for a WS close; group 1 is the close code. */
export const WS_CLOSE_LOG = /^connection:onclose\(\) - onclose callback - (\d+)/;

/**
 * Connect `userId` through the gateway.
 * opts.token          static token (default: a fresh 1 h token)
 * opts.tokenProvider  function returning a token (wins over opts.token)
 * opts.user           extra user fields (name, privacy_settings, …)
 * opts.clientOptions  extra StreamChat options
 * Resolves with { client, response } where `response` is what connectUser
 * resolved with (the first `health.check` frame).
 */
export async function connect(userId, opts = {}) {
  const client = newClient(opts.clientOptions);
  const user = { id: userId, name: opts.user?.name ?? userId, ...(opts.user ?? {}) };
  const auth = opts.tokenProvider ?? opts.token ?? longLivedToken(userId);
  const response = await client.connectUser(user, auth);
  return { client, response };
}

/**
 * The SDK rejects connectUser with `new Error(JSON.stringify({code, StatusCode,
 * message, isWSFailure}))` (src/connection.ts), so the fields live in the
 * message. Returns the parsed object, or the raw fields when already an object.
 */
export function connectError(err) {
  if (err && typeof err === 'object' && 'code' in err && 'isWSFailure' in err) return err;
  try {
    const parsed = JSON.parse(err?.message);
    if (parsed && typeof parsed === 'object') return parsed;
  } catch {
    // fall through
  }
  return { code: undefined, isWSFailure: undefined, message: String(err?.message ?? err) };
}

/** Disconnect every client created since the last cleanup; cancel pending waits. */
export async function cleanup() {
  for (const w of [...pendingWaits]) w.cancel();
  const all = [...clients];
  clients.clear();
  await Promise.allSettled(
    all.map(async (c) => {
      if (c.userID || c.wsConnection) await c.disconnectUser(2000);
    }),
  );
}

// ---------------------------------------------------------------------------
// Events

/**
 * Resolve with the first event of `type` on `target` (a client or a channel)
 * that satisfies `predicate`; reject after `timeoutMs`. Create the promise
 * BEFORE triggering the action that produces the event.
 */
export function waitForEvent(target, type, predicate = () => true, timeoutMs = 10_000) {
  let sub;
  let timer;
  const promise = new Promise((resolve, reject) => {
    const entry = {
      cancel: () => done(new Error(`waitForEvent(${type}) cancelled by cleanup`)),
    };
    const done = (err, value) => {
      if (!pendingWaits.has(entry)) return;
      pendingWaits.delete(entry);
      clearTimeout(timer);
      sub?.unsubscribe();
      if (err) reject(err);
      else resolve(value);
    };
    pendingWaits.add(entry);
    sub = target.on(type, (event) => {
      let ok = false;
      try {
        ok = predicate(event);
      } catch (e) {
        done(e);
        return;
      }
      if (ok) done(null, event);
    });
    timer = setTimeout(
      () => done(new Error(`timed out after ${timeoutMs} ms waiting for ${type} on ${describe(target)}`)),
      timeoutMs,
    );
  });
  // Avoid unhandled-rejection noise when a test fails before awaiting us;
  // awaiting `promise` still observes the rejection.
  promise.catch(() => {});
  return promise;
}

function describe(target) {
  if (target?.cid) return `channel ${target.cid} (client of ${target.getClient?.().userID})`;
  if (target?.userID !== undefined) return `client of ${target.userID}`;
  return String(target);
}

/**
 * Record every event (or only `types`) dispatched on `target` until `stop()`.
 * Use with a sentinel to assert that something did not arrive.
 */
export function recorder(target, types) {
  const events = [];
  const sub = target.on((event) => {
    if (!types || types.includes(event.type)) events.push(event);
  });
  return {
    events,
    ofType: (t) => events.filter((e) => e.type === t),
    stop: () => sub.unsubscribe(),
  };
}

/** `message.new` predicate: the message with this id (or text) in channel `cid`. */
export const isMessage = (cid, { id, text }) => (e) =>
  e.cid === cid && (id === undefined || e.message?.id === id) && (text === undefined || e.message?.text === text);

// ---------------------------------------------------------------------------
// Polling observables (admin metrics, emulator)

/**
 * Call `fn` until it returns a truthy value, at most `timeoutMs`, pausing
 * `intervalMs` between attempts (polling an external observable, not
 * synchronising on time). Resolves with that value; rejects with the last
 * observation otherwise.
 */
export async function eventually(fn, { timeoutMs = 5000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`${what} not reached within ${timeoutMs} ms (last: ${detail})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

async function fetchOk(u, init) {
  const res = await fetch(u, { signal: AbortSignal.timeout(5000), ...init });
  if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${u} -> HTTP ${res.status}: ${await res.text()}`);
  return res;
}

/** Parse Prometheus text exposition into [{name, labels, value}]. */
export function parsePrometheus(text) {
  const out = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let lm;
      while ((lm = re.exec(m[3]))) {
        labels[lm[1]] = lm[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      }
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

/** All series of `name` whose labels include `labels`. */
export async function metricSeries(name, labels = {}) {
  const res = await fetchOk(`${cfg.adminUrl}/metrics`);
  const series = parsePrometheus(await res.text());
  return series.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === String(v)),
  );
}

/** Sum of the matching series of `name` (0 when there is none). */
export async function metric(name, labels = {}) {
  const series = await metricSeries(name, labels);
  return series.reduce((acc, s) => acc + s.value, 0);
}

/** `GET /_emulator/connections` → {total, users: {"<api_key>/<user_id>": n}} */
export async function emulatorConnections() {
  const res = await fetchOk(`${cfg.emulatorUrl}/_emulator/connections`);
  return res.json();
}

/** Number of upstream connections the emulator holds for `userId` of the test app. */
export async function upstreamCount(userId) {
  const body = await emulatorConnections();
  return body.users?.[`${cfg.apiKey}/${userId}`] ?? 0;
}

/** Abruptly drop `userId`'s upstream sockets at the emulator → number dropped. */
export async function dropUpstream(userId) {
  const q = new URLSearchParams({ api_key: cfg.apiKey, user_id: userId });
  const res = await fetchOk(`${cfg.emulatorUrl}/_emulator/drop?${q}`, { method: 'POST' });
  const body = await res.json();
  return body.dropped;
}

// ---------------------------------------------------------------------------
// A proxy that blocks WebSockets (long-poll fallback)

// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function endToEndHeaders(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k.toLowerCase())) out[k] = v;
  return out;
}

/** Kind of a request as the long-poll protocol sees it (stream-protocol.md §3). */
function requestKind(method, u) {
  if (method === 'OPTIONS') return 'preflight';
  if (u.pathname.replace(/\/+$/, '').endsWith('/longpoll')) {
    if (u.searchParams.get('close') === 'true') return 'longpoll-close';
    if (u.searchParams.has('json')) return 'longpoll-connect';
    if (u.searchParams.has('connection_id')) return 'poll';
    return 'longpoll-other';
  }
  return 'rest';
}

/**
 * Start an HTTP/1.1 forward proxy on 127.0.0.1:0 in front of `target`
 * (default GATEWAY_URL), as a corporate proxy that blocks WebSockets would be:
 * plain requests (any method, path, query, headers, body; streamed responses;
 * keep-alive on both sides) are forwarded, every `Upgrade` request is answered
 * `403 Forbidden` and its socket destroyed.
 *
 * Traffic is observable: `log` has one entry per request
 * ({kind, method, path, query, origin, status, headers, body, startedAt,
 * forwardedAt, endedAt, aborted}; `aborted`: the client went away first);
 * `body` (text) is kept for long-poll requests only. `waitForResponse`
 * resolves when a matching response has been completely relayed, and
 * `holdPollAfter` holds the client's next poll in the proxy, i.e. keeps the
 * client "between two polls" for as long as the test needs.
 */
export async function startWsBlockingProxy(target = cfg.gatewayUrl) {
  const t = new URL(target);
  const agent = new http.Agent({ keepAlive: true });
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  const log = [];
  const upgrades = [];
  const holds = []; // {predicate, armed, consumed, heldEntry, resolveHeld, release}
  const pending = new Set(); // forwards not yet started (held polls)

  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://proxy.invalid');
    const entry = {
      kind: requestKind(req.method, u),
      method: req.method,
      path: u.pathname,
      query: Object.fromEntries(u.searchParams),
      origin: req.headers.origin,
      status: undefined,
      headers: undefined,
      body: undefined,
      startedAt: Date.now(),
      forwardedAt: undefined,
      endedAt: undefined,
    };
    log.push(entry);
    const capture = entry.kind.startsWith('longpoll') || entry.kind === 'poll';

    const forward = () => {
      pending.delete(forward);
      entry.forwardedAt = Date.now();
      const upReq = http.request(
        {
          host: t.hostname,
          port: t.port,
          method: req.method,
          path: req.url,
          headers: { ...endToEndHeaders(req.headers), host: t.host },
          agent,
        },
        (upRes) => {
          entry.status = upRes.statusCode;
          entry.headers = upRes.headers;
          res.writeHead(upRes.statusCode, upRes.statusMessage, endToEndHeaders(upRes.headers));
          const chunks = [];
          upRes.on('data', (c) => {
            if (capture) chunks.push(c);
            res.write(c);
          });
          upRes.on('end', () => {
            if (capture) entry.body = Buffer.concat(chunks).toString('utf8');
            entry.endedAt = Date.now();
            // Arm holds before the client can possibly send its next poll.
            if (entry.kind === 'poll') {
              for (const h of holds) if (!h.armed && safePredicate(h.predicate, entry)) h.armed = true;
            }
            res.end();
            emitter.emit('response', entry);
          });
          upRes.on('error', () => res.destroy());
        },
      );
      upReq.on('error', (err) => {
        entry.error = String(err?.message ?? err);
        entry.endedAt = Date.now();
        if (entry.aborted) return; // we destroyed it because the client went away
        entry.status = 502;
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: ${entry.error}`);
        emitter.emit('response', entry);
      });
      // The client gave up (SDK timeout/cancel): drop the forwarded request too.
      res.on('close', () => {
        if (res.writableFinished) return;
        entry.aborted = true;
        upReq.destroy();
      });
      req.pipe(upReq);
    };

    if (entry.kind === 'poll') {
      const hold = holds.find((h) => h.armed && !h.consumed);
      if (hold) {
        hold.consumed = true;
        hold.heldEntry = entry;
        pending.add(forward);
        hold.release = forward;
        hold.resolveHeld(entry);
        return;
      }
    }
    forward();
  });

  // Refuse every WebSocket upgrade, like a proxy that strips/denies Upgrade.
  server.on('upgrade', (req, socket) => {
    upgrades.push({ path: new URL(req.url, 'http://proxy.invalid').pathname, at: Date.now() });
    socket.on('error', () => {});
    socket.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', () =>
      socket.destroy(),
    );
  });
  server.keepAliveTimeout = 65_000; // longer than any poll hold
  server.requestTimeout = 0;

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();

  return {
    url: `http://127.0.0.1:${port}`,
    log,
    /** Upgrade attempts refused so far ({path, at}). */
    upgrades,
    /** Entries of `kind` (completed or not). */
    ofKind: (kind) => log.filter((e) => e.kind === kind),
    /**
     * Resolve with the first request entry, from now on, whose response has
     * been completely relayed and satisfies `predicate`.
     */
    waitForResponse(predicate, { timeoutMs = 10_000, what = 'proxied response' } = {}) {
      let timer;
      let onResponse;
      const promise = new Promise((resolve, reject) => {
        onResponse = (entry) => {
          if (!safePredicate(predicate, entry)) return;
          clearTimeout(timer);
          emitter.off('response', onResponse);
          resolve(entry);
        };
        emitter.on('response', onResponse);
        timer = setTimeout(() => {
          emitter.off('response', onResponse);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} at the proxy`));
        }, timeoutMs);
      });
      promise.catch(() => {});
      return promise;
    },
    /**
     * Once a poll response satisfying `predicate` has been relayed, hold the
     * NEXT poll request in the proxy (not forwarded) until `release()`.
     * Returns { held: Promise<entry of the held poll>, release() }.
     */
    holdPollAfter(predicate, { timeoutMs = 15_000 } = {}) {
      const hold = { predicate, armed: false, consumed: false, heldEntry: undefined, release: undefined };
      let timer;
      const held = new Promise((resolve, reject) => {
        hold.resolveHeld = (entry) => {
          clearTimeout(timer);
          resolve(entry);
        };
        timer = setTimeout(
          () => reject(new Error(`no poll was held within ${timeoutMs} ms (armed: ${hold.armed})`)),
          timeoutMs,
        );
      });
      held.catch(() => {});
      holds.push(hold);
      return {
        held,
        release: () => {
          const fn = hold.release;
          hold.release = undefined;
          fn?.();
        },
      };
    },
    async close() {
      for (const h of holds) h.consumed = true;
      pending.clear(); // held polls are dropped with their sockets
      server.closeAllConnections();
      await new Promise((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

function safePredicate(predicate, entry) {
  try {
    return Boolean(predicate(entry));
  } catch {
    return false;
  }
}

/** `{events:[…]}` of a relayed poll response (empty when it is not one). */
export function pollEvents(entry) {
  try {
    const parsed = JSON.parse(entry.body ?? '');
    return Array.isArray(parsed?.events) ? parsed.events : [];
  } catch {
    return [];
  }
}
