import { describe, expect, it } from 'vitest';
import { offerCandidate, releaseCandidates, type Candidate } from '../src/history/best-face.js';
import { FrameBufferPool, frameReferences, whileHeld } from '../src/ingest/frame-buffers.js';
import type { Frame } from '../src/ingest/frame.js';
import { FrameJpegEncoder } from '../src/server/live/jpeg.js';

/** A frame whose memory references are counted, as a source's sole receiver gets it. */
function countedFrame(width = 64, height = 48) {
  const pool = new FrameBufferPool();
  const data = pool.take(width * height * 3);
  data.fill(128);
  const refs = frameReferences(pool, data);
  const frame: Frame = { streamId: 's', seq: 0, pts: 0, capturedAt: Date.now(), width, height, data, ...refs };
  /** True once every reference was released (the pool has the memory back). */
  const returned = () => pool.take(data.length) === data;
  return { frame, returned };
}

describe('frame memory references (src/ingest/frame-buffers.ts)', () => {
  it('gives the memory back once the receiver and every holder released it, each release counting once', () => {
    let c = countedFrame();
    const a = c.frame.hold!();
    const b = c.frame.hold!();
    c.frame.release!();
    a();
    a();
    expect(c.returned()).toBe(false);
    c = countedFrame();
    const h = c.frame.hold!();
    c.frame.release!();
    c.frame.release!();
    h();
    expect(c.returned()).toBe(true);
    void b;
  });

  it('refuses a hold on memory already given back (it may show a later frame)', () => {
    const { frame } = countedFrame();
    frame.release!();
    expect(() => frame.hold!()).toThrow(/held after its last release/);
  });
});

describe('readers that keep a frame past its event hold it', () => {
  it('whileHeld holds the frame from the call until the read settles, a failed read included', async () => {
    const { frame, returned } = countedFrame();
    let finish!: () => void;
    const reading = whileHeld(frame, () => new Promise<void>((r) => (finish = r)));
    frame.release!();
    expect(returned()).toBe(false);
    finish();
    await reading;
    expect(returned()).toBe(true);
    const failing = countedFrame();
    const failed = whileHeld(failing.frame, async () => {
      throw new Error('sharp failed');
    });
    failing.frame.release!();
    await expect(failed).rejects.toThrow('sharp failed');
    expect(failing.returned()).toBe(true);
  });

  it('a JPEG encoding holds the frame until sharp is done with it', async () => {
    const { frame, returned } = countedFrame();
    const encoding = new FrameJpegEncoder().encode(frame, 32, 80)!;
    frame.release!(); // the pipeline lets go while the encoding runs
    expect(returned()).toBe(false);
    const jpeg = await encoding;
    expect(jpeg?.width).toBe(32);
    expect(returned()).toBe(true);
  });

  it('a history candidate holds its frame while it is among the best, and lets go when pushed out or released', () => {
    const frames = [countedFrame(), countedFrame(), countedFrame()];
    const list: Candidate[] = [];
    frames.forEach(({ frame }, i) => {
      offerCandidate(list, { box: [0, 0, 10, 10], landmarks: [], score: 0.9, quality: i, frame: { ...frame, capturedAt: frame.capturedAt, hold: frame.hold } }, 2);
      frame.release!();
    });
    // Quality 0 was pushed out by 1 and 2.
    expect(frames.map(({ returned }) => returned())).toEqual([true, false, false]);
    releaseCandidates(list);
    expect(frames.slice(1).every(({ returned }) => returned())).toBe(true);
  });
});
