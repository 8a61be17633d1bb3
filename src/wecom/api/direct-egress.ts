/**
 * The egress used when no egress profile is wired in: a plain undici Agent (system route, optional
 * CA for a test/demo fake, the configured connect timeout). src/egress/ replaces it with a pinned
 * profile; the composition root owns and closes it.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { undici } from '../../egress/undici.ts';
import type { WecomConfig } from '../../config/schema.ts';
import type { WecomEgress } from './types.ts';

export function createDirectWecomEgress(config: WecomConfig): { egress: WecomEgress; close(): Promise<void> } {
  const dispatcher = new (undici().Agent)({
    // One TLS context for every connection (with `ca` alone each builds its own: see src/proxy/index.ts).
    connect: {
      timeout: config.timeouts.connect_ms,
      ...(config.ca_file !== undefined ? { secureContext: createSecureContext({ ca: readFileSync(config.ca_file) }) } : {}),
    },
    keepAliveTimeout: 30_000,
    // WeCom answers 45033 to too many concurrent calls; a small pool also spares handshakes.
    connections: 16,
  });
  return { egress: { name: 'direct', dispatcher, viaProxy: false }, close: () => dispatcher.close() };
}
