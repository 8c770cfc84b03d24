import { z } from 'zod';

/** Configuration of src/ingest (options added by the ingest module; see schema.ts for conventions). */
export const ingestSchema = z.strictObject({}).prefault({});
