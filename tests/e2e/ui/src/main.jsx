// The chat page: stream-chat-react's stock components on the real stream-chat SDK, pointed at a
// stream-edge gateway. Everything comes from the query string, so one bundle serves any gateway:
//   ?base=http://127.0.0.1:8080&key=<api key>&user=<user id>&token=<user JWT>[&name=<display name>]
//   [&channel=<id>&members=<id>,<id>]  first create (or join) messaging:<id> with those members
// `window.__chat` exposes the client to the test (diagnostics, clean disconnect).
import React, { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { StreamChat } from 'stream-chat';
import {
  Channel,
  ChannelHeader,
  ChannelList,
  Chat,
  MessageInput,
  MessageList,
  Thread,
  Window,
} from 'stream-chat-react';
import 'stream-chat-react/dist/css/v2/index.css';

const q = new URLSearchParams(window.location.search);
const base = q.get('base') || window.location.origin;
const key = q.get('key');
const userId = q.get('user');
const token = q.get('token');
const name = q.get('name') || userId;
const channelId = q.get('channel');
const members = (q.get('members') || '').split(',').filter(Boolean);

// Native emoji instead of the default sprite, which is fetched from Stream's CDN: the page works
// offline.
const emoji = (char) => () => <span className='emoji'>{char}</span>;
const reactionOptions = [
  { type: 'like', name: 'Like', Component: emoji('👍') },
  { type: 'love', name: 'Love', Component: emoji('❤️') },
  { type: 'haha', name: 'Haha', Component: emoji('😂') },
  { type: 'wow', name: 'Wow', Component: emoji('😮') },
  { type: 'sad', name: 'Sad', Component: emoji('😢') },
];

function App() {
  const [client, setClient] = useState(null);
  const [error, setError] = useState(null);

  useEffect(() => {
    // `new StreamChat`, not `getInstance`: a fresh client per page load, with this gateway.
    const c = new StreamChat(key, { baseURL: base, enableInsights: false });
    window.__chat = c;
    let cancelled = false;
    c.connectUser({ id: userId, name }, token)
      // Optional: a channel to start with, so an empty app has something to show.
      .then(() =>
        channelId
          ? c.channel('messaging', channelId, { name: channelId, members: [...new Set([userId, ...members])] }).watch()
          : null,
      )
      .then(() => !cancelled && setClient(c))
      .catch((e) => !cancelled && setError(String(e?.message ?? e)));
    return () => {
      cancelled = true;
      c.disconnectUser().catch(() => {});
    };
  }, []);

  if (error) return <pre id='status' data-state='error'>{error}</pre>;
  if (!client) return <pre id='status' data-state='connecting'>connecting…</pre>;
  return (
    <Chat client={client} theme='str-chat__theme-light'>
      <div id='status' data-state='connected' hidden />
      <div className='app'>
      <ChannelList
        filters={{ type: 'messaging', members: { $in: [userId] } }}
        sort={{ last_message_at: -1 }}
        options={{ state: true, watch: true, presence: true, limit: 10 }}
      />
      <Channel reactionOptions={reactionOptions}>
        <Window>
          <ChannelHeader />
          <MessageList />
          <MessageInput focus />
        </Window>
        <Thread />
      </Channel>
      </div>
    </Chat>
  );
}

if (!key || !userId || !token) {
  document.getElementById('root').textContent =
    'missing query parameters: ?base=<gateway URL>&key=<api key>&user=<user id>&token=<user JWT>';
} else {
  createRoot(document.getElementById('root')).render(<App />);
}
