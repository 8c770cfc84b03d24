import { discoveryId, type MqttTopics } from './topics.js';

/** One retained discovery message: a JSON config, or '' to remove the entity. */
export interface DiscoveryMessage {
  topic: string;
  payload: string;
}

interface Entity {
  component: 'sensor' | 'binary_sensor';
  /** Object id inside the device's node (also the tail of unique_id). */
  key: string;
  config: Record<string, unknown>;
}

/**
 * Home Assistant MQTT discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
 * each stream is a device with sensors for faces in view, people present, processed fps and stream
 * state; each identity is a device with a presence binary sensor and last-seen camera and time
 * sensors. Configs are retained at <prefix>/<component>/<node>/<key>/config; publishing '' there
 * removes the entity. Every entity is unavailable while facestream's status topic says offline.
 */
export class HomeAssistantDiscovery {
  constructor(
    private readonly topics: MqttTopics,
    private readonly discoveryPrefix: string,
    private readonly version: string,
  ) {}

  /** Config messages of a stream's device. */
  stream(stream: { id: string; name: string }): DiscoveryMessage[] {
    return this.messages(this.streamNode(stream.id), this.streamEntities(stream));
  }

  /** Removal messages for a stream's entities. */
  removeStream(streamId: string): DiscoveryMessage[] {
    return this.removals(this.streamNode(streamId), this.streamEntities({ id: streamId, name: streamId }));
  }

  identity(identity: { id: string; name: string }): DiscoveryMessage[] {
    return this.messages(this.identityNode(identity.id), this.identityEntities(identity));
  }

  removeIdentity(identityId: string): DiscoveryMessage[] {
    return this.removals(this.identityNode(identityId), this.identityEntities({ id: identityId, name: identityId }));
  }

  /** Home Assistant announces its own restarts here ("online"); discovery is published again then. */
  get homeAssistantStatusTopic(): string {
    return `${this.discoveryPrefix}/status`;
  }

  private streamNode(id: string): string {
    return `facestream_stream_${discoveryId(id)}`;
  }

  private identityNode(id: string): string {
    return `facestream_identity_${discoveryId(id)}`;
  }

  private streamEntities(stream: { id: string; name: string }): Entity[] {
    const device = { identifiers: [this.streamNode(stream.id)], name: stream.name, manufacturer: 'facestream', model: 'Camera stream', sw_version: this.version };
    const state = this.topics.streamState(stream.id);
    return [
      {
        component: 'sensor',
        key: 'faces',
        config: { name: 'Faces', device, state_topic: this.topics.streamFaces(stream.id), value_template: '{{ value_json.faces }}', state_class: 'measurement', icon: 'mdi:face-recognition' },
      },
      {
        component: 'sensor',
        key: 'people',
        config: {
          name: 'People present',
          device,
          state_topic: this.topics.streamPeople(stream.id),
          value_template: '{{ value_json.count }}',
          json_attributes_topic: this.topics.streamPeople(stream.id),
          state_class: 'measurement',
          icon: 'mdi:account-group',
        },
      },
      { component: 'sensor', key: 'fps', config: { name: 'FPS', device, state_topic: state, value_template: '{{ value_json.fps }}', unit_of_measurement: 'fps', state_class: 'measurement', icon: 'mdi:speedometer' } },
      {
        component: 'sensor',
        key: 'state',
        config: {
          name: 'State',
          device,
          state_topic: state,
          value_template: '{{ value_json.state }}',
          device_class: 'enum',
          options: ['starting', 'live', 'stalled', 'reconnecting', 'stopped', 'failed'],
          json_attributes_topic: state,
          icon: 'mdi:cctv',
        },
      },
    ];
  }

  private identityEntities(identity: { id: string; name: string }): Entity[] {
    const device = { identifiers: [this.identityNode(identity.id)], name: identity.name, manufacturer: 'facestream', model: 'Gallery identity', sw_version: this.version };
    const state = this.topics.identityState(identity.id);
    return [
      {
        component: 'binary_sensor',
        key: 'present',
        config: { name: 'Present', device, state_topic: state, value_template: "{{ 'ON' if value_json.present else 'OFF' }}", device_class: 'presence', json_attributes_topic: state },
      },
      { component: 'sensor', key: 'last_camera', config: { name: 'Last seen camera', device, state_topic: state, value_template: '{{ value_json.lastStreamName or None }}', icon: 'mdi:cctv' } },
      { component: 'sensor', key: 'last_seen', config: { name: 'Last seen', device, state_topic: state, value_template: '{{ value_json.lastSeen or None }}', device_class: 'timestamp' } },
    ];
  }

  private configTopic(e: Entity, node: string): string {
    return `${this.discoveryPrefix}/${e.component}/${node}/${e.key}/config`;
  }

  private messages(node: string, entities: Entity[]): DiscoveryMessage[] {
    return entities.map((e) => ({
      topic: this.configTopic(e, node),
      payload: JSON.stringify({
        ...e.config,
        unique_id: `${node}_${e.key}`,
        availability_topic: this.topics.status,
        payload_available: 'online',
        payload_not_available: 'offline',
        origin: { name: 'facestream', sw_version: this.version },
      }),
    }));
  }

  private removals(node: string, entities: Entity[]): DiscoveryMessage[] {
    return entities.map((e) => ({ topic: this.configTopic(e, node), payload: '' }));
  }
}
