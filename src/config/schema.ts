/**
 * The configuration schema: one TypeBox definition gives the runtime validator (Ajv), the
 * TypeScript type and the JSON Schema offered to editors. Every key here is documented in
 * config/wegate.example.yaml (English + 简体中文).
 *
 * Keys with a `default` are filled in by the validator, so the `Config` type has them as required.
 * Keys named in SECRET_KEYS hold secrets: errors show their length only.
 *
 * Two annotations beyond plain JSON Schema, both read by src/config/validate.ts:
 * - `patternErrorMessage`: the sentence shown when `pattern` fails (VS Code shows it too);
 * - `x-path: 'file' | 'dir'`: a path resolved against the config file's directory and checked to be
 *   a readable file / directory when the config is loaded.
 */
import { type Static, Type } from '@sinclair/typebox';

/** "host:port", ":port" or "[v6]:port". Port 0 is allowed (tests bind an ephemeral port). */
const ListenAddress = Type.String({
  pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]*):[0-9]{1,5}$',
  patternErrorMessage: 'must be a listen address such as ":8080", "127.0.0.1:8080" or "[::1]:8080" (quote it in YAML)',
  description: 'Listen address "host:port", ":port" (all interfaces) or "[::1]:port".',
});

const FilePath = Type.String({
  minLength: 1,
  'x-path': 'file',
  description: 'A file path (relative paths are relative to the config file).',
});

const DirPath = Type.String({
  minLength: 1,
  'x-path': 'dir',
  description: 'A directory path (relative paths are relative to the config file).',
});

/** A host name as it appears in the Host header (lower-case, no port); "*.example.edu.cn" allowed. */
const HostPattern = Type.String({
  pattern: '^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\\.?$',
  maxLength: 253,
  patternErrorMessage: 'must be a host name such as "api1.school.edu.cn" or "*.school.edu.cn" (no scheme, port or path)',
  description: 'Host name, exact ("api1.school.edu.cn") or one-level wildcard ("*.school.edu.cn").',
});

const Ms = (def: number, description: string) => Type.Integer({ minimum: 1, maximum: 86_400_000, default: def, description });

export const RouteTimeoutsSchema = Type.Object(
  {
    connect_ms: Ms(5_000, 'TCP+TLS connect timeout to the upstream (→ 504).'),
    response_ms: Ms(60_000, 'Time allowed for the upstream to send response headers once the request and its body have been sent (→ 504).'),
    idle_ms: Ms(60_000, 'Time allowed between two chunks of the upstream response body (not counted while a slow client holds the body back), and WebSocket idle time.'),
    send_ms: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 86_400_000,
        description: 'Overrides listen.send_timeout_ms for this route: a client that reads none of a held-back response for this long is disconnected.',
      }),
    ),
  },
  { additionalProperties: false, default: {}, description: 'Per-route timeouts towards the upstream.' },
);

export const RouteTlsSchema = Type.Object(
  {
    ca_file: Type.Optional(
      Type.String({ ...FilePath, description: 'PEM CA bundle trusted for this upstream (private CA); default the system CAs.' }),
    ),
    server_name: Type.Optional(Type.String({ minLength: 1, description: 'SNI / certificate name to verify; default the upstream host.' })),
    insecure_skip_verify: Type.Boolean({ default: false, description: 'Do not verify the upstream certificate. Never in production.' }),
  },
  { additionalProperties: false, default: {}, description: 'TLS towards an https upstream (verification is on by default).' },
);

export const RouteSchema = Type.Object(
  {
    name: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9_.-]{1,64}$',
        patternErrorMessage: 'must be 1 to 64 letters, digits, "_", "." or "-"',
        description: 'Route name used in logs and metrics; default "<host><path>" sanitised.',
      }),
    ),
    host: Type.Optional(HostPattern),
    path: Type.String({
      pattern: '^/[^?#\\s\\\\]*$',
      patternErrorMessage: 'must be a path prefix starting with "/" (no "?", "#", spaces or backslashes)',
      default: '/',
      description: 'Path prefix matched on segment boundaries.',
    }),
    strip_prefix: Type.Boolean({ default: false, description: 'Remove the matched path prefix before forwarding.' }),
    upstream: Type.String({
      pattern: '^[Hh][Tt][Tt][Pp][Ss]?://',
      patternErrorMessage: 'must be an absolute http(s) URL such as "https://hub.17wanxiao.com:8080"',
      description: 'Absolute http(s) URL of the upstream origin (+ optional base path).',
    }),
    preserve_host: Type.Boolean({ default: false, description: 'Send the client Host upstream instead of the upstream host.' }),
    websocket: Type.Boolean({ default: true, description: 'Allow WebSocket upgrades on this route.' }),
    max_body_bytes: Type.Integer({ minimum: 0, default: 10 * 1024 * 1024, description: 'Largest request body accepted (→ 413).' }),
    timeouts: RouteTimeoutsSchema,
    tls: RouteTlsSchema,
    rewrite: Type.Object(
      {
        location: Type.Boolean({ default: true, description: 'Rewrite Location/Content-Location/Refresh to the public origin.' }),
        cookies: Type.Boolean({ default: true, description: 'Rewrite Set-Cookie Domain/Path to the public origin.' }),
      },
      { additionalProperties: false, default: {}, description: 'Rewriting of upstream responses to the public origin.' },
    ),
  },
  { additionalProperties: false, description: 'One mapping from a public host/path prefix to an upstream.' },
);

export const ConfigSchema = Type.Object(
  {
    listen: Type.Object(
      {
        http: Type.Optional(Type.String({ ...ListenAddress, description: 'Plain HTTP listener, e.g. ":80".' })),
        https: Type.Optional(Type.String({ ...ListenAddress, description: 'HTTPS listener, e.g. ":443"; needs `tls`.' })),
        redirect_http: Type.Boolean({ default: false, description: 'Redirect plain HTTP to HTTPS (verification files stay on HTTP).' }),
        public_https_port: Type.Optional(
          Type.Integer({
            minimum: 1,
            maximum: 65535,
            description: 'HTTPS port used in redirects when it differs from the listener (e.g. behind port mapping).',
          }),
        ),
        header_timeout_ms: Ms(10_000, 'A client must send its request headers within this time (slowloris → 408).'),
        request_timeout_ms: Ms(300_000, 'A client must send its whole request (headers + body) within this time.'),
        keep_alive_timeout_ms: Ms(5_000, 'Idle keep-alive client connections are closed after this time.'),
        send_timeout_ms: Ms(
          60_000,
          'A client that reads none of a response for this long while the gateway holds more of it is disconnected and the upstream request aborted (nginx send_timeout); routes may override it.',
        ),
        max_connections: Type.Integer({
          minimum: 0,
          default: 0,
          description: 'Most client connections open at once over the public listeners; requests on connections beyond it get 503. 0 = no limit.',
        }),
        max_connections_per_ip: Type.Integer({
          minimum: 0,
          default: 0,
          description: 'Most client connections open at once from one client IP address; requests on connections beyond it get 503. 0 = no limit.',
        }),
      },
      { additionalProperties: false, default: {}, description: 'Public listeners (at least one of http/https).' },
    ),
    tls: Type.Optional(
      Type.Object(
        {
          certs: Type.Array(
            Type.Object(
              {
                cert: Type.String({ ...FilePath, description: 'PEM certificate chain (leaf first), e.g. fullchain.pem.' }),
                key: Type.String({ ...FilePath, description: 'PEM private key of the certificate (unencrypted).' }),
              },
              { additionalProperties: false },
            ),
            {
              minItems: 1,
              description: 'PEM certificate chains and keys; chosen by SNI from the certificate names.',
            },
          ),
          watch: Type.Boolean({ default: true, description: 'Reload certificates when their files change.' }),
        },
        { additionalProperties: false, description: 'Certificates for the HTTPS listener.' },
      ),
    ),
    admin: Type.Object(
      {
        listen: Type.String({
          ...ListenAddress,
          default: '127.0.0.1:9464',
          description: 'Admin listener (/metrics, /healthz, /readyz); keep it on loopback or a private address.',
        }),
      },
      { additionalProperties: false, default: {}, description: 'Admin listener, never reachable through the public listeners.' },
    ),
    verify_files: Type.Optional(
      Type.Object(
        {
          dir: Type.String({ ...DirPath, description: 'Directory holding the verification files (read into memory).' }),
          names: Type.Array(
            Type.String({
              pattern: '^[A-Za-z0-9_.-]{1,128}$',
              patternErrorMessage: 'must be a plain file name (letters, digits, "_", "." or "-"), no directory',
            }),
            {
              default: [],
              description: 'Extra exact file names served from the directory root (besides WW_verify_*.txt / MP_verify_*.txt).',
            },
          ),
          hosts: Type.Array(HostPattern, { default: [], description: 'Serve only on these hosts; empty = every host.' }),
          watch: Type.Boolean({ default: true, description: 'Reload when the directory changes.' }),
        },
        { additionalProperties: false, description: 'Domain verification files (WW_verify_*.txt, MP_verify_*.txt) served at the root.' },
      ),
    ),
    log: Type.Object(
      {
        level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
          { default: 'info', description: 'Least severe level logged.' },
        ),
        access_log: Type.Boolean({ default: true, description: 'One JSON line per request.' }),
      },
      { additionalProperties: false, default: {}, description: 'Logging (JSON lines on stdout).' },
    ),
    shutdown: Type.Object(
      {
        drain_timeout_ms: Ms(20_000, 'On SIGTERM, wait this long for in-flight requests and WebSockets before closing them.'),
      },
      { additionalProperties: false, default: {}, description: 'Graceful shutdown.' },
    ),
    reload: Type.Object(
      {
        watch_config: Type.Boolean({ default: true, description: 'Reload when the config file changes (as SIGHUP does).' }),
      },
      { additionalProperties: false, default: {}, description: 'Configuration reload.' },
    ),
    routes: Type.Array(RouteSchema, { minItems: 1, description: 'Routes; the most specific host, then the longest path, wins.' }),
  },
  { additionalProperties: false, $id: 'https://wegate.dev/schema/wegate.json', title: 'wegate configuration' },
);

/** The validated configuration with every default filled in. */
export type Config = Static<typeof ConfigSchema>;
export type RouteConfig = Static<typeof RouteSchema>;

/** Config keys whose values are secrets: shown by length only in errors. Matched on the last key. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(['secret', 'token', 'encoding_aes_key', 'corpsecret', 'password']);
