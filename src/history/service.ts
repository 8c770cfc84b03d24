import path from 'node:path';
import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { Gallery } from '../index/gallery.js';
import type { Logger } from '../log.js';
import { AppearanceHistory } from './history.js';
import { HistoryMetrics } from './metrics.js';

export interface HistoryServiceDeps {
  /** The server's data directory: the history goes in its `history` folder unless history.dir says otherwise. */
  dataDir: string;
  modelId: string;
  dimension: number;
  /** The embedding model's face-library cluster threshold (Embedder.defaultClusterSimilarity). */
  clusterSimilarity: number;
  gallery: Gallery;
  logger: Logger;
  registry?: Registry;
}

/**
 * Opens the server's appearance history (or nothing when history.enabled is off) and keeps it in
 * step with the gallery: a renamed identity's appearances show the new name, and a removed
 * identity's appearances are deleted when history.forgetRemovedIdentities is on.
 * The caller attaches it to the pipeline's bus and closes it after the pipeline.
 */
export async function startHistory(config: Config, deps: HistoryServiceDeps): Promise<AppearanceHistory | undefined> {
  const cfg = config.history;
  if (!cfg.enabled) return undefined;
  const logger = deps.logger.child({ component: 'history' });
  const history = await AppearanceHistory.open({
    dir: path.resolve(cfg.dir ?? path.join(deps.dataDir, 'history')),
    config: cfg,
    dimension: deps.dimension,
    modelId: deps.modelId,
    logger,
    metrics: new HistoryMetrics(deps.registry),
    endAfterFrames: cfg.endAfterFrames ?? config.pipeline.tracking.maxMisses + 1,
    clusterSimilarity: deps.clusterSimilarity,
  });
  const onRemoved = ({ identity }: { identity: { id: string } }) => {
    if (!cfg.forgetRemovedIdentities) return;
    void history.deleteWhere({ identityId: identity.id }, 'identity-removed').catch((err: Error) => logger.warn({ err: err.message }, 'history: removed identity\'s appearances not deleted'));
  };
  const onUpdated = ({ identity }: { identity: { id: string; name: string } }) => history.renameIdentity(identity.id, identity.name);
  deps.gallery.on('identity-removed', onRemoved);
  deps.gallery.on('identity-updated', onUpdated);
  history.onClose(() => {
    deps.gallery.off('identity-removed', onRemoved);
    deps.gallery.off('identity-updated', onUpdated);
  });
  return history;
}
