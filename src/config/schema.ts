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
    egress: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'Name of an `egress` profile the upstream traffic of this route (HTTP and WebSocket) leaves through; default the system route.',
      }),
    ),
    rewrite: Type.Object(
      {
        location: Type.Boolean({ default: true, description: 'Rewrite Location/Content-Location/Refresh to the public origin.' }),
        cookies: Type.Boolean({ default: true, description: 'Rewrite Set-Cookie Domain/Path to the public origin.' }),
      },
      { additionalProperties: false, default: {}, description: 'Rewriting of upstream responses to the public origin.' },
    ),
    wecom_errors: Type.Object(
      {
        scan: Type.Boolean({
          default: true,
          description:
            'Notice WeCom errcode 60020 / 48002 in small (≤ 16 KiB) uncompressed JSON/text/HTML responses of this upstream and record the vendor\'s incident (/diagnostics, metrics, one log line per distinct cause) when the body is WeCom\'s error JSON or that JSON in the vendor\'s small JSON envelope; a page that only shows the number is counted, not recorded.',
        }),
        explain: Type.Boolean({
          default: false,
          description:
            'Show a browser navigation a bilingual explanation page instead of WeCom\'s raw error JSON (same status, request id, no secrets); needs scan. Scripts (fetch/XHR) still get the JSON.',
        }),
        app: Type.Optional(
          Type.String({
            minLength: 1,
            maxLength: 64,
            description: 'The WeCom app behind this route as named in 应用管理, used in the explanation (应用管理 › <app> › 企业可信IP).',
          }),
        ),
      },
      { additionalProperties: false, default: {}, description: 'WeCom errors in the vendor\'s responses (the vendor\'s own WeCom calls failing).' },
    ),
  },
  { additionalProperties: false, description: 'One mapping from a public host/path prefix to an upstream.' },
);

/** Where a secret comes from: a file (its content, trailing newline removed) or an environment variable; never inline. */
export const SecretRefSchema = Type.Object(
  {
    file: Type.Optional(Type.String({ ...FilePath, description: 'File holding the secret (mode 0600, owned by the wegate user).' })),
    env: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
        patternErrorMessage: 'must be an environment variable name such as "WEGATE_ECARD_SECRET"',
        description: 'Environment variable holding the secret.',
      }),
    ),
  },
  { additionalProperties: false, description: 'A secret read at start-up from `file` or `env` (exactly one); never written inline.' },
);

const WecomName = Type.String({
  pattern: '^[A-Za-z0-9_.-]{1,64}$',
  patternErrorMessage: 'must be 1 to 64 letters, digits, "_", "." or "-"',
  description: 'Name used in logs, metrics and /diagnostics.',
});

const CorpId = Type.String({
  pattern: '^[A-Za-z0-9_-]{1,64}$',
  patternErrorMessage: 'must be a WeCom corp id such as "ww0123456789abcdef" (我的企业 › 企业信息 › 企业ID)',
  description: 'WeCom corp id (企业ID).',
});

export const WecomAppSchema = Type.Object(
  {
    name: WecomName,
    kind: Type.Union([Type.Literal('self_built'), Type.Literal('authorized'), Type.Literal('third_party')], {
      default: 'self_built',
      description:
        'self_built: 自建应用 (gettoken with corp id + app secret); authorized: 代开发应用 (gettoken with the authorising corp id + the permanent code); third_party: 第三方应用 (suite_access_token → get_corp_token).',
    }),
    corp_id: Type.Optional({ ...CorpId, description: 'The corp that owns or authorised the app; default wecom.corp_id.' }),
    agent_id: Type.Optional(Type.Integer({ minimum: 1, description: 'AgentId of the app (应用管理 › 应用 › AgentId).' })),
    secret: Type.Optional({
      ...SecretRefSchema,
      description:
        'self_built: the app Secret; authorized / third_party: the permanent code (永久授权码), unless it comes from the state store through `suite`.',
    }),
    suite: Type.Optional(
      Type.String({ ...WecomName, description: 'Name of the entry in wecom.suites (third_party: the suite; authorized: the 代开发 template).' }),
    ),
  },
  { additionalProperties: false, description: 'One WeCom app whose API wegate calls.' },
);

export const WecomSuiteSchema = Type.Object(
  {
    name: WecomName,
    kind: Type.Union([Type.Literal('third_party'), Type.Literal('template')], {
      default: 'third_party',
      description: 'third_party: 第三方应用 suite; template: 代开发应用模板 (suite id "dk…").',
    }),
    suite_id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', patternErrorMessage: 'must be a suite id such as "ww…" or "dk…"' }),
    secret: { ...SecretRefSchema, description: 'The suite / template Secret (服务商管理后台 › 应用管理 › <应用> › Secret).' },
  },
  { additionalProperties: false, description: 'A third-party suite or 代开发 template (its suite_ticket arrives through the callbacks).' },
);

/** Where one WeCom callback URL delivers what it receives (issue 12 item 5). */
export const WecomCallbackDeliverSchema = Type.Object(
  {
    mode: Type.Union([Type.Literal('sync'), Type.Literal('queue')], {
      default: 'sync',
      description:
        'sync: forwarded at once, WeCom answered with the upstream\'s reply (when the upstream fails or misses the deadline: queued when `state` is set, else not acknowledged so WeCom retries); queue: stored durably in the state store before WeCom is acknowledged, then delivered in order with retries (needs `state`).',
    }),
    url: Type.String({
      pattern: '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s]+(/[^#\\s]*)?$',
      patternErrorMessage: 'must be an absolute http(s) URL such as "http://10.0.0.8:8080/wecom/callback"',
      description: 'The vendor endpoint that receives the decrypted callbacks as signed JSON (POST).',
    }),
    secret: { ...SecretRefSchema, description: 'HMAC-SHA256 key shared with the vendor: signs X-Wegate-Signature.' },
    timeout_ms: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 4_500,
        description: 'Deadline of the upstream\'s answer; default 4000 for app callbacks, 800 for suite callbacks (WeCom wants "success" within 1000 ms).',
      }),
    ),
    max_response_bytes: Type.Integer({ minimum: 1024, maximum: 1024 * 1024, default: 64 * 1024, description: 'A larger upstream answer is a failed delivery.' }),
    max_attempts: Type.Integer({ minimum: 1, maximum: 1000, default: 12, description: 'Queued deliveries: attempts before an item is dead-lettered (listable and re-drivable from the admin listener).' }),
    max_queue_age_s: Type.Integer({ minimum: 60, maximum: 30 * 86_400, default: 86_400, description: 'Queued deliveries: an item older than this is dead-lettered instead of tried again.' }),
    backoff_base_ms: Type.Integer({ minimum: 10, maximum: 600_000, default: 1_000, description: 'Queued deliveries: wait after the first failed attempt; doubled after each further one, with jitter.' }),
    backoff_max_ms: Type.Integer({ minimum: 10, maximum: 3_600_000, default: 300_000, description: 'Queued deliveries: the longest wait between two attempts.' }),
  },
  { additionalProperties: false, description: 'Delivery of the decrypted callbacks to the vendor.' },
);

/** One callback URL (接收消息 / 指令回调 / 数据回调) whose requests wegate verifies, decrypts and delivers. */
export const WecomCallbackSchema = Type.Object(
  {
    name: WecomName,
    kind: Type.Union([Type.Literal('app'), Type.Literal('suite'), Type.Literal('data')], {
      default: 'app',
      description:
        'app: 自建应用 / 代开发应用 接收消息 (answered with an empty 200 or an encrypted passive reply); suite: 指令回调 of a third-party suite or 代开发 template (answered "success"); data: 数据回调 of a third-party app.',
    }),
    path: Type.String({
      pattern: '^(/(?!\\.\\.?(/|$))[A-Za-z0-9._~!$&\'()*+,;=:@-]+)+/?$',
      patternErrorMessage: 'must be an absolute path such as "/wecom/ecard/callback" (no query, no dot-segments, no percent-escapes)',
      description: 'The path of the callback URL entered in the WeCom console; answered on every host, never proxied, never behind login.',
    }),
    app: Type.Optional(Type.String({ ...WecomName, description: 'A wecom.apps entry: its corp id is accepted as receiveid.' })),
    suite: Type.Optional(Type.String({ ...WecomName, description: 'A wecom.suites entry: its suite_id (template id) is accepted as receiveid.' })),
    receive_ids: Type.Array(
      Type.String({ pattern: '^[A-Za-z0-9_-]{0,64}$', patternErrorMessage: 'must be a corp id, suite id or template id' }),
      {
        default: [],
        description:
          'Further accepted receiveids: the authorising corp ids of a data callback, the 服务商\'s own corp id (WeCom uses it for the URL check of 服务商-side URLs). Case-sensitive.',
      },
    ),
    token: { ...SecretRefSchema, description: 'The callback Token (1..32 letters/digits) from the console, from a file or env.' },
    encoding_aes_key: { ...SecretRefSchema, description: 'The callback EncodingAESKey (43 characters) from the console, from a file or env.' },
    max_age_s: Type.Integer({
      minimum: 0,
      maximum: 86_400,
      default: 600,
      description: 'A POST whose timestamp is further than this from the clock is refused as stale (0 = no window; WeCom documents none).',
    }),
    max_body_bytes: Type.Integer({ minimum: 1024, maximum: 1024 * 1024, default: 256 * 1024, description: 'Larger POST bodies get 413.' }),
    dedupe_ttl_s: Type.Integer({ minimum: 30, maximum: 86_400, default: 900, description: 'How long a delivered message is remembered to drop WeCom\'s retries of it.' }),
    deliver: WecomCallbackDeliverSchema,
  },
  { additionalProperties: false, description: 'A WeCom callback URL answered by wegate.' },
);

export const WecomSchema = Type.Object(
  {
    api_base: Type.String({
      pattern: '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+/?$',
      patternErrorMessage: 'must be an origin such as "https://qyapi.weixin.qq.com"',
      default: 'https://qyapi.weixin.qq.com',
      description: 'WeCom API origin; change it only for tests or a demo fake.',
    }),
    egress: Type.Optional(Type.String({ minLength: 1, description: 'Name of the egress profile every WeCom call leaves through.' })),
    ca_file: Type.Optional(Type.String({ ...FilePath, description: 'PEM CA bundle trusted for api_base instead of the system CAs (a test or demo fake only).' })),
    corp_id: Type.Optional({ ...CorpId, description: 'The school\'s corp id (企业ID), the default for its apps.' }),
    timeouts: Type.Object(
      {
        connect_ms: Ms(3_000, 'TCP+TLS connect timeout towards WeCom.'),
        response_ms: Ms(10_000, 'Time allowed for the whole WeCom answer once connected.'),
      },
      { additionalProperties: false, default: {}, description: 'Timeouts of WeCom API calls.' },
    ),
    max_response_bytes: Type.Integer({
      minimum: 1024,
      maximum: 64 * 1024 * 1024,
      default: 1024 * 1024,
      description: 'A WeCom answer larger than this is aborted.',
    }),
    retry: Type.Object(
      {
        attempts: Type.Integer({ minimum: 1, maximum: 5, default: 3, description: 'Attempts in all on errcode -1 (busy) and 45009 (rate limit).' }),
        base_delay_ms: Ms(200, 'First backoff delay; doubled per attempt, with jitter.'),
      },
      { additionalProperties: false, default: {}, description: 'Bounded backoff on -1 and 45009 (never on 60020).' },
    ),
    bad_secret_holdoff_ms: Ms(
      900_000,
      'After WeCom rejects a secret (40001/40013 …), wegate does not ask again with the same secret for this long (WeCom blocks gettoken after ~2000 failures an hour).',
    ),
    probe: Type.Object(
      {
        enabled: Type.Boolean({
          default: true,
          description: 'Run the readiness probe (false: no WeCom call of its own; `wegate doctor` still probes when run).',
        }),
        interval_ms: Type.Integer({
          minimum: 0,
          maximum: 86_400_000,
          default: 60_000,
          description:
            'Readiness probe per app (gettoken + get_api_domain_ip, which WeCom guards with 企业可信IP) at start and this often; 0 = only at start. Shown in /diagnostics and wegate_wecom_ready{app}; never fails /readyz.',
        }),
      },
      { additionalProperties: false, default: {}, description: 'wegate\'s own WeCom readiness probe (the one `wegate doctor` runs).' },
    ),
    apps: Type.Array(WecomAppSchema, { default: [], description: 'WeCom apps whose API wegate calls.' }),
    suites: Type.Array(WecomSuiteSchema, { default: [], description: 'Third-party suites and 代开发 templates.' }),
    callbacks: Type.Array(WecomCallbackSchema, { default: [], description: 'Callback URLs (接收消息 / 指令回调 / 数据回调) wegate answers.' }),
  },
  { additionalProperties: false, description: 'The WeCom API client: apps, suites, the egress profile WeCom calls use.' },
);

/** A source address or forward proxy that outbound traffic leaves through (see src/egress). */
export const EgressProfileSchema = Type.Object(
  {
    local_address: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'Source address (an address of this host, e.g. "10.0.0.5"); the address family is pinned to it. Start-up fails when it is not on this host.',
      }),
    ),
    family: Type.Optional(
      Type.Union([Type.Literal(4), Type.Literal(6)], {
        description:
          'Address family of the connections (4 or 6; to the proxy when there is one). Default: the family of local_address, else of expected_ip (without a proxy), else unpinned. Must agree with local_address.',
      }),
    ),
    proxy: Type.Optional(
      Type.Object(
        {
          url: Type.String({
            minLength: 1,
            description: 'Forward proxy reached with HTTP CONNECT, "http://host:port" (no path, no user:password).',
          }),
          credentials_file: Type.Optional(
            Type.String({ ...FilePath, description: 'File holding "user:password" for the proxy (Proxy-Authorization: Basic).' }),
          ),
        },
        { additionalProperties: false, description: 'Leave through a fixed-IP forward proxy (reached from local_address when both are set).' },
      ),
    ),
    expected_ip: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'The public IP WeCom should see (the one entered as 企业可信IP); compared with the IP echo and with 60020 replies.',
      }),
    ),
    ip_echo: Type.Optional(
      Type.Object(
        {
          url: Type.String({
            minLength: 1,
            description: 'http(s) URL answering the caller\'s public IP as text (or JSON {"ip": …}), fetched through this profile.',
          }),
          interval_ms: Type.Integer({
            minimum: 1_000,
            maximum: 86_400_000,
            default: 600_000,
            description: 'Check again this often (the first check runs at start-up).',
          }),
          timeout_ms: Ms(10_000, 'Time allowed for one IP-echo request (connect + answer).'),
        },
        { additionalProperties: false, description: 'Compare the public IP this profile is seen with against expected_ip, at start-up and on a timer.' },
      ),
    ),
  },
  { additionalProperties: false, description: 'One egress profile.' },
);

/** The durable state store (suite_ticket, permanent codes, de-duplication keys, the callback queue); see src/store. */
export const StateSchema = Type.Object(
  {
    dir: Type.String({
      ...DirPath,
      description:
        'Directory of the embedded state store (state.db, SQLite in WAL mode), writable by the wegate user only (mode 0700), e.g. /var/lib/wegate. One directory serves one wegate instance.',
    }),
    key_file: Type.Optional(
      Type.String({
        ...FilePath,
        description:
          'Key sealing the permanent codes at rest (AES-256-GCM): 32 random bytes as 64 hex characters (`openssl rand -hex 32`), mode 0600. Default <dir>/state.key, created on first start.',
      }),
    ),
  },
  { additionalProperties: false, description: 'Durable state; required when a feature needs it (WeCom callbacks, 代开发 / third-party suites).' },
);

const Sha256Hex = (description: string) =>
  Type.String({
    pattern: '^[0-9a-fA-F]{64}$',
    patternErrorMessage: 'must be a SHA-256 hex digest (64 hex digits): printf %s \'THE-TOKEN\' | sha256sum',
    description,
  });

const WecomApiPath = Type.String({
  pattern: '^/cgi-bin/[A-Za-z0-9_/]{1,120}$',
  patternErrorMessage: 'must be a WeCom API path such as "/cgi-bin/message/send" (no query, no access_token)',
  description: 'A WeCom API path the client may call through the relay, e.g. "/cgi-bin/message/send".',
});

export const RelayClientSchema = Type.Object(
  {
    name: Type.String({ ...WecomName, description: 'Client name (a vendor server): metrics label, logs and the CONNECT user name.' }),
    app: Type.Optional(
      Type.String({ ...WecomName, description: 'The wecom.apps entry whose access token the API relay injects for this client.' }),
    ),
    token_sha256: Type.Optional(
      Sha256Hex('SHA-256 (hex) of the bearer token the client sends to the API relay (Authorization: Bearer …); the token itself is never stored.'),
    ),
    apis: Type.Array(WecomApiPath, { default: [], description: 'WeCom API paths this client may call through the API relay (exact match).' }),
    connect_password_sha256: Type.Optional(
      Sha256Hex('SHA-256 (hex) of the password for the CONNECT tunnel (Proxy-Authorization: Basic, user = name); unset = no tunnel for this client.'),
    ),
    source_cidrs: Type.Array(
      Type.String({ minLength: 2, maxLength: 64, description: 'An address or CIDR block, e.g. "203.0.113.7" or "203.0.113.0/24".' }),
      { default: [], description: 'Source addresses allowed for this client (relay and tunnel); empty = any.' },
    ),
    rate: Type.Object(
      {
        per_second: Type.Number({ exclusiveMinimum: 0, maximum: 100_000, default: 50, description: 'Sustained requests per second (token bucket refill).' }),
        burst: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 100, description: 'Bucket size: requests allowed at once.' }),
      },
      { additionalProperties: false, default: {}, description: 'Rate limit of the API relay for this client (429 beyond).' },
    ),
  },
  { additionalProperties: false, description: 'One vendor server allowed to use the relay.' },
);

export const RelaySchema = Type.Object(
  {
    clients: Type.Array(RelayClientSchema, { default: [], description: 'Vendor servers allowed to use the relay.' }),
    max_body_bytes: Type.Integer({
      minimum: 0,
      maximum: 64 * 1024 * 1024,
      default: 1024 * 1024,
      description: 'Largest request body the API relay accepts (→ 413).',
    }),
    connect_listen: Type.Optional(
      Type.String({ ...ListenAddress, description: 'Listen address of the CONNECT tunnel (e.g. "10.0.0.5:3129"); unset = no tunnel.' }),
    ),
    connect_idle_ms: Ms(120_000, 'A CONNECT tunnel with no traffic either way for this long is closed.'),
  },
  {
    additionalProperties: false,
    description: 'Relay for vendor servers: the API relay under gateway.prefix + "relay/" and the optional CONNECT tunnel to the WeCom API host.',
  },
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
    state: Type.Optional(StateSchema),
    wecom: Type.Optional(WecomSchema),
    egress: Type.Optional(
      Type.Record(Type.String(), EgressProfileSchema, {
        description: 'Named egress profiles (fixed source address or forward proxy) for WeCom calls and routes[].egress.',
      }),
    ),
    gateway: Type.Object(
      {
        prefix: Type.String({
          pattern: '^/[A-Za-z0-9._~-]+/$',
          patternErrorMessage: 'must be one path segment between slashes, such as "/.wegate/"',
          default: '/.wegate/',
          description: "Reserved path prefix of wegate's own public paths (the relay, later the login callback and JWKS); never proxied.",
        }),
      },
      { additionalProperties: false, default: {}, description: "wegate's own public paths." },
    ),
    relay: Type.Optional(RelaySchema),
    routes: Type.Array(RouteSchema, { minItems: 1, description: 'Routes; the most specific host, then the longest path, wins.' }),
  },
  { additionalProperties: false, $id: 'https://wegate.dev/schema/wegate.json', title: 'wegate configuration' },
);

/** The validated configuration with every default filled in. */
export type Config = Static<typeof ConfigSchema>;
export type RouteConfig = Static<typeof RouteSchema>;
export type WecomConfig = Static<typeof WecomSchema>;
export type WecomAppConfig = Static<typeof WecomAppSchema>;
export type WecomSuiteConfig = Static<typeof WecomSuiteSchema>;
export type SecretRef = Static<typeof SecretRefSchema>;
export type WecomCallbackConfig = Static<typeof WecomCallbackSchema>;
export type EgressProfileConfig = Static<typeof EgressProfileSchema>;
export type StateConfig = Static<typeof StateSchema>;
export type RelayConfig = Static<typeof RelaySchema>;
export type RelayClientConfig = Static<typeof RelayClientSchema>;

/** Config keys whose values are secrets: shown by length only in errors. Matched on the last key. */
// token_sha256 / connect_password_sha256 hold hashes, but an admin may paste the token itself there by mistake.
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  'secret',
  'token',
  'encoding_aes_key',
  'corpsecret',
  'password',
  'token_sha256',
  'connect_password_sha256',
]);
