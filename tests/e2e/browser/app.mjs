// Browser side of browser.test.mjs. Query parameters:
//   baseURL    where the SDK sends REST, WebSocket and long-poll (another origin)
//   apiKey, userId, token, channelId (an existing messaging channel with userId as member)
//   warm       (optional) one credentialed request to baseURL before connecting (h2/websocket.test.mjs)
// It exposes, for the test to read with page.evaluate / waitForFunction:
//   window.__events    one summary per event the client dispatched
//   window.__state     'connecting' | 'connected' | 'ready' | 'error'
//   window.__error     the error message when __state is 'error'
//   window.__connect   what connectUser resolved with (summary)
//   window.__transport() summary of the transport in use
//   window.__send(text)  sends a message to the channel, resolves with its id
//   window.__disconnect() closes the long-poll session (close=true)
//   window.__channel   the watched channel (typing and read calls)
import { StreamChat } from 'stream-chat';

const params = new URLSearchParams(location.search);
const need = (name) => {
  const v = params.get(name);
  if (!v) throw new Error(`missing query parameter ${name}`);
  return v;
};

window.__events = [];
window.__state = 'connecting';
const status = document.getElementById('status');
const show = (s) => {
  status.textContent = s;
};

function summarize(e) {
  return {
    type: e.type,
    mode: e.mode,
    cid: e.cid,
    user_id: e.user?.id,
    connection_id: e.connection_id,
    message: e.message ? { id: e.message.id, text: e.message.text, user_id: e.message.user?.id } : undefined,
  };
}

try {
  const client = new StreamChat(need('apiKey'), {
    baseURL: need('baseURL'),
    enableWSFallback: true,
    enableInsights: false,
    timeout: 6000,
  });
  window.__client = client;
  window.__disconnect = () => client.disconnectUser(2000);
  client.on((e) => window.__events.push(summarize(e)));
  window.__transport = () => ({
    wsFallback: Boolean(client.wsFallback),
    fallbackHealthy: client.wsFallback?.isHealthy() ?? false,
    fallbackConnectionId: client.wsFallback?.connectionID,
    wsHealthy: client.wsConnection?.isHealthy ?? false,
  });

  if (params.get('warm')) {
    // Chromium carries a WebSocket over HTTP/2 only on an open h2 connection of its credentialed
    // pool; the SDK's REST calls are uncredentialed (withCredentials: false), so only a request
    // like this one (or a page of the gateway's own origin) opens a connection the socket can share.
    await fetch(new URL('/app', need('baseURL')), { mode: 'no-cors', credentials: 'include' }).catch(() => {});
  }
  const userId = need('userId');
  const res = await client.connectUser({ id: userId, name: userId }, need('token'));
  window.__connect = { me_id: res?.me?.id, connection_id: res?.connection_id };
  window.__state = 'connected';
  show('connected');

  const channel = client.channel('messaging', need('channelId'));
  await channel.watch();
  window.__channel = channel;
  window.__send = async (text) => (await channel.sendMessage({ text })).message.id;
  window.__state = 'ready';
  show('ready');
} catch (err) {
  window.__error = String(err?.stack ?? err?.message ?? err);
  window.__state = 'error';
  show(`error: ${window.__error}`);
}
