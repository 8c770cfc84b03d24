import crypto from 'node:crypto';

/**
 * The MQTT topic tree (all under the configured prefix, "facestream" by default):
 *
 *   <prefix>/status                          online | offline (retained; offline is also the last will)
 *   <prefix>/streams/<stream>/state          {"state","fps","inputFps","name","error"} (retained)
 *   <prefix>/streams/<stream>/faces          {"faces","known","unknown","time"} (retained)
 *   <prefix>/streams/<stream>/people         {"count","unknown","people":[{"id","name","since"}]} (retained)
 *   <prefix>/streams/<stream>/events         appeared / left events (not retained)
 *   <prefix>/identities/<identity>/state     {"present","streams","lastSeen","lastStream","lastStreamName"} (retained)
 *
 * State is retained (a subscriber that connects later reads the current value); events are not.
 */
export class MqttTopics {
  constructor(readonly prefix: string) {}

  get status(): string {
    return `${this.prefix}/status`;
  }

  streamState(streamId: string): string {
    return `${this.prefix}/streams/${topicSegment(streamId)}/state`;
  }

  streamFaces(streamId: string): string {
    return `${this.prefix}/streams/${topicSegment(streamId)}/faces`;
  }

  streamPeople(streamId: string): string {
    return `${this.prefix}/streams/${topicSegment(streamId)}/people`;
  }

  streamEvents(streamId: string): string {
    return `${this.prefix}/streams/${topicSegment(streamId)}/events`;
  }

  identityState(identityId: string): string {
    return `${this.prefix}/identities/${topicSegment(identityId)}/state`;
  }

  /** Every retained topic of a stream (cleared when the stream is removed). */
  streamRetained(streamId: string): string[] {
    return [this.streamState(streamId), this.streamFaces(streamId), this.streamPeople(streamId)];
  }
}

/**
 * An id as one topic level: MQTT gives '/' (level separator) and '+', '#' (wildcards) meaning, and
 * NUL is forbidden, so these become '_'. Stream and identity ids are mostly [A-Za-z0-9._:@-] already.
 */
export function topicSegment(id: string): string {
  return id.replace(/[/+#\u0000]/g, '_') || '_';
}

/**
 * An id as Home Assistant accepts it in a discovery topic's node and object ids ([a-zA-Z0-9_-]),
 * with a short hash of the original appended when anything had to change, so two ids that differ
 * only in replaced characters do not collide.
 */
export function discoveryId(id: string): string {
  const clean = id.replace(/[^a-zA-Z0-9_-]/g, '_');
  if (clean === id) return id;
  return `${clean}_${crypto.createHash('sha256').update(id, 'utf8').digest('hex').slice(0, 8)}`;
}
