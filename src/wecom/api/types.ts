/**
 * The types the WeCom API client shares with its neighbours: the egress it is handed (built by
 * src/egress/), the stores the callbacks issue implements (suite tickets, permanent codes), and the
 * kinds of app.
 */
import type { Dispatcher } from 'undici';

/** How WeCom calls leave this host. src/egress/ builds it from a named profile; tests build it by hand. */
export interface WecomEgress {
  /** Profile name (logs, diagnostics). */
  readonly name: string;
  /** Every WeCom request goes through this dispatcher, never the global one. */
  readonly dispatcher: Dispatcher;
  /** Local source address the dispatcher binds (pinned egress). */
  readonly localAddress?: string;
  /** Address family pinned with it. */
  readonly family?: 4 | 6;
  /** The public IP the admin whitelisted (企业可信IP / IP白名单); compared with WeCom's `from ip`. */
  readonly expectedIp?: string;
  /** The dispatcher is a forward proxy (HTTP CONNECT): WeCom sees the proxy's address. */
  readonly viaProxy: boolean;
}

/** self_built: 自建应用; authorized: 代开发应用; third_party: 第三方应用. */
export type WecomAppKind = 'self_built' | 'authorized' | 'third_party';
/** third_party: 第三方应用 suite; template: 代开发应用模板. */
export type WecomSuiteKind = 'third_party' | 'template';

/** The latest suite_ticket per suite (pushed every 10 min to the 指令回调 / template callback URL). */
export interface SuiteTickets {
  get(suiteId: string): string | undefined | Promise<string | undefined>;
}

/** Permanent codes (永久授权码) per (suite, authorising corp), stored when create_auth / reset_permanent_code arrive. */
export interface PermanentCodes {
  get(suiteId: string, corpId: string): string | undefined | Promise<string | undefined>;
  /** Status of the authorisation (to tell "cancelled" from "not authorised yet" in errors), when the store keeps it. */
  info?(
    suiteId: string,
    corpId: string,
  ): Promise<{ readonly status: 'active' | 'cancelled'; readonly cancelledAt: number | undefined } | undefined>;
}
