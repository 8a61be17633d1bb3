/**
 * One keep-alive raw client connection (plain or TLS, from a chosen local address) that writes raw
 * bytes and reads Content-Length-framed responses one at a time, 1xx included: for tests that need
 * to see exactly what travels on one connection (keep-alive reuse, early answers, 103, 503 caps).
 */
import net from 'node:net';
import tls from 'node:tls';
import { CA } from './gateway.ts';

export interface RawResponse {
  readonly status: number;
  /** Status line and headers, without the blank line. */
  readonly head: string;
  /** The body as latin1 (bytes unchanged). */
  readonly body: string;
}

export interface RawConnOptions {
  readonly localAddress?: string;
  /** TLS with the test CA and this SNI name. */
  readonly tlsServername?: string;
}

export class RawConn {
  readonly socket: net.Socket;
  /** Resolves once connected (after the handshake for TLS). */
  readonly ready: Promise<void>;
  closed = false;
  #buf = '';
  #waiters: (() => void)[] = [];

  constructor(port: number, opts: RawConnOptions = {}) {
    const local = opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {};
    this.socket =
      opts.tlsServername !== undefined
        ? tls.connect({ host: '127.0.0.1', port, ca: CA, servername: opts.tlsServername, ...local })
        : net.connect({ host: '127.0.0.1', port, ...local });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once(opts.tlsServername !== undefined ? 'secureConnect' : 'connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => {
      this.#buf += d;
      this.#wake();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Write raw bytes (latin1); resolves once they are flushed. */
  async write(s: string): Promise<void> {
    await this.ready;
    await new Promise<void>((resolve) => this.socket.write(s, 'latin1', () => resolve()));
  }

  /** The next whole response (a 1xx counts as one), or undefined when the connection closed before one came. */
  async response(): Promise<RawResponse | undefined> {
    for (;;) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end !== -1) {
        const head = this.#buf.slice(0, end);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (this.#buf.length >= end + 4 + length) {
          const body = this.#buf.slice(end + 4, end + 4 + length);
          this.#buf = this.#buf.slice(end + 4 + length);
          return { status: Number(head.slice(9, 12)), head, body };
        }
      }
      if (this.closed) return undefined;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** GET `path` with Host `host` and read its response. */
  async get(path: string, host: string): Promise<RawResponse | undefined> {
    await this.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    return this.response();
  }

  close(): void {
    this.socket.destroy();
  }
}
