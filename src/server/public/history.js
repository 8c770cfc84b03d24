// facestream history and face library pages: plain ES module, no build step. Views by hash:
// #appearances (default), #identity=<id>, #library. Uses the REST API of src/server/routes/history.ts.

import { api, apiKey, toast } from './common.js';

const $ = (id) => document.getElementById(id);

/** What the page shows; exposed for tests and debugging. */
const state = { view: null, appearances: [], next: null, clusters: [], selectedClusters: new Set(), current: null };
window.facestreamHistory = state;

/** The key header for requests api() does not make (pictures, uploads). */
function headers() {
  return apiKey() ? { authorization: `Bearer ${apiKey()}` } : {};
}

/** Pictures need the key too: fetched as blobs, shown through object URLs (revoked when replaced). */
async function loadImage(img, url) {
  const res = await fetch(url, { headers: headers() });
  if (!res.ok) return;
  if (img.dataset.blob) URL.revokeObjectURL(img.dataset.blob);
  img.dataset.blob = URL.createObjectURL(await res.blob());
  img.src = img.dataset.blob;
}

const when = (ms) => new Date(ms).toLocaleString();
const duration = (a) => `${Math.max(1, Math.round((a.endedAt - a.startedAt) / 1000))} s`;

function card(a, { selectable = false } = {}) {
  const el = document.createElement('div');
  el.className = `card ${a.known ? 'known' : 'unknown'}`;
  el.dataset.appearance = a.id;
  const img = document.createElement('img');
  img.alt = a.identity?.name ?? 'unknown';
  loadImage(img, a.cropUrl);
  const who = document.createElement('div');
  who.className = 'who';
  who.textContent = a.identity?.name ?? 'unknown';
  const info = document.createElement('div');
  info.className = 'muted';
  info.textContent = `${a.streamId} · ${when(a.startedAt)} · ${duration(a)}${a.similarity !== undefined ? ` · ${(a.similarity * 100).toFixed(0)}%` : ''}`;
  el.append(img, who, info);
  if (selectable) {
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.onclick = (ev) => ev.stopPropagation();
    el.append(box);
  } else {
    el.onclick = () => showAppearance(a);
  }
  return el;
}

// ---------------------------------------------------------------- appearances

function filterQuery() {
  const q = new URLSearchParams();
  const put = (k, v) => v && q.set(k, v);
  put('identityId', $('f-identity').value);
  put('known', $('f-known').value);
  put('streamId', $('f-stream').value);
  if ($('f-from').value) q.set('from', new Date($('f-from').value).toISOString());
  if ($('f-to').value) q.set('to', new Date($('f-to').value).toISOString());
  return q;
}

async function loadAppearances(more = false) {
  const q = filterQuery();
  q.set('limit', '60');
  if (more && state.next) q.set('before', String(state.next));
  const page = await api('GET', `/api/v1/appearances?${q}`);
  if (!more) {
    state.appearances = [];
    $('appearance-grid').replaceChildren();
  }
  state.appearances.push(...page.appearances);
  state.next = page.next;
  for (const a of page.appearances) $('appearance-grid').append(card(a));
  $('more').hidden = !page.next;
  $('empty').hidden = state.appearances.length > 0;
  $('search-info').hidden = true;
}

async function fillFilters() {
  const [{ identities }, { streams }] = await Promise.all([api('GET', '/api/v1/identities?limit=1000'), api('GET', '/api/v1/streams')]);
  for (const [select, items] of [
    [$('f-identity'), identities],
    [$('f-stream'), streams],
  ]) {
    for (const it of items) {
      const o = document.createElement('option');
      o.value = it.id;
      o.textContent = it.name;
      select.append(o);
    }
  }
}

async function searchByFace(file) {
  const form = new FormData();
  form.append('picture', file);
  const res = await fetch('/api/v1/appearances/search?k=60', { method: 'POST', headers: headers(), body: form });
  const data = await res.json();
  if (!res.ok) return toast(data.detail ?? 'search failed', true);
  state.appearances = data.appearances;
  state.next = null;
  $('appearance-grid').replaceChildren(...data.appearances.map((a) => card(a)));
  $('more').hidden = true;
  $('empty').hidden = data.appearances.length > 0;
  $('search-info').hidden = false;
  $('search-info').textContent = `${data.appearances.length} appearances match the face in ${file.name} (similarity ≥ ${data.minSimilarity.toFixed(2)}), best first.`;
}

function showAppearance(a) {
  state.current = a;
  $('ad-title').textContent = `${a.identity?.name ?? 'Unknown person'} on ${a.streamId}`;
  $('ad-info').textContent = `${when(a.startedAt)} – ${when(a.endedAt)} · ${a.frames} frames${a.bestSimilarity !== null ? ` · best similarity ${(a.bestSimilarity * 100).toFixed(0)}%` : ''}${a.clusterId ? ` · group #${a.clusterId}` : ''}`;
  $('ad-snapshot').removeAttribute('src');
  $('ad-snapshot').hidden = !a.snapshotUrl;
  if (a.snapshotUrl) loadImage($('ad-snapshot'), a.snapshotUrl);
  $('ad-stream').href = `/#stream=${encodeURIComponent(a.streamId)}`;
  $('ad-identity').hidden = !a.identity;
  if (a.identity) $('ad-identity').href = `#identity=${encodeURIComponent(a.identity.id)}`;
  $('appearance-dialog').showModal();
}

async function deleteCurrent() {
  const a = state.current;
  if (!a || !confirm(`Delete this appearance of ${a.identity?.name ?? 'an unknown person'}?`)) return;
  try {
    await api('DELETE', `/api/v1/appearances/${a.id}`);
    document.querySelectorAll(`[data-appearance="${a.id}"]`).forEach((el) => el.remove());
    state.appearances = state.appearances.filter((x) => x.id !== a.id);
    $('appearance-dialog').close();
    toast('Deleted');
  } catch (err) {
    toast(err.message, true);
  }
}

// ---------------------------------------------------------------- identity

async function showIdentity(id) {
  const [identity, { templates }, { appearances }] = await Promise.all([
    api('GET', `/api/v1/identities/${encodeURIComponent(id)}`),
    api('GET', `/api/v1/identities/${encodeURIComponent(id)}/templates`),
    api('GET', `/api/v1/identities/${encodeURIComponent(id)}/appearances?limit=60`),
  ]);
  $('identity-name').textContent = identity.name;
  $('identity-info').textContent = `${identity.templates} templates · ${appearances.length ? `last seen ${when(appearances[0].endedAt)} on ${appearances[0].streamId}` : 'not seen yet'}`;
  $('identity-templates').replaceChildren(
    ...templates.map((t) => {
      const el = document.createElement('div');
      el.className = 'card template';
      const img = document.createElement('img');
      img.alt = t.source;
      loadImage(img, `/api/v1/templates/${t.id}/crop`);
      const info = document.createElement('div');
      info.className = 'muted';
      info.textContent = t.source;
      el.append(img, info);
      return el;
    }),
  );
  $('identity-appearances').replaceChildren(...appearances.map((a) => card(a)));
}

// ---------------------------------------------------------------- face library

async function loadClusters() {
  const { clusters } = await api('GET', '/api/v1/clusters?limit=200');
  state.clusters = clusters;
  state.selectedClusters.clear();
  $('merge').disabled = true;
  $('cluster-list').replaceChildren(...clusters.map(clusterRow));
}

function clusterRow(c) {
  const el = document.createElement('div');
  el.className = 'cluster';
  el.dataset.cluster = c.id;
  const pick = document.createElement('input');
  pick.type = 'checkbox';
  pick.title = 'select for merging';
  pick.onchange = () => {
    if (pick.checked) state.selectedClusters.add(c.id);
    else state.selectedClusters.delete(c.id);
    $('merge').disabled = state.selectedClusters.size < 2;
  };
  const mid = document.createElement('div');
  const samples = document.createElement('div');
  samples.className = 'samples';
  for (const s of c.samples) {
    const img = document.createElement('img');
    img.alt = `appearance ${s.id}`;
    img.onclick = () => openCluster(c.id);
    loadImage(img, s.cropUrl);
    samples.append(img);
  }
  const info = document.createElement('div');
  info.className = 'muted';
  info.textContent = `Group #${c.id} · ${c.size} appearance${c.size === 1 ? '' : 's'} · ${c.streams.join(', ')} · first ${when(c.firstSeen)} · last ${when(c.lastSeen)}`;
  mid.append(samples, info);
  const form = document.createElement('form');
  const name = document.createElement('input');
  name.placeholder = 'Name this person';
  name.required = true;
  name.className = 'cluster-name';
  const save = document.createElement('button');
  save.textContent = 'Name';
  save.className = 'cluster-save';
  const discard = document.createElement('button');
  discard.type = 'button';
  discard.textContent = 'Discard';
  discard.className = 'cluster-discard';
  form.append(name, save, discard);
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    save.disabled = true;
    try {
      const r = await api('POST', `/api/v1/clusters/${c.id}/name`, { name: name.value.trim() });
      toast(`Named ${r.appearances} appearances ${r.identity.name}: ${r.added.length} faces enrolled${r.rejected.length ? `, ${r.rejected.length} refused` : ''}`);
      await loadClusters();
    } catch (err) {
      toast(err.message, true);
    } finally {
      save.disabled = false;
    }
  };
  discard.onclick = async () => {
    if (!confirm(`Delete group #${c.id} and its ${c.size} appearances?`)) return;
    await api('DELETE', `/api/v1/clusters/${c.id}`).catch((err) => toast(err.message, true));
    await loadClusters();
  };
  el.append(pick, mid, form);
  return el;
}

async function mergeSelected() {
  const [into, ...rest] = [...state.selectedClusters];
  try {
    const c = await api('POST', `/api/v1/clusters/${into}/merge`, { clusters: rest });
    toast(`Merged into group #${c.id} (${c.size} appearances)`);
  } catch (err) {
    toast(err.message, true);
  }
  await loadClusters();
}

let openClusterId = null;

async function openCluster(id) {
  openClusterId = id;
  const c = await api('GET', `/api/v1/clusters/${id}`);
  $('cd-title').textContent = `Group #${id}: ${c.size} appearances`;
  $('cd-members').replaceChildren(...c.appearances.map((a) => card(a, { selectable: true })));
  $('cd-split').disabled = false;
  $('cluster-dialog').showModal();
}

async function splitSelected() {
  const ids = [...$('cd-members').querySelectorAll('.card')].filter((el) => el.querySelector('input').checked).map((el) => Number(el.dataset.appearance));
  if (!ids.length) return toast('Select the appearances of the other person first', true);
  try {
    const r = await api('POST', `/api/v1/clusters/${openClusterId}/split`, { appearances: ids });
    toast(`Moved ${r.to.size} appearances to group #${r.to.id}`);
    $('cluster-dialog').close();
  } catch (err) {
    toast(err.message, true);
  }
  await loadClusters();
}

// ---------------------------------------------------------------- views

async function route() {
  const hash = location.hash.slice(1);
  const identity = /^identity=(.+)$/.exec(hash);
  const view = identity ? 'identity' : hash === 'library' ? 'library' : 'appearances';
  state.view = view;
  for (const page of document.querySelectorAll('.page')) page.hidden = page.id !== `view-${view}`;
  for (const a of document.querySelectorAll('nav a[data-view]')) a.toggleAttribute('aria-current', a.dataset.view === view);
  try {
    if (view === 'identity') await showIdentity(decodeURIComponent(identity[1]));
    else if (view === 'library') await loadClusters();
    else await loadAppearances();
    const h = await api('GET', '/api/v1/history');
    const mb = (b) => `${(b / 1024 / 1024).toFixed(1)} MB`;
    $('history-usage').textContent = `${h.usage.known.rows} known (${mb(h.usage.known.bytes)}) · ${h.usage.unknown.rows} unknown (${mb(h.usage.unknown.bytes)}) · ${h.clusters} groups`;
  } catch (err) {
    toast(err.status === 401 ? 'An API key is needed: open the live page and set it' : err.message, true);
  }
  document.body.dataset.view = view;
  document.body.dataset.ready = 'true';
}

$('filters').addEventListener('submit', (ev) => {
  ev.preventDefault();
  loadAppearances().catch((err) => toast(err.message, true));
});
$('more').addEventListener('click', () => loadAppearances(true));
$('face-file').addEventListener('change', (ev) => ev.target.files[0] && searchByFace(ev.target.files[0]));
$('ad-delete').addEventListener('click', deleteCurrent);
$('merge').addEventListener('click', mergeSelected);
$('cd-split').addEventListener('click', splitSelected);
window.addEventListener('hashchange', () => {
  document.body.dataset.ready = 'false';
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  route();
});
fillFilters().catch(() => {});
route();
