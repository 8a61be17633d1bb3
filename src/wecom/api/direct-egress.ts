/**
 * The egress used when no egress profile is wired in: a plain undici Agent (system route, optional
 * CA for a test/demo fake, the configured connect timeout). src/egress/ replaces it with a pinned
 * profile; the composition root owns and closes it.
 */
import { readFileSync } from 'node:fs';
import { Agent } from 'undici';
import type { WecomConfig } from '../../config/schema.ts';
import type { WecomEgress } from './types.ts';

export function createDirectWecomEgress(config: WecomConfig): { egress: WecomEgress; close(): Promise<void> } {
  const dispatcher = new Agent({
    connect: { timeout: config.timeouts.connect_ms, ...(config.ca_file !== undefined ? { ca: readFileSync(config.ca_file) } : {}) },
    keepAliveTimeout: 30_000,
  });
  return { egress: { name: 'direct', dispatcher, viaProxy: false }, close: () => dispatcher.close() };
}
