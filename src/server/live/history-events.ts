import type { AppearanceHistory } from '../../history/history.js';

/** Deletions beyond this many ids are announced as a count (retention may delete thousands at once). */
const MAX_IDS = 100;

/**
 * Turns the appearance history's events into WebSocket messages (protocol.ts: `history` and
 * `library`): a stored appearance goes to the clients of its stream, deletions and face-library
 * changes to every client. Returns the function that stops forwarding.
 */
export function forwardHistory(history: AppearanceHistory, publish: (streamId: string | null, payload: Record<string, unknown> & { type: string }) => void): () => void {
  const onStored = (appearance: { streamId: string }) => publish(appearance.streamId, { v: 1, type: 'history', event: 'stored', appearance });
  const onDeleted = (ids: number[], reason: string) => publish(null, { v: 1, type: 'history', event: 'deleted', reason, count: ids.length, ids: ids.length <= MAX_IDS ? ids : null });
  const onCluster = (e: { event: string; clusterId: number; identity?: { id: string; name: string } }) => publish(null, { v: 1, type: 'library', ...e, identity: e.identity ?? null });
  history.on('stored', onStored);
  history.on('deleted', onDeleted);
  history.on('cluster', onCluster);
  return () => {
    history.off('stored', onStored);
    history.off('deleted', onDeleted);
    history.off('cluster', onCluster);
  };
}
