import { z } from 'zod';

/**
 * Configuration of the MQTT integration (src/integrations/mqtt): who is seen on which camera,
 * stream state and Home Assistant discovery, published to a broker. Off until `url` is set.
 * See schema.ts for conventions.
 */

export const mqttTlsSchema = z
  .strictObject({
    /** PEM file of the certificate authority that signed the broker's certificate (private CAs). Empty: the system's CAs. */
    ca: z.string().min(1).optional(),
    /** PEM client certificate and key, for brokers that authenticate clients by certificate. */
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    /** Check the broker's certificate. Off only for testing: anyone on the path could read the credentials. */
    rejectUnauthorized: z.boolean().default(true),
  })
  .prefault({});

export const homeAssistantSchema = z
  .strictObject({
    /** Publish Home Assistant MQTT discovery: a device per stream and per identity, with their sensors. */
    enabled: z.boolean().default(true),
    /** Home Assistant's discovery prefix (its MQTT integration's default is "homeassistant"). */
    discoveryPrefix: z.string().min(1).default('homeassistant'),
    /**
     * Identities that get a Home Assistant device, in name order. Each costs a few retained
     * messages and entities; a gallery of thousands would flood Home Assistant's entity list.
     */
    maxIdentities: z.int().min(0).max(100_000).default(500),
  })
  .prefault({});

export const mqttSchema = z
  .strictObject({
    /** Broker URL: mqtt://host:1883, mqtts://host:8883, ws(s)://host/mqtt. Empty: MQTT is off. Also FACESTREAM_MQTT_URL. */
    url: z
      .string()
      .regex(/^(mqtts?|wss?):\/\/[^/\s]/i, 'an MQTT broker URL starts with mqtt://, mqtts://, ws:// or wss://')
      .optional(),
    /** Broker credentials (FACESTREAM_MQTT_USERNAME, FACESTREAM_MQTT_PASSWORD). Never logged. */
    username: z.coerce.string().min(1).optional(),
    password: z.coerce.string().min(1).optional(),
    /** Client id; a fixed one lets the broker replace a stale session of this server. Default facestream-<hostname>. */
    clientId: z.string().min(1).max(128).optional(),
    /** First segment of every topic (facestream/status, facestream/streams/<id>/...). No wildcards or leading slash. */
    topicPrefix: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[^#+/][^#+]*[^#+/]$|^[^#+/]$/, 'a topic prefix has no + or # and does not start or end with /')
      .default('facestream'),
    /** QoS of every message: 1 (at least once) sends a message again when the connection dropped before the broker acknowledged it; 0 is fire and forget. */
    qos: z.union([z.literal(0), z.literal(1)]).default(1),
    /** Keep-alive (s): the broker publishes the last will (offline) after 1.5x this without traffic from a server that vanished. */
    keepaliveSeconds: z.int().min(5).max(3600).default(30),
    /** Reconnect backoff: the first retry after this, doubling per failure up to maxReconnectMs. */
    minReconnectMs: z.int().min(100).default(1000),
    maxReconnectMs: z.int().min(100).default(60_000),
    /**
     * Messages waiting while the broker is away or slow. Past this the oldest event is dropped (and
     * counted in facestream_mqtt_dropped_total): the pipeline never waits for the broker. Retained
     * state keeps only its newest value per topic.
     */
    maxQueuedMessages: z.int().min(1).max(1_000_000).default(1000),
    /** Least time between two state messages of one topic (face counts, fps): a busy camera does not flood the broker. */
    minStateIntervalMs: z.int().min(0).max(60_000).default(1000),
    /**
     * A track that stays unrecognised this long is announced as an unknown person appearing
     * (shorter would announce people the recogniser has not had the frames to name yet).
     */
    unknownAfterMs: z.int().min(0).max(600_000).default(3000),
    tls: mqttTlsSchema,
    homeAssistant: homeAssistantSchema,
  })
  .prefault({});

export type MqttConfig = z.infer<typeof mqttSchema>;
