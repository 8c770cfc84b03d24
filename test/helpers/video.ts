/** Tests decode clips with the evaluation's decoder (src/eval/video-frames.ts). */
export { decodeVideoFrames } from '../../src/eval/video-frames.js';
