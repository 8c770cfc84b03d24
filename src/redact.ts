/**
 * Credentials out of URLs and free text, parsed the way ffmpeg parses a URL (libavformat's
 * av_url_split): after `scheme://`, everything up to the LAST `@` of the URL is user-info, so
 * a password may hold `#`, `/`, `?`, `:` or even `@` and still be the password ffmpeg sends.
 * WHATWG URL parsing (new URL) stops the authority at the first `#`, `/` or `?` and so leaks
 * the rest of such a password; never use it to decide what is secret.
 *
 * Every place a camera URL or an ffmpeg message leaves the process goes through redactText:
 * API answers (streams' url and error), the WebSocket hello, logs (a pino hook in src/log.ts),
 * CLI stderr and error messages.
 */

/** The text that replaces a secret. */
export const REDACTED = '***';

/**
 * Query or option names whose value is a credential: password, passwd, pass, pwd, token,
 * access_token, auth, authorization, key, api_key, apikey, secret, sig, signature, credential(s),
 * session. Matched as a part of the name so `X-Amz-Signature` or `camPassword` count too.
 */
const SECRET_NAME = /pass|pwd|token|auth|key|secret|sig|cred|session/i;

/** `scheme://` then the rest of the URL up to whitespace or the next URL. */
const URL_IN_TEXT = /([A-Za-z][A-Za-z0-9+.-]*:\/\/)(\S*?)(?=\s|$|[A-Za-z][A-Za-z0-9+.-]*:\/\/)/g;

/** `name=value` pairs of a query string (`?`, `&` or `;` before the name). */
const QUERY_PAIR = /([?&;])([^=&;?#\s]*)=([^&;\s]*)/g;

export interface UrlParts {
  scheme: string;
  /** Everything between `scheme://` and the last `@` (undefined: none). */
  userinfo?: string;
  /** The rest: host, port, path, query, fragment. */
  rest: string;
}

/**
 * Splits `scheme://[userinfo@]rest` with ffmpeg's rule (user-info ends at the last `@`).
 * Returns undefined for text that is not `scheme://...` (paths, `lavfi:` graphs, devices).
 */
export function splitUrl(url: string): UrlParts | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(url);
  if (!m) return undefined;
  const [, scheme, tail] = m;
  const at = tail.lastIndexOf('@');
  return at < 0 ? { scheme, rest: tail } : { scheme, userinfo: tail.slice(0, at), rest: tail.slice(at + 1) };
}

/** The host of a URL as ffmpeg connects to it (IPv6 without brackets), lower-case; undefined when none. */
export function urlHost(url: string): string | undefined {
  const parts = splitUrl(url);
  if (!parts) return undefined;
  const authority = parts.rest.slice(0, strcspn(parts.rest, '/?#'));
  const v6 = /^\[([^\]]*)\]/.exec(authority);
  const host = v6 ? v6[1] : authority.replace(/:\d*$/, '');
  return host ? host.toLowerCase() : undefined;
}

function strcspn(s: string, chars: string): number {
  for (let i = 0; i < s.length; i++) if (chars.includes(s[i])) return i;
  return s.length;
}

function redactQuery(s: string): string {
  return s.replace(QUERY_PAIR, (all, sep: string, name: string) => (SECRET_NAME.test(name) ? `${sep}${name}=${REDACTED}` : all));
}

/** One URL with its user-info and credential-like query values replaced by `***`. */
export function redactUrl(url: string): string {
  const parts = splitUrl(url.trim());
  // One URL: all of it is the URL, even past a space (a password may hold one).
  if (parts) return `${parts.scheme}://${parts.userinfo === undefined ? '' : `${REDACTED}@`}${redactQuery(parts.rest)}`;
  return redactText(url);
}

/**
 * Free text (ffmpeg lines, error messages, log lines) with the credentials of every URL in it
 * removed, and any of `secrets` (raw and percent-decoded credentials of the source, see
 * urlSecrets) wherever they appear.
 */
export function redactText(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(URL_IN_TEXT, (_all, scheme: string, body: string) => {
    const at = body.lastIndexOf('@');
    const rest = at < 0 ? body : body.slice(at + 1);
    return `${scheme}${at < 0 ? '' : `${REDACTED}@`}${redactQuery(rest)}`;
  });
  for (const s of secrets) if (s) out = out.split(s).join(REDACTED);
  return out;
}

/**
 * The credentials of a URL: user name, password and credential-like query values, each raw and
 * percent-decoded, longest first. Short ones (under 3 characters) are left out: removing them
 * everywhere would garble every message; they are still removed where a URL carries them.
 */
export function urlSecrets(url: string): string[] {
  const parts = splitUrl(url);
  if (!parts) return [];
  const out = new Set<string>();
  const add = (s: string | undefined) => {
    if (!s) return;
    out.add(s);
    try {
      out.add(decodeURIComponent(s));
    } catch {
      /* not valid percent-encoding: the raw form is what ffmpeg may print */
    }
  };
  if (parts.userinfo !== undefined) {
    const colon = parts.userinfo.indexOf(':');
    add(colon < 0 ? parts.userinfo : parts.userinfo.slice(0, colon));
    if (colon >= 0) add(parts.userinfo.slice(colon + 1));
    add(parts.userinfo);
  }
  for (const m of parts.rest.matchAll(QUERY_PAIR)) if (SECRET_NAME.test(m[2])) add(m[3]);
  return [...out].filter((s) => s.length >= 3).sort((a, b) => b.length - a.length);
}

/**
 * A deep copy of a log record's fields with every string passed through redactText (objects
 * and arrays walked to a small depth; Errors become { type, message, stack } redacted).
 */
export function redactFields(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    const e = value as Error & { code?: unknown };
    return { type: e.name, message: redactText(e.message), ...(e.code !== undefined ? { code: e.code } : {}), ...(e.stack ? { stack: redactText(e.stack) } : {}) };
  }
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) return value.map((v) => redactFields(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactFields(v, depth + 1);
  return out;
}
