// What the viewer's pages share: the API key kept in this browser, REST calls, the toast.

export const KEY_STORAGE = 'facestream.key';

export const apiKey = () => localStorage.getItem(KEY_STORAGE) || '';

/** A REST call with the key; throws an Error carrying the problem's `detail`, `status` and `code`. */
export async function api(method, url, body) {
  const headers = {};
  if (apiKey()) headers.authorization = `Bearer ${apiKey()}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error(data?.detail || `${res.status} ${res.statusText}`);
    err.status = res.status;
    err.code = data?.code;
    throw err;
  }
  return data;
}

/** Shows a message in #toast for 4 s. */
export function toast(text, bad = false) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.classList.toggle('bad', bad);
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 4000);
}
