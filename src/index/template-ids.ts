import crypto from 'node:crypto';
import type { GalleryStore } from './store.js';

const META_KEY = 'template_id_key';
const ROW_BYTES = 6;
const MAC_BYTES = 10;

/**
 * Template ids as the API and the CLI show them: the row number with a keyed MAC
 * (HMAC-SHA256 with a random per-gallery key, truncated to 80 bits), base64url, 22 characters.
 * Row numbers are sequential, so a client that may read one template could otherwise walk
 * through all of them; an id that is not one the gallery handed out names no template.
 * The key lives in the gallery's meta table: ids stay the same across restarts, reindex and
 * compaction (exports carry no template ids).
 */
export class TemplateIds {
  private constructor(private readonly key: Buffer) {}

  /**
   * The gallery's ids; a writable gallery without a key (new, or made by an older version) gets
   * one now. A read-only one without a key uses a key for this process only (its ids are then
   * not stable: open the gallery writable once, e.g. by starting the server, to fix that).
   */
  static forStore(store: GalleryStore, readOnly: boolean): TemplateIds {
    const stored = store.getMeta(META_KEY);
    if (stored) return new TemplateIds(Buffer.from(stored, 'hex'));
    const key = crypto.randomBytes(32);
    if (!readOnly) store.setMeta(META_KEY, key.toString('hex'));
    return new TemplateIds(key);
  }

  /** The public id of template row `row` (a positive integer below 2^48). */
  encode(row: number): string {
    const buf = Buffer.alloc(ROW_BYTES + MAC_BYTES);
    buf.writeUIntBE(row, 0, ROW_BYTES);
    this.mac(buf.subarray(0, ROW_BYTES)).copy(buf, ROW_BYTES);
    return buf.toString('base64url');
  }

  /** The row of a public id, or 0 when `id` is not one this gallery made (wrong length, characters or MAC). */
  decode(id: string): number {
    if (id.length !== 22 || !/^[A-Za-z0-9_-]+$/.test(id)) return 0;
    const buf = Buffer.from(id, 'base64url');
    if (buf.length !== ROW_BYTES + MAC_BYTES) return 0;
    const expected = this.mac(buf.subarray(0, ROW_BYTES));
    if (!crypto.timingSafeEqual(expected, buf.subarray(ROW_BYTES))) return 0;
    return buf.readUIntBE(0, ROW_BYTES);
  }

  private mac(row: Buffer): Buffer {
    return crypto.createHmac('sha256', this.key).update(row).digest().subarray(0, MAC_BYTES);
  }
}
