import { z } from 'zod';

/**
 * The APIs of other face servers that facestream also speaks (src/server/compat), so tools written
 * for them (Double Take, Home Assistant integrations, Node-RED nodes) work unchanged.
 */
export const compatSchema = z
  .strictObject({
    /** DeepStack / CodeProject.AI face API under /v1/vision/face. */
    deepstack: z.boolean().default(true),
    /** CompreFace recognition, detection and verification API under /api/v1/recognition, /api/v1/detection, /api/v1/verification. */
    compreface: z.boolean().default(true),
    /**
     * The confidence these APIs report for a face exactly at the gallery's similarity threshold.
     * Their clients compare confidences with their own thresholds (DeepStack's default
     * min_confidence is 0.67, Double Take's match default 60 %), so cosine similarity is mapped
     * piecewise-linearly: 0 -> 0, threshold -> this value, 1 -> 1. A client that keeps its default
     * then agrees with the server about who is known.
     */
    confidenceAtThreshold: z.number().gt(0).lt(1).default(0.67),
  })
  .prefault({});

export type CompatConfig = z.infer<typeof compatSchema>;
