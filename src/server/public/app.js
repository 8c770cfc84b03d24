// facestream live viewer: plain ES module, no build step. Talks to the server's REST API and the
// WebSocket protocol described in src/server/live/protocol.ts.

import { api, apiKey, KEY_STORAGE, toast } from './common.js';

const $ = (id) => document.getElementById(id);

/** Everything the page knows; also exposed as window.facestream for debugging and tests. */
const state = {
  connected: false,
  role: null,
  streams: new Map(),
  stats: new Map(),
  selected: null,
  grid: false,
  gallery: null,
  /** Per stream: what the canvas shows now (the frame's seq and the faces drawn on it). */
  overlays: {},
  framesDrawn: 0,
  /** Server clock minus ours (ms), for capture-to-screen latency. */
  clockOffset: 0,
  log: [],
};
window.facestream = state;

const tiles = new Map();

// ---------------------------------------------------------------- key and REST

function takeKeyFromHash() {
  // #stream=ID (the history page's "open the stream") selects that stream.
  const s = /(?:^#|&)stream=([^&]+)/.exec(location.hash);
  if (s) state.selected = decodeURIComponent(s[1]);
  const m = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (!m) return;
  localStorage.setItem(KEY_STORAGE, decodeURIComponent(m[1]));
  // The key leaves the address bar (and the history) at once.
  history.replaceState(null, '', location.pathname + location.search);
}

function askForKey() {
  $('key-input').value = '';
  if (!$('key-dialog').open) $('key-dialog').showModal();
}

// ---------------------------------------------------------------- WebSocket

let ws;
let retries = 0;

function setConnection(s) {
  state.connected = s === 'connected';
  const el = $('connection');
  el.dataset.state = s;
  el.textContent = s;
}

async function start() {
  try {
    const { streams } = await api('GET', '/api/v1/streams');
    for (const s of streams) state.streams.set(s.id, s);
  } catch (err) {
    if (err.status === 401) {
      setConnection('disconnected');
      askForKey();
      return;
    }
  }
  connect();
}

function connect() {
  if (ws && ws.readyState <= 1) return;
  const protocols = ['facestream.v1'];
  if (apiKey()) protocols.push(`facestream.key.${apiKey()}`);
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  setConnection('connecting');
  ws = new WebSocket(`${scheme}//${location.host}/api/v1/live`, protocols);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    retries = 0;
    setConnection('connected');
  };
  ws.onmessage = (ev) => (typeof ev.data === 'string' ? onText(JSON.parse(ev.data)) : onBinary(ev.data));
  ws.onclose = () => {
    setConnection('disconnected');
    // Reconnect with backoff; the server's hello brings the whole state back.
    const delay = Math.min(10_000, 500 * 2 ** retries++);
    setTimeout(start, delay);
  };
}

function send(msg) {
  if (ws?.readyState === 1) ws.send(JSON.stringify(msg));
}

/** Pictures only for what is on screen: one stream large, or every stream smaller in the grid. */
function subscribe() {
  const visible = state.grid ? [...state.streams.keys()] : state.selected ? [state.selected] : [];
  send({ type: 'subscribe', streams: visible, jpeg: visible.length ? (state.grid ? { fps: 8, width: 480 } : { fps: 12, width: 960 }) : false });
}

function onText(msg) {
  switch (msg.type) {
    case 'hello':
    case 'state':
      state.clockOffset = msg.serverTime - Date.now();
      if (msg.type === 'hello') state.role = msg.role;
      state.streams = new Map(msg.streams.map((s) => [s.id, s]));
      state.gallery = msg.gallery;
      if (msg.type === 'hello') {
        state.log = msg.log.slice();
        if (!state.selected || !state.streams.has(state.selected)) state.selected = state.streams.keys().next().value ?? null;
        renderAll();
        subscribe();
      } else {
        renderStreams();
      }
      renderGallery();
      renderLog();
      break;
    case 'frame':
      noteFrame(msg);
      break;
    case 'stream':
      if (msg.event === 'removed') state.streams.delete(msg.stream.id);
      else state.streams.set(msg.stream.id, msg.stream);
      if (msg.event === 'removed' && state.selected === msg.stream.id) state.selected = state.streams.keys().next().value ?? null;
      if (!state.selected && msg.event === 'added') state.selected = msg.stream.id;
      renderAll();
      if (msg.event !== 'state') subscribe();
      break;
    case 'stats':
      state.clockOffset = msg.serverTime - Date.now();
      for (const s of msg.streams) state.stats.set(s.id, s);
      renderStreams();
      break;
    case 'appearance':
      state.log.push(msg);
      if (state.log.length > 200) state.log.shift();
      renderLog();
      break;
    case 'gallery':
      state.gallery = msg.counts;
      renderGallery();
      break;
    case 'error':
      console.warn('server:', msg.detail);
      break;
  }
}

function noteFrame(header) {
  const tile = tiles.get(header.streamId);
  if (!tile) return;
  tile.latencyMs = Date.now() + state.clockOffset - header.capturedAt;
  tile.faceCount = header.faces.length;
}

function onBinary(buffer) {
  const n = new DataView(buffer).getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  noteFrame(header);
  const tile = tiles.get(header.streamId);
  if (!tile) return;
  createImageBitmap(new Blob([new Uint8Array(buffer, 4 + n)], { type: 'image/jpeg' })).then((bitmap) => {
    // Decoding is asynchronous: never let an older picture replace a newer one.
    if (header.seq <= tile.seq) return bitmap.close();
    draw(tile, header, bitmap);
  });
}

// ---------------------------------------------------------------- drawing

function draw(tile, header, bitmap) {
  const { canvas } = tile;
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  const g = canvas.getContext('2d');
  g.drawImage(bitmap, 0, 0);
  tile.bitmap?.close();
  tile.bitmap = bitmap;
  tile.seq = header.seq;
  tile.header = header;
  tile.placeholder.hidden = true;
  const scale = bitmap.width / header.width;
  g.lineWidth = 2 * Math.max(1, Math.round(bitmap.width / 640));
  g.font = `${Math.max(12, Math.round(bitmap.width / 50))}px system-ui, sans-serif`;
  g.textBaseline = 'bottom';
  const drawn = [];
  for (const f of header.faces) {
    // Whole pixels keep the stroke crisp (an even line width on integer coordinates covers whole rows).
    const [x1, y1, x2, y2] = f.box.map((v) => Math.round(v * scale));
    const known = Boolean(f.identity);
    const color = known ? '#3fb27f' : '#f2c94c';
    const parts = [known ? `${f.identity.name} ${(f.identity.similarity * 100).toFixed(0)}%` : 'unknown'];
    if (f.age !== null) parts.push(`${f.age}${f.gender ? (f.gender === 'male' ? ' M' : ' F') : ''}`);
    parts.push(`#${f.trackId}`);
    const label = parts.join(' · ');
    const w = g.measureText(label).width + 8;
    const h = parseInt(g.font, 10) + 6;
    const ly = y1 > h ? y1 : y2 + h;
    g.fillStyle = 'rgba(0,0,0,0.65)';
    g.fillRect(x1 - g.lineWidth / 2, ly - h, w, h);
    g.fillStyle = color;
    g.fillText(label, x1 + 4, ly - 3);
    // The box goes over its label's background, so the whole outline shows.
    g.strokeStyle = color;
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    drawn.push({ trackId: f.trackId, score: f.score, name: f.identity?.name ?? null, identityId: f.identity?.id ?? null, similarity: f.identity?.similarity ?? null, age: f.age, gender: f.gender, box: f.box, label });
  }
  state.overlays[header.streamId] = { seq: header.seq, width: header.width, height: header.height, imageWidth: bitmap.width, imageHeight: bitmap.height, faces: drawn, drawnAt: Date.now() };
  state.framesDrawn++;
  tile.drawTimes.push(performance.now());
  while (tile.drawTimes.length > 30) tile.drawTimes.shift();
  renderReadout(tile);
}

function renderReadout(tile) {
  const t = tile.drawTimes;
  const shown = t.length > 1 ? ((t.length - 1) * 1000) / (t[t.length - 1] - t[0]) : 0;
  const s = state.stats.get(tile.id) ?? state.streams.get(tile.id);
  const fps = s?.fps ?? 0;
  tile.readout.textContent = `${fps.toFixed(1)} fps processed · ${shown.toFixed(1)} fps shown · ${tile.latencyMs === undefined ? '–' : Math.round(tile.latencyMs)} ms capture→screen · ${tile.faceCount ?? 0} faces`;
}

// ---------------------------------------------------------------- rendering

function renderAll() {
  renderStreams();
  renderTiles();
}

function renderStreams() {
  const list = $('stream-list');
  list.replaceChildren();
  $('no-streams').hidden = state.streams.size > 0;
  for (const s of state.streams.values()) {
    const live = state.stats.get(s.id);
    const li = document.createElement('li');
    li.dataset.stream = s.id;
    li.setAttribute('aria-selected', String(!state.grid && s.id === state.selected));
    const name = document.createElement('span');
    name.textContent = s.name;
    const pill = document.createElement('span');
    pill.className = 'pill';
    pill.dataset.state = live?.state ?? s.state;
    pill.textContent = live?.state ?? s.state;
    const stats = document.createElement('span');
    stats.className = 'stats';
    const fps = live?.fps ?? s.fps;
    const lat = live?.lastLatencyMs ?? s.stats?.lastLatencyMs;
    stats.textContent = `${fps.toFixed(1)} fps · ${lat == null ? '–' : `${Math.round(lat)} ms`}${s.error ? ` · ${s.error.code}` : ''}`;
    li.append(name, pill, stats);
    li.onclick = () => {
      state.grid = false;
      $('grid-toggle').checked = false;
      state.selected = s.id;
      renderAll();
      subscribe();
    };
    list.append(li);
  }
  for (const tile of tiles.values()) {
    const s = state.streams.get(tile.id);
    const st = state.stats.get(tile.id)?.state ?? s?.state ?? 'stopped';
    tile.state.dataset.state = st;
    tile.state.textContent = st;
    renderReadout(tile);
  }
}

function renderTiles() {
  const container = $('tiles');
  container.classList.toggle('grid', state.grid);
  const wanted = state.grid ? [...state.streams.keys()] : state.selected ? [state.selected] : [];
  for (const [id, tile] of tiles) {
    if (!wanted.includes(id)) {
      tile.el.remove();
      tile.bitmap?.close();
      tiles.delete(id);
      delete state.overlays[id];
    }
  }
  for (const id of wanted) {
    if (tiles.has(id)) continue;
    const el = $('tile-template').content.firstElementChild.cloneNode(true);
    el.dataset.stream = id;
    const tile = { id, el, canvas: el.querySelector('canvas'), placeholder: el.querySelector('.placeholder'), readout: el.querySelector('.readout'), state: el.querySelector('.state'), seq: -1, drawTimes: [] };
    el.querySelector('.name').textContent = state.streams.get(id)?.name ?? id;
    tile.canvas.addEventListener('click', (ev) => onCanvasClick(tile, ev));
    tiles.set(id, tile);
    container.append(el);
  }
  renderStreams();
}

function renderGallery() {
  const g = state.gallery;
  $('gallery-counts').textContent = g ? `${g.identities} identities · ${g.templates} templates` : '';
}

function renderLog() {
  const ol = $('appearance-log');
  ol.replaceChildren();
  for (const e of state.log.slice(-50).reverse()) {
    const li = document.createElement('li');
    const kind = e.event ?? e.type;
    const at = new Date(kind === 'left' ? e.lastSeen : e.firstSeen).toLocaleTimeString();
    li.className = kind;
    li.textContent = `${at} ${e.identity.name} ${kind === 'left' ? 'left' : 'appeared on'} ${state.streams.get(e.streamId)?.name ?? e.streamId}`;
    ol.append(li);
  }
}

// ---------------------------------------------------------------- enrolling a face from the picture

let pending = null;

function onCanvasClick(tile, ev) {
  const header = tile.header;
  if (!header) return;
  const rect = tile.canvas.getBoundingClientRect();
  const x = ((ev.clientX - rect.left) / rect.width) * header.width;
  const y = ((ev.clientY - rect.top) / rect.height) * header.height;
  const face = header.faces.find((f) => x >= f.box[0] && x <= f.box[2] && y >= f.box[1] && y <= f.box[3]);
  if (!face) return;
  pending = { streamId: tile.id, trackId: face.trackId };
  const scale = tile.bitmap.width / header.width;
  const [x1, y1, x2, y2] = face.box.map((v) => v * scale);
  const preview = $('enroll-preview').getContext('2d');
  preview.clearRect(0, 0, 112, 112);
  preview.drawImage(tile.bitmap, x1, y1, x2 - x1, y2 - y1, 0, 0, 112, 112);
  $('enroll-info').textContent = `Track #${face.trackId} on ${state.streams.get(tile.id)?.name ?? tile.id}${face.identity ? ` (now: ${face.identity.name})` : ' (unknown)'}`;
  $('enroll-name').value = face.identity?.name ?? '';
  $('enroll-error').hidden = true;
  $('enroll-dialog').showModal();
  $('enroll-name').focus();
}

async function submitEnroll(ev) {
  ev.preventDefault();
  if (!pending) return;
  const name = $('enroll-name').value.trim();
  if (!name) return;
  $('enroll-submit').disabled = true;
  try {
    const r = await api('POST', `/api/v1/streams/${encodeURIComponent(pending.streamId)}/enroll`, { trackId: pending.trackId, name });
    $('enroll-dialog').close();
    toast(`Enrolled track #${pending.trackId} as ${r.identity.name} (${r.identity.templates} templates)`);
    pending = null;
  } catch (err) {
    const msg = err.status === 401 || err.status === 403 ? `${err.message} (enrolling needs a write key)` : err.message;
    $('enroll-error').textContent = msg;
    $('enroll-error').hidden = false;
  } finally {
    $('enroll-submit').disabled = false;
  }
}

// ---------------------------------------------------------------- wiring

takeKeyFromHash();
$('grid-toggle').addEventListener('change', (ev) => {
  state.grid = ev.target.checked;
  renderAll();
  subscribe();
});
$('key-button').addEventListener('click', askForKey);
$('key-cancel').addEventListener('click', () => $('key-dialog').close());
$('key-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const key = $('key-input').value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  $('key-dialog').close();
  ws?.close();
  start();
});
$('enroll-form').addEventListener('submit', submitEnroll);
$('enroll-cancel').addEventListener('click', () => $('enroll-dialog').close());
setInterval(() => tiles.forEach(renderReadout), 1000);
start();
