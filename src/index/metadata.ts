import { FacestreamError } from '../errors.js';

/** Deepest nesting of an identity's metadata: records of records, not data structures. */
export const MAX_METADATA_DEPTH = 32;
/** Largest metadata as stored (JSON text). */
export const MAX_METADATA_BYTES = 64 * 1024;

/**
 * Checks an identity's metadata before it is stored: JSON values only, at most
 * MAX_METADATA_DEPTH levels deep and MAX_METADATA_BYTES as JSON. The walk is iterative, so a
 * body nested 100 000 levels deep is refused with a 400 instead of overflowing the stack of
 * JSON.stringify (a 500). Throws FacestreamError BAD_REQUEST.
 */
export function checkMetadata(value: unknown): void {
  if (value === undefined) return;
  const stack: { v: unknown; depth: number }[] = [{ v: value, depth: 0 }];
  let nodes = 0;
  while (stack.length) {
    const { v, depth } = stack.pop()!;
    if (++nodes > MAX_METADATA_BYTES) throw refuse(`metadata has more than ${MAX_METADATA_BYTES} values`);
    if (v === null || typeof v === 'string' || typeof v === 'boolean') continue;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw refuse('metadata numbers must be finite');
      continue;
    }
    if (typeof v !== 'object') throw refuse(`metadata may only hold JSON values (found a ${typeof v})`);
    if (depth >= MAX_METADATA_DEPTH) throw refuse(`metadata is nested deeper than ${MAX_METADATA_DEPTH} levels`);
    for (const child of Array.isArray(v) ? v : Object.values(v as object)) stack.push({ v: child, depth: depth + 1 });
  }
  const bytes = Buffer.byteLength(JSON.stringify(value));
  if (bytes > MAX_METADATA_BYTES) throw refuse(`metadata is ${bytes} bytes as JSON, over ${MAX_METADATA_BYTES}`);
}

function refuse(message: string): FacestreamError {
  return new FacestreamError('BAD_REQUEST', message, { field: 'metadata' });
}
