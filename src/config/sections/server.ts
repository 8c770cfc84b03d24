import { z } from 'zod';

/** Configuration of src/server (options added by the server module; see schema.ts for conventions). */
export const serverSchema = z.strictObject({}).prefault({});
