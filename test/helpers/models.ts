import { defaultConfig, type Config } from '../../src/config/schema.js';
import { loadManifest } from '../../src/models/manifest.js';
import { ModelRuntime } from '../../src/models/runtime.js';
import { ModelStore } from '../../src/models/store.js';
import { createLogger } from '../../src/log.js';
import { MODELS_DIR } from './paths.js';

/** The configuration tests run with: defaults, CPU, the repository's models directory. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  const base = defaultConfig();
  return { ...base, models: { ...base.models, dir: MODELS_DIR }, runtime: { ...base.runtime, executionProviders: ['cpu'] }, ...overrides };
}

export function testRuntime(config: Config = testConfig()): ModelRuntime {
  return new ModelRuntime(new ModelStore(loadManifest(), config.models.dir), config.runtime, createLogger('warn'));
}
