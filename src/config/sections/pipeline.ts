import { z } from 'zod';

/** Configuration of src/pipeline (options added by the pipeline module; see schema.ts for conventions). */
export const pipelineSchema = z.strictObject({}).prefault({});
