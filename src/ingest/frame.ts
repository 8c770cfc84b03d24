/** One decoded video frame as ffmpeg delivered it. */
export interface Frame {
  /** The SourceSpec id of the stream it came from. */
  streamId: string;
  /** Frames delivered by this source so far, from 0, across reconnects (never repeats). */
  seq: number;
  /**
   * Presentation time in seconds as ffmpeg's filter graph saw it (stream time; a looped file keeps
   * counting up, a reconnect starts a new timeline). NaN when the source carried no timestamp.
   */
  pts: number;
  /** Wall-clock time (epoch ms) when the frame's last byte was read from ffmpeg. */
  capturedAt: number;
  width: number;
  height: number;
  /**
   * On the first frame at a new resolution (a camera switching profile mid-stream), the size of
   * the frames before it; the source also emits 'resize'. Every frame is read whole at its own size.
   */
  sizeChangedFrom?: { width: number; height: number };
  /** RGB24, interleaved, rows top to bottom, exactly width * height * 3 bytes; owned by the receiver. */
  data: Uint8Array;
  /**
   * Set when this receiver is the frame's only one (with `hold`): call it once the receiver no
   * longer reads `data`. When every holder has released it too, the source reuses the memory for a
   * later frame instead of allocating 6 MB per 1080p frame (src/ingest/frame-buffers.ts says why
   * that matters); `data` must not be read after. Calling it twice does nothing; never calling it
   * is fine (the memory is then left to the garbage collector).
   */
  release?: () => void;
  /**
   * Another reference to `data`, for whoever reads it after the call that handed them the frame
   * returns (a JPEG encoding, a history candidate, a snapshot): returns that reference's release.
   * Throws when the frame was already released by everyone (a bug: its memory may show a later frame).
   */
  hold?: () => () => void;
}
