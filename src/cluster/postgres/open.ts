import { FacestreamError } from '../../errors.js';
import type { ClusterStoreOptions, ClusterStores } from '../stores.js';

export async function openPostgresStores(opts: ClusterStoreOptions): Promise<ClusterStores> {
  throw new FacestreamError('STORE_UNAVAILABLE', `cluster stores on ${opts.postgresUrl}: not built yet`, {});
}
