// SELF-TEST ONLY. A tiny stand-in for "gateway + emulator" written from
// shared/reference/stream-protocol.md so the e2e suite itself can be run and
// debugged without the Rust binaries. It is NOT the system under test, is not
// used by CI, and is deliberately naive (one process, in-memory, no upstream
// socket: an "upstream" is modelled as a per-user record with a linger).
//
//   node tools/selftest.mjs            # starts this and runs the suite against it

import { createServer } from 'node:http';
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { WebSocketServer } from 'ws';

const CHANNEL_CONFIG = {
  typing_events: true,
  read_events: true,
  connect_events: true,
  search: true,
  reactions: true,
  replies: true,
  mutes: true,
  uploads: true,
  url_enrichment: false,
  custom_events: true,
  push_notifications: false,
  message_retention: 'infinite',
  max_message_length: 5000,
  automod: 'disabled',
  commands: [],
};

const iso = () => new Date().toISOString();

function apiError(code, message, status) {
  return { code, message, StatusCode: status, duration: '', more_info: '', details: [] };
}

function verifyJwt(token, secret) {
  const parts = String(token ?? '').split('.');
  if (parts.length !== 3) return { error: apiError(43, 'JWTAuth error: malformed token', 401) };
  const expected = createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
  const got = Buffer.from(parts[2], 'base64url');
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
    return { error: apiError(43, 'JWTAuth error: signature is not valid', 401) };
  }
  let payload;
  try {
    payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  } catch {
    return { error: apiError(43, 'JWTAuth error: bad payload', 401) };
  }
  const now = Date.now() / 1000;
  if (typeof payload.exp === 'number' && payload.exp <= now) {
    return { error: apiError(40, 'JWTAuth error: token is expired (exp)', 401) };
  }
  if (!payload.user_id) return { error: apiError(43, 'JWTAuth error: no user_id', 401) };
  return { payload };
}

export async function startMockStack({ apiKey, apiSecret, lingerMs = 1000 }) {
  const users = new Map(); // id -> user
  const channels = new Map(); // cid -> {type,id,cid,members:Set,messages:[],read:Map,created_by}
  const sessions = new Map(); // connection_id -> {ws,userId,watching:Set,expTimer}
  const upstreams = new Map(); // userId -> {sessions:Set, linger}

  const userOf = (id) => users.get(id) ?? { id, role: 'user' };
  const sessionsOf = (userId) => [...sessions.values()].filter((s) => s.userId === userId);

  function upstreamAttach(userId, connId) {
    let up = upstreams.get(userId);
    if (!up) {
      up = { sessions: new Set(), linger: null };
      upstreams.set(userId, up);
    }
    clearTimeout(up.linger);
    up.linger = null;
    up.sessions.add(connId);
  }
  function upstreamDetach(userId, connId) {
    const up = upstreams.get(userId);
    if (!up) return;
    up.sessions.delete(connId);
    if (up.sessions.size === 0 && !up.linger) {
      up.linger = setTimeout(() => {
        if (upstreams.get(userId) === up && up.sessions.size === 0) upstreams.delete(userId);
      }, lingerMs);
    }
  }

  function send(session, event) {
    if (session.ws.readyState === session.ws.OPEN) session.ws.send(JSON.stringify(event));
  }
  function toWatchers(cid, event) {
    for (const s of sessions.values()) if (s.watching.has(cid)) send(s, event);
  }
  function toUser(userId, event) {
    for (const s of sessionsOf(userId)) send(s, event);
  }

  function channelResponse(ch) {
    return {
      id: ch.id,
      type: ch.type,
      cid: ch.cid,
      created_by: userOf(ch.created_by),
      created_at: ch.created_at,
      updated_at: ch.created_at,
      member_count: ch.members.size,
      config: CHANNEL_CONFIG,
      own_capabilities: ['read-events', 'send-message', 'send-typing-events', 'typing-events', 'read-events'],
      frozen: false,
      disabled: false,
    };
  }
  function channelState(ch, limit = 25) {
    return {
      channel: channelResponse(ch),
      messages: ch.messages.slice(-limit),
      members: [...ch.members].map((id) => ({ user_id: id, user: userOf(id), role: 'member', created_at: ch.created_at, updated_at: ch.created_at })),
      read: [...ch.members].map((id) => ({ user: userOf(id), last_read: ch.read.get(id) ?? ch.created_at, unread_messages: 0 })),
      watchers: [],
      watcher_count: 0,
      pinned_messages: [],
      membership: ch.members.has ? null : null,
    };
  }

  // ---------------------------------------------------------------- gateway
  const json = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const readBody = (req) =>
    new Promise((resolve) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        try {
          resolve(data ? JSON.parse(data) : {});
        } catch {
          resolve({});
        }
      });
    });

  const gateway = createServer(async (req, res) => {
    const u = new URL(req.url, 'http://x');
    const auth = verifyJwt(req.headers.authorization, apiSecret);
    if (auth.error) return json(res, 401, auth.error);
    const me = auth.payload.user_id;
    const connId = u.searchParams.get('connection_id');
    const session = connId ? sessions.get(connId) : undefined;
    const body = req.method === 'GET' ? {} : await readBody(req);
    const p = u.pathname;
    let m;

    if (req.method === 'POST' && (m = /^\/channels\/([^/]+)\/([^/]+)\/query$/.exec(p))) {
      const [, type, id] = m;
      const cid = `${type}:${id}`;
      let ch = channels.get(cid);
      if (!ch) {
        ch = { type, id, cid, members: new Set(body.data?.members ?? [me]), messages: [], read: new Map(), created_by: me, created_at: iso() };
        channels.set(cid, ch);
      }
      if (!ch.members.has(me)) return json(res, 403, apiError(17, 'not allowed', 403));
      if (body.watch && session) session.watching.add(cid);
      return json(res, 201, { ...channelState(ch, body.messages?.limit), duration: '1ms' });
    }
    if (req.method === 'POST' && p === '/channels') {
      const cids = body.filter_conditions?.cid?.$in ?? [];
      const out = [];
      for (const cid of cids) {
        const ch = channels.get(cid);
        if (!ch || !ch.members.has(me)) continue;
        if (body.watch && session) session.watching.add(cid);
        out.push(channelState(ch));
      }
      return json(res, 201, { channels: out, duration: '1ms' });
    }
    if ((m = /^\/channels\/([^/]+)\/([^/]+)\/(message|event|read|stop-watching)$/.exec(p)) && req.method === 'POST') {
      const [, type, id, what] = m;
      const cid = `${type}:${id}`;
      const ch = channels.get(cid);
      if (!ch) return json(res, 404, apiError(16, 'channel not found', 404));
      const base = { cid, channel_id: id, channel_type: type, created_at: iso() };
      if (what === 'message') {
        const now = iso();
        const msg = {
          id: randomUUID(), text: body.message?.text ?? '', html: '', type: 'regular', user: userOf(me), cid,
          created_at: now, updated_at: now, attachments: [], latest_reactions: [], own_reactions: [],
          reaction_counts: {}, reaction_scores: {}, reply_count: 0, mentioned_users: [], silent: false, pinned: false,
        };
        ch.messages.push(msg);
        toWatchers(cid, { ...base, type: 'message.new', message: msg, user: userOf(me), watcher_count: 0 });
        return json(res, 201, { message: msg, duration: '1ms' });
      }
      if (what === 'event') {
        const ev = { ...body.event, ...base, user: userOf(me) };
        toWatchers(cid, ev);
        return json(res, 201, { event: ev, duration: '1ms' });
      }
      if (what === 'read') {
        ch.read.set(me, iso());
        const last = ch.messages.at(-1)?.id;
        toWatchers(cid, { ...base, type: 'message.read', user: userOf(me), last_read_message_id: last });
        toUser(me, { ...base, type: 'notification.mark_read', user: userOf(me), last_read_message_id: last, unread_count: 0, total_unread_count: 0, unread_channels: 0 });
        return json(res, 201, { event: { ...base, type: 'message.read' }, duration: '1ms' });
      }
      if (what === 'stop-watching') {
        if (session) session.watching.delete(cid);
        return json(res, 201, { duration: '1ms' });
      }
    }
    if (req.method === 'GET' && p === '/users') {
      const payload = JSON.parse(u.searchParams.get('payload') ?? '{}');
      const f = payload.filter_conditions?.id ?? {};
      const ids = f.$in ?? (f.$eq ? [f.$eq] : [...users.keys()]);
      return json(res, 200, { users: ids.filter((id) => users.has(id)).map((id) => users.get(id)), duration: '1ms' });
    }
    if (req.method === 'POST' && p === '/users') {
      const out = {};
      for (const [id, user] of Object.entries(body.users ?? {})) {
        const merged = { ...userOf(id), ...user, id, updated_at: iso() };
        users.set(id, merged);
        out[id] = merged;
      }
      return json(res, 201, { users: out, duration: '1ms' });
    }
    return json(res, 404, apiError(4, `mock: no route ${req.method} ${p}`, 404));
  });

  const wss = new WebSocketServer({ noServer: true });
  gateway.on('upgrade', (req, socket, head) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname !== '/connect') return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => {
      const auth = verifyJwt(u.searchParams.get('authorization'), apiSecret);
      if (auth.error) {
        ws.send(JSON.stringify({ error: auth.error }));
        ws.close(1000, auth.error.message);
        return;
      }
      const payload = JSON.parse(u.searchParams.get('json') ?? '{}');
      const userId = auth.payload.user_id;
      users.set(userId, { ...userOf(userId), ...(payload.user_details ?? {}), id: userId, role: 'user', online: true });
      const connection_id = randomUUID();
      const session = { ws, userId, watching: new Set(), expTimer: null };
      sessions.set(connection_id, session);
      upstreamAttach(userId, connection_id);
      if (typeof auth.payload.exp === 'number') {
        session.expTimer = setTimeout(() => ws.close(4001, 'token expired'), auth.payload.exp * 1000 - Date.now());
      }
      ws.on('message', () => send(session, { type: 'health.check', connection_id, cid: '*', created_at: iso() }));
      ws.on('close', () => {
        clearTimeout(session.expTimer);
        sessions.delete(connection_id);
        upstreamDetach(userId, connection_id);
      });
      send(session, {
        type: 'health.check', connection_id, cid: '*', created_at: iso(),
        me: { ...users.get(userId), devices: [], mutes: [], channel_mutes: [], blocked_user_ids: [], unread_count: 0, total_unread_count: 0, unread_channels: 0, unread_threads: 0 },
      });
    });
  });

  // ------------------------------------------------------------ admin/emu
  const admin = createServer((req, res) => {
    if (req.url !== '/metrics') return json(res, 404, {});
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(
      [
        '# HELP stream_edge_upstream_connections_open Open upstream connections',
        '# TYPE stream_edge_upstream_connections_open gauge',
        `stream_edge_upstream_connections_open{app="${apiKey}"} ${upstreams.size}`,
        '# HELP stream_edge_sessions_open Open client sessions',
        '# TYPE stream_edge_sessions_open gauge',
        `stream_edge_sessions_open{transport="longpoll"} 0`,
        `stream_edge_sessions_open{transport="ws"} ${sessions.size}`,
        '',
      ].join('\n'),
    );
  });
  const emulator = createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (req.method === 'GET' && u.pathname === '/_emulator/connections') {
      const out = {};
      for (const id of upstreams.keys()) out[`${apiKey}/${id}`] = 1;
      return json(res, 200, { total: upstreams.size, users: out });
    }
    if (req.method === 'POST' && u.pathname === '/_emulator/drop') {
      const userId = u.searchParams.get('user_id');
      const up = upstreams.get(userId);
      if (!up) return json(res, 200, { dropped: 0 });
      upstreams.delete(userId);
      clearTimeout(up.linger);
      for (const s of sessionsOf(userId)) s.ws.close(4002, 'upstream lost');
      return json(res, 200, { dropped: 1 });
    }
    return json(res, 404, {});
  });

  const listen = (srv) => new Promise((r) => srv.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${srv.address().port}`)));
  const [gatewayUrl, adminUrl, emulatorUrl] = [await listen(gateway), await listen(admin), await listen(emulator)];
  return {
    gatewayUrl,
    adminUrl,
    emulatorUrl,
    close: async () => {
      for (const s of sessions.values()) s.ws.terminate();
      for (const up of upstreams.values()) clearTimeout(up.linger);
      for (const srv of [gateway, admin, emulator]) {
        srv.closeAllConnections?.();
        await new Promise((r) => srv.close(r));
      }
    },
  };
}
