/**
 * src/egress loads undici's parts by their module paths (to keep undici's index, with fetch and
 * WebSocket, out of the gateway): they must be undici's public classes and functions, so an upgrade
 * that moves them fails here.
 */
import t from 'tap';
import * as publicUndici from 'undici';
import { undici } from '../../src/egress/undici.ts';

t.test("egress undici parts: are undici's public exports when loaded by their paths", async (t) => {
  const parts = undici();
  t.equal(parts.Agent, publicUndici.Agent);
  t.equal(parts.ProxyAgent, publicUndici.ProxyAgent);
  t.equal(parts.Pool, publicUndici.Pool);
  t.equal(parts.Client, publicUndici.Client);
  t.equal(parts.buildConnector, publicUndici.buildConnector);
  // undici's index copies the API functions onto every dispatcher; these are the same functions.
  const d = new publicUndici.Agent();
  t.teardown(() => d.close());
  t.equal(parts.request, d.request);
  t.equal(parts.connect, d.connect);
});
