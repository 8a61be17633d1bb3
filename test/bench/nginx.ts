/**
 * nginx as the reference reverse proxy: one worker, upstream keep-alive, HTTP/1.1 to the upstream,
 * the forwarding headers a school admin's config sets (so nginx does comparable header work), no
 * disk buffering (responses stream through memory, as a Node proxy's do), everything in a temp dir.
 */
import path from 'node:path';

export interface NginxConfigOptions {
  dir: string;
  port: number;
  upstreamPort: number;
  accessLog: boolean;
}

/** The nginx.conf text for the benchmark. */
export function nginxConfig(o: NginxConfigOptions): string {
  const p = (name: string): string => path.join(o.dir, name);
  return `worker_processes 1;
daemon off;
pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;
events { worker_connections 4096; }
http {
  ${o.accessLog ? `access_log ${p('access.log')} combined;` : 'access_log off;'}
  client_body_temp_path ${p('client_body')};
  proxy_temp_path ${p('proxy_temp')};
  fastcgi_temp_path ${p('fastcgi_temp')};
  uwsgi_temp_path ${p('uwsgi_temp')};
  scgi_temp_path ${p('scgi_temp')};
  # Keep-alive limits high on both sides: measure proxying, not connection churn (Node has no such limit).
  keepalive_requests 1000000;
  keepalive_timeout 65;
  upstream bench_upstream {
    server 127.0.0.1:${o.upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${o.port};
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_max_temp_file_size 0;
    }
  }
}
`;
}

export interface NginxUpstreamOptions {
  dir: string;
  port: number;
}

/** nginx as the shared upstream: /small and /large as static files served from memory-cached descriptors. */
export function nginxUpstreamConfig(o: NginxUpstreamOptions): string {
  const p = (name: string): string => path.join(o.dir, name);
  return `worker_processes 1;
daemon off;
pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${p('client_body')};
  proxy_temp_path ${p('proxy_temp')};
  fastcgi_temp_path ${p('fastcgi_temp')};
  uwsgi_temp_path ${p('uwsgi_temp')};
  scgi_temp_path ${p('scgi_temp')};
  keepalive_requests 1000000;
  keepalive_timeout 65;
  sendfile on;
  etag off;
  default_type text/plain;
  open_file_cache max=16 inactive=1h;
  open_file_cache_valid 1h;
  server {
    listen 127.0.0.1:${o.port};
    root ${p('www')};
    location = /small { }
    location = /large { }
    location / { return 404; }
  }
}
`;
}
