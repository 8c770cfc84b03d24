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
}
