import { z } from 'zod';

/** Configuration of src/index (options added by the gallery module; see schema.ts for conventions). */
export const gallerySchema = z.strictObject({}).prefault({});
