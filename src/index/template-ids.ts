import crypto from 'node:crypto';
import type { GalleryStore } from './store.js';

/** The meta key under which a gallery keeps its template id key. */
export const TEMPLATE_ID_KEY_META = 'template_id_key';
const META_KEY = TEMPLATE_ID_KEY_META;
const ROW_BYTES = 6;
const BLOCK_BYTES = 16;

/**
 * Template ids as the API and the CLI show them: the row number encrypted under a random
 * per-gallery key (one AES-128 block: 6 bytes of row, 10 bytes of zeros that must come back on
 * decryption), base64url, 22 characters. Row numbers are sequential, so a client that knows one
 * template could otherwise walk through all of them (and read how many there are); a made-up or
 * altered id names no template (a forgery has a 2^-80 chance). The key lives in the gallery's
 * meta table: ids stay the same across restarts, reindex and compaction (exports carry none).
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
    if (stored) return new TemplateIds(Buffer.from(stored, 'hex').subarray(0, 16));
    const key = crypto.randomBytes(16);
    if (!readOnly) store.setMeta(META_KEY, key.toString('hex'));
    return new TemplateIds(key);
  }

  /** The ids made with a known key (32 hex digits): a cluster's replicas all use the key PostgreSQL holds. */
  static fromKey(hex: string): TemplateIds {
    const key = Buffer.from(hex, 'hex');
    if (key.length !== 16) throw new Error('a template id key is 16 bytes (32 hex digits)');
    return new TemplateIds(key);
  }

  /** A new random key, as 32 hex digits. */
  static newKey(): string {
    return crypto.randomBytes(16).toString('hex');
  }

  /** The public id of template row `row` (a positive integer below 2^48). */
  encode(row: number): string {
    const block = Buffer.alloc(BLOCK_BYTES);
    block.writeUIntBE(row, 0, ROW_BYTES);
    const cipher = crypto.createCipheriv('aes-128-ecb', this.key, null).setAutoPadding(false);
    return Buffer.concat([cipher.update(block), cipher.final()]).toString('base64url');
  }

  /** The row of a public id, or 0 when `id` is not one this gallery made (wrong length or characters, or not decrypting to a row). */
  decode(id: string): number {
    if (id.length !== 22 || !/^[A-Za-z0-9_-]+$/.test(id)) return 0;
    const data = Buffer.from(id, 'base64url');
    if (data.length !== BLOCK_BYTES) return 0;
    const decipher = crypto.createDecipheriv('aes-128-ecb', this.key, null).setAutoPadding(false);
    const block = Buffer.concat([decipher.update(data), decipher.final()]);
    if (!block.subarray(ROW_BYTES).equals(Buffer.alloc(BLOCK_BYTES - ROW_BYTES))) return 0;
    return block.readUIntBE(0, ROW_BYTES);
  }
}
