import type client from 'prom-client';
import type { MqttConfig } from '../../config/sections/mqtt.js';
import type { AppearanceHistory } from '../../history/history.js';
import type { Gallery } from '../../index/gallery.js';
import type { Logger } from '../../log.js';
import type { LiveSource } from '../../server/live/source.js';
import type { StreamManager } from '../../server/streams.js';
import { MqttBridge } from './bridge.js';
import { HomeAssistantDiscovery } from './discovery.js';
import { MqttPublisher } from './publisher.js';
import { MqttTopics } from './topics.js';

export interface MqttIntegration {
  publisher: MqttPublisher;
  bridge: MqttBridge;
  /** Marks streams stopped, publishes "offline" and disconnects (waits a little for the queue). */
  close(): Promise<void>;
}

export interface MqttIntegrationDeps {
  config: MqttConfig & { url: string };
  /** Results and appearances to publish (see LiveSource). */
  source: LiveSource;
  streams: StreamManager;
  gallery: Gallery;
  logger: Logger;
  version: string;
  /** How long an unseen track counts as present (the pipeline's appearanceGraceMs). */
  graceMs: number;
  registry?: client.Registry;
  /** The appearance history: events then carry the appearance ids and the face crop's URL. */
  history?: Pick<AppearanceHistory, 'eventRefs'>;
}

/**
 * Connects to the broker and publishes the server's streams, people and events (see topics.ts and
 * the README's MQTT section). Returns at once: the connection is made, and remade, in the background.
 */
export function startMqtt(deps: MqttIntegrationDeps): MqttIntegration {
  const { config } = deps;
  const logger = deps.logger.child({ component: 'mqtt' });
  const topics = new MqttTopics(config.topicPrefix);
  const ha = config.homeAssistant.enabled ? new HomeAssistantDiscovery(topics, config.homeAssistant.discoveryPrefix, deps.version) : null;
  // Our own retained identity states: read back once after connecting, so a restart keeps "last seen".
  const identityStates = `${config.topicPrefix}/identities/+/state`;
  const publisher = new MqttPublisher({
    config,
    logger,
    registry: deps.registry,
    statusTopic: topics.status,
    subscriptions: [identityStates, ...(ha ? [ha.homeAssistantStatusTopic] : [])],
  });
  const bridge = new MqttBridge(
    { bus: deps.source, present: (id) => deps.source.appearances(id)?.current ?? [], streams: deps.streams, gallery: deps.gallery, appearances: deps.history && ((s, t, who, appeared) => deps.history!.eventRefs(s, t, who, appeared)) },
    publisher,
    topics,
    ha,
    config,
    deps.graceMs,
  );
  const identityPrefix = `${config.topicPrefix}/identities/`;
  publisher.on('connect', () => bridge.publishAll());
  publisher.on('message', (topic, payload) => {
    if (ha && topic === ha.homeAssistantStatusTopic) {
      if (payload === 'online') bridge.publishAll();
    } else if (topic.startsWith(identityPrefix) && topic.endsWith('/state')) {
      bridge.seedIdentity(topic.slice(identityPrefix.length, -'/state'.length), payload);
    }
  });
  logger.info({ topicPrefix: config.topicPrefix, homeAssistant: Boolean(ha) }, 'MQTT integration on');
  return {
    publisher,
    bridge,
    close: async () => {
      bridge.close(true);
      await publisher.close();
    },
  };
}
