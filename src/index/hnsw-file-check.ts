import fs from 'node:fs/promises';

/**
 * A structural check of a saved hnswlib index (hnswlib 0.8's saveIndex layout, as written by
 * hnswlib-node 3) that reads the file without trusting it: every count, size and neighbour id
 * that hnswlib would follow as a pointer is checked against the header and the file's size. A
 * file that passes cannot make hnswlib read or write out of bounds (which segfaults the process:
 * hnswlib's loader trusts the file), whatever the checksum setting; damage to vector bytes
 * passes and is caught by the content sample against SQLite instead.
 *
 * Layout: a 96-byte header (offsetLevel0, max_elements, cur_element_count, size_data_per_element,
 * label_offset, offsetData as 8-byte sizes; maxlevel int32; enterpoint uint32; maxM, maxM0, M as
 * sizes; mult double; ef_construction size), then cur_element_count level-0 records of
 * size_data_per_element bytes ([uint16 count, flags, maxM0 x uint32 neighbours] [vector] [uint64
 * label]), then per element a uint32 byte size of its upper-level lists followed by those lists
 * ([uint32 count] [maxM x uint32] per level).
 */

const HEADER_BYTES = 96;
const CHUNK_ELEMENTS = 4096;

/**
 * Why the file cannot be a sound hnswlib index of `dimension`-d float vectors, or undefined.
 * `initialCapacity` is the capacity indexes are created with (gallery.index.initialCapacity): a
 * sound file's capacity is at most that or twice its element count (the index doubles when full).
 */
export async function hnswFileProblem(file: string, dimension: number, initialCapacity = 1024): Promise<string | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    return `index file unreadable (${(err as Error).message})`;
  }
  try {
    const size = (await handle.stat()).size;
    if (size < HEADER_BYTES) return `index file is ${size} bytes, shorter than its header`;
    const h = Buffer.alloc(HEADER_BYTES);
    await handle.read(h, 0, HEADER_BYTES, 0);
    const u64 = (o: number) => Number(h.readBigUInt64LE(o));
    const offsetLevel0 = u64(0);
    const maxElements = u64(8);
    const count = u64(16);
    const sizeData = u64(24);
    const labelOffset = u64(32);
    const offsetData = u64(40);
    const maxLevel = h.readInt32LE(48);
    const enterPoint = h.readUInt32LE(52);
    const maxM = u64(56);
    const maxM0 = u64(64);
    const m = u64(72);
    const linksLevel0 = maxM0 * 4 + 4;
    const linksUpper = maxM * 4 + 4;
    const bad = (what: string) => `index file header is damaged (${what})`;
    if (offsetLevel0 !== 0) return bad(`level-0 offset ${offsetLevel0}`);
    if (m < 2 || m > 4096 || maxM !== m || maxM0 !== 2 * m) return bad(`M ${m}, maxM ${maxM}, maxM0 ${maxM0}`);
    if (offsetData !== linksLevel0 || labelOffset !== linksLevel0 + dimension * 4 || sizeData !== labelOffset + 8) return bad(`record layout for ${dimension}-d vectors`);
    // hnswlib allocates max_elements records when it loads a non-empty index (an empty one loads
    // with none), so an absurd capacity is damage; a small or empty index's capacity may well
    // exceed its file's size (1024 places, one 128-d template: 816 bytes).
    if (count > maxElements || (count > 0 && maxElements > Math.max(size, 2 * count, initialCapacity))) return bad(`${count} of ${maxElements} elements in ${size} bytes`);
    // An empty index has no level yet (-1).
    if (maxLevel < (count === 0 ? -1 : 0) || maxLevel > 64) return bad(`top level ${maxLevel}`);
    if (count > 0 && enterPoint >= count) return bad(`entry point ${enterPoint} of ${count}`);
    const level0End = HEADER_BYTES + count * sizeData;
    if (level0End + count * 4 > size) return `index file is truncated: ${size} bytes cannot hold ${count} elements`;

    // Level 0: each record's neighbour count and ids.
    const chunk = Buffer.alloc(Math.min(count, CHUNK_ELEMENTS) * sizeData);
    for (let first = 0; first < count; first += CHUNK_ELEMENTS) {
      const n = Math.min(CHUNK_ELEMENTS, count - first);
      await handle.read(chunk, 0, n * sizeData, HEADER_BYTES + first * sizeData);
      for (let i = 0; i < n; i++) {
        const at = i * sizeData;
        const links = chunk.readUInt16LE(at);
        if (links > maxM0) return `index element ${first + i} has ${links} level-0 neighbours (at most ${maxM0})`;
        for (let k = 0; k < links; k++) {
          const id = chunk.readUInt32LE(at + 4 + k * 4);
          if (id >= count) return `index element ${first + i} links to element ${id} of ${count}`;
        }
      }
    }

    // Upper levels: a size, then whole lists, ending exactly at the end of the file.
    let offset = level0End;
    const word = Buffer.alloc(4);
    let list = Buffer.alloc(linksUpper * 4);
    for (let e = 0; e < count; e++) {
      if (offset + 4 > size) return `index file is truncated in the upper levels (element ${e})`;
      await handle.read(word, 0, 4, offset);
      const bytes = word.readUInt32LE(0);
      offset += 4;
      if (bytes === 0) continue;
      if (bytes % linksUpper !== 0 || bytes / linksUpper > maxLevel || offset + bytes > size) return `index element ${e} has damaged upper-level links (${bytes} bytes)`;
      if (list.length < bytes) list = Buffer.alloc(bytes);
      await handle.read(list, 0, bytes, offset);
      for (let level = 0; level < bytes / linksUpper; level++) {
        const at = level * linksUpper;
        const links = list.readUInt16LE(at);
        if (links > maxM) return `index element ${e} has ${links} neighbours on level ${level + 1} (at most ${maxM})`;
        for (let k = 0; k < links; k++) if (list.readUInt32LE(at + 4 + k * 4) >= count) return `index element ${e} links to a missing element on level ${level + 1}`;
      }
      offset += bytes;
    }
    if (offset !== size) return `index file has ${size - offset} bytes after its last element`;
    return undefined;
  } finally {
    await handle.close();
  }
}
