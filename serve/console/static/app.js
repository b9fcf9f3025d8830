// kvsedge console: the KVS API signed in the browser with the user's key
// (aws4fetch), playback with hls.js, live over WebRTC (live.js). No
// server-side session: the same API and authentication as the aws CLI.
'use strict';
const $ = (id) => document.getElementById(id);
let client = null, current = null, hls = null, range = null;
// view counts stopPlayer calls: an answer that arrives for an earlier view
// (a slow GetImages, ListFragments or session request) is dropped.
let view = 0;

// The key is kept for this tab only (sessionStorage, gone when the tab
// closes; Sign out forgets it at once), never in localStorage, where it
// would stay in clear on the disk of every browser that ever signed in.
localStorage.removeItem('kvsedge-creds'); // left by an older console
function creds() {
  try { return JSON.parse(sessionStorage.getItem('kvsedge-creds')); } catch (e) { return null; }
}

function signOut() {
  sessionStorage.removeItem('kvsedge-creds');
  for (const t of tiles.values()) { if (t.hls) t.hls.destroy(); t.el.remove(); }
  tiles.clear();
  closeViewer(); client = null;
  $('who').textContent = ''; $('signout').hidden = true;
  $('secret').value = ''; $('app').hidden = true; $('login').hidden = false;
}

async function api(path, body) {
  const resp = await client.fetch(location.origin + path, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body || {}),
  });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : {};
  if (!resp.ok) {
    const type = resp.headers.get('x-amzn-ErrorType') || String(resp.status);
    throw Object.assign(new Error(type + ': ' + (data.message || text)), { type });
  }
  return data;
}

function signIn(c) {
  client = new aws4fetch.AwsClient({ accessKeyId: c.akid, secretAccessKey: c.secret, region: c.region || 'us-east-1', service: 'kinesisvideo' });
  $('who').textContent = c.akid; $('signout').hidden = false;
  $('login').hidden = true; $('app').hidden = false;
  refresh();
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const c = { akid: $('akid').value.trim(), secret: $('secret').value.trim(), region: $('region').value.trim() };
  client = new aws4fetch.AwsClient({ accessKeyId: c.akid, secretAccessKey: c.secret, region: c.region, service: 'kinesisvideo' });
  try { await api('/listStreams', { MaxResults: 1 }); } catch (err) { $('login-error').textContent = err.message; return; }
  sessionStorage.setItem('kvsedge-creds', JSON.stringify(c));
  signIn(c);
});

async function refresh() {
  try {
    const [list, cams, ups, live] = await Promise.all([api('/listStreams', {}), api('/listCameras', {}).catch(() => ({ Cameras: [] })),
      api('/describeUploads', {}).catch(() => ({ Uploads: [] })), api('/listLiveStreams', {}).catch(() => ({ Streams: [] }))]);
    const byStream = {};
    for (const c of cams.Cameras || []) byStream[c.stream] = c;
    const uploads = {};
    for (const u of ups.Uploads || []) uploads[u.stream] = u;
    const rows = $('stream-rows');
    rows.textContent = '';
    for (const s of list.StreamInfoList || []) {
      const tr = document.createElement('tr');
      tr.dataset.stream = s.StreamName;
      if (current && current.StreamName === s.StreamName) tr.className = 'sel';
      const cam = byStream[s.StreamName];
      // A camera whose stream keeps nothing (retention 0) is said so: live
      // only, nothing kept, so nothing to play back.
      const liveOnly = cam && cam.retention === 'live only, nothing kept';
      // The last error is the camera's news only while it does not record.
      const camText = cam ? `${cam.state}${liveOnly ? ' · live only, nothing kept' : ''}${cam.fps ? ' · ' + cam.fps.toFixed(1) + ' fps' : ''}${cam.last_error && cam.state !== 'RECORDING' ? ' · ' + cam.last_error : ''}` : '';
      // Upload to the upstream KVS: state, how far behind, the last error.
      const up = uploads[s.StreamName];
      const upText = up ? `${up.state}${up.lag_seconds > 0 ? ' · ' + Math.round(up.lag_seconds) + ' s behind' : ''}${up.state === 'waiting' && up.last_error ? ' · ' + up.last_error : ''}` : '';
      for (const v of [s.StreamName, s.Status, s.DataRetentionInHours, camText, upText]) {
        const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
      }
      if (cam) tr.children[3].className = cam.state === 'RECORDING' && !liveOnly ? 'ok' : 'bad';
      if (up) tr.children[4].className = up.state === 'waiting' ? 'bad' : 'ok';
      tr.children[4].dataset.upload = up ? up.state : '';
      const td = document.createElement('td');
      const open = document.createElement('button'); open.textContent = 'Open'; open.className = 'open';
      open.onclick = () => openStream(s);
      const del = document.createElement('button'); del.textContent = 'Delete';
      del.onclick = async () => {
        if (!confirm('Delete ' + s.StreamName + ' and its media?')) return;
        try { await api('/deleteStream', { StreamARN: s.StreamARN }); if (current && current.StreamARN === s.StreamARN) closeViewer(); refresh(); }
        catch (err) { $('streams-error').textContent = err.message; }
      };
      td.append(open, ' ', del); tr.appendChild(td); rows.appendChild(tr); labelCells(tr);
    }
    $('streams-error').textContent = '';
    refreshWall(list.StreamInfoList || [], cams.Cameras || [], live.Streams || []);
  } catch (err) { $('streams-error').textContent = err.message; }
  refreshCluster();
}

// labelCells names each cell of a table row by its column's heading
// (data-label): on a phone the tables are shown as one card per row, each
// cell on its own line under that name (app.css, table.cards).
function labelCells(tr) {
  const head = tr.closest('table').tHead.rows[0].cells;
  for (let i = 0; i < tr.cells.length && i < head.length; i++) {
    if (head[i].textContent) tr.cells[i].dataset.label = head[i].textContent;
  }
}

// The cluster panel: members (serf) and this box's replication state; hidden
// on a box that is a cluster of one.
async function refreshCluster() {
  try {
    const [m, r] = await Promise.all([api('/listClusterMembers', {}), api('/describeReplication', {})]);
    const members = m.Members || [];
    $('cluster').hidden = members.length === 0;
    const fill = (id, rows) => {
      const body = $(id); body.textContent = '';
      for (const cells of rows) {
        const tr = document.createElement('tr');
        for (const [v, cls] of cells) { const td = document.createElement('td'); td.textContent = v; if (cls) td.className = cls; tr.appendChild(td); }
        body.appendChild(tr); labelCells(tr);
      }
    };
    const gib = (b) => b ? (b / (1 << 30)).toFixed(1) + ' GiB' : '';
    fill('member-rows', members.map((x) => [[x.name + (x.self ? ' (this box)' : '')], [x.status, x.status === 'alive' ? 'ok' : 'bad'], [x.api_url || ''], [x.profile || ''], [gib(x.free_bytes)]]));
    fill('repl-rows', (r.Streams || []).map((x) => [[x.stream], [x.home], [(x.replicas || []).join(', ')],
      [x.holds ? 'yes' : 'no', x.holds ? 'ok' : ''], [x.lag_samples ? `${x.lag_p50_ms} / ${x.lag_p99_ms} ms` : ''],
      [String(x.missing_here), x.missing_here ? 'bad' : ''], [String(x.under_replicated), x.under_replicated ? 'bad' : '']]));
  } catch (err) { $('cluster').hidden = true; }
}

$('create-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    await api('/createStream', { StreamName: $('new-name').value.trim(), DataRetentionInHours: parseInt($('new-retention').value || '0', 10) });
    $('new-name').value = ''; refresh();
  } catch (err) { $('streams-error').textContent = err.message; }
});

// stopPlayback stops the player and forgets its session before another
// starts (stream, mode or range switched): the video (blank, not its last
// picture), the session URL, the thumbnails, the range played, the
// message; answers still on their way for it are dropped (view).
function stopPlayback() {
  view++;
  if (hls) { hls.destroy(); hls = null; }
  const video = $('video');
  video.pause(); video.removeAttribute('src'); video.load();
  $('session-url').hidden = true; $('session-url').removeAttribute('href');
  $('thumbs').textContent = ''; $('player-state').textContent = '';
  playerMessage('');
  range = null;
}

// stopPlayer also forgets the stream's timeline, selection and hover
// thumbnails (timeline.js), so nothing of one stream is ever shown under
// another's name.
function stopPlayer() {
  stopPlayback();
  tlClear();
}

// playerMessage shows text over the video area in place of any picture
// ('' hides it): "no recording here", or an error (isError).
function playerMessage(text, isError) {
  const m = $('video-msg');
  m.textContent = text; m.hidden = !text; m.className = isError ? 'err' : '';
}

// noRecording: the session asked for has no fragment (ResourceNotFound).
const noRecording = (err) => err && err.type === 'ResourceNotFoundException';

// The camera wall: a grid of live tiles (1, 4, 9 or 16), one per stream
// with a camera, each with its own LIVE session: the name, a LIVE badge
// while it plays near the live edge, the camera's wall-clock time (the
// playlist's program date-time, from the producer timestamps) and its
// health. A click opens the stream below.
let wallSize = parseInt(sessionStorage.getItem('kvsedge-wall') || '4', 10);
const tiles = new Map(); // stream name → { el, hls (its live player, live.js: WebRTC else HLS), video }

function refreshWall(streams, cams, live) {
  const byName = new Map(streams.map((s) => [s.StreamName, s]));
  // Cameras, then streams a producer feeds now (PutMedia).
  const camNames = new Set(cams.map((c) => c.stream));
  const fed = (live || []).filter((l) => !camNames.has(l.StreamName)).map((l) => ({ stream: l.StreamName, state: 'RECEIVING (PutMedia)' }));
  const want = cams.concat(fed).filter((c) => byName.has(c.stream)).slice(0, wallSize);
  $('wall-empty').hidden = want.length > 0;
  $('wall-tiles').className = 'grid g' + wallSize;
  for (const b of document.querySelectorAll('#wall-sizes button')) b.classList.toggle('on', parseInt(b.dataset.grid, 10) === wallSize);
  const names = new Set(want.map((c) => c.stream));
  for (const [name, t] of tiles) {
    if (!names.has(name)) { if (t.hls) t.hls.destroy(); t.el.remove(); tiles.delete(name); }
  }
  for (const cam of want) {
    let t = tiles.get(cam.stream);
    if (!t) t = addTile(byName.get(cam.stream));
    const bits = [cam.state];
    if (cam.bitrate_bps) bits.push((cam.bitrate_bps / 1e6).toFixed(1) + ' Mbit/s');
    if (cam.fps) bits.push(cam.fps.toFixed(0) + ' fps');
    if (cam.last_error && cam.state !== 'RECORDING') bits.push(cam.last_error);
    t.health.textContent = bits.join(' · ');
    t.health.className = 'health ' + (cam.state === 'RECORDING' || cam.state.startsWith('RECEIVING') ? '' : 'bad');
  }
}

function addTile(s) {
  const el = document.createElement('div'); el.className = 'tile'; el.dataset.stream = s.StreamName;
  const video = document.createElement('video'); video.muted = true; video.playsInline = true; video.autoplay = true;
  const bar = document.createElement('div'); bar.className = 'bar';
  const name = document.createElement('span'); name.textContent = s.StreamName;
  const right = document.createElement('span');
  const clock = document.createElement('span'); clock.className = 'clock';
  const live = document.createElement('span'); live.className = 'live'; live.textContent = 'LIVE'; live.hidden = true;
  right.append(clock, ' ', live); bar.append(name, right);
  const health = document.createElement('div'); health.className = 'health';
  el.append(video, bar, health);
  el.onclick = () => openStream(s);
  $('wall-tiles').appendChild(el);
  const t = { el, video, clock, live, health, hls: null };
  tiles.set(s.StreamName, t);
  t.hls = kvsLive.start(video, s.StreamName, { api,
    hlsBody: { StreamName: s.StreamName, PlaybackMode: 'LIVE', DiscontinuityMode: PLAYABLE_EVERYWHERE,
      DisplayFragmentTimestamp: 'ALWAYS', HLSFragmentSelector: { FragmentSelectorType: 'PRODUCER_TIMESTAMP' } },
    onTransport: (tr) => { live.textContent = tr === 'webrtc' ? 'LIVE · WebRTC' : tr === 'hls' ? 'LIVE · HLS' : 'LIVE'; },
    onError: (msg) => { health.textContent = 'no live video: ' + msg; } });
  return t;
}

// Tile clocks and LIVE badges, twice a second.
setInterval(() => {
  for (const t of tiles.values()) {
    const d = t.hls && t.hls.playingDate;
    t.clock.textContent = d ? d.toLocaleTimeString() : '';
    t.live.hidden = !(d && !t.video.paused && Date.now() - d.getTime() < 30e3);
  }
}, 500);

function setWallSize(n) {
  wallSize = n; sessionStorage.setItem('kvsedge-wall', String(n));
  if (client) refresh();
}
for (const b of document.querySelectorAll('#wall-sizes button')) b.onclick = () => setWallSize(parseInt(b.dataset.grid, 10));

function closeViewer() { stopPlayer(); current = null; $('viewer').hidden = true; }

async function openStream(s) {
  stopPlayer();
  current = s; $('viewer').hidden = false; $('viewer-title').textContent = s.StreamName;
  $('retention').value = s.DataRetentionInHours; $('viewer-error').textContent = '';
  tlReset();
  refresh(); loadTags(); drawTimeline(); playLive();
}

async function loadTags() {
  try {
    const t = await api('/listTagsForStream', { StreamName: current.StreamName });
    $('tags').textContent = Object.entries(t.Tags || {}).map(([k, v]) => `${k}=${v}`).join('  ');
  } catch (err) { $('viewer-error').textContent = err.message; }
}

// The sessions the console hands out use DiscontinuityMode NEVER (one
// initialization segment until the track header changes): VLC stops after
// the first segment of KVS's default, ALWAYS. The URL is shown for other
// players (VLC, ffplay, mpv).
const PLAYABLE_EVERYWHERE = 'NEVER';

function play(url, label) {
  $('session-url').href = url; $('session-url').hidden = false;
  if (hls) hls.destroy();
  const video = $('video');
  hls = new Hls({ lowLatencyMode: true, liveSyncDurationCount: 2 });
  hls.on(Hls.Events.ERROR, (e, d) => {
    if (!d.fatal) return;
    $('player-state').textContent = 'player error: ' + d.details;
    playerMessage('player error: ' + d.details + (d.response && d.response.code ? ' (HTTP ' + d.response.code + ')' : ''), true);
  });
  hls.loadSource(url); hls.attachMedia(video);
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
  $('player-state').textContent = label;
}

// Live: WebRTC first, HLS when it cannot play (live.js); the state line
// says which.
function playLive() {
  stopPlayback(); tlSelect(null);
  const v = view;
  hls = kvsLive.start($('video'), current.StreamName, { api,
    hlsBody: { StreamName: current.StreamName, PlaybackMode: 'LIVE', DiscontinuityMode: PLAYABLE_EVERYWHERE, DisplayFragmentTimestamp: 'ALWAYS' },
    onTransport: (tr) => { if (v === view) $('player-state').textContent = tr === 'connecting' ? 'live: connecting…' : 'live (' + (tr === 'webrtc' ? 'WebRTC' : 'HLS') + ')'; },
    onHLS: (url) => { if (v === view) { $('session-url').href = url; $('session-url').hidden = false; } },
    onError: (msg) => { if (v === view) $('player-state').textContent = msg; },
    onFail: (msg, err) => {
      if (v !== view) return;
      stopPlayback();
      $('player-state').textContent = (noRecording(err) ? 'no recording here — ' : '') + 'nothing to play live: ' + msg;
      playerMessage(noRecording(err) ? 'no recording here' : 'nothing to play live: ' + msg, !noRecording(err));
    } });
}

// playFrom plays on demand from ms (an hour at most, up to now); playRange
// plays [from, to] (a selection on the timeline, which stays; live and
// playFrom drop it). The player shown before goes first; a range without
// recording says so.
function playFrom(ms) {
  tlSelect(null);
  const end = Math.min(ms + 3600e3, Date.now());
  const next = tlNextRecording(ms, end);
  let label = 'on demand from ' + new Date(ms).toLocaleString();
  if (next !== null && next > ms) label = 'no recording at ' + new Date(ms).toLocaleTimeString() + '; on demand from the next recording, ' + new Date(next).toLocaleString();
  return playOnDemand(ms, end, label, true);
}

function playRange(from, to) {
  return playOnDemand(from, to, 'on demand ' + new Date(from).toLocaleString() + ' – ' + new Date(to).toLocaleTimeString(), false);
}

async function playOnDemand(from, end, label, thumbs) {
  stopPlayback();
  range = [from, end];
  const v = view;
  $('player-state').textContent = 'opening ' + label;
  try {
    const r = await api('/getHLSStreamingSessionURL', {
      StreamName: current.StreamName, PlaybackMode: 'ON_DEMAND', DiscontinuityMode: PLAYABLE_EVERYWHERE, DisplayFragmentTimestamp: 'ALWAYS',
      HLSFragmentSelector: { FragmentSelectorType: 'SERVER_TIMESTAMP', TimestampRange: { StartTimestamp: from / 1000, EndTimestamp: end / 1000 } },
    });
    if (v !== view) return;
    play(r.HLSStreamingSessionURL, label);
    if (thumbs) thumbnails(from, Math.min(from + 60e3, end));
  } catch (err) {
    if (v !== view) return;
    if (noRecording(err)) {
      $('player-state').textContent = 'no recording here: ' + new Date(from).toLocaleString() + ' – ' + new Date(end).toLocaleString();
      playerMessage('no recording here');
    } else {
      $('player-state').textContent = 'on demand: ' + err.message;
      playerMessage('on demand: ' + err.message, true);
    }
  }
}

async function thumbnails(from, to) {
  $('thumbs').textContent = '';
  const v = view;
  try {
    const r = await api('/getImages', { StreamName: current.StreamName, ImageSelectorType: 'SERVER_TIMESTAMP',
      StartTimestamp: from / 1000, EndTimestamp: to / 1000, SamplingInterval: Math.max(200, Math.floor((to - from) / 6)),
      Format: 'JPEG', WidthPixels: 320, HeightPixels: 180, MaxResults: 6 });
    if (v !== view) return;
    for (const img of r.Images || []) {
      if (!img.ImageContent) continue;
      const el = document.createElement('img');
      el.src = 'data:image/jpeg;base64,' + img.ImageContent; el.title = new Date(img.TimeStamp * 1000).toLocaleString();
      el.onclick = () => playFrom(img.TimeStamp * 1000);
      $('thumbs').appendChild(el);
    }
  } catch (err) {
    // Thumbnails are a convenience (GetImages needs ffmpeg on the box), but
    // why there are none is said.
    if (v === view) $('thumbs').textContent = 'no thumbnails: ' + err.message;
  }
}

$('live-btn').onclick = () => playLive();
$('signout').onclick = () => signOut();
$('jump-btn').onclick = () => { const v = $('jump').value; if (v) playFrom(new Date(v).getTime()); };
$('retention-btn').onclick = async () => {
  try {
    const info = (await api('/describeStream', { StreamName: current.StreamName })).StreamInfo;
    const want = parseInt($('retention').value || '0', 10), have = info.DataRetentionInHours;
    if (want === have) return;
    await api('/updateDataRetention', { StreamName: current.StreamName, CurrentVersion: info.Version,
      Operation: want > have ? 'INCREASE_DATA_RETENTION' : 'DECREASE_DATA_RETENTION', DataRetentionChangeInHours: Math.abs(want - have) });
    refresh();
  } catch (err) { $('viewer-error').textContent = err.message; }
};
$('tag-btn').onclick = async () => {
  try { await api('/tagStream', { StreamName: current.StreamName, Tags: { [$('tag-key').value]: $('tag-value').value } }); loadTags(); }
  catch (err) { $('viewer-error').textContent = err.message; }
};
const c = creds();
if (c) signIn(c); else $('login').hidden = false;
setInterval(() => { if (client) refresh(); }, 5000);
